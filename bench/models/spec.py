"""Variants are structure, declared as data; hyperparameters are a separate value.

A :class:`Variant` says which layers a model has, where dropout and batch norm go and
which blocks are joined by residual additions. :class:`HParams` says how it is trained
(optimizer, learning rate, dropout rate, batch size, epochs, seed). Tuning produces
``HParams``; it never invents variants. Only :mod:`bench.models.build` turns a variant into
layers; :mod:`bench.models.registry` names them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from bench.errors import VariantError
from bench.store import schema

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
    def dropout_rate(self) -> float | None:
        """The one dropout rate every dropout block uses; None without dropout or with several."""
        rates = {b.dropout for b in self.blocks if b.dropout}
        return rates.pop() if len(rates) == 1 else None

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
            schema.VARIANT: self.name,
            schema.VARIANT_FAMILY: self.family,
            schema.VARIANT_GROUP: self.group,
            schema.VARIANT_LAYERS: str(len(self.blocks)),
            schema.VARIANT_WIDTHS: ",".join(map(str, widths)),
            schema.VARIANT_DROPOUT_SITES: ",".join(str(i) for i, b in enumerate(self.blocks) if b.dropout),
            schema.VARIANT_BATCH_NORM: ",".join(
                f"{i}:{b.batch_norm}" for i, b in enumerate(self.blocks) if b.batch_norm
            )
            + (",input" if self.input_batch_norm else ""),
            schema.VARIANT_RESIDUAL: ",".join(
                f"{b.residual_from}->{i}"
                for i, b in enumerate(self.blocks)
                if isinstance(b, Dense) and b.residual_from is not None
            ),
            schema.VARIANT_INITIALIZER: self.kernel_initializer,
            schema.VARIANT_SUMMARY: self.summary()[:500],
        }


OPTIMIZERS = ("adam", "sgd", "rmsprop")  # the names bench.models.build maps to Keras classes


#: The largest seed: TensorFlow takes seeds as 32-bit signed integers (a study's trials and
#: a comparison's seeds count up from the one given, and must stay at or below it too).
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class HParams:
    """How a variant is trained. ``dropout`` (when set) replaces every hidden dropout rate."""

    optimizer: str = "adam"
    learning_rate: float | None = None  # None: the optimizer's Keras default
    dropout: float | None = None
    batch_size: int = 32
    epochs: int = 50
    seed: int = 0
    #: Keep the weights of the epoch with the best validation accuracy (Keras'
    #: ``EarlyStopping(restore_best_weights=True)`` idea, without stopping early): the
    #: model tested, logged and scored is that epoch's, not the last one's.
    restore_best: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise VariantError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.learning_rate is not None and not 0 < self.learning_rate < math.inf:
            raise VariantError(f"learning rate must be a finite number > 0, got {self.learning_rate}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise VariantError(f"dropout rate must be in [0, 1), got {self.dropout}")
        if self.batch_size <= 0:
            raise VariantError(f"batch size must be > 0, got {self.batch_size}")
        if self.epochs <= 0:
            raise VariantError(f"epochs must be > 0, got {self.epochs}")
        if not 0 <= self.seed <= MAX_SEED:
            raise VariantError(f"seed must be in 0..{MAX_SEED}, got {self.seed}")

    def replace(self, **changes: object) -> HParams:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_params(self) -> dict[str, str]:
        """One MLflow param per field (the names are :data:`bench.store.schema.HPARAMS`)."""
        return {k: ("default" if v is None else str(v)) for k, v in dataclasses.asdict(self).items()}
