"""A tuning worker, the one trial loop: claim trials under the study's lock, train them in
slots, tell Optuna how each ended, repeat.

The slots are one compiled population of K trials, or one trial at a time in a population
of its own (:mod:`bench.tuning.pool` chooses); the loop is the same. Workers in one
process, in several processes (``--workers``) or on several machines (PostgreSQL) run this
same loop. A trial whose worker died is failed by the next worker
that notices: at once when the worker ran on this host (its process is gone), otherwise
when its heartbeat is older than the grace period. Optuna's own heartbeat exists only for
its RDB storage, while the default local storage is a journal file, hence this small
heartbeat of our own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from bench import data, stopping, training
from bench.clock import Eta
from bench.errors import FailedTrialError, FatalError, TrackingError
from bench.models import get_variant
from bench.results.artifacts import split_datasets
from bench.store import owner, schema
from bench.store.tracker import Tracker
from bench.store.uri import first_line
from bench.training import Slots
from bench.tuning.search import make_pruner, make_sampler, suggest, trial_seed
from bench.tuning.storage import StudyStore, open_study
from bench.tuning.target import Target

log = logging.getLogger(__name__)
progress = logging.getLogger("bench.progress")


def load_study(s: Target, *, create: bool) -> StudyStore:
    """The settings' Optuna study with the storage and lock bench opened for it."""
    return open_study(
        s.storage,
        s.study_name,
        sampler=make_sampler(s.seed, 0),
        pruner=make_pruner(s.pruner, s.epochs, s.min_epochs),
        create=create,
    )


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "total": len(trials),
    }


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value) if done else None


def fail_stale_trials(store: StudyStore, tracker: Tracker | None, grace: float) -> list[int]:
    """Fail RUNNING trials whose worker is gone; end their MLflow runs FAILED."""
    failed = []
    now = time.time()
    for t in store.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.system_attrs.get(schema.TRIAL_WORKER, "")
        beat = float(
            t.system_attrs.get(
                schema.TRIAL_HEARTBEAT, t.datetime_start.timestamp() if t.datetime_start else now
            )
        )
        if not (owner.is_dead(worker) or now - beat > grace):
            continue
        try:
            store.set_trial_system_attr(t.number, schema.TRIAL_FAIL_REASON, "worker process died")
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # it finished meanwhile
        store.study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        failed.append(t.number)
        run_id = t.user_attrs.get(schema.TRIAL_RUN_ID)
        if tracker is not None and run_id:
            tracker.close_orphan(run_id, "worker process died during the trial", state="FAIL")
        progress.warning("trial #%d failed: its worker %s died", t.number, worker)
    return failed


class Heartbeat:
    """Refresh the heartbeat of the trials in flight from a background thread while they train
    (``numbers()``: their trial numbers now)."""

    def __init__(
        self, store: StudyStore, numbers: Callable[[], Iterable[int]], every: float
    ) -> None:
        self._store, self._numbers, self._every = store, numbers, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for number in list(self._numbers()):
                with contextlib.suppress(Exception):
                    self._store.set_trial_system_attr(number, schema.TRIAL_HEARTBEAT, time.time())

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- the trial loop


@dataclass
class Outcome:
    """How a trial ended, for Optuna and for its MLflow run."""

    state: TrialState = TrialState.FAIL
    value: float | None = None
    reason: str = ""


@dataclass
class _Flight:
    """A trial in flight: its Optuna trial and, once opened, its MLflow run."""

    trial: optuna.Trial
    name: str
    run_id: str | None = None
    ended: bool = False  # its run was ended already (by the error that failed it)


@dataclass
class Worker:
    """Runs trials of one study in ``slots`` (:mod:`bench.tuning.pool` makes them): a trial
    enters a free slot at an epoch boundary with its own MLflow run, reports every epoch to
    its Optuna trial and run, and leaves when it completes, is pruned, dies or diverges; the
    next trial takes its slot. The study still holds exactly ``trials`` finished trials: a
    worker asks only while finished + running < trials."""

    s: Target
    splits: data.Splits
    tracker: Tracker
    store: StudyStore
    parent_run_id: str
    slots: Slots
    eta: Eta | None = field(
        default=None, init=False, repr=False
    )  # the trials still wanted when this worker began
    flights: dict[int, _Flight] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        c = counts(self.store.study)
        self.eta = Eta(max(1, self.s.trials - c["complete"] - c["pruned"]))

    def loop(self) -> None:
        """Take trials until the study holds ``s.trials`` finished ones (or the timeout passes).
        An interrupt or a FatalError stops the loop: every trial in flight fails."""
        s = self.s
        deadline = None if s.timeout is None else time.monotonic() + s.timeout
        with Heartbeat(
            self.store, lambda: [f.trial.number for f in list(self.flights.values())], s.heartbeat
        ):
            try:
                while self._fill(deadline) or self.flights:
                    if not self.flights:  # the remaining trials run elsewhere: wait for them
                        stopping.sleep(min(s.heartbeat, 2.0))
                        continue
                    for k in self.slots.run_epoch():
                        self._settle(k, self._leave)
            except BaseException as exc:
                self._abandon(exc)
                raise

    def _fill(self, deadline: float | None) -> bool:
        """Ask trials for the free slots; False once the study needs nothing more of us."""
        stopping.check()  # between epochs, before the next ask
        with self.store.claim():
            fail_stale_trials(self.store, self.tracker, self.s.grace)
            c = counts(self.store.study)
            finished = c["complete"] + c["pruned"]
            if finished >= self.s.trials:
                return False
            for k in self.slots.free:
                stopping.check()  # the trials entered so far are in flight: _abandon fails them
                if (deadline is not None and time.monotonic() >= deadline) or finished + c[
                    "running"
                ] >= self.s.trials:
                    break
                trial = self._ask(c)
                self.flights[k] = _Flight(
                    trial, f"trial-{trial.number}"
                )  # from here on, _abandon fails it
                self._settle(k, self._enter)
                c["running"] += k in self.flights  # entered, not failed
                # An enqueued trial (the default, trial 0) was already counted: the next new
                # trial's number, which seeds its sampler, follows the highest number handed out.
                c["total"] = max(c["total"], trial.number + 1)
        return deadline is None or time.monotonic() < deadline

    def _settle(self, k: int, step: Callable[[int, _Flight], Outcome | None]) -> None:
        """Run one step of the trial in slot ``k`` (entering it, or leaving it once its member
        stopped): the one place an error in a trial is decided (:meth:`_failure`). A
        FatalError or an interrupt propagates: the loop stops and fails every trial in
        flight. Any other error fails this trial alone (FailedTrialError): the search goes on."""
        flight = self.flights[k]
        try:
            outcome = step(k, flight)
        except Exception as exc:  # noqa: BLE001 - decided here, in one place
            failure = self._failure(flight, exc)
            if failure is exc and isinstance(exc, FatalError):
                raise
            if isinstance(failure, FatalError):
                raise failure from exc
            outcome = Outcome(reason=str(failure))
            log.warning("trial #%d failed: %s", flight.trial.number, outcome.reason)
        if outcome is None:  # entered: it trains
            return
        del self.flights[k]
        self._tell(flight.trial, outcome, None)
        self._show(flight.trial, outcome)

    def _failure(self, flight: _Flight, error: Exception) -> FatalError | FailedTrialError:
        """What ``error`` means for the search. The trial's run ends FAILED either way. A
        FatalError, or a store or disk failure (the next trial would fail the same way),
        stops the worker; anything else fails this trial alone."""
        stored = None
        if flight.run_id is not None:
            stored, flight.ended = (
                self.tracker.end_run_on_error(flight.run_id, flight.name, error),
                True,
            )
        if isinstance(error, FatalError | FailedTrialError):
            return error
        if stored is not None:
            return stored
        if isinstance(error, OSError):
            return TrackingError(f"run {flight.name!r} failed: {first_line(error)}")
        return FailedTrialError(f"{type(error).__name__}: {error}")

    def _enter(self, k: int, flight: _Flight) -> None:
        """The trial's hyperparameters, its run (params and datasets) and its member in slot
        ``k``."""
        from bench.models.build import logged_params

        s, splits, trial = self.s, self.splits, flight.trial
        variant = get_variant(s.variant)
        hp = suggest(
            trial,
            s.study.search_space,
            s.base.replace(seed=trial_seed(s.seed, trial.number)),
            variant,
        )
        params = {
            **variant.structure_params(),
            **logged_params(hp, variant),
            schema.TASK: s.task,
            schema.TRIAL_NUMBER: trial.number,
            schema.OPTUNA_STUDY: s.study_name,
            **schema.split_params(splits.sizes),
        }
        stopping.check()  # no trial run starts once a stop is requested (the trial fails)
        flight.run_id = self.tracker.start_run(
            flight.name,
            kind=schema.KIND_TRIAL,
            params=params,
            parent_run_id=self.parent_run_id,
            tags={schema.OPTUNA_STUDY: s.study_name, schema.VARIANT_TAG: s.variant},
        )
        trial.set_user_attr(schema.TRIAL_RUN_ID, flight.run_id)
        self.tracker.log_datasets(
            flight.run_id, split_datasets(splits)[:2]
        )  # trials never see the test split
        self.slots.start(k, hp, [self.tracker.epoch_hook(flight.run_id), reporter(trial)])

    def _leave(self, k: int, flight: _Flight) -> Outcome:
        """The trial's member stopped: free its slot, judge it, close its run FINISHED (a
        pruned trial too). An error one of its hooks raised is raised, for :meth:`_settle`."""
        result, error = self.slots.finish(k)
        if error is not None and not isinstance(error, optuna.TrialPruned):
            raise error
        outcome = judge(result) if error is None else Outcome(TrialState.PRUNED, reason=str(error))
        self._tag(flight.run_id, outcome, result.status, result.message)
        self.tracker.end_run(flight.run_id, "FINISHED")
        return outcome

    def _abandon(self, exc: BaseException) -> None:
        """Interrupted or failing: every trial in flight is FAIL, every run ends KILLED/FAILED."""
        for k, flight in list(self.flights.items()):
            if flight.run_id is not None and not flight.ended:
                with contextlib.suppress(Exception):
                    self.tracker.end_run_on_error(flight.run_id, flight.name, exc)
            with contextlib.suppress(Exception):
                self._tell(
                    flight.trial, Outcome(reason=first_line(exc) or "interrupted"), flight.run_id
                )
            with contextlib.suppress(Exception):  # its slot, if it had entered one
                self.slots.finish(k)
        self.flights.clear()

    def _tag(self, run_id: str, outcome: Outcome, status: str = "", message: str = "") -> None:
        tags = {schema.OPTUNA_STATE: outcome.state.name}
        if status:
            tags[schema.STATUS] = status
        if outcome.state == TrialState.PRUNED:
            tags[schema.PRUNE_REASON] = outcome.reason
        if message:
            tags[schema.STATUS_MESSAGE] = message
        self.tracker.set_tags(run_id, tags)
        if outcome.value is not None:
            self.tracker.log_metrics(run_id, {schema.OBJECTIVE: outcome.value})

    def _tell(self, trial: optuna.Trial, outcome: Outcome, interrupted_run: str | None) -> None:
        if outcome.reason:
            trial.set_user_attr(schema.TRIAL_REASON, outcome.reason[:500])
        if outcome.state == TrialState.COMPLETE:
            self.store.study.tell(trial, outcome.value)
        else:
            self.store.study.tell(trial, state=outcome.state)
        if (
            interrupted_run is not None
        ):  # its run ended KILLED or FAILED; say what Optuna made of it
            with contextlib.suppress(Exception):
                self.tracker.set_tags(interrupted_run, {schema.OPTUNA_STATE: "FAIL"})

    def _show(self, trial: optuna.Trial, outcome: Outcome) -> None:
        c = counts(self.store.study)
        best = best_trial(self.store.study)
        finished = c["complete"] + c["pruned"]
        self.eta.advance()
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        if outcome.value is not None:
            detail = f" val_acc {outcome.value:.4f}"
        else:
            detail = f": {outcome.reason}" if outcome.reason else ""
        progress.info(
            "[%s] trial #%d %s%s (%s) | finished %d/%d, best %s | %s",
            self.s.variant,
            trial.number,
            outcome.state.name,
            detail,
            shown,
            finished,
            self.s.trials,
            "-" if best is None else f"{best.value:.4f} (#{best.number})",
            self.eta.text(),
        )

    def _ask(self, c: Mapping[str, int]) -> optuna.Trial:
        study = self.store.study
        study.sampler = make_sampler(self.s.seed, c["total"])  # the number the next trial gets
        trial = study.ask()
        self.store.set_trial_system_attr(trial.number, schema.TRIAL_WORKER, owner.identity())
        self.store.set_trial_system_attr(trial.number, schema.TRIAL_HEARTBEAT, time.time())
        return trial


def reporter(trial: optuna.Trial) -> training.EpochHook:
    """Report each epoch's validation accuracy to the trial; raise TrialPruned when Optuna
    says so. The study's default setting (trial 0) is never pruned: the best trial is
    measured against its full run."""
    default = bool(trial.user_attrs.get(schema.TRIAL_DEFAULT))

    def report(epoch: int, metrics: Mapping[str, float]) -> None:
        value = metrics[schema.VAL_ACCURACY]
        if math.isfinite(value):
            # Optuna's step is the resource spent: epochs trained (1-based), so successive
            # halving's first rung (min_resource=1) judges after one epoch, not two.
            trial.report(value, epoch + 1)
            if not default and trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned after epoch {epoch + 1} (val_accuracy {value:.4f})"
                )

    return report


def judge(result: training.TrainResult) -> Outcome:
    """A diverged run is pruned (its settings are useless, not broken); the rest complete."""
    if result.status == training.STATUS_DIVERGED:
        return Outcome(TrialState.PRUNED, reason=f"diverged: {result.message}")
    # With restore_best the model kept is the best epoch's, and so is the score it is judged by.
    value = result.best_val_accuracy if result.hparams.restore_best else result.final_val_accuracy
    return Outcome(TrialState.COMPLETE, value=value, reason=result.message)
