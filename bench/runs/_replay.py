"""Replaying a kept default: where tuning kept the default setting, the tuned runs are the
default runs logged a second time, not trained again (training is deterministic per seed: a
retrain ends in the same weights)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Sequence

from bench.models import HParams, Variant
from bench.result import EpochHook, TrainResult
from bench.runs._train import log_tested, opened, release, say_done, seed_tags
from bench.runs.units import Batch, Recording, Unit
from bench.store import schema


def replay(recording: Recording, batch: Batch, twins: Sequence[TrainResult]) -> list[TrainResult]:
    """The batch's units recorded as runs that repeat ``twins`` (results trained and logged
    already, with the same effective hyperparameters: :class:`Replays` pairs them): each
    twin's curves replayed into its unit's run, its scores, artifacts and model logged
    again, the run tagged ``same_as`` the twin's. Nothing is trained; the models, the twins'
    and their copies' alike, are released once logged."""
    tracker = recording.tracker
    with contextlib.ExitStack() as stack:
        run_ids = [
            stack.enter_context(
                opened(
                    recording,
                    batch,
                    unit,
                    tested=True,
                    tags={**seed_tags(unit), schema.SAME_AS: str(twin.run_id)},
                )
            )
            for unit, twin in zip(batch.units, twins, strict=True)
        ]
        results = [
            _repeat(twin, unit.hparams, [tracker.epoch_hook(run_id)])
            for twin, unit, run_id in zip(twins, batch.units, run_ids, strict=True)
        ]
        results = log_tested(recording, batch, run_ids, results)
    say_done(batch.units, results)
    release(results)
    return results


def _repeat(twin: TrainResult, hp: HParams, hooks: Sequence[EpochHook]) -> TrainResult:
    """``twin`` as the result of a run with ``hp``: its curves replayed into the run's hooks."""
    for epoch in range(twin.epochs_run):
        metrics = {key: values[epoch] for key, values in twin.history.items()}
        for hook in hooks:
            hook(epoch, metrics)
    twin.keras_model()  # built once, shared by both runs' logged models
    return dataclasses.replace(twin, hparams=hp, run_id=None)


@functools.cache
def effective(variant: Variant, hp: HParams) -> HParams:
    """``hp`` as training sees it: each unset field that the variant or Keras' optimizer
    gives a value written out, e.g. the optimizer's default learning rate and the variant's
    dropout rate (a tuned setting that kept the default spells them out)."""
    from bench.models.build import default_value
    from bench.models.hparams import DECLARED

    unset = [
        n for n, d in DECLARED.items() if getattr(hp, n) is None and (d.keras or d.from_variant)
    ]
    return hp.replace(**{name: default_value(hp, variant, name) for name in unset})


class Replays:
    """Which tuned units of a plan repeat a default unit trained earlier in it (the same
    variant and effective hyperparameters, seed included), and the default results held,
    models and all, until their copies are logged."""

    def __init__(self, batches: Sequence[Batch]) -> None:
        trained = {self._key(b, u) for b in batches if b.kind == schema.KIND_TRAIN for u in b.units}
        self._wanted = {
            self._key(b, u) for b in batches if b.kind == schema.KIND_TUNED for u in b.units
        } & trained
        self._held: dict[tuple[str, HParams], TrainResult] = {}

    @staticmethod
    def _key(batch: Batch, unit: Unit) -> tuple[str, HParams]:
        return batch.variant.name, effective(batch.variant, unit.hparams)

    def split(self, batch: Batch) -> tuple[Batch, Batch]:
        """The batch's units that repeat a default one (logged again), and the rest (trained)."""
        if batch.kind != schema.KIND_TUNED:
            return batch.only(()), batch
        again = tuple(u for u in batch.units if self._key(batch, u) in self._wanted)
        return batch.only(again), batch.only(tuple(u for u in batch.units if u not in again))

    def epochs(self, batches: Sequence[Batch]) -> int:
        """Member-epochs ``batches`` train (those replayed are not)."""
        return sum(u.hparams.epochs for b in batches for u in self.split(b)[1].units)

    def keep(self, batch: Batch, results: Sequence[TrainResult]) -> list[TrainResult]:
        """Hold the results a later unit repeats; returns the others (free to release)."""
        free = []
        for unit, result in zip(batch.units, results, strict=True):
            key = self._key(batch, unit)
            if key in self._wanted:
                self._held[key] = result
            else:
                free.append(result)
        return free

    def take(self, batch: Batch) -> list[TrainResult]:
        """The held default results the batch's units repeat (held no more)."""
        return [self._held.pop(self._key(batch, u)) for u in batch.units]
