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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.store import schema

log = logging.getLogger(__name__)

EpochHook = Callable[[int, dict[str, float]], None]
"""Called after every epoch with the 0-based epoch index and that epoch's metrics."""

HISTORY_KEYS = schema.HISTORY  # the metric names the curves are logged under

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"
STATUS_DEAD = "dead"

#: Training accuracy within this margin of chance (1 / classes) counts as "not learning".
DEAD_MARGIN = 0.05
#: Stop after this many consecutive epochs at chance (the seed 004 run sat there for 20)...
DEAD_PATIENCE = 3
#: ...during which the loss fell by less than this fraction (seed 004's stayed at 14.68),
DEAD_LOSS_PROGRESS = 0.01
#: ...or never dropped below this fraction of ln(classes), the loss of a uniform guess: a
#: network at chance whose loss stays at or above that has learned nothing, however its
#: loss jitters (a collapsed network predicting one class for every input does exactly this).
DEAD_LOSS_FLOOR = 0.99
#: A loss above this many times the chance-level loss ln(classes) counts as diverged even while
#: it is finite: Keras computes the cross-entropy from the softmax's logits, so an exploding
#: model's loss grows without bound (1e30 with SGD at lr 1e6) instead of turning NaN.
DIVERGED_LOSS_FACTOR = 1e4
#: Steps Keras runs per call into the compiled train function (cuts Python overhead).
DEFAULT_STEPS_PER_EXECUTION = 100
EVAL_BATCH_SIZE = 1024


@dataclass
class TrainResult:
    """What one training run produced (the contract tracking and tuning rely on)."""

    variant: str
    hparams: HParams
    params: int
    history: dict[str, list[float]]
    train_seconds: float
    status: str = STATUS_OK
    message: str = ""
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_predictions: np.ndarray | None = None
    confusion: np.ndarray | None = None
    device: str = ""
    run_id: str | None = None  # the MLflow run, once tracking has logged it
    model: object | None = field(default=None, repr=False)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def best_epoch(self) -> int | None:
        """0-based epoch of the best validation accuracy (model selection uses validation only)."""
        val = self.history.get("val_accuracy", [])
        finite = [v if math.isfinite(v) else -1.0 for v in val]
        return int(np.argmax(finite)) if finite else None

    @property
    def best_val_accuracy(self) -> float | None:
        i = self.best_epoch
        return None if i is None else self.history["val_accuracy"][i]

    @property
    def final_val_accuracy(self) -> float | None:
        val = self.history.get("val_accuracy", [])
        return val[-1] if val else None

    @property
    def healthy(self) -> bool:
        return self.status == STATUS_OK


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


class Health:
    """Judges a run as it trains: diverged (NaN or an exploding loss), dead (stuck at chance
    with a loss that does not fall), or ok. Knows nothing of Keras, so any training loop
    can use it."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.chance = 1.0 / num_classes
        self.loss_limit = DIVERGED_LOSS_FACTOR * math.log(num_classes)
        self.status = STATUS_OK
        self.message = ""
        self._at_chance: list[float] = []  # losses of the current run of at-chance epochs

    def exploded(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.loss_limit

    def _diverged(self, loss: float, epoch: int) -> bool:
        limit = f" (over {self.loss_limit:.4g}, the divergence limit)" if math.isfinite(loss) else ""
        self.status = STATUS_DIVERGED
        self.message = self.message or f"loss became {loss:.4g} in epoch {epoch}{limit}"
        return True

    def batch(self, loss: float, epoch: int) -> bool:
        """After a batch of (1-based) ``epoch``: True when training must stop."""
        return self._diverged(loss, epoch) if self.exploded(loss) else False

    def epoch(self, metrics: dict[str, float], epoch: int) -> bool:
        """After (1-based) ``epoch``: True when training must stop."""
        if self.status == STATUS_DIVERGED or self.exploded(metrics["loss"]):
            return self._diverged(metrics["loss"], epoch)
        if max(metrics["accuracy"], metrics["val_accuracy"]) > self.chance + DEAD_MARGIN:
            self._at_chance = []
            return False
        self._at_chance.append(metrics["loss"])
        streak = self._at_chance[-DEAD_PATIENCE:]
        # Dead = at chance AND the loss is not going down (a slow start is not dead).
        flat = min(streak[1:], default=0.0) >= streak[0] * (1 - DEAD_LOSS_PROGRESS)
        guess = math.log(self.num_classes)
        above_guess = min(streak) >= DEAD_LOSS_FLOOR * guess
        if len(streak) < DEAD_PATIENCE or not (flat or above_guess):
            return False
        self.status = STATUS_DEAD
        how = "a flat loss" if flat else f"a loss never below a uniform guess's ({guess:.3f})"
        self.message = (
            f"accuracy stuck at chance ({metrics['accuracy']:.3f} train, "
            f"{metrics['val_accuracy']:.3f} validation; chance is {self.chance:.3f}) "
            f"with {how} ({streak[0]:.4g} -> {streak[-1]:.4g}) for {len(self._at_chance)} epochs"
        )
        return True

    def final(self, history: dict[str, list[float]]) -> None:
        """A run that ended at chance is dead even when no streak was long enough."""
        if self.status == STATUS_OK and history["val_accuracy"]:
            final = history["val_accuracy"][-1]
            if final <= self.chance + DEAD_MARGIN:
                self.status = STATUS_DEAD
                self.message = f"final validation accuracy {final:.3f} is at chance ({self.chance:.3f})"


def _monitor(health: Health, hooks: Sequence[EpochHook], history: dict[str, list[float]]):
    """A Keras callback: records the history, times epochs, asks ``health``, calls the hooks."""
    import keras

    class Monitor(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self._t0 = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and health.batch(float(loss), len(history["loss"]) + 1):
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
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


def train(
    variant: Variant,
    hparams: HParams,
    splits: Splits,
    *,
    on_epoch: Sequence[EpochHook] = (),
    evaluate_test: bool = True,
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
    jit_compile: bool | None = None,
) -> TrainResult:
    """Train ``variant`` with ``hparams`` on the train split, validating every epoch.

    The test split is touched only after training, and only when ``evaluate_test``.
    """
    seed_everything(hparams.seed)
    model = _compiled_model(variant, hparams, splits, steps_per_execution, jit_compile)
    train_ds = make_train_dataset(splits.x_train, splits.y_train, hparams.batch_size, hparams.seed)
    val_ds = make_eval_dataset(splits.x_val, splits.y_val)
    history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
    health = Health(splits.num_classes)
    t0 = time.perf_counter()
    model.fit(
        train_ds,
        epochs=hparams.epochs,
        validation_data=val_ds,
        callbacks=[_monitor(health, on_epoch, history)],
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=0,
    )
    train_seconds = time.perf_counter() - t0
    health.final(history)
    if health.status != STATUS_OK:
        log.warning("%s: training %s: %s", variant.name, health.status, health.message)
    result = TrainResult(
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
    if evaluate_test and health.status != STATUS_DIVERGED:
        evaluate(result, splits)
    return result


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

    probs = result.model.predict(splits.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    loss = keras.losses.sparse_categorical_crossentropy(splits.y_test, probs)
    pred = np.argmax(probs, axis=1).astype(np.int32)
    result.test_loss = float(np.mean(keras.ops.convert_to_numpy(loss)))
    result.test_accuracy = float(np.mean(pred == splits.y_test))
    result.test_predictions = pred
    k = splits.num_classes
    result.confusion = np.bincount(splits.y_test * k + pred, minlength=k * k).reshape(k, k)
