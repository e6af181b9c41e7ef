"""The one builder: turns a :class:`~bench.models.spec.Variant` into a Keras model."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, regularizers

from bench.models.spec import OPTIMIZERS, Conv, Dense, HParams, Variant


def _regularizer(l2: float) -> regularizers.Regularizer | None:
    return regularizers.L2(l2) if l2 else None


def _dropout_rate(site_rate: float, hparams: HParams | None) -> float:
    if not site_rate:
        return 0.0
    if hparams is not None and hparams.dropout is not None:
        return hparams.dropout
    return site_rate


def _apply_block(x, block: Conv | Dense, variant: Variant, hparams: HParams | None, i: int):
    name = f"b{i}"
    if isinstance(block, Conv):
        x = layers.Conv2D(
            block.filters,
            block.kernel_size,
            strides=block.strides,
            padding=block.padding,
            use_bias=block.use_bias,
            kernel_initializer=block.kernel_initializer or variant.kernel_initializer,
            kernel_regularizer=_regularizer(block.l2),
            name=f"{name}_conv",
        )(x)
    else:
        x = layers.Dense(
            block.units,
            use_bias=block.use_bias,
            kernel_initializer=block.kernel_initializer or variant.kernel_initializer,
            kernel_regularizer=_regularizer(block.l2),
            name=f"{name}_dense",
        )(x)
    rate = _dropout_rate(block.dropout, hparams)
    if rate and block.dropout_place == "pre":
        x = layers.Dropout(rate, name=f"{name}_dropout")(x)
    if block.batch_norm == "pre":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation(block.activation, name=f"{name}_{block.activation}")(x)
    if block.batch_norm == "post":
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if isinstance(block, Conv) and block.pool:
        pool = layers.MaxPooling2D if block.pool == "max" else layers.AveragePooling2D
        x = pool(block.pool_size, strides=block.pool_strides, name=f"{name}_{block.pool}pool")(x)
    if rate and block.dropout_place == "post":
        x = layers.Dropout(rate, name=f"{name}_dropout")(x)
    return x


def build_model(
    variant: Variant,
    hparams: HParams | None = None,
    *,
    input_shape: tuple[int, ...] = (28, 28),
    num_classes: int = 10,
) -> keras.Model:
    """Build (uncompiled) the functional model that ``variant`` declares."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if variant.is_convolutional and len(input_shape) == 2:
        x = layers.Reshape((*input_shape, 1), name="add_channel")(x)
    if variant.input_dropout:
        x = layers.Dropout(variant.input_dropout, name="input_dropout")(x)
    if variant.input_batch_norm:
        x = layers.BatchNormalization(name="input_bn")(x)
    flattened = False
    taps = []  # each block's output after its residual addition
    for i, block in enumerate(variant.blocks):
        if isinstance(block, Dense) and not flattened:
            x = layers.Flatten(name="flatten")(x)
            flattened = True
        x = _apply_block(x, block, variant, hparams, i)
        if isinstance(block, Dense) and block.residual_from is not None:
            x = layers.Add(name=f"b{i}_add_b{block.residual_from}")([taps[block.residual_from], x])
        taps.append(x)
    if not flattened:
        x = layers.Flatten(name="flatten")(x)
    outputs = layers.Dense(
        num_classes,
        activation=variant.output_activation,
        kernel_initializer=variant.output_initializer or variant.kernel_initializer,
        name="output",
    )(x)
    return keras.Model(inputs, outputs, name=variant.name.replace("-", "_"))


_OPTIMIZER_CLASSES = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
assert set(_OPTIMIZER_CLASSES) == set(OPTIMIZERS), "every optimizer name needs a Keras class"


def make_optimizer(hparams: HParams) -> keras.optimizers.Optimizer:
    cls = _OPTIMIZER_CLASSES[hparams.optimizer]
    return cls() if hparams.learning_rate is None else cls(learning_rate=hparams.learning_rate)


def learning_rate_of(hparams: HParams) -> float:
    """The learning rate ``hparams`` trains with: its own, else the optimizer's Keras default
    (kept as a float32 variable: 7 significant digits are its value)."""
    if hparams.learning_rate is not None:
        return hparams.learning_rate
    return float(f"{float(make_optimizer(hparams).learning_rate):.7g}")


def serving_model(model: keras.Model, scale: float = 1.0 / 255.0, offset: float = 0.0) -> keras.Model:
    """Wrap a trained model so it takes raw uint8 images: ``x = raw * scale + offset`` (the
    data's preprocessing, :attr:`bench.data.Splits.scale` / ``offset``) is built in."""
    raw = keras.Input(shape=model.input_shape[1:], dtype="uint8", name="raw_image")
    x = layers.Rescaling(scale, offset=offset, name="scale")(raw)
    return keras.Model(raw, model(x), name=f"{model.name}_serving")


def weight_tensors(model: keras.Model) -> dict[str, np.ndarray]:
    """Kernels of every Dense/Conv layer, in order (for the weight-distribution figure)."""
    return {
        layer.name: layer.kernel.numpy()
        for layer in model.layers
        if isinstance(layer, layers.Dense | layers.Conv2D)
    }


def batch_norm_parameters(model: keras.Model) -> dict[str, dict[str, np.ndarray]]:
    """Every BatchNormalization layer's learned gamma and beta and its moving mean and
    variance, per channel, in layer order (seed 002 prints these)."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            out[layer.name] = {
                "gamma": layer.gamma.numpy() if layer.gamma is not None else None,
                "beta": layer.beta.numpy() if layer.beta is not None else None,
                "moving_mean": layer.moving_mean.numpy(),
                "moving_variance": layer.moving_variance.numpy(),
            }
    return out
