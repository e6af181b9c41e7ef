"""A study's factors: each factor sorts the variants into levels (``{family: {vanilla:
[vanilla-shallow, vanilla-deep], ...}, depth: {shallow: [...], deep: [...]}}``), declared by
the study or derived from the variants' ``family`` and ``group``. Checked here, as data, so a
study file and a report rebuilt from the store agree on what a valid design is."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence

Factors = Mapping[str, Mapping[str, Sequence[str]]]  # factor -> level -> variants
Cell = tuple[str, ...]  # one level of every factor, in the factors' order


def check_factors(factors: Factors, variants: Sequence[str]) -> None:
    """Raise ValueError unless every factor has 2 or more non-empty levels that partition
    the same subset of ``variants``, and every combination of levels holds a variant."""
    if not factors:
        raise ValueError("factors: name at least one factor")
    covered: set[str] | None = None
    for name, levels in factors.items():
        if len(levels) < 2:
            raise ValueError(f"factor {name!r} needs 2 or more levels, got {len(levels)}")
        seen: list[str] = []
        for level, members in levels.items():
            if not members:
                raise ValueError(f"factor {name!r}: level {level!r} names no variant")
            unknown = sorted(set(members) - set(variants))
            if unknown:
                raise ValueError(
                    f"factor {name!r}: level {level!r} names variants not in the study: "
                    f"{', '.join(unknown)}; known: {', '.join(variants)}"
                )
            seen += members
        twice = sorted({v for v in seen if seen.count(v) > 1})
        if twice:
            raise ValueError(f"factor {name!r}: {', '.join(twice)} in more than one level")
        if covered is not None and set(seen) != covered:
            raise ValueError(
                f"factor {name!r} sorts other variants than the factors before it: "
                f"{', '.join(sorted(set(seen) ^ covered))}"
            )
        covered = set(seen)
    empty = [c for c, members in cells(factors).items() if not members]
    if empty:
        raise ValueError(
            "factors are not crossed: no variant is " + " and ".join(map(repr, empty[0]))
        )


def cells(factors: Factors) -> dict[Cell, list[str]]:
    """Every combination of levels and the variants in it (the variants in each of its levels)."""
    names = list(factors)
    out = {}
    for combo in itertools.product(*(list(factors[n]) for n in names)):
        members = set.intersection(
            *(set(factors[n][level]) for n, level in zip(names, combo, strict=True))
        )
        first = factors[names[0]][combo[0]]
        out[combo] = [v for v in first if v in members]
    return out


def derive_factors(
    structure: Iterable[tuple[str, str, str]],
) -> dict[str, dict[str, list[str]]] | None:
    """Factors ``family`` and ``group`` from (variant, family, group) triples, when they form a
    complete crossed design with one variant per cell and 2 or more levels each; else None."""
    rows = list(structure)
    factors: dict[str, dict[str, list[str]]] = {"family": {}, "group": {}}
    for variant, family, group in rows:
        factors["family"].setdefault(family, []).append(variant)
        factors["group"].setdefault(group, []).append(variant)
    if len(factors["family"]) < 2 or len(factors["group"]) < 2:
        return None
    if any(len(members) != 1 for members in cells(factors).values()):
        return None  # a missing combination, or two variants in one
    return factors


def restrict(
    factors: Factors | None, variants: Sequence[str]
) -> dict[str, dict[str, list[str]]] | None:
    """The factors over ``variants`` only (a comparison of some of the study's variants);
    None where what is left is no longer a valid design."""
    if not factors:
        return None
    kept = {
        name: {level: [v for v in members if v in variants] for level, members in levels.items()}
        for name, levels in factors.items()
    }
    kept = {name: {level: m for level, m in levels.items() if m} for name, levels in kept.items()}
    try:
        check_factors(kept, variants)
    except ValueError:
        return None
    return kept


def dumps(factors: Factors | None) -> str:
    """The factors as the JSON a comparison logs ("{}": none)."""
    return json.dumps(
        {k: {lv: list(m) for lv, m in v.items()} for k, v in (factors or {}).items()},
        separators=(",", ":"),
    )


def loads(text: str) -> dict[str, dict[str, list[str]]] | None:
    """Factors logged by :func:`dumps`; None for "{}" or text that is not such a mapping."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(levels, dict) and all(isinstance(m, list) for m in levels.values())
        for levels in value.values()
    ):
        return None
    return value or None
