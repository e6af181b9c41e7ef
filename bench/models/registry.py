"""The registry of named variants: a leaf module. ``bench.models.zoo`` registers the seed
notebooks' variants into it, and the package's ``__init__`` imports the zoo, so looking a
variant up never depends on import order (timm's ``_registry`` idea)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable

from bench.declaring import current_origin
from bench.errors import VariantError
from bench.models.spec import Variant

_REGISTRY: dict[str, Variant] = {}
_ORIGINS: dict[str, str] = {}


def register(variant: Variant, origin: str | None = None) -> Variant:
    """Add ``variant`` under its name; ``origin`` says where it was declared (the package, a
    study file, a plug-in; default: :func:`bench.declaring.current_origin`), shown by
    ``bench list``.
    A name already taken is an error, except the same declaration from the same place again
    (a study file read twice)."""
    origin = origin or current_origin()
    held = _REGISTRY.get(variant.name)
    if held is not None and (held != variant or _ORIGINS[variant.name] != origin):
        raise VariantError(
            f"variant {variant.name!r} is already declared ({_ORIGINS[variant.name]}); choose "
            "another name"
        )
    _REGISTRY[variant.name] = variant
    _ORIGINS[variant.name] = origin
    return variant


def origin_of(name: str) -> str:
    """Where the registered variant ``name`` was declared."""
    get_variant(name)
    return _ORIGINS[name]


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise VariantError(
            f"unknown variant {name!r}{hint}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_variants(patterns: str | Iterable[str] = "*") -> list[str]:
    """Names matching comma-separated globs (``"*-deep,vanilla-*"``), in registry order.

    A pattern that is not a glob must name a registered variant exactly.
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",")]
    patterns = [p for p in patterns if p]
    if not patterns:
        raise VariantError("no variant pattern given")
    names: list[str] = []
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?["):
            get_variant(pattern)  # raises with suggestions
            hits = [pattern]
        else:
            hits = [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise VariantError(
                    f"pattern {pattern!r} matches no variant; known: {', '.join(sorted(_REGISTRY))}"
                )
        names.extend(h for h in hits if h not in names)
    return names
