"""A plan of batches recorded in order: each trained, or replayed where it repeats a kept
default."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bench.clock import Eta
from bench.result import TrainResult
from bench.runs._replay import Replays, replay
from bench.runs._train import populations, release, train_population
from bench.runs.units import Batch, Recording

progress = logging.getLogger("bench.progress")


def record(recording: Recording, batches: Sequence[Batch]) -> list[list[TrainResult]]:
    """Every batch's runs, in order, one result per unit. A tuned unit whose effective
    hyperparameters are those of a default unit trained earlier in the plan is that unit's
    run replayed (:func:`~bench.runs.replay`), not trained again; every other unit is trained
    (:func:`~bench.runs.train`). Each model is released as soon as no replay needs it. The
    progress lines count down the member-epochs left to train."""
    plan = Replays(batches)
    eta = Eta(plan.epochs(batches))
    out = []
    for batch in batches:
        again, rest = plan.split(batch)
        done: dict[str, TrainResult] = {}  # by run name
        if again.units:
            progress.info(
                "%s: tuning kept the default setting; its default runs are logged again as tuned",
                batch.variant.name,
            )
            done.update(zip(_names(again), replay(recording, again, plan.take(again)), strict=True))
        for units in populations(rest):
            population = rest.only(units)
            results = train_population(recording, population, eta)
            free = plan.keep(population, results)
            if free:
                release(free)
            done.update(zip(_names(population), results, strict=True))
        out.append([done[name] for name in _names(batch)])
    return out


def _names(batch: Batch) -> list[str]:
    return [unit.run_name for unit in batch.units]
