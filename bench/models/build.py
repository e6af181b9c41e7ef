"""The one Keras builder: turns a variant's program (:mod:`bench.models.program`) into a
Keras model, one layer per operation."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, regularizers

from bench.models import program, schedule
from bench.models.hparams import DECLARED
from bench.models.spec import OPTIMIZERS, HParams, Variant


def _regularizer(l2: float) -> regularizers.Regularizer | None:
    return regularizers.L2(l2) if l2 else None


def _linear(op: program.Linear) -> layers.Layer:
    limit = op.max_norm
    return layers.Dense(
        op.units,
        activation=op.activation,
        use_bias=op.use_bias,
        kernel_initializer=op.initializer,
        kernel_regularizer=_regularizer(op.l2),
        kernel_constraint=keras.constraints.MaxNorm(limit, axis=0) if limit is not None else None,
        name=op.name,
    )


def _conv(op: program.Conv2D) -> layers.Layer:
    return layers.Conv2D(
        op.filters,
        op.kernel_size,
        strides=op.strides,
        padding=op.padding,
        use_bias=op.use_bias,
        kernel_initializer=op.initializer,
        kernel_regularizer=_regularizer(op.l2),
        name=op.name,
    )


def _pool(op: program.Pool) -> layers.Layer:
    pool = layers.MaxPooling2D if op.kind == "max" else layers.AveragePooling2D
    return pool(op.size, strides=op.strides, name=op.name)


#: The Keras layer of each operation (a dropout operation is built where its rate is not 0).
_LAYERS = {
    program.Reshape: lambda op: layers.Reshape(op.shape, name=op.name),
    program.Flatten: lambda op: layers.Flatten(name=op.name),
    program.Linear: _linear,
    program.Conv2D: _conv,
    program.BatchNorm: lambda op: layers.BatchNormalization(
        momentum=op.momentum, epsilon=op.epsilon, name=op.name
    ),
    program.Activation: lambda op: layers.Activation(op.function, name=op.name),
    program.Pool: _pool,
}


def build_model(
    variant: Variant,
    hparams: HParams | None = None,
    *,
    input_shape: tuple[int, ...] = (28, 28),
    num_classes: int = 10,
) -> keras.Model:
    """Build (uncompiled) the functional model that ``variant`` declares: one Keras layer per
    operation of its :func:`~bench.models.program.compile_variant` program, named as it is."""
    dropout = hparams.dropout if hparams is not None else None

    def apply(op: program.Op, x, outputs: list):
        if isinstance(op, program.Residual):
            return layers.Add(name=op.name)([outputs[op.source], x])
        if isinstance(op, program.Dropout):
            rate = op.rate_for(dropout)
            return layers.Dropout(rate, name=op.name)(x) if rate else x
        return _LAYERS[type(op)](op)(x)

    inputs = keras.Input(shape=input_shape, name="image")
    compiled = program.compile_variant(variant, input_shape, num_classes)
    outputs = program.walk(compiled, inputs, apply)
    return keras.Model(inputs, outputs, name=variant.name.replace("-", "_"))


_OPTIMIZER_CLASSES = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adamw": keras.optimizers.AdamW,
}
assert set(_OPTIMIZER_CLASSES) == set(OPTIMIZERS), "every optimizer name needs a Keras class"


def make_optimizer(
    hparams: HParams, steps_per_epoch: int | None = None
) -> keras.optimizers.Optimizer:
    """The member's Keras optimizer: every hyperparameter declared with a Keras name
    (:meth:`HParams.keras_arguments`), Keras' defaults for the rest. With ``steps_per_epoch``
    its learning rate follows the member's schedule (:mod:`bench.models.schedule`)."""
    arguments = hparams.keras_arguments()
    scheduled = hparams.schedule != "constant" or hparams.warmup_epochs
    if steps_per_epoch is not None and scheduled:
        steps = schedule.in_steps(
            hparams.schedule, hparams.warmup_epochs, hparams.epochs, steps_per_epoch
        )
        arguments["learning_rate"] = ScheduledRate(learning_rate_of(hparams), steps)
    return _OPTIMIZER_CLASSES[hparams.optimizer](**arguments)


class ScheduledRate(keras.optimizers.schedules.LearningRateSchedule):
    """``rate`` times :func:`bench.models.schedule.factor` for Keras' optimizer (``steps``:
    :func:`bench.models.schedule.in_steps`)."""

    def __init__(self, rate: float, steps: tuple[float, ...]) -> None:
        self.rate, self.steps = rate, tuple(steps)

    def __call__(self, step):
        return self.rate * schedule.factor(step, *self.steps)

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "steps": list(self.steps)}


def make_loss(hparams: HParams, num_classes: int) -> Any:
    """The loss Keras' ``fit`` trains the member with: sparse cross-entropy, or with label
    smoothing Keras' categorical cross-entropy on the one-hot labels (Keras' sparse loss has
    no smoothing)."""
    smoothing = hparams.label_smoothing
    if not smoothing:
        return "sparse_categorical_crossentropy"

    def smoothed_crossentropy(y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32")
        one_hot = keras.ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    return smoothed_crossentropy


def keras_value(hparams: HParams, name: str) -> Any:
    """Keras' optimizer's value of its argument ``name`` for ``hparams`` (its default where
    ``hparams`` leaves it unset); a float kept as float32 is given to its 7 significant digits."""
    value = getattr(make_optimizer(hparams), name)
    if value is None or isinstance(value, bool):
        return value
    return float(f"{float(value):.7g}")


def default_value(hparams: HParams, variant: Variant, name: str) -> Any:
    """What field ``name`` of ``hparams`` trains ``variant`` with: the field, else the
    variant's value or Keras' default where the field is unset (None)."""
    value = getattr(hparams, name)
    declared = DECLARED[name]
    if value is None and declared.from_variant:
        return getattr(variant, declared.from_variant)
    if value is None and declared.keras:
        if declared.only_for and hparams.optimizer not in declared.only_for:
            return None  # not this optimizer's (momentum for AdamW): nothing to write out
        return keras_value(hparams, declared.keras)
    return value


def logged_params(hparams: HParams, variant: Variant) -> dict[str, str]:
    """A run's hyperparameter params: :meth:`HParams.as_params` with every value it leaves
    unset written as the value it trains with (the optimizer's Keras default, the variant's
    dropout rate, 0 for a variant without dropout), so MLflow compares, groups and plots them
    as numbers. A variant whose dropout layers have several rates logs no ``dropout`` (its
    layer summary has them)."""
    out = hparams.as_params()
    for name in [n for n, v in out.items() if getattr(hparams, n) is None]:
        value = default_value(hparams, variant, name)
        if (
            value is None
            and DECLARED[name].from_variant == "dropout_rate"
            and not variant.has_dropout
        ):
            value = 0.0
        if value is None:
            del out[name]
        else:
            out[name] = str(value)
    return out


def learning_rate_of(hparams: HParams) -> float:
    """The learning rate ``hparams`` trains with: its own, else the optimizer's Keras default
    (kept as a float32 variable: 7 significant digits are its value)."""
    if hparams.learning_rate is not None:
        return hparams.learning_rate
    return keras_value(hparams, "learning_rate")


def serving_model(
    model: keras.Model, scale: float = 1.0 / 255.0, offset: float = 0.0
) -> keras.Model:
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
