"""Optuna tuning of learning rate and dropout on the validation split (the only optuna user).

One Optuna study per (task, variant). Every trial is a nested MLflow run under one parent
run per study; the best configuration is retrained and tested once at the end. The test
split is never seen by a trial.

Objective: validation accuracy after the *last* epoch. The tuned configuration is
retrained for the same number of epochs and its final model is tested, so the objective
scores exactly what will be tested (best-epoch accuracy would reward peaks that the
retrained model, without checkpoint restoring, does not keep).

Resume and parallel workers: ``--trials N`` is the number of *finished* (complete or
pruned) trials the study should hold; workers claim trials under a lock until the study
has N. A trial whose worker died is failed by the next worker that notices: at once when
the worker ran on this host (its process is gone), otherwise when its heartbeat is older
than the grace period. Optuna's own heartbeat exists only for its RDB storage, while the
default local storage is a journal file (the storage Optuna documents for several
processes on one machine), hence this small heartbeat of our own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from bench import data, owner, training
from bench.errors import BenchError, TrackingError
from bench.studies import SearchSpace, Study
from bench.tracking import Tracker, redact, resolve_tracking_uri, sanitize_name
from bench.variants import HParams, Variant, get_variant

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # bench prints its own progress lines
progress = logging.getLogger("bench.progress")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_SECONDS = 20.0
STORAGE_ENV = "BENCH_OPTUNA_STORAGE"
GRACE_SECONDS = 300.0  # a trial on another host is stale after this long without a heartbeat
PRUNERS = ("median", "successive-halving", "hyperband", "none")


class StorageError(BenchError):
    """The Optuna storage URL is malformed or unreachable."""


# --------------------------------------------------------------------------- storage


def default_storage(tracking_uri: str | None) -> str:
    """``$BENCH_OPTUNA_STORAGE``, else a journal file beside the MLflow store (or in the
    working directory). Credentials in the environment stay out of shell history and out
    of the params ``mlflow run -P storage=...`` would record verbatim."""
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    uri = resolve_tracking_uri(tracking_uri)
    folder = Path(".")
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///") :]).expanduser().parent
    return f"journal://{(folder / 'optuna.journal').resolve()}"


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal:///"):
        return Path(url[len("journal://") :])
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if "://" not in url and url.endswith((".journal", ".log")):
        return Path(url)
    return None


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Journal files (``journal:///path`` or ``*.journal``), RDB URLs (sqlite, postgresql, mysql)."""
    path = _journal_path(url)
    try:
        if path is not None:
            path = path.expanduser().resolve()
            if not path.parent.is_dir():
                raise StorageError(f"storage folder {path.parent} does not exist")
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(path)))
        scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
        if scheme in ("sqlite", "postgresql", "mysql"):
            return _rdb_storage(url, scheme)
        if scheme == "redis":
            from optuna.storages.journal import JournalRedisBackend, JournalStorage

            return JournalStorage(JournalRedisBackend(url))
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - drivers raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open Optuna storage {redact(url)}: {redact(first)}") from None
    raise StorageError(
        f"unsupported Optuna storage URL {redact(url)!r}: use journal:///path/file.journal, "
        "sqlite:///file.db, postgresql://user:pass@host/db or mysql://..."
    )


def _rdb_storage(url: str, scheme: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage. Workers started together on a fresh database race to create
    Optuna's tables (a unique-constraint error for all but one); the losers retry."""
    import random

    import sqlalchemy.exc

    kwargs = {"pool_pre_ping": True, **({"connect_args": {"timeout": 60}} if scheme == "sqlite" else {})}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.InternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def supports_concurrency(url: str) -> bool:
    return not url.startswith("sqlite")


# --------------------------------------------------------------------------- search


def suggest(trial: optuna.Trial, space: SearchSpace, base: HParams, variant: Variant) -> HParams:
    """Sample the study's search space; parameters the variant cannot use are not sampled."""
    changes: dict[str, object] = {
        "learning_rate": trial.suggest_float(
            "learning_rate", space.learning_rate.low, space.learning_rate.high, log=space.learning_rate.log
        )
    }
    if space.dropout is not None and variant.has_dropout:
        changes["dropout"] = trial.suggest_float(
            "dropout", space.dropout.low, space.dropout.high, log=space.dropout.log
        )
    if space.batch_size is not None:
        changes["batch_size"] = int(trial.suggest_categorical("batch_size", space.batch_size.choices))
    if space.optimizer is not None:
        changes["optimizer"] = str(trial.suggest_categorical("optimizer", space.optimizer.choices))
    return dataclasses.replace(base, **changes)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise BenchError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker process needs (picklable)."""

    study: Study
    variant: str
    task: str
    trials: int
    epochs: int
    base: HParams
    storage: str
    study_name: str
    seed: int
    pruner: str
    validation_size: int
    data_dir: str | None
    tracking_uri: str
    experiment: str
    timeout: float | None = None
    limit: int | None = None
    heartbeat: float = HEARTBEAT_SECONDS
    grace: float = GRACE_SECONDS


def plan(
    study: Study,
    *,
    variants: list[str],
    task: str | None,
    trials: int | None,
    epochs: int | None,
    storage: str | None,
    study_name: str | None,
    seed: int,
    pruner: str | None,
    timeout: float | None,
    data_dir: str | None,
    tracking_uri: str | None,
    experiment: str | None,
    validation_size: int | None = None,
    limit: int | None = None,
) -> list[TuneSettings]:
    if trials is not None and trials <= 0:
        raise BenchError(f"--trials must be > 0, got {trials}")
    task_name = data.get_task(task).name if task else study.task
    url = storage or default_storage(tracking_uri)
    uri = resolve_tracking_uri(tracking_uri)
    out = []
    for name in variants:
        get_variant(name)
        if study_name:
            sname = study_name if len(variants) == 1 else f"{study_name}-{name}"
        else:
            sname = f"{study.name}-{task_name}-{name}"
        base = study.hparams(variant=name)
        n_epochs = epochs or study.tuning.epochs or base.epochs
        out.append(
            TuneSettings(
                study=study,
                variant=name,
                task=task_name,
                trials=trials or study.tuning.trials,
                epochs=n_epochs,
                base=base.replace(epochs=n_epochs),
                storage=url,
                study_name=sname,
                seed=seed,
                pruner=pruner or study.tuning.pruner,
                validation_size=validation_size or study.protocol.validation_size,
                data_dir=data_dir,
                tracking_uri=uri,
                experiment=experiment or f"{study.name}-tuning",
                timeout=timeout,
                limit=limit,
            )
        )
    return out


def _load_splits(s: TuneSettings) -> data.Splits:
    return data.load(
        s.task, data_dir=s.data_dir, validation_size=s.validation_size, limit=s.limit,
        standardize=s.study.protocol.standardize,
    )


def make_sampler(seed: int, trial_number: int) -> optuna.samplers.TPESampler:
    """TPE seeded for one trial number: ``seed + number``.

    One sampler per ask, not one per worker: workers started with the same ``--seed``
    would otherwise draw the same random start-up points in step, while this way trial
    ``n`` gets the same proposal however many workers share the study. ``constant_liar``
    keeps TPE from proposing again what a running trial on another worker is trying.
    """
    return optuna.samplers.TPESampler(seed=seed + trial_number, constant_liar=True)


def load_optuna_study(s: TuneSettings, *, create: bool) -> optuna.Study:
    storage = open_storage(s.storage)
    sampler = make_sampler(s.seed, 0)
    pruner = make_pruner(s.pruner, s.epochs)
    try:
        if create:
            return optuna.create_study(
                study_name=s.study_name, storage=storage, sampler=sampler, pruner=pruner,
                direction="maximize", load_if_exists=True,
            )
        return optuna.load_study(study_name=s.study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise StorageError(f"no Optuna study {s.study_name!r} in {redact(s.storage)}") from None


# --------------------------------------------------------------------------- workers


def fail_stale_trials(study: optuna.Study, tracker: Tracker | None, grace: float) -> list[int]:
    """Fail RUNNING trials whose worker is gone; end their MLflow runs FAILED."""
    failed = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.system_attrs.get("bench:worker", "")
        beat = float(t.system_attrs.get("bench:heartbeat", t.datetime_start.timestamp() if t.datetime_start else now))
        dead = owner.is_dead(worker) or now - beat > grace
        if not dead:
            continue
        try:
            study._storage.set_trial_system_attr(t._trial_id, "bench:fail_reason", "worker process died")
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue
        failed.append(t.number)
        run_id = t.user_attrs.get("mlflow_run_id")
        if tracker is not None and run_id:
            tracker.close_orphan(run_id, "worker process died during the trial", state="FAIL")
        progress.warning("trial #%d failed: its worker %s died", t.number, worker)
    return failed


@contextlib.contextmanager
def _claim_lock(s: TuneSettings, study: optuna.Study | None = None) -> Iterator[None]:
    """Serialise "count trials, then ask for one" between the workers of one study.

    On PostgreSQL the lock is a session-level advisory lock in the study's own database,
    so workers on any number of machines take turns; elsewhere (journal file, SQLite,
    one machine) it is an ``fcntl`` lock on a file beside the storage.
    """
    storage = getattr(study, "_storage", None)
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        with _advisory_lock(engine, s.study_name):
            yield
        return
    path = _journal_path(s.storage)
    lock_dir = path.expanduser().resolve().parent if path is not None else Path.cwd()
    lock = lock_dir / f".{sanitize_name(s.study_name)}.claim.lock"
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(engine, name: str) -> Iterator[None]:
    import hashlib

    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"bench:{name}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


class _Heartbeat:
    """Refresh a trial's heartbeat from a background thread while it trains."""

    def __init__(self, study: optuna.Study, trial_id: int, every: float) -> None:
        self._study, self._trial_id, self._every = study, trial_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            with contextlib.suppress(Exception):
                self._study._storage.set_trial_system_attr(self._trial_id, "bench:heartbeat", time.time())

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "total": len(trials),
    }


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, s: TuneSettings, splits: data.Splits,
    tracker: Tracker, parent_run_id: str,
) -> None:
    variant = get_variant(s.variant)
    hp = suggest(trial, s.study.search_space, s.base.replace(seed=s.seed + trial.number), variant)
    params = {
        **variant.structure_params(), **hp.as_params(), "task": s.task, "trial_number": trial.number,
        "optuna.study": s.study_name, **{f"split.{k}": v for k, v in splits.sizes.items()},
    }

    def report(epoch: int, metrics: dict[str, float]) -> None:
        value = metrics["val_accuracy"]
        if math.isfinite(value):
            # Optuna's step is the resource spent: epochs trained (1-based), so successive
            # halving's first rung (min_resource=1) judges after one epoch, not two.
            trial.report(value, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val_accuracy {value:.4f})")

    state, value, reason, run_id = TrialState.FAIL, None, "", None
    try:
        with tracker.run(
            f"trial-{trial.number}", kind="trial", params=params, parent_run_id=parent_run_id,
            tags={"optuna.study": s.study_name, "bench.variant": s.variant},
            finished_on=(optuna.TrialPruned,),
        ) as run_id:
            trial.set_user_attr("mlflow_run_id", run_id)
            with _Heartbeat(study, trial._trial_id, s.heartbeat):
                try:
                    result = training.train(
                        variant, hp, splits, on_epoch=[tracker.epoch_hook(run_id), report], evaluate_test=False
                    )
                except optuna.TrialPruned as exc:
                    state, reason = TrialState.PRUNED, str(exc)
                    tracker.set_tags(run_id, {"optuna.state": "PRUNED", "bench.prune_reason": reason})
                    raise
            if result.status == training.STATUS_DIVERGED:
                state, reason = TrialState.PRUNED, f"diverged: {result.message}"
            else:
                state, value = TrialState.COMPLETE, result.final_val_accuracy
                reason = result.message
            tracker.set_tags(run_id, {
                "optuna.state": state.name, "bench.status": result.status,
                **({"bench.prune_reason": reason} if state == TrialState.PRUNED else {}),
                **({"bench.status_message": result.message} if result.message else {}),
            })
            tracker.log_metrics(run_id, {"objective": value} if value is not None else {})
    except optuna.TrialPruned:
        pass
    except KeyboardInterrupt:
        study.tell(trial, state=TrialState.FAIL)
        if run_id is not None:  # its run ended KILLED; say what Optuna made of the trial
            with contextlib.suppress(Exception):
                tracker.set_tags(run_id, {"optuna.state": "FAIL"})
        raise
    except TrackingError as exc:
        # The store or the disk failed, not the model: every next trial would fail the
        # same way, so this worker stops with the error (its trial failed in Optuna too).
        trial.set_user_attr("reason", str(exc)[:500])
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # noqa: BLE001 - a broken trial must not end the study
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("trial #%d failed: %s", trial.number, reason)
    if reason:
        trial.set_user_attr("reason", reason[:500])
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    else:
        study.tell(trial, state=state)
    c = _counts(study)
    best = _best(study)
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    detail = f" val_acc {value:.4f}" if value is not None else (f": {reason}" if reason else "")
    progress.info(
        "[%s] trial #%d %s%s (%s) | finished %d/%d, best %s",
        s.variant, trial.number, state.name, detail, shown,
        c["complete"] + c["pruned"], s.trials,
        "-" if best is None else f"{best.value:.4f} (#{best.number})",
    )


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value) if done else None


def worker_loop(
    s: TuneSettings,
    parent_run_id: str,
    *,
    splits: data.Splits | None = None,
    tracker: Tracker | None = None,
    study: optuna.Study | None = None,
) -> None:
    """Take trials until the study holds ``s.trials`` finished ones (or the timeout passes).

    A worker in its own process opens data, store and study itself; the in-process worker
    is handed the ones :func:`tune` already has.
    """
    if splits is None:
        splits = _load_splits(s)
    tracker = tracker or Tracker(s.tracking_uri, s.experiment)
    study = study or load_optuna_study(s, create=False)
    deadline = None if s.timeout is None else time.monotonic() + s.timeout
    while deadline is None or time.monotonic() < deadline:
        with _claim_lock(s, study):
            fail_stale_trials(study, tracker, s.grace)
            c = _counts(study)
            finished = c["complete"] + c["pruned"]
            if finished >= s.trials:
                return
            trial = None
            if finished + c["running"] < s.trials:
                study.sampler = make_sampler(s.seed, c["total"])  # the number the next trial gets
                trial = study.ask()
                study._storage.set_trial_system_attr(trial._trial_id, "bench:worker", owner.identity())
                study._storage.set_trial_system_attr(trial._trial_id, "bench:heartbeat", time.time())
        if trial is None:  # the remaining trials are running elsewhere: wait for them
            time.sleep(min(s.heartbeat, 2.0))
            continue
        _run_trial(study, trial, s, splits, tracker, parent_run_id)


def _worker_main(s: TuneSettings, parent_run_id: str, index: int) -> None:
    """Entry point of a spawned worker process."""
    import signal
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[w{index}] %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger("bench").setLevel(logging.INFO)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        worker_loop(s, parent_run_id)
    except KeyboardInterrupt:
        pass
    except BenchError as exc:
        log.error("error: %s", exc)
        sys.exit(1)


# --------------------------------------------------------------------------- a study


@dataclass
class TuneResult:
    settings: TuneSettings
    parent_run_id: str
    counts: dict[str, int]
    best_params: dict[str, object]
    best_value: float | None
    tuned_run_id: str | None
    tuned_test_accuracy: float | None
    experiment_id: str = ""


def tune(s: TuneSettings, *, workers: int = 1) -> TuneResult:
    """Run (or resume) one study to ``s.trials`` finished trials, then retrain the best."""
    if workers <= 0:
        raise BenchError(f"--workers must be > 0, got {workers}")
    if workers > 1 and not supports_concurrency(s.storage):
        raise StorageError(
            f"{redact(s.storage)}: SQLite does not tolerate concurrent writers; with --workers use "
            "the default journal file, a journal:/// URL or PostgreSQL"
        )
    splits = _load_splits(s)
    # The tracking store first: a bad one fails before the Optuna study exists.
    tracker = Tracker(s.tracking_uri, s.experiment, description=s.study.description)
    study = load_optuna_study(s, create=True)
    # Several `bench tune` processes (machines) may start on one study at once: the first
    # creates the parent run under the claim lock, the others find and share it.
    with _claim_lock(s, study):
        parent_id = _parent_run(study, s, tracker)
        fresh = parent_id is None
        if fresh:
            parent_id = tracker.create_run(f"study-{s.study_name}", kind="study")
            study.set_user_attr("mlflow_parent_run_id", parent_id)
    study.set_user_attr("task", s.task)
    study.set_user_attr("variant", s.variant)
    progress.info(
        "tuning %s on %s: study %r in %s, %d finished trials wanted (%d done), %d epochs each, pruner %s",
        s.variant, s.task, s.study_name, redact(s.storage), s.trials,
        sum(_counts(study)[k] for k in ("complete", "pruned")), s.epochs, s.pruner,
    )
    params = {
        "optuna.study": s.study_name, "optuna.storage": redact(s.storage), "variant": s.variant,
        "task": s.task, "trials": s.trials, "epochs": s.epochs, "sampler": "TPESampler (seed + trial number, constant liar)",
        "sampler.seed": s.seed, "pruner": s.pruner, "objective": "val_accuracy (last epoch)",
        "search_space": s.study.search_space.model_dump_json(exclude_none=True),
        **{f"base.{k}": v for k, v in s.base.as_params().items()},
        **{f"split.{k}": v for k, v in splits.sizes.items()},
    }
    # Namespaced, so they never collide with the raw entry-point params `mlflow run` logs.
    params = {f"tuning.{k}": v for k, v in params.items()}
    with tracker.run(
        f"study-{s.study_name}", kind="study", resume_run_id=parent_id,
        params=params if fresh else None,
        tags={"optuna.study": s.study_name, "bench.variant": s.variant, "bench.task": s.task},
        description=f"Optuna study {s.study_name}: {s.variant} on {s.task}",
    ) as parent_id:
        study.set_user_attr("mlflow_parent_run_id", parent_id)
        if workers == 1:
            worker_loop(s, parent_id, splits=splits, tracker=tracker, study=study)
        else:
            ctx = multiprocessing.get_context("spawn")
            procs = [ctx.Process(target=_worker_main, args=(s, parent_id, i + 1)) for i in range(workers)]
            for p in procs:
                p.start()
            try:
                for p in procs:
                    p.join()
            except KeyboardInterrupt:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.join()
                raise
            stopped = [str(i) for i, p in enumerate(procs, start=1) if p.exitcode != 0]
            if stopped:
                raise BenchError(
                    f"worker {', '.join(stopped)} stopped with an error (shown above); the study keeps "
                    "its finished trials: rerun the same command to continue"
                )
        fail_stale_trials(study, tracker, s.grace)
        tracker.close_stale_children(parent_id, {t.user_attrs.get("mlflow_run_id") for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING})
        # One worker, the last to finish, retrains the best trial; the lock is held until the
        # retrained run is recorded, so two workers finishing together never both retrain.
        tuned_run_id, tuned_acc = None, None
        with _claim_lock(s, study):
            counts = _counts(study)
            best = _best(study)
            attrs = study._storage.get_study_system_attrs(study._study_id)
            if best is not None and counts["running"] == 0 and attrs.get("bench:retrained") != best.number:
                tuned_run_id, tuned_acc = _retrain_best(s, best, splits, tracker, parent_id, study)
                study._storage.set_study_system_attr(study._study_id, "bench:retrained", best.number)
            elif best is not None:
                progress.info("best trial #%d: retrained already, or trials are still running elsewhere", best.number)
        _log_study(tracker, parent_id, study, s, counts, best, tuned_acc)
        tracker.log_report(parent_id)
    return TuneResult(
        settings=s, parent_run_id=parent_id, counts=counts,
        best_params=dict(best.params) if best else {}, best_value=best.value if best else None,
        tuned_run_id=tuned_run_id, tuned_test_accuracy=tuned_acc, experiment_id=tracker.experiment_id,
    )


def _parent_run(study: optuna.Study, s: TuneSettings, tracker: Tracker) -> str | None:
    """The study's parent MLflow run from an earlier session, if it is in this store."""
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id and tracker.run_exists(run_id):
        return run_id
    return None


def tuned_hparams(s: TuneSettings, study: optuna.Study | None = None) -> HParams | None:
    """The best trial's hyperparameters (None when the study has no complete trial)."""
    study = study or load_optuna_study(s, create=False)
    best = _best(study)
    if best is None:
        return None
    return dataclasses.replace(s.base, **{k: v for k, v in best.params.items()})


def best_params(
    study: Study, variants: list[str], *, task: str | None, storage: str | None,
    study_name: str | None, tracking_uri: str | None,
) -> dict[str, dict[str, object]]:
    """Each variant's best hyperparameters from its Optuna study (for ``compare --tuned``)."""
    planned = plan(
        study, variants=variants, task=task, trials=None, epochs=None, storage=storage,
        study_name=study_name, seed=0, pruner=None, timeout=None, data_dir=None,
        tracking_uri=tracking_uri, experiment=None,
    )
    found, missing = {}, []
    for s in planned:
        try:
            best = _best(load_optuna_study(s, create=False))
        except StorageError:
            best = None
        if best is None:
            missing.append(f"{s.variant} (study {s.study_name!r})")
        else:
            found[s.variant] = dict(best.params)
    if missing:
        raise BenchError(
            f"no tuned hyperparameters in {redact(planned[0].storage)} for: {', '.join(missing)}; "
            "run `bench tune` first with the same --study/--task/--storage"
        )
    return found


def _retrain_best(
    s: TuneSettings, best: optuna.trial.FrozenTrial, splits: data.Splits, tracker: Tracker,
    parent_id: str, study: optuna.Study,
) -> tuple[str | None, float | None]:
    from bench.compare import train_and_log

    hp = dataclasses.replace(tuned_hparams(s, study), seed=s.seed)
    progress.info("[%s] retraining the best trial #%d (%s) and testing it once", s.variant, best.number, best.params)
    result = train_and_log(
        tracker, get_variant(s.variant), hp, splits, run_name=f"tuned-{s.variant}", kind="tuned",
        label=f"[{s.variant} tuned]", extra_params={"optuna.study": s.study_name, "best_trial": best.number},
        parent_run_id=parent_id,
    )
    study.set_user_attr("tuned_run_id", result.run_id)
    study.set_user_attr("tuned_test_accuracy", result.test_accuracy)
    return result.run_id, result.test_accuracy


def _log_study(
    tracker: Tracker, run_id: str, study: optuna.Study, s: TuneSettings, counts: dict[str, int],
    best: optuna.trial.FrozenTrial | None, tuned_acc: float | None,
) -> None:
    """Counts, best trial, Optuna's own figures and a CSV of all trials on the parent run."""
    import warnings

    import optuna.visualization.matplotlib as ovm

    metrics: dict[str, float] = {f"trials.{k}": float(v) for k, v in counts.items() if k != "running"}
    if best is not None:
        metrics["best_val_accuracy"] = float(best.value)
        metrics["best_trial"] = float(best.number)
        tracker.set_tags(run_id, {f"best.{k}": v for k, v in best.params.items()})
    if tuned_acc is not None:
        metrics["tuned_test_accuracy"] = tuned_acc
    tracker.log_metrics(run_id, metrics)
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    tracker.log_text(run_id, frame.to_csv(index=False), "trials.csv")
    plots = {
        "optimization_history": ovm.plot_optimization_history,
        "param_importances": ovm.plot_param_importances,
        "parallel_coordinate": ovm.plot_parallel_coordinate,
        "intermediate_values": ovm.plot_intermediate_values,
    }
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except Exception as exc:  # noqa: BLE001 - e.g. too few complete trials
                log.info("figure %s skipped: %s", name, exc)
                continue
            first = ax.flat[0] if hasattr(ax, "flat") else ax
            fig = first.figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
        tracker.log_figure(run_id, fig, f"figures/{name}.png")
