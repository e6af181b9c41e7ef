"""Variants declared as mappings (a study file's ``variants:`` entries, a plug-in's data):
the same dataclasses and checks as the zoo's, with errors that name the variant and field.

Two forms::

    {name: wide, family: maxnorm, group: wide, input_dropout: 0.2,
     blocks: [{dense: 512, dropout: 0.5}, {dense: 512, dropout: 0.5}]}
    {name: deep-1024, base: vanilla-deep, units: 1024}

A block is ``{dense: UNITS, ...}`` or ``{conv: FILTERS, ...}`` with the other fields of
:class:`~bench.models.program.Dense` / :class:`~bench.models.program.Conv`. A derived
variant (``base:``) starts from a registered one: the :class:`~bench.models.spec.Variant`
fields given replace the base's (``blocks`` replaces them all), and a block field that is
not a variant field (``units``, ``filters``, ``dropout``, ``activation``, ...) is set on
every block of the base that has it. Its family and group are the base's unless given.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bench.errors import VariantError
from bench.models.program import Conv, Dense
from bench.models.registry import get_variant
from bench.models.spec import Variant

#: The key naming a block's kind, and the field its value fills.
BLOCK_KINDS: dict[str, tuple[type, str]] = {"dense": (Dense, "units"), "conv": (Conv, "filters")}
_VARIANT_FIELDS = {f.name for f in dataclasses.fields(Variant)}
_BLOCK_FIELDS = {f.name for kind, _ in BLOCK_KINDS.values() for f in dataclasses.fields(kind)}


def declare_variant(raw: Mapping[str, Any]) -> Variant:
    """The :class:`Variant` a mapping declares (not registered); a bad one is one
    :class:`VariantError` naming the variant and the field."""
    if not isinstance(raw, Mapping):
        raise VariantError(f"a declared variant must be a mapping (name, blocks, ...), got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise VariantError("a declared variant needs a name")
    try:
        variant = _declare(name, dict(raw))
        check_keras_names(variant)
        return variant
    except VariantError as exc:
        message = str(exc)
        raise VariantError(message if name in message else f"variant {name!r}: {message}") from None


def _declare(name: str, raw: dict[str, Any]) -> Variant:
    base_name = raw.pop("base", None)
    unknown = sorted(
        set(raw) - _VARIANT_FIELDS - ({"base"} | (_BLOCK_FIELDS if base_name else set()))
    )
    if unknown:
        allowed = sorted(_VARIANT_FIELDS | ({"base"} | _BLOCK_FIELDS if base_name else {"base"}))
        raise VariantError(f"unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
    if "blocks" in raw:
        raw["blocks"] = _blocks(raw["blocks"])
    if "tags" in raw:
        raw["tags"] = tuple(_typed("tags", list[str], raw["tags"]))
    if base_name is None:
        missing = [k for k in ("family", "group", "blocks") if k not in raw]
        if missing:
            raise VariantError(
                f"missing field {missing[0]!r} (or derive it: base: <a registered variant>)"
            )
        return _variant(raw)
    if not isinstance(base_name, str):
        raise VariantError(f"base: a registered variant's name, got {base_name!r}")
    base = get_variant(base_name)
    shared = {k: raw.pop(k) for k in list(raw) if k not in _VARIANT_FIELDS}
    blocks = raw.pop("blocks", base.blocks)
    if shared:
        have = {f.name for block in blocks for f in dataclasses.fields(block)}
        missing = sorted(set(shared) - have)
        if missing:
            raise VariantError(f"{missing[0]!r} is not a field of any block of {base.name!r}")
        blocks = tuple(_with(block, shared) for block in blocks)
    description = raw.pop("description", f"{base.name} with {_changes(raw, shared)}")
    fields = {**dataclasses.asdict(base), "blocks": blocks, "description": description, **raw}
    fields["blocks"] = blocks  # asdict turned the base's blocks into dicts
    return _variant(fields)


def check_keras_names(variant: Variant) -> None:
    """Activations and initializers are names Keras knows (they are resolved by Keras, so it
    is asked here, before anything is built or recorded)."""
    import keras

    names = {("activation", variant.output_activation), ("initializer", variant.kernel_initializer)}
    names |= {("initializer", variant.output_initializer)} if variant.output_initializer else set()
    for block in variant.blocks:
        names.add(("activation", block.activation))
        if block.kernel_initializer:
            names.add(("initializer", block.kernel_initializer))
    for kind, name in sorted(names):
        try:
            (keras.activations if kind == "activation" else keras.initializers).get(name)
        except (ValueError, TypeError):
            raise VariantError(
                f"variant {variant.name!r}: unknown {kind} {name!r} (a Keras name)"
            ) from None


def _variant(fields: dict[str, Any]) -> Variant:
    hints = typing.get_type_hints(Variant)
    for name, value in fields.items():
        if name not in ("blocks", "tags"):
            fields[name] = _typed(name, hints[name], value)
    return Variant(**fields)


def _blocks(raw: Any) -> tuple[Dense | Conv, ...]:
    if not isinstance(raw, list) or not raw:
        raise VariantError(
            f"blocks: a non-empty list of blocks ({{dense: 128}}, {{conv: 6}}), got {raw!r}"
        )
    return tuple(_block(i, spec) for i, spec in enumerate(raw))


def _block(i: int, spec: Any) -> Dense | Conv:
    kinds = [k for k in BLOCK_KINDS if isinstance(spec, Mapping) and k in spec]
    if len(kinds) != 1:
        raise VariantError(
            f"blocks[{i}]: one of {{dense: UNITS}} or {{conv: FILTERS}} with its fields, got "
            f"{spec!r}"
        )
    kind, size_field = BLOCK_KINDS[kinds[0]]
    fields = {size_field if k == kinds[0] else k: v for k, v in spec.items()}
    return _build_block(f"blocks[{i}]", kind, fields)


def _with(block: Dense | Conv, changes: dict[str, Any]) -> Dense | Conv:
    """``block`` with the ``changes`` its kind has (a Conv has no ``units``)."""
    names = {f.name for f in dataclasses.fields(block)}
    own = {k: v for k, v in changes.items() if k in names}
    return _build_block("every block", type(block), {**dataclasses.asdict(block), **own})


def _build_block(where: str, kind: type, fields: dict[str, Any]) -> Dense | Conv:
    known = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise VariantError(
            f"{where}: unknown field {unknown[0]!r} for a {kind.__name__} block; "
            f"allowed: {', '.join(known)}"
        )
    hints = typing.get_type_hints(kind)
    return kind(**{k: _typed(f"{where}.{k}", hints[k], v) for k, v in fields.items()})


def _typed(field: str, annotation: Any, value: Any) -> Any:
    try:
        return TypeAdapter(annotation).validate_python(value, strict=True)
    except ValidationError as exc:
        raise VariantError(f"{field}: {exc.errors()[0]['msg']}") from None


def _changes(raw: Mapping[str, Any], shared: Mapping[str, Any]) -> str:
    items = {**{k: v for k, v in raw.items() if k not in ("name", "blocks")}, **shared}
    return ", ".join(f"{k} {v}" for k, v in items.items()) or "no change"
