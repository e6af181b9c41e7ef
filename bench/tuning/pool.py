"""Where a worker's trials train, and the worker process's entry point.

A variant that stacks, under a search space that keeps batch size and optimizer fixed (a
population shares both: the hyperparameters declared not per member), trains its trials as
one compiled population of K slots: a trial enters a free slot at an epoch boundary with
fresh weights and optimizer state, and the next trial takes its slot without a
recompilation. Elsewhere (a convolutional variant, batch size
or optimizer searched, ``--population 1``) each trial trains alone, in a population of one
made for its hyperparameters. The worker's loop (:class:`bench.tuning.worker.Worker`) is
the same for both.
"""

from __future__ import annotations

import logging

import optuna

from bench import plugins, stopping, training
from bench.data import Splits
from bench.errors import BenchError
from bench.models import get_variant
from bench.models.hparams import SHARED
from bench.store.tracker import Tracker
from bench.tuning.storage import StudyStore
from bench.tuning.target import Target, load_splits
from bench.tuning.worker import Worker, load_study

log = logging.getLogger(__name__)


def trial_slots(s: Target, splits: Splits) -> training.Slots:
    """One compiled population of K trials where the variant stacks and the search space
    keeps batch size and optimizer fixed; else one trial at a time, in a population of its own."""
    from bench.population import Population, supports
    from bench.population.sizing import size_population

    variant = get_variant(s.variant)
    shared = [
        name for name in s.study.search_space.entries() if name in SHARED
    ]  # batch size, optimizer
    stackable = supports(variant) and not shared
    if s.population == 1 or not stackable:
        if s.population not in (None, 1):
            log.warning(
                "--population %d ignored: %s trains one trial at a time (%s)",
                s.population,
                s.variant,
                f"its search space varies {' and '.join(shared)}"
                if supports(variant)
                else "a convolutional variant",
            )
        return training.Separate(variant, splits)
    gpu = training.device_description().startswith("GPU")
    sizing = size_population(variant, s.base.batch_size, s.population, gpu=gpu, limit=s.trials)
    return Population(
        variant,
        sizing.size,
        splits,
        batch_size=s.base.batch_size,
        optimizer=s.base.optimizer,
        device=training.device_description(),
    )


def make_worker(
    s: Target, splits: Splits, tracker: Tracker, store: StudyStore, parent_run_id: str
) -> Worker:
    return Worker(s, splits, tracker, store, parent_run_id, trial_slots(s, splits))


def worker_main(s: Target, parent_run_id: str, index: int, optuna_verbosity: int) -> None:
    """Entry point of a spawned worker process (logging as its parent command set it up)."""
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    plugins.load_all()  # the parent's --plugin modules ($BENCH_PLUGINS): its variants and tasks
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[w{index}] %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger("bench").setLevel(logging.INFO)
    optuna.logging.set_verbosity(optuna_verbosity)

    # Recorded, acted on at the next boundary. No escape on a second signal: Ctrl-C in a terminal
    # reaches this process and its parent, which passes it on as SIGTERM (the parent escapes).
    stopping.install(escape=False)
    try:
        splits = load_splits(s)
        make_worker(
            s,
            splits,
            Tracker(s.tracking_uri, s.experiment),
            load_study(s, create=False),
            parent_run_id,
        ).loop()
        stopping.check()  # a stop that came after the last boundary still ends the worker non-zero
    except KeyboardInterrupt:
        log.info("interrupted: the trials in flight failed, their runs ended KILLED")
        sys.exit(stopping.EXIT_STATUS)
    except BenchError as exc:
        log.error("error: %s", exc)
        sys.exit(1)
