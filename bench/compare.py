"""Train several variants side by side under one study and record them as one comparison."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import data, runs, stats, stopping, training
from bench.models import HParams, get_variant
from bench.plan import Plan
from bench.result import TrainResult
from bench.results import artifacts
from bench.results import table as tables
from bench.results.report import log_report
from bench.store import resume, schema, views
from bench.store.environment import environment_tags
from bench.store.reader import StoredRun
from bench.store.tracker import Tracker, check_store

LAYER = 9  # import layer (docs/development.md#layers): imports only lower layers' units

log = logging.getLogger(__name__)
progress = logging.getLogger("bench.progress")


def fingerprint(plan: Plan, splits: data.Splits, **logged: object) -> str:
    """What makes two comparisons the same: the protocol, every run's hyperparameters,
    the data's content and what is logged (``logged``). Its value tags the parent run, so
    that an interrupted comparison is found and resumed (:mod:`bench.store.resume`)."""
    return resume.fingerprint(
        {
            "params": comparison_params(plan, splits),
            "jobs": [(name, setting, hp.as_params()) for name, setting, hp in plan.jobs()],
            "data": [d.digest for d in artifacts.split_datasets(splits)],
            "logged": logged,
        }
    )


def comparison_params(plan: Plan, splits: data.Splits) -> dict[str, object]:
    """The parent run's params, namespaced ``protocol.*`` so they never collide with the
    raw entry-point params that ``mlflow run`` logs on the same run."""
    hp = plan.hparams
    values: dict[str, object] = {
        schema.STUDY: plan.study.name,
        schema.TASK: plan.task,
        schema.VARIANTS: ",".join(plan.variants),
        schema.EPOCHS: hp.epochs,
        schema.BATCH_SIZE: hp.batch_size,
        schema.OPTIMIZER: hp.optimizer,
        schema.LEARNING_RATE: "default" if hp.learning_rate is None else hp.learning_rate,
        schema.DROPOUT: "variant" if hp.dropout is None else hp.dropout,
        schema.SEEDS: len(plan.seeds),
        schema.VALIDATION_SIZE: plan.validation_size,
        schema.PREPROCESSING: splits.preprocessing,
        schema.DATA_SOURCE: splits.source,
        **schema.split_params(splits.sizes),
        **({schema.LIMIT: plan.limit} if plan.limit else {}),
        **plan.analysis_params(),
        **{
            f"{schema.OVERRIDE_PREFIX}{name}": ", ".join(
                f"{k}={v}"
                for k, v in one.as_params().items()
                if k != schema.SEED and v != hp.as_params().get(k)
            )
            for name, one in plan.per_variant
        },
    }
    return {f"{schema.PROTOCOL_PREFIX}{k}": v for k, v in values.items()}


@dataclass
class ComparisonResult:
    table: pd.DataFrame
    parent_run_id: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    results: list[TrainResult] = field(default_factory=list)
    side_by_side: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()
    summary: pd.DataFrame | None = None  # per variant and setting, over seeds
    rankings: dict[str, stats.Ranking] = field(default_factory=dict)
    resumed: int = 0  # runs kept from the interrupted comparison this one resumed
    run_ids: dict[str, str] = field(default_factory=dict)  # each row's run, by run name

    @property
    def failed(self) -> list[TrainResult]:
        return [r for r in self.results if not r.healthy]


def default_experiment(study, task: str) -> str:
    """The study's name; with another ``--task``, the study's name and that task (its runs
    never land among the study's own task's)."""
    return study.name if task == study.task else f"{study.name}-{task}"


def run_comparison(
    plan: Plan, *, log_models: bool | None = None, **changes: object
) -> ComparisonResult:
    """Train every (variant, seed) of ``plan`` under one parent run and log the table.
    ``changes`` replace the plan's values (``tracking_uri=...``, ``fresh=True``;
    ``log_models=False`` is ``no_model=True``).

    An interrupted comparison with the same fingerprint in the experiment is resumed: its
    finished runs are kept and only the rest is trained (``fresh``: start a new one anyway)."""
    if log_models is not None:
        changes["no_model"] = not log_models
    plan = plan.given(**changes)
    log_models, register = plan.log_model, bool(plan.value("register"))
    study = plan.study
    experiment, splits = _checked_inputs(plan)
    stopping.check()
    tracker = _open_tracker(plan, experiment)
    key = fingerprint(plan, splits, models=log_models, register=register)
    resumed = None if plan.value("fresh") else _resumable(tracker, key)
    stopping.check()  # opening the store takes seconds the first time
    with tracker.run(
        f"compare-{study.name}",
        kind=schema.KIND_COMPARISON,
        params=comparison_params(plan, splits),
        tags={
            schema.STUDY_TAG: study.name,
            schema.TASK_TAG: plan.task,
            schema.COMPARISON_KEY: key,
            **environment_tags(training.device_description()),
        },
        description=_description(plan),
        resume_run_id=resumed.parent_run_id if resumed else None,
    ) as parent_id:
        _save_view(tracker, plan, parent_id)
        kept = resumed.kept if resumed else {}
        results, outcome = _train_all(tracker, plan, splits, parent_id, log_models, register, kept)
        stopping.check()
        table = tables.run_table(outcome.rows)
        seed_stats = artifacts.SeedStatistics(table, plan.analysis())
        side_by_side = _log_outcome(tracker, parent_id, plan, splits, table, seed_stats, outcome)
        stopping.check()
    return ComparisonResult(
        table=table,
        side_by_side=side_by_side,
        parent_run_id=parent_id,
        experiment_id=tracker.experiment_id,
        experiment_name=tracker.experiment_name,
        tracking_uri=tracker.uri,
        results=results,
        notes=tuple(study.notes),
        summary=seed_stats.summary,
        rankings=seed_stats.rankings,
        resumed=len(kept),
        run_ids=outcome.run_ids,
    )


def _checked_inputs(plan: Plan) -> tuple[str, data.Splits]:
    """The experiment's name and the data. Everything that can fail on bad input fails here,
    before any run exists: the store first (nothing is written, not even the data cache, when
    it is unusable)."""
    for name in plan.variants:
        get_variant(name)
    experiment = plan.experiment or default_experiment(plan.study, plan.task)
    check_store(plan.tracking_uri, experiment)
    splits = data.load(
        plan.task,
        data_dir=plan.data_dir,
        validation_size=plan.validation_size,
        limit=plan.limit,
        standardize=plan.study.protocol.standardize,
    )
    return experiment, splits


def _open_tracker(plan: Plan, experiment: str) -> Tracker:
    """The experiment's tracker, runs a killed bench process left RUNNING closed as FAILED."""
    tracker = Tracker(
        plan.tracking_uri, experiment, description=plan.study.description, checked=True
    )
    stale = tracker.close_stale_runs(schema.COMPARISON_KINDS)
    if stale:
        progress.warning(
            "closed %d run(s) left RUNNING by a killed bench process as FAILED: %s",
            len(stale),
            ", ".join(stale),
        )
    return tracker


def _description(plan: Plan, results: str = "") -> str:
    """The parent run's description: the study's, its results once known (the run page shows
    them first), then the notes on the protocol (reports read them back from there)."""
    study = plan.study
    notes = "\n\nNotes:\n" + "\n".join(f"- {n}" for n in study.notes) if study.notes else ""
    text = study.description + (f"\n\n{results}" if results else "") + notes
    if len(text) > schema.MAX_TAG_VALUE:  # the notes stay whole: the results give way
        pointer = "Results: summary.csv, comparison.csv and report/report.html."
        text = f"{study.description}\n\n{pointer}{notes}"
    return text


def _save_view(tracker: Tracker, plan: Plan, parent_id: str) -> None:
    """The saved view the printed link opens: the comparison's runs grouped by variant (and
    setting, with tuned runs), their validation accuracy and loss curves side by side."""
    group_by = [(views.BY_TAG, schema.VARIANT_TAG)]
    if plan.tuned:
        group_by.append((views.BY_PARAM, schema.SETTING))
    view = views.runs_view(
        f"compare-{plan.study.name} ({parent_id[:8]})",
        views.children_filter(parent_id),
        group_by,
        best_first=schema.TEST_ACCURACY,
        columns=(schema.TEST_ACCURACY, schema.BEST_VAL_ACCURACY),
    )
    tracker.save_view(parent_id, view)


def _resumable(tracker: Tracker, key: str) -> resume.Resumable | None:
    """The interrupted comparison with fingerprint ``key`` to go on with, if any, its
    unfinished runs deleted. Under ``mlflow run``, whose run must become the parent, none."""
    found = resume.find(tracker, key)
    if found is None:
        return None
    if tracker.adopts:
        progress.warning(
            "comparison %s with these plan was interrupted; not resumed under `mlflow run`, which "
            "created a new parent run (run `bench compare` with the same options to resume it)",
            found.parent_run_id,
        )
        return None
    resume.prepare(tracker, found)
    progress.info(
        "resuming comparison %s (%s): %d finished run(s) kept%s",
        found.parent_run_id,
        found.status.lower(),
        len(found.kept),
        f", {len(found.discarded)} unfinished deleted ({', '.join(found.discarded)})"
        if found.discarded
        else "",
    )
    return found


@dataclass
class _Outcome:
    """Every run of a comparison, trained now or kept from the interrupted one, in job order."""

    rows: list[dict[str, object]] = field(default_factory=list)
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)  # by run name


def _train_all(
    tracker: Tracker,
    plan: Plan,
    splits: data.Splits,
    parent_id: str,
    log_models: bool,
    register: bool,
    kept: Mapping[str, StoredRun],
) -> tuple[list[TrainResult], _Outcome]:
    """Every run of the comparison not in ``kept``, recorded by the run service as child runs
    (a variant's seeds trained together, a tuned setting that kept the default logged again);
    then every run's row and curves, the kept ones' read from the store."""
    study = plan.study
    jobs = [
        (name, setting, hp, plan.run_name(name, hp.seed, setting))
        for name, setting, hp in plan.jobs()
    ]
    progress.info(
        "comparison %s: %d runs (%d variants x %d seeds%s) on %s [%s]%s",
        study.name,
        len(jobs),
        len(plan.variants),
        len(plan.seeds),
        ", default and tuned" if plan.tuned else "",
        plan.task,
        ", ".join(f"{k} {v}" for k, v in splits.sizes.items()),
        f"; {len(kept)} already finished" if kept else "",
    )
    position = {run: i + 1 for i, (*_, run) in enumerate(jobs)}
    batches = []
    for vname, setting, members in plan.populations():
        units = [_unit(plan, vname, setting, hp, register) for hp in members]
        units = [
            dataclasses.replace(u, label=f"[{position[u.run_name]}/{len(jobs)}] {u.run_name}")
            for u in units
            if u.run_name not in kept
        ]
        if units:
            kind = schema.KIND_TRAIN if setting == schema.SETTING_DEFAULT else schema.KIND_TUNED
            batches.append((setting, runs.Batch(get_variant(vname), kind, tuple(units))))
    recorded = runs.record(
        runs.Recording(tracker, splits, parent_run_id=parent_id, log_model=log_models),
        [batch for _, batch in batches],
    )
    trained: dict[str, tuple[TrainResult, dict[str, object]]] = {}
    for (setting, batch), results in zip(batches, recorded, strict=True):
        reference = _reference(plan, batch.variant.name)
        for unit, result in zip(batch.units, results, strict=True):
            trained[unit.run_name] = (
                result,
                tables.row_from_result(result, unit.run_name, setting, reference),
            )
    return [result for result, _ in trained.values()], _collect(jobs, trained, kept)


def _collect(
    jobs: list[tuple],
    trained: Mapping[str, tuple[TrainResult, dict[str, object]]],
    kept: Mapping[str, StoredRun],
) -> _Outcome:
    """Every job's row and curves in job order: trained now, else read from the kept run."""
    outcome = _Outcome()
    for vname, _, _, name in jobs:
        if name in trained:
            outcome.rows.append(trained[name][1])
            outcome.histories[name] = trained[name][0].history
            outcome.run_ids[name] = trained[name][0].run_id or ""
        else:
            outcome.rows.append(tables.row_from_stored(kept[name]))
            outcome.histories[name] = kept[name].histories
            outcome.run_ids[name] = kept[name].run_id
        outcome.groups[name] = get_variant(vname).group
    return outcome


def _reference(plan: Plan, variant: str):
    """The notebook's numbers for ``variant``: for the study's own task only, never beside
    another task's results."""
    return plan.study.references.get(variant) if plan.task == plan.study.task else None


def _unit(plan: Plan, variant: str, setting: str, hp: HParams, register: bool) -> runs.Unit:
    """One run of the comparison: its name, params and model."""
    name = plan.run_name(variant, hp.seed, setting)
    params = {
        schema.STUDY: plan.study.name,
        schema.SETTING: setting,
        **_origin(plan, variant, setting),
    }
    return runs.Unit(
        hp,
        name,
        params=params,
        tags=tables.reference_tags(_reference(plan, variant)),
        naming=_naming(variant, setting, hp.seed, plan, register),
    )


def _origin(plan: Plan, variant: str, setting: str) -> dict[str, object]:
    """A tuned run's ``tuned_from`` param (the Optuna study and trial its hyperparameters are)
    and its tuning record (``tuning_record.*``: repeats, their winners, what tuning cost)."""
    if setting != schema.SETTING_TUNED:
        return {}
    origin = dict(plan.tuned_from).get(variant)
    record = dict(plan.tuned_record).get(variant, {})
    return {
        **({schema.TUNED_FROM: origin} if origin else {}),
        **{f"{schema.TUNING_RECORD_PREFIX}{k}": v for k, v in record.items()},
    }


def _naming(
    variant: str, setting: str, seed: int, plan: Plan, register: bool
) -> artifacts.ModelNaming:
    """A run's model: named for its variant (and setting, where tuned); with ``--register``
    a version of ``<task>-<variant>``, the first seed's carrying the alias ``default`` or
    ``tuned``."""
    name = variant if setting == schema.SETTING_DEFAULT else f"{variant}-{setting}"
    if not register:
        return artifacts.ModelNaming(name)
    alias = setting if seed == plan.seeds[0] else None
    return artifacts.ModelNaming(name, registered=f"{plan.task}-{variant}", alias=alias)


def _log_outcome(
    tracker: Tracker,
    parent_id: str,
    plan: Plan,
    splits: data.Splits,
    table: pd.DataFrame,
    seed_stats: artifacts.SeedStatistics,
    outcome: _Outcome,
) -> pd.DataFrame | None:
    """The comparison's tables, figures, statistics and report on its parent run."""
    study = plan.study
    side_by_side = tables.tuned_vs_default(table, dict(plan.tuned))
    if side_by_side is not None:
        tracker.log_text(parent_id, side_by_side.to_csv(index=False), "tuned_vs_default.csv")
        tracker.log_text(parent_id, tables.to_markdown(side_by_side), "tuned_vs_default.md")
    artifacts.log_comparison(
        tracker,
        parent_id,
        table,
        outcome.histories,
        outcome.groups,
        title=study.name,
        splits=splits,
        notes=study.notes,
        reference_source=study.reference_source,
        seed_statistics=seed_stats,
    )
    healthy = table[table["status"] == "ok"]["test_accuracy"].dropna()
    tracker.set_tags(parent_id, {schema.UNHEALTHY_RUNS: str(int((table["status"] != "ok").sum()))})
    if len(healthy):
        tracker.log_metrics(parent_id, {schema.BEST_TEST_ACCURACY: float(np.max(healthy))})
    results = artifacts.results_markdown(table, seed_stats)
    tracker.set_tags(parent_id, {schema.MLFLOW_NOTE: _description(plan, results)})
    log_report(tracker, parent_id)
    return side_by_side
