"""Fit and evaluate one variant: fast, seeded, and honest about dead or diverged runs.

No MLflow here: training returns a :class:`TrainResult` and calls the ``on_epoch``
hooks it is given (tracking and tuning plug in through those).

Speed comes from cutting per-step overhead, not from changing what is computed: the
whole split lives in memory as tensors, each epoch is one shuffled permutation gathered
batch by batch (the same sampling as ``fit(x, y, shuffle=True)``), Keras runs many steps
per call (``steps_per_execution``) and the input pipeline prefetches.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Sequence

import numpy as np

from bench import stopping
from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.result import (  # noqa: F401  (re-exported: the training API)
    DEAD_LOSS_FLOOR,
    DEAD_LOSS_PROGRESS,
    DEAD_MARGIN,
    DEAD_PATIENCE,
    DIVERGED_LOSS_FACTOR,
    HISTORY_KEYS,
    STATUS_DEAD,
    STATUS_DIVERGED,
    STATUS_OK,
    EpochHook,
    Health,
    TrainResult,
)

log = logging.getLogger(__name__)

#: Steps Keras runs per call into the compiled train function (cuts Python overhead).
DEFAULT_STEPS_PER_EXECUTION = 100
EVAL_BATCH_SIZE = 1024


@functools.lru_cache(maxsize=1)
def device_description() -> str:
    """The accelerator training runs on (cached: probing for GPUs takes about a second)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return "GPU: " + ", ".join(names)
    return f"CPU ({os.cpu_count()} cores)"


def use_xla(variant: Variant, hparams: HParams) -> bool:
    """Whether to compile the train step with XLA.

    Keras' ``jit_compile="auto"`` never uses XLA on a CPU-only machine, yet XLA makes the
    dense and batch-norm variants 1.5-2.5x faster per epoch here (benchmarks/train_speed.py).
    The exception is dropout: XLA's CPU random-number generator made dropout variants about
    4x *slower*, so on CPU those keep TensorFlow's graph mode. On a GPU, XLA is used always.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return True
    dropout = variant.input_dropout > 0 or variant.has_dropout
    if hparams.dropout is not None and hparams.dropout == 0:
        dropout = variant.input_dropout > 0
    return not dropout


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds; on CPU this makes a run repeatable."""
    import keras

    keras.utils.set_random_seed(seed)


def make_train_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """Shuffled batches of (x, y): a fresh permutation every epoch, gathered per batch."""
    import tensorflow as tf

    n = len(x)
    xs, ys = tf.constant(x), tf.constant(y)
    return (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda i: (tf.gather(xs, i), tf.gather(ys, i)), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def make_eval_dataset(x: np.ndarray, y: np.ndarray, batch_size: int = EVAL_BATCH_SIZE):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().prefetch(2)


def _best_keeper(best: dict[str, object]):
    """A Keras callback keeping the weights of the best validation-accuracy epoch in ``best``."""
    import keras

    class BestWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            val = float((logs or {}).get("val_accuracy", float("nan")))
            if np.isfinite(val) and val > float(best.get("val", -1.0)):
                best.update(val=val, weights=self.model.get_weights())

    return BestWeights()


def _monitor(health: Health, hooks: Sequence[EpochHook], history: dict[str, list[float]]):
    """A Keras callback: records the history, times epochs, asks ``health``, calls the hooks."""
    import keras

    class Monitor(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            stopping.check()
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            stopping.check()  # once per execution (steps_per_execution steps): a stop ends fit here
            loss = (logs or {}).get("loss")
            if loss is not None and health.batch(float(loss), len(history["loss"]) + 1):
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            stopping.check()  # an interrupted epoch is not recorded
            logs = dict(logs or {})
            metrics = {k: float(logs.get(k, float("nan"))) for k in HISTORY_KEYS[:4]}
            metrics["epoch_seconds"] = time.perf_counter() - self._t0
            for k in HISTORY_KEYS:
                history[k].append(metrics[k])
            if health.epoch(metrics, epoch + 1):
                self.model.stop_training = True
            for hook in hooks:
                hook(epoch, metrics)

    return Monitor()


ENGINES = ("compiled", "keras")


def engine_for(variant: Variant) -> str:
    """The compiled population loop wherever the variant can be stacked (every MLP), Keras'
    ``fit`` elsewhere (the convolutional variants)."""
    from bench import population

    return "compiled" if population.supports(variant) else "keras"


def train(
    variant: Variant,
    hparams: HParams,
    splits: Splits,
    *,
    on_epoch: Sequence[EpochHook] = (),
    evaluate_test: bool = True,
    engine: str | None = None,
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
    jit_compile: bool | None = None,
) -> TrainResult:
    """Train ``variant`` with ``hparams`` on the train split, validating every epoch.

    The test split is touched only after training, and only when ``evaluate_test``.
    ``engine``: "compiled" or "keras" (default: :func:`engine_for`); ``steps_per_execution``
    and ``jit_compile`` tune the "keras" engine.
    """
    [result] = train_population(
        variant, [hparams], splits, on_epoch=[on_epoch], evaluate_test=evaluate_test, engine=engine,
        steps_per_execution=steps_per_execution, jit_compile=jit_compile,
    )
    return result


def train_population(
    variant: Variant,
    members: Sequence[HParams],
    splits: Splits,
    *,
    on_epoch: Sequence[Sequence[EpochHook]] | None = None,
    evaluate_test: bool = True,
    engine: str | None = None,
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
    jit_compile: bool | None = None,
) -> list[TrainResult]:
    """Train every member (same variant; seeds, learning rates, dropout may differ), one
    result each. The compiled engine trains them as one graph; Keras' trains them in turn."""
    from bench import population

    engine = engine or engine_for(variant)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    hooks = list(on_epoch) if on_epoch is not None else [()] * len(members)
    if engine == "compiled":
        results = population.train_population(variant, members, splits, on_epoch=hooks, device=device_description())
    else:
        results = [
            _fit_keras(variant, hp, splits, member_hooks, steps_per_execution, jit_compile)
            for hp, member_hooks in zip(members, hooks, strict=True)
        ]
    for result in results:
        if evaluate_test and result.status != STATUS_DIVERGED:
            evaluate(result, splits)
    return results


def _fit_keras(
    variant: Variant, hparams: HParams, splits: Splits, on_epoch: Sequence[EpochHook],
    steps_per_execution: int, jit_compile: bool | None,
) -> TrainResult:
    """One model with Keras' own ``fit`` (the engine for convolutional variants)."""
    stopping.check()
    seed_everything(hparams.seed)
    model = _compiled_model(variant, hparams, splits, steps_per_execution, jit_compile)
    train_ds = make_train_dataset(splits.x_train, splits.y_train, hparams.batch_size, hparams.seed)
    val_ds = make_eval_dataset(splits.x_val, splits.y_val)
    history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
    health = Health(splits.num_classes)
    t0 = time.perf_counter()
    best: dict[str, object] = {}
    callbacks = [_monitor(health, on_epoch, history)]
    if hparams.restore_best:
        callbacks.insert(0, _best_keeper(best))
    model.fit(
        train_ds,
        epochs=hparams.epochs,
        validation_data=val_ds,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=0,
    )
    train_seconds = time.perf_counter() - t0
    if best:
        model.set_weights(best["weights"])  # the best validation epoch's, as the population loop keeps
    health.final(history)
    if health.status != STATUS_OK:
        log.warning("%s: training %s: %s", variant.name, health.status, health.message)
    return TrainResult(
        variant=variant.name,
        hparams=hparams,
        params=int(model.count_params()),
        history=history,
        train_seconds=train_seconds,
        status=health.status,
        message=health.message,
        device=device_description(),
        model=model,
    )


def _compiled_model(variant: Variant, hparams: HParams, splits: Splits, steps_per_execution: int, jit_compile: bool | None):
    from bench.models.build import build_model, make_optimizer

    if jit_compile is None:
        jit_compile = use_xla(variant, hparams)
    model = build_model(variant, hparams, input_shape=splits.input_shape, num_classes=splits.num_classes)
    steps = math.ceil(len(splits.x_train) / hparams.batch_size)
    model.compile(
        optimizer=make_optimizer(hparams),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=max(1, min(steps_per_execution, steps)),
        jit_compile=jit_compile,
    )
    return model


def evaluate(result: TrainResult, splits: Splits) -> None:
    """Test loss, accuracy, predictions and confusion matrix, from one pass over the test set."""
    import keras

    probs = result.keras_model().predict(splits.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    loss = keras.losses.sparse_categorical_crossentropy(splits.y_test, probs)
    pred = np.argmax(probs, axis=1).astype(np.int32)
    result.test_loss = float(np.mean(keras.ops.convert_to_numpy(loss)))
    result.test_accuracy = float(np.mean(pred == splits.y_test))
    result.test_predictions = pred
    k = splits.num_classes
    result.confusion = np.bincount(splits.y_test * k + pred, minlength=k * k).reshape(k, k)
