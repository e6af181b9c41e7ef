"""A worker whose trials train as one population: K slots, refilled as trials finish.

The loop of :class:`PopulationWorker` is the solo worker's (claim under the study's lock,
ask, train, tell), with K trials in flight: a trial enters a free slot at an epoch
boundary (fresh weights, fresh optimizer state, its own MLflow run), reports every epoch to
its own Optuna trial and run, and leaves when it completes, is pruned, dies or diverges;
the next trial takes its slot without a recompilation. The study still holds exactly
``--trials`` finished trials: a worker asks only while finished + running < trials.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from bench import stopping
from bench.errors import BenchError, FatalError, TrackingError
from bench.models import get_variant
from bench.population import Population
from bench.results.artifacts import split_datasets
from bench.store import schema
from bench.store.tracker import Tracker
from bench.store.uri import first_line
from bench.tuning.search import suggest, trial_seed
from bench.tuning.settings import TuneSettings, load_splits
from bench.tuning.worker import (
    Heartbeat,
    Outcome,
    Worker,
    counts,
    fail_stale_trials,
    judge,
    load_study,
    reporter,
)

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    trial: optuna.Trial
    run_id: str
    name: str


class PopulationWorker(Worker):
    """Runs up to ``size`` trials of the study at once, as one compiled population."""

    def __init__(self, *args, size: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.size = size
        self.flights: dict[int, _InFlight] = {}

    def loop(self) -> None:
        s = self.s
        from bench.training import device_description

        population = Population(get_variant(s.variant), self.size, self.splits, batch_size=s.base.batch_size,
                                optimizer=s.base.optimizer, device=device_description())
        deadline = None if s.timeout is None else time.monotonic() + s.timeout
        with Heartbeat(self.store, lambda: [f.trial.number for f in list(self.flights.values())], s.heartbeat):
            try:
                while self._fill(population, deadline) or self.flights:
                    if not self.flights:  # the remaining trials run elsewhere: wait for them
                        stopping.sleep(min(s.heartbeat, 2.0))
                        continue
                    for k in population.run_epoch():
                        self._leave(population, k)
            except BaseException as exc:
                self._abandon(population, exc)
                raise

    def _fill(self, population: Population, deadline: float | None) -> bool:
        """Ask trials for the free slots; False once the study needs nothing more of us."""
        stopping.check()  # between epochs, before the next ask
        with self.store.claim():
            fail_stale_trials(self.store, self.tracker, self.s.grace)
            c = counts(self.store.study)
            finished = c["complete"] + c["pruned"]
            if finished >= self.s.trials:
                return False
            for k in population.free:
                stopping.check()  # the trials entered so far are in flight: _abandon fails them
                if (deadline is not None and time.monotonic() >= deadline) or finished + c["running"] >= self.s.trials:
                    break
                trial = self._ask(c)
                self._enter(population, k, trial)
                c["running"] += 1
                # An enqueued trial (the default, trial 0) was already counted: the next new
                # trial's number, which seeds its sampler, follows the highest number handed out.
                c["total"] = max(c["total"], trial.number + 1)
        return deadline is None or time.monotonic() < deadline

    def _enter(self, population: Population, k: int, trial: optuna.Trial) -> None:
        s, splits = self.s, self.splits
        variant = get_variant(s.variant)
        hp = suggest(trial, s.study.search_space, s.base.replace(seed=trial_seed(s.seed, trial.number)), variant)
        params = {
            **variant.structure_params(), **hp.as_params(), schema.TASK: s.task, schema.TRIAL_NUMBER: trial.number,
            schema.OPTUNA_STUDY: s.study_name, **{f"{schema.SPLIT_PREFIX}{k}": v for k, v in splits.sizes.items()},
        }
        name = f"trial-{trial.number}"
        run_id = self.tracker.start_run(
            name, kind=schema.KIND_TRIAL, params=params, parent_run_id=self.parent_run_id,
            tags={schema.OPTUNA_STUDY: s.study_name, schema.VARIANT_TAG: s.variant},
        )
        self.flights[k] = _InFlight(trial, run_id, name)  # from here on, _abandon closes its run
        trial.set_user_attr(schema.TRIAL_RUN_ID, run_id)
        self.tracker.log_datasets(run_id, split_datasets(splits)[:2])  # trials never see the test split
        population.start(k, hp, [self.tracker.epoch_hook(run_id), reporter(trial)])

    def _leave(self, population: Population, k: int) -> None:
        """A trial's member stopped: judge it, close its run, tell Optuna, free its slot."""
        flight = self.flights.pop(k)
        result, error = population.finish(k)
        if isinstance(error, optuna.TrialPruned):
            outcome = Outcome(TrialState.PRUNED, reason=str(error))
        elif isinstance(error, FatalError | OSError) or type(error).__module__.startswith("mlflow"):
            self.flights[k] = flight  # still in flight: _abandon fails it with the others
            raise error if isinstance(error, FatalError) else TrackingError(
                f"run {flight.name!r} failed (marked FAILED): {first_line(error)}")
        elif error is not None:
            outcome = Outcome(reason=f"{type(error).__name__}: {error}")
            log.warning("trial #%d failed: %s", flight.trial.number, outcome.reason)
        else:
            outcome = judge(result)
        if outcome.state == TrialState.FAIL:
            self.tracker.end_run(flight.run_id, "FAILED", outcome.reason)
        else:
            self._tag(flight.run_id, outcome, result.status, result.message)
            self.tracker.end_run(flight.run_id, "FINISHED")
        self._tell(flight.trial, outcome, None)
        self._show(flight.trial, outcome)

    def _abandon(self, population: Population, exc: BaseException) -> None:
        """Interrupted or failing: every trial in flight is FAIL, every run ends KILLED/FAILED."""
        for k, flight in list(self.flights.items()):
            with contextlib.suppress(Exception):
                self.tracker.end_run_on_error(flight.run_id, flight.name, exc)
            with contextlib.suppress(Exception):
                self._tell(flight.trial, Outcome(reason=first_line(exc) or "interrupted"), flight.run_id)
            with contextlib.suppress(Exception):
                population.finish(k)
        self.flights.clear()


def make_worker(s, splits, tracker, store, parent_run_id: str) -> Worker:
    """A population worker where the variant can be stacked and the search space keeps batch
    size and optimizer fixed (a population shares both), else the solo worker."""
    from bench.population import supports
    from bench.population.sizing import size_population
    from bench.training import device_description

    space = s.study.search_space
    stackable = supports(get_variant(s.variant)) and space.batch_size is None and space.optimizer is None
    if s.population == 1 or not stackable:
        if s.population not in (None, 1):
            log.warning("--population %d ignored: %s trains one trial at a time (%s)", s.population, s.variant,
                        "its search space varies batch size or optimizer" if supports(get_variant(s.variant))
                        else "a convolutional variant")
        return Worker(s, splits, tracker, store, parent_run_id)
    sizing = size_population(get_variant(s.variant), s.base.batch_size, s.population,
                             gpu=device_description().startswith("GPU"), limit=s.trials)
    return PopulationWorker(s, splits, tracker, store, parent_run_id, size=sizing.size)


def worker_main(s: TuneSettings, parent_run_id: str, index: int, optuna_verbosity: int) -> None:
    """Entry point of a spawned worker process (logging as its parent command set it up)."""
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[w{index}] %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger("bench").setLevel(logging.INFO)
    optuna.logging.set_verbosity(optuna_verbosity)

    # Recorded, acted on at the next boundary. No escape on a second signal: Ctrl-C in a terminal
    # reaches this process and its parent, which passes it on as SIGTERM (the parent escapes).
    stopping.install(escape=False)
    try:
        make_worker(s, load_splits(s), Tracker(s.tracking_uri, s.experiment), load_study(s, create=False),
                    parent_run_id).loop()
        stopping.check()  # a stop that came after the last boundary still ends the worker non-zero
    except KeyboardInterrupt:
        log.info("interrupted: the trials in flight failed, their runs ended KILLED")
        sys.exit(stopping.EXIT_STATUS)
    except BenchError as exc:
        log.error("error: %s", exc)
        sys.exit(1)
