"""Variants are structure, declared as data; hyperparameters are a separate value.

A :class:`Variant` says which layers a model has, where dropout and batch norm go and
which blocks are joined by residual additions. :class:`HParams` says how it is trained
(optimizer, learning rate, dropout rate, batch size, epochs, seed). Tuning produces
``HParams``; it never invents variants. The blocks (:class:`Dense`, :class:`Conv`) are
declared in :mod:`bench.models.program`, beside the one program of layer operations a
variant compiles to; :mod:`bench.models.build` turns that program into Keras layers and
:mod:`bench.models.registry` names the variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.errors import VariantError
from bench.models.hparams import MAX_SEED, OPTIMIZERS, HParams  # noqa: F401  (re-exported)
from bench.models.program import Block, Conv, Dense, compile_variant
from bench.store import schema


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
            _check_sizes(self.name, i, block)
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
        """The layers in the order the builder applies them, e.g. ``[0] 512 relu BN -> ...``
        (:meth:`bench.models.program.Program.summary`)."""
        return compile_variant(self).summary()

    def structure_params(self) -> dict[str, str]:
        """The structure as flat MLflow params (``variant.*``)."""
        widths = [b.units if isinstance(b, Dense) else b.filters for b in self.blocks]
        return {
            schema.VARIANT: self.name,
            schema.VARIANT_FAMILY: self.family,
            schema.VARIANT_GROUP: self.group,
            schema.VARIANT_LAYERS: str(len(self.blocks)),
            schema.VARIANT_WIDTHS: ",".join(map(str, widths)),
            schema.VARIANT_DROPOUT_SITES: ",".join(
                str(i) for i, b in enumerate(self.blocks) if b.dropout
            ),
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


def _check_sizes(variant: str, i: int, block: Block) -> None:
    """Units, filters, kernel, stride and pool sizes are positive; an L2 penalty is not
    negative (a declared variant's block is checked before anything is built)."""
    sizes = {
        "units": getattr(block, "units", 1),
        "filters": getattr(block, "filters", 1),
        "kernel_size": getattr(block, "kernel_size", 1),
        "strides": getattr(block, "strides", 1),
        "pool_size": getattr(block, "pool_size", 1),
        "pool_strides": getattr(block, "pool_strides", None) or 1,
    }
    for name, size in sizes.items():
        if size <= 0:
            raise VariantError(f"variant {variant!r}: block {i} {name} must be > 0, got {size}")
    if not 0.0 <= block.l2 < math.inf:
        raise VariantError(
            f"variant {variant!r}: block {i} l2 must be a finite number >= 0, got {block.l2}"
        )
    limit = getattr(block, "max_norm", None)
    if limit is not None and not 0.0 < limit < math.inf:
        raise VariantError(
            f"variant {variant!r}: block {i} max_norm must be a finite number > 0, got {limit}"
        )
