"""Variants are structure, declared as data; hyperparameters are a separate value.

A :class:`Variant` says which layers a model has, where dropout and batch norm go and
which blocks are joined by residual additions. :class:`HParams` says how it is trained
(optimizer, learning rate, dropout rate, batch size, epochs, seed). Tuning produces
``HParams``; it never invents variants. Only :mod:`bench.models` turns a variant into
layers.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from bench.errors import VariantError

BatchNormPlace = Literal["pre", "post"]  # "pre": linear -> BN -> activation; "post": after it
DropoutPlace = Literal["pre", "post"]  # "pre": right after the linear layer (seed 002); "post": last


@dataclass(frozen=True)
class Dense:
    """A fully connected block: Dense -> [Dropout "pre"] -> [BN "pre"] -> activation -> [BN "post"]
    -> [Dropout "post"] -> [+ skip]."""

    units: int
    activation: str = "relu"
    batch_norm: BatchNormPlace | None = None
    dropout: float = 0.0  # rate at this site; HParams.dropout overrides it when set
    dropout_place: DropoutPlace = "post"
    l2: float = 0.0  # L2 penalty on the kernel
    use_bias: bool = True
    residual_from: int | None = None  # add the output of block #i (0-based, earlier) to ours
    kernel_initializer: str | None = None  # None: the variant's


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution block: Conv -> [Dropout "pre"] -> [BN "pre"] -> activation -> [BN "post"]
    -> [pool] -> [Dropout "post"]."""

    filters: int
    kernel_size: int = 5
    strides: int = 1
    padding: Literal["valid", "same"] = "valid"
    activation: str = "relu"
    batch_norm: BatchNormPlace | None = None
    use_bias: bool = True
    pool: Literal["max", "avg"] | None = None
    pool_size: int = 2
    pool_strides: int | None = None  # None: same as pool_size
    dropout: float = 0.0
    dropout_place: DropoutPlace = "post"
    l2: float = 0.0
    kernel_initializer: str | None = None  # None: the variant's


Block = Dense | Conv


@dataclass(frozen=True)
class Variant:
    """A named model structure. Conv blocks (if any) come first; Flatten is implied.

    Inputs pass ``input_dropout`` then ``input_batch_norm`` (seed 002's order) before the
    first block. ``output_initializer`` (None: ``kernel_initializer``) lets a variant keep a
    notebook's output layer that was left at the Keras default.
    """

    name: str
    family: str  # what is being compared: vanilla, dropout, batchnorm, ...
    group: str  # which figures overlay it: shallow, deep, ...
    blocks: tuple[Block, ...]
    description: str = ""
    kernel_initializer: str = "glorot_uniform"
    input_dropout: float = 0.0
    input_batch_norm: bool = False
    output_activation: str = "softmax"
    output_initializer: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise VariantError(f"variant {self.name!r} has no blocks")
        seen_dense = False
        for i, block in enumerate(self.blocks):
            if isinstance(block, Dense):
                seen_dense = True
                if block.residual_from is not None and not 0 <= block.residual_from < i:
                    raise VariantError(
                        f"variant {self.name!r}: block {i} adds block {block.residual_from}, "
                        "which is not an earlier block"
                    )
            elif seen_dense:
                raise VariantError(f"variant {self.name!r}: a Conv block follows a Dense block")
            rate = block.dropout
            if not 0.0 <= rate < 1.0:
                raise VariantError(f"variant {self.name!r}: dropout rate {rate} not in [0, 1)")

    @property
    def has_dropout(self) -> bool:
        return any(b.dropout > 0 for b in self.blocks)

    @property
    def has_batch_norm(self) -> bool:
        return self.input_batch_norm or any(b.batch_norm for b in self.blocks)

    @property
    def has_residual(self) -> bool:
        return any(isinstance(b, Dense) and b.residual_from is not None for b in self.blocks)

    @property
    def is_convolutional(self) -> bool:
        return any(isinstance(b, Conv) for b in self.blocks)

    @property
    def hidden_layers(self) -> int:
        """Dense and Conv blocks (the output layer not counted): seed 001's "depth"."""
        return len(self.blocks)

    def summary(self) -> str:
        """The layers in the order the builder applies them, e.g. ``[0] 512 relu BN -> ...``.

        Within a block: the linear layer, dropout placed "pre", batch norm "pre", the
        activation, batch norm "post", pooling, dropout "post", the residual addition.
        """
        parts = []
        if self.input_dropout:
            parts.append(f"D{self.input_dropout:g}")
        if self.input_batch_norm:
            parts.append("BN")
        for i, b in enumerate(self.blocks):
            if isinstance(b, Conv):
                tokens = [f"C{b.filters}@{b.kernel_size}x{b.kernel_size}{'' if b.padding == 'valid' else ' same'}"]
            else:
                tokens = [f"{b.units}"]
            if b.l2:
                tokens.append(f"L2({b.l2:g})")
            if b.dropout and b.dropout_place == "pre":
                tokens.append(f"D{b.dropout:g}")
            if b.batch_norm == "pre":
                tokens.append("BN")
            tokens.append(b.activation)
            if b.batch_norm == "post":
                tokens.append("BN")
            if isinstance(b, Conv) and b.pool:
                stride = "" if b.pool_strides in (None, b.pool_size) else f"/{b.pool_strides}"
                tokens.append(f"{b.pool}pool{b.pool_size}{stride}")
            if b.dropout and b.dropout_place == "post":
                tokens.append(f"D{b.dropout:g}")
            if isinstance(b, Dense) and b.residual_from is not None:
                tokens.append(f"+[{b.residual_from}]")
            parts.append(f"[{i}] {' '.join(tokens)}")
        return " -> ".join(parts)

    def structure_params(self) -> dict[str, str]:
        """The structure as flat MLflow params (``variant.*``)."""
        widths = [b.units if isinstance(b, Dense) else b.filters for b in self.blocks]
        return {
            "variant": self.name,
            "variant.family": self.family,
            "variant.group": self.group,
            "variant.layers": str(len(self.blocks)),
            "variant.widths": ",".join(map(str, widths)),
            "variant.dropout_sites": ",".join(str(i) for i, b in enumerate(self.blocks) if b.dropout),
            "variant.batch_norm": ",".join(
                f"{i}:{b.batch_norm}" for i, b in enumerate(self.blocks) if b.batch_norm
            )
            + (",input" if self.input_batch_norm else ""),
            "variant.residual": ",".join(
                f"{b.residual_from}->{i}"
                for i, b in enumerate(self.blocks)
                if isinstance(b, Dense) and b.residual_from is not None
            ),
            "variant.kernel_initializer": self.kernel_initializer,
            "variant.summary": self.summary()[:500],
        }


OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class HParams:
    """How a variant is trained. ``dropout`` (when set) replaces every hidden dropout rate."""

    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's Keras default
    dropout: float | None = None
    batch_size: int = 32
    epochs: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise VariantError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise VariantError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise VariantError(f"dropout rate must be in [0, 1), got {self.dropout}")
        if self.batch_size <= 0:
            raise VariantError(f"batch size must be > 0, got {self.batch_size}")
        if self.epochs <= 0:
            raise VariantError(f"epochs must be > 0, got {self.epochs}")

    def replace(self, **changes: object) -> HParams:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_params(self) -> dict[str, str]:
        return {k: ("default" if v is None else str(v)) for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in _REGISTRY:
        raise VariantError(f"variant {variant.name!r} is registered twice")
    _REGISTRY[variant.name] = variant
    return variant


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


def all_variants() -> list[Variant]:
    return list(_REGISTRY.values())


# The seed notebooks' variants register themselves on import (data, not code paths).
from bench.zoo import CORE_VARIANTS  # noqa: E402,F401  (re-exported)
