"""Keras' own ``fit`` as a population of one: the engine for the convolutional variants.

:class:`KerasPopulation` has the interface of :class:`bench.population.Population` (``start``,
``run_epoch``, ``finish``), so every caller drives either engine the same way. Each
``run_epoch`` is ``fit(initial_epoch=e, epochs=e + 1)`` on the same model, datasets and
callbacks: the same batches, weights and metrics as one ``fit`` over every epoch (the
shuffled dataset draws its next permutation at each pass, the optimizer and the dropout
seeds keep their state in the model).

Speed comes from cutting per-step overhead, not from changing what is computed: the whole
split lives in memory as tensors, each epoch is one shuffled permutation gathered batch by
batch (the same sampling as ``fit(x, y, shuffle=True)``), Keras runs many steps per call
(``steps_per_execution``) and the input pipeline prefetches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench import stopping
from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.result import HISTORY_KEYS, STATUS_OK, EpochHook, Health, TrainResult
from bench.training.device import device_description

log = logging.getLogger(__name__)

#: Steps Keras runs per call into the compiled train function (cuts Python overhead).
DEFAULT_STEPS_PER_EXECUTION = 100
EVAL_BATCH_SIZE = 1024


def use_xla(variant: Variant, hparams: HParams) -> bool:
    """Whether to compile the train step with XLA.

    Keras' ``jit_compile="auto"`` never uses XLA on a CPU-only machine, yet XLA makes the
    dense and batch-norm variants faster per epoch here. The exception is dropout: XLA's CPU
    random-number generator makes dropout variants *slower*, so on CPU those keep
    TensorFlow's graph mode (measured: docs/speed.md, "Bench's Keras engine"). On a GPU, XLA
    is used always.
    ``$BENCH_XLA`` (on, off) overrides the choice (:mod:`bench.xla`).
    """
    import tensorflow as tf

    from bench import xla

    if tf.config.list_physical_devices("GPU"):
        return xla.wanted(True)
    dropout = variant.input_dropout > 0 or variant.has_dropout
    if hparams.dropout is not None and hparams.dropout == 0:
        dropout = variant.input_dropout > 0
    return xla.wanted(not dropout)


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


@dataclass
class _Member:
    """The one member while it trains: its model, data, health and history."""

    hparams: HParams
    hooks: Sequence[EpochHook]
    health: Health
    model: object
    train: object  # the shuffled training batches
    val: object  # the validation batches
    callbacks: list = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    epoch: int = 0
    seconds: float = 0.0
    running: bool = True
    ended: bool = False  # health stopped it, or it trained its epochs
    error: Exception | None = None  # what one of its hooks raised (a pruned trial, a store failure)
    #: restore_best: the best epoch's validation accuracy and weights.
    best: dict[str, object] = field(default_factory=dict)


class KerasPopulation:
    """One slot, trained by Keras' ``fit`` one epoch per :meth:`run_epoch`."""

    def __init__(
        self,
        variant: Variant,
        splits: Splits,
        *,
        steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
        jit_compile: bool | None = None,
    ) -> None:
        self.variant, self.splits = variant, splits
        self.steps_per_execution, self.jit_compile = steps_per_execution, jit_compile
        self.slots: list[_Member | None] = [None]

    @property
    def free(self) -> list[int]:
        return [k for k, slot in enumerate(self.slots) if slot is None]

    @property
    def running(self) -> list[int]:
        return [k for k, slot in enumerate(self.slots) if slot is not None and slot.running]

    def start(self, k: int, hparams: HParams, hooks: Sequence[EpochHook] = ()) -> None:
        """Member ``hparams`` enters slot ``k``: a fresh model from its seed, compiled."""
        if self.slots[k] is not None:
            raise ValueError(f"slot {k} is taken")
        stopping.check()
        seed_everything(hparams.seed)
        splits = self.splits
        model = _compiled_model(
            self.variant, hparams, splits, self.steps_per_execution, self.jit_compile
        )
        member = _Member(
            hparams,
            hooks,
            Health(splits.num_classes),
            model,
            train=make_train_dataset(
                splits.x_train, splits.y_train, hparams.batch_size, hparams.seed
            ),
            val=make_eval_dataset(splits.x_val, splits.y_val),
        )
        member.callbacks = [_monitor(member)]
        if hparams.restore_best:
            member.callbacks.insert(0, _best_keeper(member.best))
        self.slots[k] = member

    def run_epoch(self) -> list[int]:
        """One epoch of the member, if it is running; returns the slots that stopped in it."""
        stopped = []
        for k in self.running:
            member = self.slots[k]
            t0 = time.perf_counter()
            member.model.fit(
                member.train,
                initial_epoch=member.epoch,
                epochs=member.epoch + 1,
                validation_data=member.val,
                callbacks=member.callbacks,
                shuffle=False,  # the dataset reshuffles itself every epoch
                verbose=0,
            )
            member.seconds += time.perf_counter() - t0
            member.epoch += 1
            if member.ended or member.error is not None or member.epoch >= member.hparams.epochs:
                self.stop(k)
                stopped.append(k)
        return stopped

    def stop(self, k: int) -> None:
        """Slot ``k`` trains no more; with ``restore_best`` its model takes the best epoch's
        weights."""
        member = self.slots[k]
        member.running = False
        if member.best:  # the best validation epoch's weights, as the population loop keeps
            member.model.set_weights(member.best["weights"])

    def finish(self, k: int) -> tuple[TrainResult, Exception | None]:
        """Free slot ``k``: the member's result, and the error one of its hooks raised, if any."""
        member = self.slots[k]
        if member.running:
            self.stop(k)
        self.slots[k] = None
        health = member.health
        # A member its hook stopped (a pruned trial) did not end: no verdict on its end.
        if member.error is None:
            health.final(member.history)
        if health.status != STATUS_OK:
            log.warning("%s: training %s: %s", self.variant.name, health.status, health.message)
        result = TrainResult(
            variant=self.variant.name,
            hparams=member.hparams,
            params=int(member.model.count_params()),
            history=member.history,
            train_seconds=member.seconds,
            status=health.status,
            message=health.message,
            device=device_description(),
            model=member.model,
        )
        return result, member.error


def _best_keeper(best: dict[str, object]):
    """A Keras callback keeping the weights of the best validation-accuracy epoch in ``best``."""
    import keras

    class BestWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            val = float((logs or {}).get("val_accuracy", float("nan")))
            if np.isfinite(val) and val > float(best.get("val", -1.0)):
                best.update(val=val, weights=self.model.get_weights())

    return BestWeights()


def _monitor(member: _Member):
    """A Keras callback: records the history, times epochs, asks the member's health, calls
    its hooks (an error one raises stops the member and is kept, as the population keeps it)."""
    import keras

    health, history = member.health, member.history

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
                member.ended = self.model.stop_training = True
            try:
                for hook in member.hooks:
                    hook(epoch, metrics)
            except Exception as exc:  # noqa: BLE001 - the member stops; its owner decides
                member.error = exc
                self.model.stop_training = True

    return Monitor()


def _compiled_model(
    variant: Variant,
    hparams: HParams,
    splits: Splits,
    steps_per_execution: int,
    jit_compile: bool | None,
):
    from bench.models.build import build_model, make_loss, make_optimizer

    if jit_compile is None:
        jit_compile = use_xla(variant, hparams)
    model = build_model(
        variant, hparams, input_shape=splits.input_shape, num_classes=splits.num_classes
    )
    steps = math.ceil(len(splits.x_train) / hparams.batch_size)
    model.compile(
        optimizer=make_optimizer(hparams, steps_per_epoch=steps),
        loss=make_loss(hparams, splits.num_classes),
        metrics=["accuracy"],
        steps_per_execution=max(1, min(steps_per_execution, steps)),
        jit_compile=jit_compile,
    )
    return model
