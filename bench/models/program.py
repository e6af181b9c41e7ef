"""Blocks, and the one program of layer operations a variant compiles to.

A :class:`Dense` or :class:`Conv` block is declared here, beside the rule that turns it into
layer operations (:func:`compile_variant`): the block order is written once. Everything
that needs the layers reads the :class:`Program`: the Keras builder
(:mod:`bench.models.build`), the stacked population engine (:mod:`bench.population.net`),
the variant's summary, the parameter count and the population's memory sizing. Each
operation's ``name`` is its Keras layer's name, so a stored model's layers keep theirs.

No Keras here: a program is plain data, and counting a variant's parameters builds nothing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from bench.errors import VariantError

BatchNormPlace = Literal["pre", "post"]  # "pre": linear -> BN -> activation; "post": after it
DropoutPlace = Literal[
    "pre", "post"
]  # "pre": right after the linear layer (seed 002); "post": last

# --------------------------------------------------------------------------- blocks (declared)


@dataclass(frozen=True)
class Dense:
    """A fully connected block: Dense -> [Dropout "pre"] -> [BN "pre"] -> activation ->
    [BN "post"] -> [Dropout "post"] -> [+ skip]."""

    units: int
    activation: str = "relu"
    batch_norm: BatchNormPlace | None = None
    dropout: float = 0.0  # rate at this site; HParams.dropout overrides it when set
    dropout_place: DropoutPlace = "post"
    l2: float = 0.0  # L2 penalty on the kernel
    use_bias: bool = True
    residual_from: int | None = None  # add the output of block #i (0-based, earlier) to ours
    kernel_initializer: str | None = None  # None: the variant's
    #: Keras' ``MaxNorm(max_norm, axis=0)`` on the kernel after every update (each unit's
    #: incoming weights); None: no constraint at all (Keras' MaxNorm rescales a little even
    #: below its limit).
    max_norm: float | None = None


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution block: Conv -> [Dropout "pre"] -> [BN "pre"] -> activation ->
    [BN "post"] -> [pool] -> [Dropout "post"]."""

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


class Declaration(Protocol):
    """What a program is compiled from: a :class:`bench.models.spec.Variant` (which reads
    its summary from its program, so it is not imported here)."""

    @property
    def name(self) -> str: ...
    @property
    def blocks(self) -> tuple[Block, ...]: ...
    @property
    def kernel_initializer(self) -> str: ...
    @property
    def input_dropout(self) -> float: ...
    @property
    def input_batch_norm(self) -> bool: ...
    @property
    def output_activation(self) -> str: ...
    @property
    def output_initializer(self) -> str | None: ...


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Weight:
    """One weight of an operation: its Keras attribute, shape (without a member axis) and
    initializer. Non-trainable weights (batch-norm moving statistics) count as parameters,
    as Keras' ``count_params`` counts them."""

    attr: str
    shape: tuple[int, ...]
    initializer: str
    trainable: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Reshape:
    """Adds the channel axis a convolution needs to a 2-D image."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Flatten:
    name: str


@dataclass(frozen=True)
class Linear:
    """A fully connected layer: ``inputs -> units``. ``activation`` is only the output
    layer's (the blocks have their own :class:`Activation`)."""

    name: str
    inputs: int
    units: int
    use_bias: bool
    initializer: str
    l2: float = 0.0
    activation: str | None = None
    max_norm: float | None = None  # Keras' MaxNorm(max_norm, axis=0) on the kernel

    @property
    def weights(self) -> tuple[Weight, ...]:
        kernel = Weight("kernel", (self.inputs, self.units), self.initializer)
        return (kernel, Weight("bias", (self.units,), "zeros")) if self.use_bias else (kernel,)


@dataclass(frozen=True)
class Conv2D:
    name: str
    in_channels: int
    filters: int
    kernel_size: int
    strides: int
    padding: Literal["valid", "same"]
    use_bias: bool
    initializer: str
    l2: float = 0.0

    @property
    def weights(self) -> tuple[Weight, ...]:
        shape = (self.kernel_size, self.kernel_size, self.in_channels, self.filters)
        kernel = Weight("kernel", shape, self.initializer)
        return (kernel, Weight("bias", (self.filters,), "zeros")) if self.use_bias else (kernel,)


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over the last axis (``features`` wide), Keras' defaults."""

    name: str
    features: int
    momentum: float = 0.99
    epsilon: float = 1e-3

    @property
    def weights(self) -> tuple[Weight, ...]:
        shape = (self.features,)
        return (
            Weight("gamma", shape, "ones"),
            Weight("beta", shape, "zeros"),
            Weight("moving_mean", shape, "zeros", trainable=False),
            Weight("moving_variance", shape, "ones", trainable=False),
        )


@dataclass(frozen=True)
class Activation:
    name: str
    function: str


@dataclass(frozen=True)
class Dropout:
    """Dropout at ``rate``; ``tunable``: :attr:`HParams.dropout <bench.models.spec.HParams>`
    replaces the rate (every hidden site; the input's stays)."""

    name: str
    rate: float
    tunable: bool = True

    def rate_for(self, dropout: float | None) -> float:
        """The rate a member with ``HParams.dropout == dropout`` trains with (0: no layer)."""
        return dropout if self.tunable and dropout is not None else self.rate


@dataclass(frozen=True)
class Pool:
    name: str
    kind: Literal["max", "avg"]
    size: int
    strides: int


@dataclass(frozen=True)
class Residual:
    """Adds block ``source``'s output (after its own residual addition) to the current one."""

    name: str
    source: int


Op = Reshape | Flatten | Linear | Conv2D | BatchNorm | Activation | Dropout | Pool | Residual


def weights_of(op: Op) -> tuple[Weight, ...]:
    return getattr(op, "weights", ())


# --------------------------------------------------------------------------- the program


@dataclass(frozen=True)
class Program:
    """A variant's layers in the order they apply: the ``stem`` (channel axis, input
    dropout, input batch norm), one tuple of operations per block (a block's output is what
    a later :class:`Residual` adds), and the ``head`` (the output layer)."""

    input_shape: tuple[int, ...]
    stem: tuple[Op, ...]
    blocks: tuple[tuple[Op, ...], ...]
    head: tuple[Op, ...]

    @property
    def ops(self) -> tuple[Op, ...]:
        return (*self.stem, *(op for block in self.blocks for op in block), *self.head)

    @property
    def output(self) -> Linear:
        return self.head[-1]  # type: ignore[return-value]

    def weights(self) -> Iterator[tuple[Op, Weight]]:
        """Every weight, in the order Keras creates them (layer by layer)."""
        for op in self.ops:
            for weight in weights_of(op):
                yield op, weight

    def parameter_count(self) -> int:
        """Keras' ``count_params``: every weight, batch-norm statistics included."""
        return sum(weight.size for _op, weight in self.weights())

    def summary(self) -> str:
        """``[0] 512 relu BN -> ...``: each block's operations in the order applied."""
        parts = [token for op in self.stem if (token := _token(op))]
        for i, block in enumerate(self.blocks):
            parts.append(f"[{i}] " + " ".join(token for op in block if (token := _token(op))))
        return " -> ".join(parts)


def _token(op: Op) -> str:
    """How :meth:`Program.summary` writes one operation ("" for none)."""
    l2 = f" L2({op.l2:g})" if isinstance(op, Linear | Conv2D) and op.l2 else ""
    if isinstance(op, Linear):
        return f"{op.units}{l2}" + (f" maxnorm({op.max_norm:g})" if op.max_norm else "")
    if isinstance(op, Conv2D):
        same = "" if op.padding == "valid" else " same"
        return f"C{op.filters}@{op.kernel_size}x{op.kernel_size}{same}{l2}"
    if isinstance(op, Dropout):
        return f"D{op.rate:g}"
    if isinstance(op, BatchNorm):
        return "BN"
    if isinstance(op, Activation):
        return op.function
    if isinstance(op, Pool):
        return f"{op.kind}pool{op.size}" + ("" if op.strides == op.size else f"/{op.strides}")
    if isinstance(op, Residual):
        return f"+[{op.source}]"
    return ""


X = TypeVar("X")


def walk(program: Program, x: X, apply: Callable[[Op, X, list[X]], X]) -> X:
    """Run ``apply(op, x, outputs)`` over the program; ``outputs[i]`` is block i's output,
    kept for the residual additions. The Keras builder and the stacked engine both walk."""
    outputs: list[X] = []
    for op in program.stem:
        x = apply(op, x, outputs)
    for block in program.blocks:
        for op in block:
            x = apply(op, x, outputs)
        outputs.append(x)
    for op in program.head:
        x = apply(op, x, outputs)
    return x


# --------------------------------------------------------------------------- compiling


def compile_variant(
    variant: Declaration, input_shape: Sequence[int] = (28, 28), num_classes: int = 10
) -> Program:
    """The layer operations ``variant`` declares, for inputs of ``input_shape`` (compiled
    once per variant and shape)."""
    return _compile(variant, tuple(input_shape), num_classes)


@functools.lru_cache(maxsize=256)
def _compile(variant: Declaration, input_shape: tuple[int, ...], num_classes: int) -> Program:
    shape = input_shape
    stem: list[Op] = []
    convolutional = any(isinstance(b, Conv) for b in variant.blocks)
    if convolutional and len(shape) == 2:
        shape = (*shape, 1)
        stem.append(Reshape("add_channel", shape))
    if variant.input_dropout:
        stem.append(Dropout("input_dropout", variant.input_dropout, tunable=False))
    if variant.input_batch_norm:
        stem.append(BatchNorm("input_bn", shape[-1]))
    blocks, flat = [], False
    for i, block in enumerate(variant.blocks):
        ops: list[Op] = []
        if isinstance(block, Dense) and not flat:
            ops.append(Flatten("flatten"))
            shape, flat = (math.prod(shape),), True
        shape = _block(ops, i, block, variant.kernel_initializer, shape)
        if any(size < 1 for size in shape):
            raise VariantError(
                f"variant {variant.name!r}: block {i} leaves nothing of a {input_shape} input"
            )
        blocks.append(tuple(ops))
    head: list[Op] = [] if flat else [Flatten("flatten")]
    init = variant.output_initializer or variant.kernel_initializer
    head.append(
        Linear(
            "output",
            inputs=math.prod(shape),
            units=num_classes,
            use_bias=True,
            initializer=init,
            activation=variant.output_activation,
        )
    )
    return Program(input_shape, tuple(stem), tuple(blocks), tuple(head))


def _block(ops: list[Op], i: int, block: Block, initializer: str, shape: tuple[int, ...]):
    """Append block ``i``'s operations to ``ops``; the shape of its output. The order here
    is the order of every reader: linear, dropout "pre", batch norm "pre", activation,
    batch norm "post", pooling, dropout "post", the residual addition."""
    name, init = f"b{i}", block.kernel_initializer or initializer
    if isinstance(block, Conv):
        ops.append(
            Conv2D(
                f"{name}_conv",
                in_channels=shape[-1],
                filters=block.filters,
                kernel_size=block.kernel_size,
                strides=block.strides,
                padding=block.padding,
                use_bias=block.use_bias,
                initializer=init,
                l2=block.l2,
            )
        )
        shape = (*_conv_size(shape, block), block.filters)
    else:
        ops.append(
            Linear(
                f"{name}_dense",
                inputs=shape[-1],
                units=block.units,
                use_bias=block.use_bias,
                initializer=init,
                l2=block.l2,
                max_norm=block.max_norm,
            )
        )
        shape = (block.units,)
    dropout = Dropout(f"{name}_dropout", block.dropout) if block.dropout else None
    if dropout and block.dropout_place == "pre":
        ops.append(dropout)
    if block.batch_norm == "pre":
        ops.append(BatchNorm(f"{name}_bn", shape[-1]))
    ops.append(Activation(f"{name}_{block.activation}", block.activation))
    if block.batch_norm == "post":
        ops.append(BatchNorm(f"{name}_bn", shape[-1]))
    if isinstance(block, Conv) and block.pool:
        strides = block.pool_strides or block.pool_size
        ops.append(Pool(f"{name}_{block.pool}pool", block.pool, block.pool_size, strides))
        shape = (*((n - block.pool_size) // strides + 1 for n in shape[:-1]), shape[-1])
    if dropout and block.dropout_place == "post":
        ops.append(dropout)
    if isinstance(block, Dense) and block.residual_from is not None:
        ops.append(Residual(f"{name}_add_b{block.residual_from}", block.residual_from))
    return shape


def _conv_size(shape: tuple[int, ...], block: Conv) -> tuple[int, ...]:
    """The spatial size after a convolution (Keras' "valid" and "same" padding)."""
    if block.padding == "same":
        return tuple(-(-n // block.strides) for n in shape[:-1])
    return tuple((n - block.kernel_size) // block.strides + 1 for n in shape[:-1])


def parameter_count(
    variant: Declaration, input_shape: Sequence[int] = (28, 28), num_classes: int = 10
) -> int:
    """``variant``'s parameters, as Keras' ``count_params`` counts them, without a model."""
    return compile_variant(variant, input_shape, num_classes).parameter_count()
