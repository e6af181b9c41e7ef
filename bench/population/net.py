"""K members of one dense variant as stacked tensors: every weight has a leading member axis.

A layer of the population is one batched matrix multiply (``einsum('kbi,kio->kbo')``) for
all K members, instead of K small ones. The arithmetic is Keras' own, member by member:
:meth:`StackedNet.init_member` draws a member's initial weights with the variant's Keras
initializers (no model built per member), :meth:`StackedNet.load_member` takes them from a
Keras model that :func:`bench.models.build.build_model` built, and
:meth:`StackedNet.write_into` writes a member into such a model; ``tests/test_population.py`` checks that a member and a
Keras model trained on the same batches end with the same weights.

The dropout masks come from a counter-based hash of (member seed, step, site, element)
rather than a random-number generator's state: the same member draws the same masks
whatever the population's size or the member's slot, and the masks cost a few integer
operations that XLA fuses into the layer (XLA's CPU generator made dropout variants
several times slower per epoch than their twins without dropout).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from bench.models.spec import Dense, HParams, Variant

_GOLDEN = 0x9E3779B9


def supports(variant: Variant) -> bool:
    """Dense blocks on flattened images, softmax output: every MLP of the seed notebooks."""
    return (
        not variant.is_convolutional
        and not variant.input_batch_norm
        and variant.output_activation == "softmax"
        and all(isinstance(b, Dense) for b in variant.blocks)
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
    key = _mix(tf.cast(seeds, tf.uint32) * tf.constant(_GOLDEN, tf.uint32) + _mix(tf.cast(counter, tf.uint32)))
    bits = _mix(position * tf.constant(_GOLDEN, tf.uint32) + tf.reshape(key, [k] + [1] * (len(shape) - 1)))
    return tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) * (1.0 / (1 << 24))


def _dense(h: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Every member's matrix multiply at once; one member's as a plain one (XLA's CPU
    batched dot with a batch of one measured ~10% slower than the plain dot). K plain
    products stacked ("towers") measured slower than the batched one: 3.9 s against 2.7 s
    per member-epoch for 8 members of vanilla-deep at batch 256 on a 2-core CPU."""
    if kernel.shape[0] == 1:
        flat = h if len(h.shape) == 2 else h[0]
        return tf.matmul(flat, kernel[0])[None]
    return tf.einsum("bi,kio->kbo" if len(h.shape) == 2 else "kbi,kio->kbo", h, kernel)


class StackedNet:
    """The weights, batch-norm statistics and dropout rates of K members of ``variant``."""

    def __init__(self, variant: Variant, k: int, *, input_size: int, num_classes: int) -> None:
        if not supports(variant):
            raise ValueError(f"variant {variant.name!r} cannot be stacked (convolutions or input batch norm)")
        self.variant, self.k = variant, k
        self.kernels, self.biases, self.bn = [], [], []
        width = input_size
        for i, block in enumerate(variant.blocks):
            self.kernels.append(tf.Variable(tf.zeros([k, width, block.units]), name=f"b{i}_kernel"))
            self.biases.append(tf.Variable(tf.zeros([k, 1, block.units]), name=f"b{i}_bias") if block.use_bias else None)
            self.bn.append(self._bn_variables(i, block.units) if block.batch_norm else None)
            width = block.units
        self.out_kernel = tf.Variable(tf.zeros([k, width, num_classes]), name="output_kernel")
        self.out_bias = tf.Variable(tf.zeros([k, 1, num_classes]), name="output_bias")
        # Dropout sites: the input (when the variant has input dropout), then each block that has one.
        self.sites = (["input"] if variant.input_dropout else []) + [i for i, b in enumerate(variant.blocks) if b.dropout]
        self.rates = tf.Variable(tf.zeros([k, max(1, len(self.sites))]), name="dropout_rates")
        self.seeds = tf.Variable(tf.zeros([k], tf.int32), name="seeds")
        self.bn_momentum, self.bn_epsilon = 0.99, 1e-3

    def _bn_variables(self, i: int, units: int) -> dict[str, tf.Variable]:
        shape = [self.k, 1, units]
        return {
            "gamma": tf.Variable(tf.ones(shape), name=f"b{i}_gamma"),
            "beta": tf.Variable(tf.zeros(shape), name=f"b{i}_beta"),
            "moving_mean": tf.Variable(tf.zeros(shape), name=f"b{i}_moving_mean", trainable=False),
            "moving_variance": tf.Variable(tf.ones(shape), name=f"b{i}_moving_variance", trainable=False),
        }

    @property
    def trainable(self) -> list[tf.Variable]:
        out = []
        for kernel, bias, bn in zip(self.kernels, self.biases, self.bn, strict=True):
            out.append(kernel)
            if bias is not None:
                out.append(bias)
            if bn is not None:
                out += [bn["gamma"], bn["beta"]]
        return [*out, self.out_kernel, self.out_bias]

    # -- the forward pass

    def logits(self, x: tf.Tensor, *, training: bool, counter: tf.Tensor | None = None) -> tf.Tensor:
        """(K, batch, classes) logits; ``x`` is (K, batch, pixels) or, shared, (batch, pixels)."""
        h = x
        taps = []
        for i, block in enumerate(self.variant.blocks):
            if i == 0 and self.variant.input_dropout:
                h = self._dropout(h, "input", training, counter)
            h = _dense(h, self.kernels[i])
            if self.biases[i] is not None:
                h = h + self.biases[i]
            if block.dropout and block.dropout_place == "pre":
                h = self._dropout(h, i, training, counter)
            if block.batch_norm == "pre":
                h = self._batch_norm(i, h, training)
            h = keras.activations.get(block.activation)(h)
            if block.batch_norm == "post":
                h = self._batch_norm(i, h, training)
            if block.dropout and block.dropout_place == "post":
                h = self._dropout(h, i, training, counter)
            if block.residual_from is not None:
                h = taps[block.residual_from] + h
            taps.append(h)
        return _dense(h, self.out_kernel) + self.out_bias

    def _batch_norm(self, i: int, h: tf.Tensor, training: bool) -> tf.Tensor:
        bn = self.bn[i]
        if training:
            mean, variance = tf.nn.moments(h, axes=[1], keepdims=True)  # per member, over its batch
            m = self.bn_momentum
            bn["moving_mean"].assign(bn["moving_mean"] * m + mean * (1.0 - m))
            bn["moving_variance"].assign(bn["moving_variance"] * m + variance * (1.0 - m))
        else:
            mean, variance = bn["moving_mean"], bn["moving_variance"]
        inv = tf.math.rsqrt(variance + self.bn_epsilon) * bn["gamma"]
        return (h - mean) * inv + bn["beta"]

    def _dropout(self, h: tf.Tensor, site: int | str, training: bool, counter: tf.Tensor | None) -> tf.Tensor:
        if not training:
            return h
        j = self.sites.index(site)
        if len(h.shape) == 2:
            h = tf.broadcast_to(h[None], [self.k, *h.shape])
        rate = tf.reshape(self.rates[:, j], [self.k] + [1] * (len(h.shape) - 1))
        u = hashed_uniform(self.seeds, counter * len(self.sites) + j, h.shape)
        keep = tf.cast(u >= rate, h.dtype)
        return h * keep / (1.0 - rate)

    def penalty(self) -> tf.Tensor:
        """Each member's L2 penalty (K,), as Keras adds its kernel regularisers to the loss."""
        total = tf.zeros([self.k])
        for kernel, block in zip(self.kernels, self.variant.blocks, strict=True):
            if block.l2:
                total += block.l2 * tf.reduce_sum(tf.square(kernel), axis=[1, 2])
        return total

    # -- members in and out

    def _entries(self):
        """(stacked variable, Keras layer, attribute, initializer) of every weight, in the order
        :func:`bench.models.build.build_model` creates them."""
        variant = self.variant
        for i, block in enumerate(variant.blocks):
            yield self.kernels[i], f"b{i}_dense", "kernel", block.kernel_initializer or variant.kernel_initializer
            if self.biases[i] is not None:
                yield self.biases[i], f"b{i}_dense", "bias", "zeros"
            if self.bn[i] is not None:
                for name, init in (("gamma", "ones"), ("beta", "zeros"), ("moving_mean", "zeros"), ("moving_variance", "ones")):
                    yield self.bn[i][name], f"b{i}_bn", name, init
        yield self.out_kernel, "output", "kernel", variant.output_initializer or variant.kernel_initializer
        yield self.out_bias, "output", "bias", "zeros"

    def param_count(self) -> int:
        """One member's weights, counted as Keras' ``count_params`` counts them."""
        return sum(int(np.prod(var.shape[1:])) for var, *_ in self._entries())

    def initial_values(self, seed: int) -> list[np.ndarray]:
        """A member's initial weights: the variant's Keras initializers, each seeded from
        (``seed``, weight index), so the same seed gives the same network in any slot."""
        values = []
        for n, (var, _layer, _attr, init) in enumerate(self._entries()):
            shape = tuple(var.shape[1:])
            if init in ("zeros", "ones"):
                values.append(np.full(shape, 1.0 if init == "ones" else 0.0, np.float32))
                continue
            template = keras.initializers.get(init)
            seeded = type(template).from_config({**template.get_config(), "seed": _weight_seed(seed, n)})
            values.append(keras.ops.convert_to_numpy(seeded(shape)))
        return values

    def init_member(self, k: int, hparams: HParams, seed: int) -> None:
        """Slot ``k`` starts from the member's own initial weights (no Keras model built)."""
        self._load(k, self.initial_values(seed), hparams, seed)

    def load_member(self, k: int, model: keras.Model, hparams: HParams, seed: int) -> None:
        """Put a Keras model's weights (built by ``build_model`` for the member) into slot ``k``."""
        values = []
        for var, layer_name, attr, _init in self._entries():
            layer = model.get_layer(layer_name)
            if attr == "gamma":
                self.bn_momentum, self.bn_epsilon = float(layer.momentum), float(layer.epsilon)
            values.append(np.reshape(keras.ops.convert_to_numpy(getattr(layer, attr).value), var.shape[1:]))
        self._load(k, values, hparams, seed)

    def _load(self, k: int, values: Sequence[np.ndarray], hparams: HParams, seed: int) -> None:
        rates = []
        for site in self.sites:
            if site == "input":
                rates.append(self.variant.input_dropout)
            else:
                rate = self.variant.blocks[site].dropout
                rates.append(hparams.dropout if hparams.dropout is not None else rate)
        rates += [0.0] * (int(self.rates.shape[1]) - len(rates))
        self._put(tf.constant(k, tf.int32), [tf.constant(v, tf.float32) for v in values],
                  tf.constant(rates, tf.float32), tf.constant(seed, tf.int32))

    @tf.function
    def _put(self, k, values, rates, seed):
        """Every weight, dropout rate and seed of slot ``k`` in one call (not one per variable)."""
        at = tf.reshape(k, [1, 1])
        for (var, *_), value in zip(self._entries(), values, strict=True):
            var.scatter_nd_update(at, value[None])
        self.rates.scatter_nd_update(at, rates[None])
        self.seeds.scatter_nd_update(at, seed[None])

    @tf.function
    def _get(self, k):
        return [tf.gather(var, k) for var, *_ in self._entries()]

    def member_values(self, k: int) -> list[np.ndarray]:
        """Slot ``k``'s weights as they are now."""
        return [v.numpy() for v in self._get(tf.constant(k, tf.int32))]

    def write_into(self, model: keras.Model, values: Sequence[np.ndarray]) -> keras.Model:
        """Give ``model`` (built by ``build_model`` for the member) the weights ``values``."""
        for (_var, layer_name, attr, _init), value in zip(self._entries(), values, strict=True):
            target = getattr(model.get_layer(layer_name), attr)
            target.assign(np.reshape(value, target.shape))
        return model

    def export_member(self, k: int, model: keras.Model) -> keras.Model:
        """Write slot ``k`` into ``model`` (built by build_model for the member) and return it."""
        return self.write_into(model, self.member_values(k))


def _weight_seed(seed: int, index: int) -> int:
    """A weight's initializer seed, from the member's seed and the weight's position."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31 - 1))
