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
from bench import data, runs, stopping, training
from bench.errors import BenchError, NoStudyError, StorageError
from bench.models import HParams, get_variant
from bench.plan import Plan
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
from bench.tuning.target import Target, check_identity, load_splits, targets
from bench.tuning.worker import best_trial, counts, fail_stale_trials, load_study

log = logging.getLogger(__name__)
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


def tuned_plan(plan: Plan) -> Plan:
    """``plan`` also running each variant's tuned setting, found in its Optuna study."""
    return plan.with_tuned(best_params(plan))


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
    if workers <= 0:
        raise BenchError(f"--workers must be > 0, got {workers}")
    if workers > 1 and not supports_concurrency(s.storage):
        raise StorageError(
            f"{redact(s.storage)}: SQLite does not tolerate concurrent writers; with --workers use "
            "the default journal file, a journal:/// URL or PostgreSQL"
        )
    splits = load_splits(s)
    # The tracking store first: a bad one fails before the Optuna study exists.
    tracker = Tracker(s.tracking_uri, s.experiment, description=s.study.description)
    store = load_study(s, create=True)
    study = store.study
    parent_id, fresh = _open_parent(s, store, tracker)
    study.set_user_attr(schema.STUDY_TASK, s.task)
    study.set_user_attr(schema.STUDY_VARIANT, s.variant)
    record_settings(study, s)
    c = counts(study)
    progress.info(
        "tuning %s on %s: study %r in %s, %d finished trials wanted (%d done), %d epochs each, pruner %s%s",
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
    with tracker.run(
        f"study-{s.study_name}",
        kind=schema.KIND_STUDY,
        resume_run_id=parent_id,
        params=_study_params(s, splits) if fresh else None,
        tags={
            schema.OPTUNA_STUDY: s.study_name,
            schema.VARIANT_TAG: s.variant,
            schema.TASK_TAG: s.task,
            **environment_tags(training.device_description()),
        },
        description=f"Optuna study {s.study_name}: {s.variant} on {s.task}",
    ) as parent_id:
        study.set_user_attr(schema.STUDY_PARENT_RUN_ID, parent_id)
        with _counting_cpu(store):
            _run_workers(
                s, workers, lambda: make_worker(s, splits, tracker, store, parent_id), parent_id
            )
        fail_stale_trials(store, tracker, s.grace)
        running = {
            t.user_attrs.get(schema.TRIAL_RUN_ID)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        }
        tracker.close_stale_children(parent_id, running)
        if retrain:
            final, best, tuned_run_id, tuned_acc = _retrain_once(
                s, store, splits, tracker, parent_id
            )
        else:
            final, best, tuned_run_id, tuned_acc = counts(study), best_trial(study), None, None
        stopping.check()
        _log_study(tracker, parent_id, study, final, best, tuned_acc)
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


def _study_params(s: Target, splits: data.Splits) -> dict[str, object]:
    """The parent run's params, namespaced ``tuning.*`` so they never collide with the raw
    entry-point params ``mlflow run`` logs on the same run."""
    params = {
        schema.OPTUNA_STUDY: s.study_name,
        schema.OPTUNA_STORAGE: redact(s.storage),
        schema.VARIANT: s.variant,
        schema.TASK: s.task,
        schema.TRIALS: s.trials,
        schema.EPOCHS: s.epochs,
        schema.SAMPLER: "TPESampler (seed + trial number, constant liar)",
        schema.SAMPLER_SEED: s.seed,
        schema.PRUNER: s.pruner,
        schema.PRUNER_MIN_EPOCHS: s.min_epochs,
        schema.OBJECTIVE_DEFINITION: (
            "val_accuracy (best epoch, whose weights the model keeps)"
            if s.base.restore_best
            else "val_accuracy (last epoch)"
        ),
        schema.SEARCH_SPACE: s.study.search_space.model_dump_json(exclude_none=True),
        **{f"{schema.BASE_PREFIX}{k}": v for k, v in s.base.as_params().items()},
        **schema.split_params(splits.sizes),
    }
    return {f"{schema.TUNING_PREFIX}{k}": v for k, v in params.items()}


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


def tuned_hparams(s: Target, study: optuna.Study | None = None) -> HParams | None:
    """The best trial's hyperparameters (None when the study has no complete trial)."""
    study = study or load_study(s, create=False).study
    best = best_trial(study)
    if best is None:
        return None
    return dataclasses.replace(s.base, **{k: v for k, v in best.params.items()})


@dataclass(frozen=True)
class Tuned:
    """A variant's tuned hyperparameters and where they come from (``<study> trial <n>``)."""

    params: dict[str, object]
    origin: str
    record: dict[str, object] = dataclasses.field(
        default_factory=dict
    )  # selection.summary, if selected


def best_params(plan: Plan) -> dict[str, Tuned]:
    """Each variant's best hyperparameters from its Optuna study (for ``compare --tuned``)."""
    planned = targets(plan)
    found, missing = {}, []
    for s in planned:
        if s.repeat:
            continue  # repeat 0's study holds the selection over every repeat
        try:
            store = load_study(s, create=False)
        except NoStudyError:
            best, record = None, None
        else:
            check_identity(
                s, store.storage
            )  # a study of another variant or task is an error, not "missing"
            best, record = best_trial(store.study), stored_selection(store.study)
        if record is not None:
            chosen = record["candidates"][record["chosen"]]
            found[s.variant] = Tuned(
                dict(record["params"]),
                f"{chosen['source']}, selected over {len(record['repeats'])} repeats",
                selection.summary(record),
            )
        elif best is None:
            missing.append(f"{s.variant} (study {s.study_name!r})")
        else:
            found[s.variant] = Tuned(dict(best.params), f"{s.study_name} trial {best.number}")
    if missing:
        raise BenchError(
            f"no tuned hyperparameters in {redact(planned[0].storage)} for: {', '.join(missing)}; "
            "run `bench tune` first with the same --study/--task/--storage"
        )
    return found


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


def stored_selection(study: optuna.Study) -> dict[str, object] | None:
    """Repeat 0's selection record (:mod:`bench.tuning.selection`), if one was made."""
    text = study.user_attrs.get(schema.STUDY_SELECTION)
    return json.loads(text) if text else None


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
                "[%s] selecting: %d candidates (the best of %d repeats and the default) x %d seeds, on validation",
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
        _log_selection(tracker, parent_id, record)
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


def _log_selection(tracker: Tracker, run_id: str, record: dict[str, object]) -> None:
    """The selection on repeat 0's parent run: a table of candidates and the summary as params."""
    import pandas as pd

    rows = [
        {
            "candidate": c["source"],
            "default": c["default"],
            "trial_val_accuracy": c["tuning_value"],
            "mean_val_accuracy": c["mean"],
            "seeds": len(c["values"]),
            "selected": i == record["chosen"],
            **c["params"],
        }
        for i, c in enumerate(record["candidates"])
    ]
    tracker.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), "selection.csv")
    tracker.log_text(run_id, json.dumps(record, indent=1, sort_keys=True), "selection.json")
    tracker.set_tags(
        run_id,
        {f"{schema.TUNING_RECORD_PREFIX}{k}": v for k, v in selection.summary(record).items()},
    )


def _log_study(
    tracker: Tracker,
    run_id: str,
    study: optuna.Study,
    final: dict[str, int],
    best: FrozenTrial | None,
    tuned_acc: float | None,
) -> None:
    """Counts, best trial, Optuna's own figures and a CSV of all trials on the parent run."""
    import warnings

    import optuna.visualization.matplotlib as ovm

    metrics: dict[str, float] = {
        f"{schema.TRIALS_PREFIX}{k}": float(v) for k, v in final.items() if k != "running"
    }
    if best is not None:
        metrics[schema.BEST_VAL_ACCURACY] = float(best.value)
        metrics[schema.BEST_TRIAL_METRIC] = float(best.number)
        tracker.set_tags(run_id, {f"{schema.BEST_PREFIX}{k}": v for k, v in best.params.items()})
    if tuned_acc is not None:
        metrics[schema.TUNED_TEST_ACCURACY] = tuned_acc
    tracker.log_metrics(run_id, metrics)
    frame = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "user_attrs", "duration")
    )
    tracker.log_text(run_id, frame.to_csv(index=False), "trials.csv")
    for name in schema.OPTUNA_FIGURES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = getattr(ovm, f"plot_{name}")(study)
            except Exception as exc:  # noqa: BLE001 - e.g. too few complete trials
                log.info("figure %s skipped: %s", name, exc)
                continue
            first = ax.flat[0] if hasattr(ax, "flat") else ax
            fig = first.figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
        tracker.log_figure(run_id, fig, schema.optuna_figure(name))
