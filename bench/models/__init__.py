"""Models: variants declared as data (:mod:`.spec`), named in a registry (:mod:`.registry`),
the seed notebooks' declarations (:mod:`.zoo`) and the one Keras builder (:mod:`.build`).

Importing the package registers the zoo. The builder imports Keras, so it is not imported
here: ``from bench.models.build import build_model`` where a model is built.
"""

from __future__ import annotations

from bench.models import zoo  # noqa: F401  (registers every seed notebook's variant)
from bench.models.registry import get_variant, list_variants, register
from bench.models.spec import OPTIMIZERS, Block, Conv, Dense, HParams, Variant
from bench.models.zoo import CORE_VARIANTS

__all__ = [
    "CORE_VARIANTS",
    "OPTIMIZERS",
    "Block",
    "Conv",
    "Dense",
    "HParams",
    "Variant",
    "get_variant",
    "list_variants",
    "register",
]
