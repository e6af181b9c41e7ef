"""One tuning study: run (or resume) it to N finished trials, retrain the best, log it all.

One Optuna study per (task, variant). Every trial is a nested MLflow run under one parent
run per study; the best configuration is retrained and tested once at the end. The test
split is never seen by a trial.

Objective: validation accuracy after the *last* epoch. The tuned configuration is
retrained for the same number of epochs and its final model is tested, so the objective
scores exactly what will be tested (best-epoch accuracy would reward peaks that the
retrained model, without checkpoint restoring, does not keep).

Resume and parallel workers: ``--trials N`` is the number of *finished* (complete or
pruned) trials the study should hold; workers claim trials under a lock until the study
has N (:mod:`bench.tuning.worker`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

import bench.tuning.selection as selection
import bench.tuning.study_log as study_log
from bench import data, runs, stopping, training
from bench.errors import BenchError, StorageError
from bench.models import get_variant
from bench.results.artifacts import ModelNaming
from bench.results.report import log_report
from bench.store import schema
from bench.store.environment import environment_tags
from bench.store.tracker import Tracker
from bench.store.uri import redact
from bench.tuning.identity import record as record_settings
from bench.tuning.pool import make_worker, worker_main
from bench.tuning.search import default_params
from bench.tuning.storage import StudyStore, supports_concurrency
from bench.tuning.target import Target, load_splits
from bench.tuning.tuned import stored_selection
from bench.tuning.worker import best_trial, counts, fail_stale_trials, load_study

progress = logging.getLogger("bench.progress")


@dataclass
class TuneResult:
    target: Target
    parent_run_id: str
    counts: dict[str, int]
    best_params: dict[str, object]
    best_value: float | None
    tuned_run_id: str | None
    tuned_test_accuracy: float | None
    experiment_id: str = ""
    best_is_default: bool = False  # the best trial is trial 0, the study's untuned setting
    selection: dict[str, object] | None = None  # the re-evaluation that chose best_params, if any


def _has_default(study: optuna.Study) -> bool:
    """Whether the study's untuned setting is scored, queued or being trained (a failed
    attempt does not count)."""
    return any(
        t.user_attrs.get(schema.TRIAL_DEFAULT) and t.state != TrialState.FAIL
        for t in study.get_trials(deepcopy=False)
    )


def tune_plan(planned: Sequence[Target]) -> list[TuneResult]:
    """Each variant's tuning in turn (its repeats together), with the plan's workers."""
    by_variant: dict[str, list[Target]] = {}
    for one in planned:
        by_variant.setdefault(one.variant, []).append(one)
    return [
        tune_variant(repeats, workers=int(repeats[0].plan.value("workers")))
        for repeats in by_variant.values()
    ]


def tune_variant(repeats: Sequence[Target], *, workers: int = 1) -> TuneResult:
    """A variant's tuning: each repeat's study to ``trials`` finished trials; then, where the
    study selects (``select_seeds`` > 0), the best trials re-evaluated on more seeds and the
    winner retrained and tested once (:mod:`bench.tuning.selection`); else repeat 0's best."""
    results = [tune(s, workers=workers, retrain=not s.selects) for s in repeats]
    if not repeats[0].selects:
        return results[0]
    return _select(repeats, results[0])


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes) so far."""
    import resource
    import time

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def _counting_cpu(store: StudyStore, key: str = schema.STUDY_CPU_SECONDS):
    """Add the CPU time spent inside to the study's running total, also when interrupted."""
    start = _cpu_seconds()
    try:
        yield
    finally:
        with contextlib.suppress(Exception), store.claim():
            spent = float(store.study.user_attrs.get(key, 0.0))
            store.study.set_user_attr(key, spent + _cpu_seconds() - start)


def tune(s: Target, *, workers: int = 1, retrain: bool = True) -> TuneResult:
    """Run (or resume) one study to ``s.trials`` finished trials, then (``retrain``) retrain
    the best."""
    _check_workers(s, workers)
    splits = load_splits(s)
    # The tracking store first: a bad one fails before the Optuna study exists.
    tracker = Tracker(s.tracking_uri, s.experiment, description=s.study.description)
    store = load_study(s, create=True)
    study = store.study
    parent_id, fresh = _open_parent(s, store, tracker)
    study.set_user_attr(schema.STUDY_TASK, s.task)
    study.set_user_attr(schema.STUDY_VARIANT, s.variant)
    record_settings(study, s)
    _announce(s, study)
    with tracker.run(
        f"study-{s.study_name}",
        kind=schema.KIND_STUDY,
        resume_run_id=parent_id,
        params=study_log.study_params(s, splits) if fresh else None,
        tags={
            schema.OPTUNA_STUDY: s.study_name,
            schema.VARIANT_TAG: s.variant,
            schema.TASK_TAG: s.task,
            **environment_tags(training.device_description()),
        },
        description=f"Optuna study {s.study_name}: {s.variant} on {s.task}",
    ) as parent_id:
        study.set_user_attr(schema.STUDY_PARENT_RUN_ID, parent_id)
        study_log.save_view(tracker, s, parent_id)
        with _counting_cpu(store):
            _run_workers(
                s, workers, lambda: make_worker(s, splits, tracker, store, parent_id), parent_id
            )
        _close_stale(s, store, tracker, parent_id)
        if retrain:
            final, best, tuned_run_id, tuned_acc = _retrain_once(
                s, store, splits, tracker, parent_id
            )
        else:
            final, best, tuned_run_id, tuned_acc = counts(study), best_trial(study), None, None
        stopping.check()
        study_log.log_study(tracker, parent_id, study, final, best, tuned_acc)
        log_report(tracker, parent_id)
        stopping.check()  # the study's run ends FINISHED only where no stop was requested
    return TuneResult(
        target=s,
        parent_run_id=parent_id,
        counts=final,
        best_params=dict(best.params) if best else {},
        best_value=best.value if best else None,
        tuned_run_id=tuned_run_id,
        tuned_test_accuracy=tuned_acc,
        experiment_id=tracker.experiment_id,
        best_is_default=bool(best and best.user_attrs.get(schema.TRIAL_DEFAULT)),
    )


def _check_workers(s: Target, workers: int) -> None:
    """A worker count this storage can serve: SQLite serves one."""
    if workers <= 0:
        raise BenchError(f"--workers must be > 0, got {workers}")
    if workers > 1 and not supports_concurrency(s.storage):
        raise StorageError(
            f"{redact(s.storage)}: SQLite does not tolerate concurrent writers; with --workers use "
            "the default journal file, a journal:/// URL or PostgreSQL"
        )


def _announce(s: Target, study: optuna.Study) -> None:
    """What this session tunes, and how far the study already is."""
    c = counts(study)
    progress.info(
        "tuning %s on %s: study %r in %s, %d finished trials wanted (%d done), %d epochs each, "
        "pruner %s%s",
        s.variant,
        s.task,
        s.study_name,
        redact(s.storage),
        s.trials,
        c["complete"] + c["pruned"],
        s.epochs,
        s.pruner,
        f" (no trial judged before epoch {s.min_epochs})" if s.min_epochs > 1 else "",
    )


def _close_stale(s: Target, store: StudyStore, tracker: Tracker, parent_id: str) -> None:
    """Trials left RUNNING past their grace failed, and trial runs no running trial owns
    closed."""
    study = store.study
    fail_stale_trials(store, tracker, s.grace)
    running = {
        t.user_attrs.get(schema.TRIAL_RUN_ID)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    }
    tracker.close_stale_children(parent_id, running)


def _open_parent(s: Target, store: StudyStore, tracker: Tracker) -> tuple[str, bool]:
    """The study's parent run (created when new) and whether it is new. Several `bench tune`
    processes (machines) may start on one study at once: the first creates the parent run
    under the claim lock, the others find and share it."""
    stopping.check()
    study = store.study
    with store.claim():
        parent_id = _parent_run(study, tracker)
        fresh = parent_id is None
        if fresh:
            parent_id = tracker.create_run(f"study-{s.study_name}", kind=schema.KIND_STUDY)
            study.set_user_attr(schema.STUDY_PARENT_RUN_ID, parent_id)
        defaults = default_params(s.study.search_space, s.base, get_variant(s.variant))
        if defaults is not None and not _has_default(study):
            # Trial 0 is the untuned setting: the best trial is never worse on validation.
            # Queued again when it failed (interrupted, crashed): the study always scores it.
            study.enqueue_trial(defaults, user_attrs={schema.TRIAL_DEFAULT: True})
    return parent_id, fresh


def _run_workers(s: Target, workers: int, here, parent_run_id: str) -> None:
    """This process is the worker (``here()`` makes it), or it starts ``workers`` processes
    and waits for them."""
    stopping.check()
    if workers == 1:
        here().loop()
        return
    ctx = multiprocessing.get_context("spawn")
    verbosity = optuna.logging.get_verbosity()  # as the command set it up
    procs = [
        ctx.Process(target=worker_main, args=(s, parent_run_id, i + 1, verbosity))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        _wait(procs)
    except KeyboardInterrupt:  # a second signal: stop at once (the next start closes their runs)
        for p in procs:
            p.kill()
        for p in procs:
            p.join()
        raise
    stopping.check()  # the workers stopped on this process's request: it stops too
    stopped = [str(i) for i, p in enumerate(procs, start=1) if p.exitcode != 0]
    if stopped:
        raise BenchError(
            f"worker {', '.join(stopped)} stopped with an error (shown above); the study keeps "
            "its finished trials: rerun the same command to continue"
        )


def _wait(procs: list) -> None:
    """Wait for the worker processes. A stop requested here (Ctrl-C, SIGTERM) is passed on to
    those still running as SIGTERM, once; each stops at its next boundary, failing its trials
    in flight and ending their runs KILLED, and exits."""
    from multiprocessing.connection import wait

    passed_on = False
    while any(p.exitcode is None for p in procs):
        if stopping.requested() and not passed_on:
            for p in procs:
                if p.exitcode is None:
                    p.terminate()
            passed_on = True
        wait([p.sentinel for p in procs if p.exitcode is None], timeout=0.2)
    for p in procs:
        p.join()


def _retrain_once(
    s: Target, store: StudyStore, splits: data.Splits, tracker: Tracker, parent_id: str
) -> tuple[dict[str, int], FrozenTrial | None, str | None, float | None]:
    """One worker, the last to finish, retrains the best trial; the lock is held until the
    retrained run is recorded, so two workers finishing together never both retrain."""
    tuned_run_id, tuned_acc = None, None
    with store.claim():
        final = counts(store.study)
        best = best_trial(store.study)
        retrained = store.study_system_attrs().get(schema.STUDY_RETRAINED)
        if best is not None and final["running"] == 0 and retrained != best.number:
            tuned_run_id, tuned_acc = _retrain_best(
                s, best, splits, tracker, parent_id, store.study
            )
            store.set_study_system_attr(schema.STUDY_RETRAINED, best.number)
        elif best is not None:
            progress.info(
                "best trial #%d: retrained already, or trials are still running elsewhere",
                best.number,
            )
    return final, best, tuned_run_id, tuned_acc


def _parent_run(study: optuna.Study, tracker: Tracker) -> str | None:
    """The study's parent MLflow run from an earlier session, if it is in this store."""
    run_id = study.user_attrs.get(schema.STUDY_PARENT_RUN_ID)
    if run_id and tracker.run_exists(run_id):
        return run_id
    return None


def _retrain_best(
    s: Target,
    best: FrozenTrial,
    splits: data.Splits,
    tracker: Tracker,
    parent_id: str,
    study: optuna.Study,
) -> tuple[str | None, float | None]:
    progress.info(
        "[%s] retraining the best trial #%d (%s) and testing it once",
        s.variant,
        best.number,
        best.params,
    )
    return _retrain(s, dict(best.params), best.number, splits, tracker, parent_id, study)


def _retrain(
    s: Target,
    params: dict[str, object],
    origin: object,
    splits: data.Splits,
    tracker: Tracker,
    parent_id: str,
    study: optuna.Study,
) -> tuple[str | None, float | None]:
    """Train the chosen setting once more (seed ``s.seed``) and test it: the one test score
    tuning computes, after every choice is made."""
    hp = dataclasses.replace(s.base, seed=s.seed, **params)
    unit = runs.Unit(
        hp,
        f"tuned-{s.variant}",
        label=f"[{s.variant} tuned]",
        params={schema.OPTUNA_STUDY: s.study_name, schema.BEST_TRIAL: origin},
        naming=ModelNaming(
            f"{s.variant}-tuned", registered=f"{s.task}-{s.variant}", alias=schema.SETTING_TUNED
        ),
    )
    recording = runs.Recording(tracker, splits, parent_run_id=parent_id, log_model=s.log_model)
    [result] = runs.train(recording, runs.Batch(get_variant(s.variant), schema.KIND_TUNED, (unit,)))
    study.set_user_attr(schema.STUDY_TUNED_RUN_ID, result.run_id)
    study.set_user_attr(schema.STUDY_TUNED_TEST_ACCURACY, result.test_accuracy)
    return result.run_id, result.test_accuracy


def _select(repeats: Sequence[Target], first: TuneResult) -> TuneResult:
    """Re-evaluate the repeats' best trials on more seeds (or find that done), retrain the
    winner and test it once; the lock is held throughout, so two processes never both do."""
    s = repeats[0]
    stores = [load_study(r, create=False) for r in repeats]
    store = stores[0]
    cands = selection.candidates([st.study for st in stores], s.select_top)
    if not cands:
        progress.warning(
            "[%s] no trial completed in %d repeat(s): nothing to select", s.variant, len(repeats)
        )
        return first
    splits = load_splits(s)
    tracker = Tracker(s.tracking_uri, s.experiment)
    key = selection.record_key(cands, s)
    tuned_run_id, tuned_acc = None, None
    with (
        store.claim(),
        tracker.run(
            f"study-{s.study_name}", kind=schema.KIND_STUDY, resume_run_id=first.parent_run_id
        ) as parent_id,
    ):
        record = stored_selection(store.study)
        if record is None or record["key"] != key:
            progress.info(
                "[%s] selecting: %d candidates (the best of %d repeats and the default) x %d "
                "seeds, on validation",
                s.variant,
                len(cands),
                len(repeats),
                s.select_seeds,
            )
            start = _cpu_seconds()
            scores = selection.evaluate(s, cands, splits, tracker, parent_id)
            record = selection.make_record(
                s, cands, scores, [st.study for st in stores], _cpu_seconds() - start
            )
            store.study.set_user_attr(schema.STUDY_SELECTION, json.dumps(record))
        chosen = record["candidates"][record["chosen"]]
        _show_selection(s, record)
        if store.study_system_attrs().get(schema.STUDY_RETRAINED) != f"selection:{key}":
            progress.info(
                "[%s] retraining the selected %s and testing it once", s.variant, chosen["source"]
            )
            tuned_run_id, tuned_acc = _retrain(
                s, record["params"], chosen["source"], splits, tracker, parent_id, store.study
            )
            store.set_study_system_attr(schema.STUDY_RETRAINED, f"selection:{key}")
        study_log.log_selection(tracker, parent_id, record)
        log_report(tracker, parent_id)
        stopping.check()
    return dataclasses.replace(
        first,
        best_params=dict(record["params"]),
        best_value=float(chosen["mean"]),
        tuned_run_id=tuned_run_id,
        tuned_test_accuracy=tuned_acc,
        best_is_default=bool(chosen["default"]),
        selection=record,
    )


def _show_selection(s: Target, record: dict[str, object]) -> None:
    for i, c in enumerate(record["candidates"]):
        progress.info(
            "[%s] %s %s%s: trial %.4f, %d seeds %.4f%s",
            s.variant,
            "*" if i == record["chosen"] else " ",
            c["source"],
            " (default)" if c["default"] else "",
            c["tuning_value"],
            len(c["values"]),
            c["mean"],
            "  <- selected" if i == record["chosen"] else "",
        )
