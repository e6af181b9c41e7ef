"""A tuning worker: claim a trial under the study's lock, train it, tell Optuna, repeat.

Workers in one process, in several processes (``--workers``) or on several machines
(PostgreSQL) run this same loop. A trial whose worker died is failed by the next worker
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
from bench.errors import FatalError
from bench.models import get_variant
from bench.results.artifacts import split_datasets
from bench.store import owner, schema
from bench.store.tracker import Tracker
from bench.tuning.search import make_pruner, make_sampler, suggest, trial_seed
from bench.tuning.settings import TuneSettings
from bench.tuning.storage import StudyStore, open_study

log = logging.getLogger(__name__)
progress = logging.getLogger("bench.progress")


def load_study(s: TuneSettings, *, create: bool) -> StudyStore:
    """The settings' Optuna study with the storage and lock bench opened for it."""
    return open_study(
        s.storage, s.study_name, sampler=make_sampler(s.seed, 0), pruner=make_pruner(s.pruner, s.epochs, s.min_epochs), create=create
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
        beat = float(t.system_attrs.get(schema.TRIAL_HEARTBEAT, t.datetime_start.timestamp() if t.datetime_start else now))
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

    def __init__(self, store: StudyStore, numbers: Callable[[], Iterable[int]], every: float) -> None:
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


# --------------------------------------------------------------------------- one trial


@dataclass
class Outcome:
    """How a trial ended, for Optuna and for its MLflow run."""

    state: TrialState = TrialState.FAIL
    value: float | None = None
    reason: str = ""


@dataclass
class Worker:
    """What a worker needs to run trials of one study: settings, data, store and study."""

    s: TuneSettings
    splits: data.Splits
    tracker: Tracker
    store: StudyStore
    parent_run_id: str
    eta: Eta | None = field(default=None, init=False, repr=False)  # the trials still wanted when this worker began

    def __post_init__(self) -> None:
        c = counts(self.store.study)
        self.eta = Eta(max(1, self.s.trials - c["complete"] - c["pruned"]))

    def run_trial(self, trial: optuna.Trial) -> Outcome:
        """Train one trial and tell Optuna how it ended. One ``try`` decides: a FatalError
        or an interrupt fails the trial and stops the worker; any other error fails only
        this trial (a broken trial must not end the study)."""
        run: dict[str, str] = {}
        try:
            outcome = self._train(trial, run)
        except (KeyboardInterrupt, FatalError) as exc:
            self._tell(trial, Outcome(reason=str(exc)[:500] or "interrupted"), run.get("id"))
            raise
        except Exception as exc:  # noqa: BLE001 - FailedTrialError and anything unforeseen
            outcome = Outcome(reason=f"{type(exc).__name__}: {exc}")
            log.warning("trial #%d failed: %s", trial.number, outcome.reason)
        self._tell(trial, outcome, None)
        self._show(trial, outcome)
        return outcome

    def _train(self, trial: optuna.Trial, run: dict[str, str]) -> Outcome:
        s, splits = self.s, self.splits
        variant = get_variant(s.variant)
        hp = suggest(trial, s.study.search_space, s.base.replace(seed=trial_seed(s.seed, trial.number)), variant)
        params = {
            **variant.structure_params(), **hp.as_params(), schema.TASK: s.task, schema.TRIAL_NUMBER: trial.number,
            schema.OPTUNA_STUDY: s.study_name, **{f"{schema.SPLIT_PREFIX}{k}": v for k, v in splits.sizes.items()},
        }
        stopping.check()  # no trial run starts once a stop is requested (the trial fails)
        try:
            with self.tracker.run(
                f"trial-{trial.number}", kind=schema.KIND_TRIAL, params=params, parent_run_id=self.parent_run_id,
                tags={schema.OPTUNA_STUDY: s.study_name, schema.VARIANT_TAG: s.variant},
                finished_on=(optuna.TrialPruned,),
            ) as run_id:
                run["id"] = run_id
                trial.set_user_attr(schema.TRIAL_RUN_ID, run_id)
                self.tracker.log_datasets(run_id, split_datasets(splits)[:2])  # trials never see the test split
                with Heartbeat(self.store, lambda: [trial.number], s.heartbeat):
                    result = training.train(
                        variant, hp, splits, on_epoch=[self.tracker.epoch_hook(run_id), reporter(trial)],
                        evaluate_test=False,
                    )
                outcome = judge(result)
                self._tag(run_id, outcome, result.status, result.message)
        except optuna.TrialPruned as exc:
            outcome = Outcome(TrialState.PRUNED, reason=str(exc))
            self._tag(run["id"], outcome)
        return outcome

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
        if interrupted_run is not None:  # its run ended KILLED or FAILED; say what Optuna made of it
            with contextlib.suppress(Exception):
                self.tracker.set_tags(interrupted_run, {schema.OPTUNA_STATE: "FAIL"})

    def _show(self, trial: optuna.Trial, outcome: Outcome) -> None:
        c = counts(self.store.study)
        best = best_trial(self.store.study)
        finished = c["complete"] + c["pruned"]
        self.eta.advance()
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        if outcome.value is not None:
            detail = f" val_acc {outcome.value:.4f}"
        else:
            detail = f": {outcome.reason}" if outcome.reason else ""
        progress.info(
            "[%s] trial #%d %s%s (%s) | finished %d/%d, best %s | %s",
            self.s.variant, trial.number, outcome.state.name, detail, shown, finished, self.s.trials,
            "-" if best is None else f"{best.value:.4f} (#{best.number})", self.eta.text(),
        )

    # -- the loop

    def loop(self) -> None:
        """Take trials until the study holds ``s.trials`` finished ones (or the timeout passes)."""
        s = self.s
        deadline = None if s.timeout is None else time.monotonic() + s.timeout
        while deadline is None or time.monotonic() < deadline:
            stopping.check()  # between trials, before the next ask
            with self.store.claim():
                fail_stale_trials(self.store, self.tracker, s.grace)
                c = counts(self.store.study)
                finished = c["complete"] + c["pruned"]
                if finished >= s.trials:
                    return
                trial = self._ask(c) if finished + c["running"] < s.trials else None
            if trial is None:  # the remaining trials are running elsewhere: wait for them
                stopping.sleep(min(s.heartbeat, 2.0))
                continue
            self.run_trial(trial)

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
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val_accuracy {value:.4f})")

    return report


def judge(result: training.TrainResult) -> Outcome:
    """A diverged run is pruned (its settings are useless, not broken); the rest complete."""
    if result.status == training.STATUS_DIVERGED:
        return Outcome(TrialState.PRUNED, reason=f"diverged: {result.message}")
    # With restore_best the model kept is the best epoch's, and so is the score it is judged by.
    value = result.best_val_accuracy if result.hparams.restore_best else result.final_val_accuracy
    return Outcome(TrialState.COMPLETE, value=value, reason=result.message)
