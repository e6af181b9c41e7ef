"""K members of one dense variant as stacked tensors: every weight has a leading member axis.

A layer of the population is one batched matrix multiply (``einsum('kbi,kio->kbo')``) for
all K members, instead of K small ones. The arithmetic is Keras' own, member by member:
:meth:`StackedNet.init_member` draws a member's initial weights with the variant's Keras
initializers (no model built per member), :meth:`StackedNet.load_member` takes them from a
Keras model that :func:`bench.models.build.build_model` built, and
:meth:`StackedNet.write_into` writes a member into such a model; ``tests/test_population.py``
checks that a member and a Keras model trained on the same batches end with the same weights.
The layers are the variant's program (:mod:`bench.models.program`), as the Keras model's are.

The dropout masks come from a counter-based hash of (member seed, step, site, element)
rather than a random-number generator's state: the same member draws the same masks
whatever the population's size or the member's slot, and the masks cost a few integer
operations that XLA fuses into the layer (XLA's CPU random-number generator is slow:
docs/speed.md, "Measurements behind the code's constants").
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from bench.models import program
from bench.models.spec import HParams, Variant

_GOLDEN = 0x9E3779B9


#: Operations the stacked engine runs on flattened inputs (a dropout mask is elementwise, so
#: the input's dropout may come before the flattening; nothing else may).
_AFTER_FLATTEN = (
    program.Flatten,
    program.Linear,
    program.BatchNorm,
    program.Activation,
    program.Dropout,
    program.Residual,
)


def supports(variant: Variant) -> bool:
    """Every operation of the variant's program has a stacked form, and the output is a
    softmax: every MLP of the seed notebooks (not the convolutions, nor batch norm over
    the unflattened image)."""
    compiled = program.compile_variant(variant)
    ops = compiled.ops
    first = next((i for i, op in enumerate(ops) if isinstance(op, program.Flatten)), len(ops))
    return (
        all(isinstance(op, program.Dropout) for op in ops[:first])
        and all(isinstance(op, _AFTER_FLATTEN) for op in ops[first:])
        and compiled.output.activation == "softmax"  # the engine's loss takes the logits
    )


def _mix(x: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with p ~ 1/2."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x85EBCA6B, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(13, tf.uint32)))
    x = x * tf.constant(0xC2B2AE35, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def hashed_uniform(seeds: tf.Tensor, counter: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
    """Uniform [0, 1) floats of ``shape`` = (K, ...): member k's values depend only on
    ``seeds[k]``, ``counter[k]`` and the element's position."""
    k = shape[0]
    size = int(np.prod(shape[1:]))
    position = tf.reshape(tf.cast(tf.range(size), tf.uint32), [1, *shape[1:]])
    key = _mix(
        tf.cast(seeds, tf.uint32) * tf.constant(_GOLDEN, tf.uint32)
        + _mix(tf.cast(counter, tf.uint32))
    )
    bits = _mix(
        position * tf.constant(_GOLDEN, tf.uint32) + tf.reshape(key, [k] + [1] * (len(shape) - 1))
    )
    return tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) * (
        1.0 / (1 << 24)
    )


def _dense(h: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Every member's matrix multiply at once; one member's as a plain one, faster on a CPU
    than a batched product of one (docs/speed.md, "Measurements behind the code's constants")."""
    if kernel.shape[0] == 1:
        flat = h if len(h.shape) == 2 else h[0]
        return tf.matmul(flat, kernel[0])[None]
    return tf.einsum("bi,kio->kbo" if len(h.shape) == 2 else "kbi,kio->kbo", h, kernel)


def _max_norm(limit: float):
    """Keras' ``MaxNorm(limit, axis=0)`` on every member's kernel (K, inputs, units)."""

    def constrain(w: tf.Tensor) -> tf.Tensor:
        norms = tf.sqrt(tf.reduce_sum(tf.square(w), axis=1, keepdims=True))
        return w * (tf.clip_by_value(norms, 0.0, limit) / (keras.backend.epsilon() + norms))

    return constrain


def _variable(k: int, op: program.Op, weight: program.Weight) -> tf.Variable:
    """A weight of K members: a leading member axis; a vector (a bias, a batch-norm
    parameter) as (K, 1, n), to broadcast over a batch. Slots start as the initializer's
    constant (zeros for a kernel) until a member enters. A kernel with a max-norm carries it
    as its constraint, which the optimizer applies after each update (as Keras' does)."""
    shape = [k, 1, *weight.shape] if len(weight.shape) == 1 else [k, *weight.shape]
    initial = tf.ones(shape) if weight.initializer == "ones" else tf.zeros(shape)
    limit = getattr(op, "max_norm", None) if weight.attr == "kernel" else None
    return tf.Variable(
        initial,
        name=f"{op.name}_{weight.attr}",
        trainable=weight.trainable,
        constraint=_max_norm(limit) if limit is not None else None,
    )


Entry = tuple[program.Op, program.Weight, tf.Variable]


class StackedNet:
    """The weights, batch-norm statistics and dropout rates of K members of ``variant``,
    one variable per weight of its program (:func:`bench.models.program.compile_variant`)."""

    def __init__(self, variant: Variant, k: int, *, input_size: int, num_classes: int) -> None:
        if not supports(variant):
            raise ValueError(
                f"variant {variant.name!r} cannot be stacked (convolutions or input batch norm)"
            )
        self.variant, self.k = variant, k
        self.program = program.compile_variant(variant, (input_size,), num_classes)
        #: (operation, weight, stacked variable) of every weight, in the order Keras creates them.
        self.entries: list[Entry] = [
            (op, w, _variable(k, op, w)) for op, w in self.program.weights()
        ]
        self._vars = {(op.name, w.attr): var for op, w, var in self.entries}
        self.sites = [op for op in self.program.ops if isinstance(op, program.Dropout)]
        self.rates = tf.Variable(tf.zeros([k, max(1, len(self.sites))]), name="dropout_rates")
        self.seeds = tf.Variable(tf.zeros([k], tf.int32), name="seeds")

    @property
    def trainable(self) -> list[tf.Variable]:
        return [var for _op, weight, var in self.entries if weight.trainable]

    # -- the forward pass

    def logits(
        self, x: tf.Tensor, *, training: bool, counter: tf.Tensor | None = None
    ) -> tf.Tensor:
        """(K, batch, classes) logits; ``x`` is (K, batch, pixels) or, shared, (batch, pixels).
        The program's operations, in its order; the output's softmax is left to the loss."""

        def apply(op: program.Op, h: tf.Tensor, outputs: list[tf.Tensor]) -> tf.Tensor:
            if isinstance(op, program.Linear):
                h = _dense(h, self._vars[op.name, "kernel"])
                return h + self._vars[op.name, "bias"] if op.use_bias else h
            if isinstance(op, program.Dropout):
                return self._dropout(h, op, training, counter)
            if isinstance(op, program.BatchNorm):
                return self._batch_norm(op, h, training)
            if isinstance(op, program.Activation):
                return keras.activations.get(op.function)(h)
            if isinstance(op, program.Residual):
                return outputs[op.source] + h
            return h  # Flatten: the inputs come flattened

        return program.walk(self.program, x, apply)

    def _batch_norm(self, op: program.BatchNorm, h: tf.Tensor, training: bool) -> tf.Tensor:
        moving_mean = self._vars[op.name, "moving_mean"]
        moving_variance = self._vars[op.name, "moving_variance"]
        if training:
            mean, variance = tf.nn.moments(h, axes=[1], keepdims=True)  # per member, over its batch
            m = op.momentum
            moving_mean.assign(moving_mean * m + mean * (1.0 - m))
            moving_variance.assign(moving_variance * m + variance * (1.0 - m))
        else:
            mean, variance = moving_mean, moving_variance
        inv = tf.math.rsqrt(variance + op.epsilon) * self._vars[op.name, "gamma"]
        return (h - mean) * inv + self._vars[op.name, "beta"]

    def _dropout(
        self, h: tf.Tensor, op: program.Dropout, training: bool, counter: tf.Tensor | None
    ) -> tf.Tensor:
        if not training:
            return h
        j = self.sites.index(op)
        if len(h.shape) == 2:
            h = tf.broadcast_to(h[None], [self.k, *h.shape])
        rate = tf.reshape(self.rates[:, j], [self.k] + [1] * (len(h.shape) - 1))
        u = hashed_uniform(self.seeds, counter * len(self.sites) + j, h.shape)
        keep = tf.cast(u >= rate, h.dtype)
        return h * keep / (1.0 - rate)

    def penalty(self) -> tf.Tensor:
        """Each member's L2 penalty (K,), as Keras adds its kernel regularisers to the loss."""
        total = tf.zeros([self.k])
        for op in self.program.ops:
            if isinstance(op, program.Linear) and op.l2:
                kernel = self._vars[op.name, "kernel"]
                total += op.l2 * tf.reduce_sum(tf.square(kernel), axis=[1, 2])
        return total

    # -- members in and out

    def param_count(self) -> int:
        """One member's weights, counted as Keras' ``count_params`` counts them."""
        return self.program.parameter_count()

    def initial_values(self, seed: int) -> list[np.ndarray]:
        """A member's initial weights: the variant's Keras initializers, each seeded from
        (``seed``, weight index), so the same seed gives the same network in any slot."""
        values = []
        for n, (_op, weight, var) in enumerate(self.entries):
            shape = tuple(var.shape[1:])
            if weight.initializer in ("zeros", "ones"):
                values.append(
                    np.full(shape, 1.0 if weight.initializer == "ones" else 0.0, np.float32)
                )
                continue
            template = keras.initializers.get(weight.initializer)
            config = {**template.get_config(), "seed": _weight_seed(seed, n)}
            drawn = type(template).from_config(config)(weight.shape)
            values.append(np.reshape(keras.ops.convert_to_numpy(drawn), shape))
        return values

    def init_member(self, k: int, hparams: HParams, seed: int) -> None:
        """Slot ``k`` starts from the member's own initial weights (no Keras model built)."""
        self._load(k, self.initial_values(seed), hparams, seed)

    def load_member(self, k: int, model: keras.Model, hparams: HParams, seed: int) -> None:
        """Put a Keras model's weights (built by ``build_model`` for the member) into slot ``k``."""
        values = []
        for op, weight, var in self.entries:
            value = getattr(model.get_layer(op.name), weight.attr).value
            values.append(np.reshape(keras.ops.convert_to_numpy(value), var.shape[1:]))
        self._load(k, values, hparams, seed)

    def _load(self, k: int, values: Sequence[np.ndarray], hparams: HParams, seed: int) -> None:
        rates = [op.rate_for(hparams.dropout) for op in self.sites]
        rates += [0.0] * (int(self.rates.shape[1]) - len(rates))
        self._put(
            tf.constant(k, tf.int32),
            [tf.constant(v, tf.float32) for v in values],
            tf.constant(rates, tf.float32),
            tf.constant(seed, tf.int32),
        )

    @tf.function
    def _put(self, k, values, rates, seed):
        """Every weight, dropout rate and seed of slot ``k`` in one call (not one per variable)."""
        at = tf.reshape(k, [1, 1])
        for (_op, _weight, var), value in zip(self.entries, values, strict=True):
            var.scatter_nd_update(at, value[None])
        self.rates.scatter_nd_update(at, rates[None])
        self.seeds.scatter_nd_update(at, seed[None])

    @tf.function
    def _get(self, k):
        return [tf.gather(var, k) for _op, _weight, var in self.entries]

    def member_values(self, k: int) -> list[np.ndarray]:
        """Slot ``k``'s weights as they are now."""
        return [v.numpy() for v in self._get(tf.constant(k, tf.int32))]

    def write_into(self, model: keras.Model, values: Sequence[np.ndarray]) -> keras.Model:
        """Give ``model`` (built by ``build_model`` for the member) the weights ``values``."""
        for (op, weight, _var), value in zip(self.entries, values, strict=True):
            target = getattr(model.get_layer(op.name), weight.attr)
            target.assign(np.reshape(value, target.shape))
        return model

    def export_member(self, k: int, model: keras.Model) -> keras.Model:
        """Write slot ``k`` into ``model`` (built by build_model for the member) and return it."""
        return self.write_into(model, self.member_values(k))


def _weight_seed(seed: int, index: int) -> int:
    """A weight's initializer seed, from the member's seed and the weight's position."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31 - 1))
