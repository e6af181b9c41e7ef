"""Models: variants declared as data (:mod:`.spec`), named in a registry (:mod:`.registry`),
the seed notebooks' declarations (:mod:`.zoo`), the one program of layer operations a variant
compiles to (:mod:`.program`) and the one Keras builder (:mod:`.build`).

Importing the package registers the zoo. The builder imports Keras, so it is not imported
here: ``from bench.models.build import build_model`` where a model is built. Counting a
variant's parameters needs no model: :func:`parameter_count`.
"""

from __future__ import annotations

from bench.models import zoo  # noqa: F401  (registers every seed notebook's variant)
from bench.models.declare import declare_variant
from bench.models.program import Program, compile_variant, parameter_count
from bench.models.registry import get_variant, list_variants, origin_of, register
from bench.models.spec import OPTIMIZERS, Block, Conv, Dense, HParams, Variant
from bench.models.zoo import CORE_VARIANTS

LAYER = 2  # import layer (docs/development.md#layers): imports only lower layers' units

__all__ = [
    "CORE_VARIANTS",
    "OPTIMIZERS",
    "Block",
    "Conv",
    "Dense",
    "HParams",
    "Program",
    "Variant",
    "compile_variant",
    "declare_variant",
    "get_variant",
    "list_variants",
    "origin_of",
    "parameter_count",
    "register",
]
