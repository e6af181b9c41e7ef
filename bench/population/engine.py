"""A population of K slots that members enter and leave at epoch boundaries.

:class:`Population` keeps one compiled graph for a shape (variant, K, batch size, optimizer
kind, splits). A member enters a free slot with fresh weights (drawn from its seed by the
variant's initializers), fresh optimizer state and its own epoch count; it leaves when it
has trained its epochs, died, diverged, or when one of its hooks raised (a pruned trial).
The slot is then free for the next member, without a recompilation.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench import stopping
from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.population.net import StackedNet
from bench.result import HISTORY_KEYS, STATUS_OK, EpochHook, Health, TrainResult
from bench.store import schema

log = logging.getLogger(__name__)


class _Compiled:
    """The stacked net, its optimizer and the compiled loop of one shape."""

    def __init__(
        self, variant: Variant, k: int, splits: Splits, batch_size: int, optimizer: str, jit: bool
    ) -> None:
        from bench.population.loop import CompiledLoop
        from bench.population.optim import StackedOptimizer

        self.splits = splits  # held, so the cache key's id(splits) cannot be reused meanwhile
        self.net = StackedNet(
            variant, k, input_size=int(np.prod(splits.input_shape)), num_classes=splits.num_classes
        )
        steps_per_epoch = -(-len(splits.x_train) // batch_size)
        self.optimizer = StackedOptimizer(optimizer, self.net.trainable, k, steps_per_epoch)
        self.loop = CompiledLoop(self.net, self.optimizer, splits, batch_size, jit_compile=jit)


_cached: dict[tuple, _Compiled] = {}
_CACHE_SIZE = 2  # shapes kept compiled (each holds a copy of the splits)


def _compiled(
    variant: Variant, k: int, splits: Splits, batch_size: int, optimizer: str, jit: bool
) -> _Compiled:
    key = (variant, k, id(splits), batch_size, optimizer, jit)
    if key not in _cached:
        while len(_cached) >= _CACHE_SIZE:
            del _cached[next(iter(_cached))]
        _cached[key] = _Compiled(variant, k, splits, batch_size, optimizer, jit)
    return _cached[key]


@dataclass
class Slot:
    """One member while it trains: its hooks, health, history and epoch count; its weights
    once it stops."""

    hparams: HParams
    hooks: Sequence[EpochHook]
    health: Health
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    epoch: int = 0
    seconds: float = 0.0
    running: bool = True
    error: Exception | None = None  # what one of its hooks raised (a pruned trial, a store failure)
    weights: list[np.ndarray] | None = None  # as they were when it stopped (or at its best epoch)
    best: tuple[float, list[np.ndarray]] | None = (
        None  # restore_best: (val accuracy, weights) of the best epoch
    )

    def result(self, net: StackedNet, splits: Splits, device: str) -> TrainResult:
        variant = net.variant
        if (
            self.error is None
        ):  # a member its hook stopped (a pruned trial) did not end: no verdict on its end
            self.health.final(self.history)
        if self.health.status != STATUS_OK:
            log.warning(
                "%s (seed %d): training %s: %s",
                variant.name,
                self.hparams.seed,
                self.health.status,
                self.health.message,
            )
        return TrainResult(
            variant=variant.name,
            hparams=self.hparams,
            params=net.param_count(),
            history=self.history,
            train_seconds=self.seconds,
            status=self.health.status,
            message=self.health.message,
            device=device,
            model_factory=functools.partial(_member_model, net, self.hparams, splits, self.weights),
        )


def _member_model(net: StackedNet, hparams: HParams, splits: Splits, weights: list[np.ndarray]):
    """The member as an ordinary Keras model (built only when someone asks for it)."""
    from bench.models.build import build_model

    model = build_model(
        net.variant, hparams, input_shape=splits.input_shape, num_classes=splits.num_classes
    )
    return net.write_into(model, weights)


class Population:
    """K slots of ``variant`` sharing batch size and optimizer kind, trained one epoch at a time."""

    def __init__(
        self,
        variant: Variant,
        k: int,
        splits: Splits,
        *,
        batch_size: int,
        optimizer: str,
        jit_compile: bool | None = None,
        device: str = "",
    ) -> None:
        from bench import xla

        if jit_compile is None:
            jit_compile = xla.wanted(True)
        self.variant, self.splits, self.device = variant, splits, device
        self.batch_size, self.optimizer_kind = batch_size, optimizer
        self._c = _compiled(variant, k, splits, batch_size, optimizer, jit_compile)
        self._c.loop.active.assign(np.zeros(k, np.float32))
        self.slots: list[Slot | None] = [None] * k

    @property
    def free(self) -> list[int]:
        return [k for k, slot in enumerate(self.slots) if slot is None]

    @property
    def running(self) -> list[int]:
        return [k for k, slot in enumerate(self.slots) if slot is not None and slot.running]

    def start(self, k: int, hparams: HParams, hooks: Sequence[EpochHook] = ()) -> None:
        """Member ``hparams`` enters free slot ``k`` with fresh weights and optimizer state."""
        if self.slots[k] is not None:
            raise ValueError(f"slot {k} is taken")
        if (hparams.batch_size, hparams.optimizer) != (self.batch_size, self.optimizer_kind):
            raise ValueError("members must share batch size and optimizer with their population")
        self._c.net.init_member(k, hparams, seed=hparams.seed)
        self._c.optimizer.load_member(k, hparams)
        self._c.loop.active[k].assign(1.0)
        self._c.loop.smoothing[k].assign(hparams.label_smoothing)
        self.slots[k] = Slot(hparams, hooks, Health(self.splits.num_classes))

    def stop(self, k: int) -> None:
        """Slot ``k`` trains no more; its weights are kept as they are now."""
        slot = self.slots[k]
        slot.running = False
        self._c.loop.active[k].assign(0.0)
        slot.weights = slot.best[1] if slot.best is not None else self._c.net.member_values(k)

    def finish(self, k: int) -> tuple[TrainResult, Exception | None]:
        """Free slot ``k``: the member's result, and the error one of its hooks raised, if any."""
        slot = self.slots[k]
        if slot.running:
            self.stop(k)
        self.slots[k] = None
        return slot.result(self._c.net, self.splits, self.device), slot.error

    def run_epoch(self) -> list[int]:
        """One epoch of every running member; returns the slots that stopped in it."""
        from bench.population.loop import epoch_order

        loop = self._c.loop
        live = self.running
        t0 = time.perf_counter()

        def diverged(losses: np.ndarray) -> bool:
            for k in [k for k in live if self.slots[k].running]:
                if self.slots[k].health.batch(float(losses[k]), self.slots[k].epoch + 1):
                    self.stop(k)
            return not self.running

        orders = np.stack(
            [
                epoch_order(slot.hparams.seed, slot.epoch, loop.n)
                if slot is not None
                else np.arange(loop.n, dtype=np.int32)
                for slot in self.slots
            ]
        )
        loss, acc = loop.train_epoch(orders, diverged)
        val_loss, val_acc = loop.validate()
        share = (time.perf_counter() - t0) / len(live)  # this epoch's wall time per member trained
        for k in live:
            stopping.check()  # an epoch a stop interrupted is not recorded (its runs end KILLED)
            metrics = {
                schema.LOSS: float(loss[k]),
                schema.ACCURACY: float(acc[k]),
                schema.VAL_LOSS: float(val_loss[k]),
                schema.VAL_ACCURACY: float(val_acc[k]),
                schema.EPOCH_SECONDS: share,
            }
            self._record(k, metrics)
        return [k for k in live if not self.slots[k].running]

    def _record(self, k: int, metrics: dict[str, float]) -> None:
        slot = self.slots[k]
        slot.seconds += metrics[schema.EPOCH_SECONDS]
        for key in HISTORY_KEYS:
            slot.history[key].append(metrics[key])
        slot.epoch += 1
        val = metrics[schema.VAL_ACCURACY]
        if (
            slot.hparams.restore_best
            and np.isfinite(val)
            and (slot.best is None or val > slot.best[0])
        ):
            slot.best = (val, self._c.net.member_values(k))
        done = slot.health.epoch(metrics, slot.epoch) or slot.epoch >= slot.hparams.epochs
        try:
            for hook in slot.hooks:
                hook(slot.epoch - 1, metrics)
        except Exception as exc:  # noqa: BLE001 - the member stops; its owner decides what it means
            slot.error, done = exc, True
        if done and slot.running:
            self.stop(k)
