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
from bench.result import TrainResult
from bench.results import artifacts
from bench.results import table as tables
from bench.results.report import log_report
from bench.store import resume, schema
from bench.store.environment import environment_tags
from bench.store.reader import StoredRun
from bench.store.tracker import Tracker, check_store
from bench.studies import Study, resolve

log = logging.getLogger(__name__)
progress = logging.getLogger("bench.progress")


@dataclass(frozen=True)
class Settings:
    """A study after command-line overrides: exactly what will be run."""

    study: Study
    task: str
    variants: tuple[str, ...]
    hparams: HParams
    seeds: tuple[int, ...]
    validation_size: int
    limit: int | None = None
    tuned: tuple[tuple[str, dict[str, object]], ...] = ()  # variant -> tuned hyperparameters
    tuned_from: tuple[tuple[str, str], ...] = ()  # variant -> the Optuna study and trial they come from
    tuned_record: tuple[tuple[str, dict[str, object]], ...] = ()  # variant -> its tuning's repeats and cost
    per_variant: tuple[tuple[str, HParams], ...] = ()  # the study's overrides, after the CLI's

    @classmethod
    def from_study(
        cls,
        study: Study,
        *,
        task: str | None = None,
        variants: str | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        seeds: int | None = None,
        learning_rate: float | None = None,
        validation_size: int | None = None,
        limit: int | None = None,
    ) -> Settings:
        r = resolve(
            study, task=task, variants=variants, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, seeds=seeds, validation_size=validation_size,
        )
        return cls(
            study=study, task=r.task, variants=r.variants, hparams=r.hparams, seeds=r.seeds,
            validation_size=r.validation_size, limit=limit, per_variant=r.per_variant,
        )

    def hparams_for(self, variant: str) -> HParams:
        return dict(self.per_variant).get(variant, self.hparams)

    def run_name(self, variant: str, seed: int, setting: str = schema.SETTING_DEFAULT) -> str:
        name = schema.display_key(variant, setting)
        return name if len(self.seeds) == 1 else f"{name}/s{seed}"

    def populations(self) -> list[tuple[str, str, list[HParams]]]:
        """(variant, setting, one member per seed): each variant's default runs, then its tuned
        runs. Seed s of every variant starts from the same seed and reads the data in the same
        order (the pairing the over-seeds statistics rely on)."""
        tuned = dict(self.tuned)
        out = []
        for name in self.variants:
            base = self.hparams_for(name)
            out.append((name, schema.SETTING_DEFAULT, [base.replace(seed=seed) for seed in self.seeds]))
            if name in tuned:
                setting = [dataclasses.replace(base, seed=seed, **tuned[name]) for seed in self.seeds]
                out.append((name, schema.SETTING_TUNED, setting))
        return out

    def jobs(self) -> list[tuple[str, str, HParams]]:
        """(variant, setting, hyperparameters) for every run, in the order they are trained."""
        return [(name, setting, hp) for name, setting, members in self.populations() for hp in members]

    def fingerprint(self, splits: data.Splits, **logged: object) -> str:
        """What makes two comparisons the same: the protocol, every run's hyperparameters,
        the data's content and what is logged (``logged``). Its value tags the parent run, so
        that an interrupted comparison is found and resumed (:mod:`bench.store.resume`)."""
        return resume.fingerprint({
            "params": self.params(splits),
            "jobs": [(name, setting, hp.as_params()) for name, setting, hp in self.jobs()],
            "data": [d.digest for d in artifacts.split_datasets(splits)],
            "logged": logged,
        })

    def params(self, splits: data.Splits) -> dict[str, object]:
        """The parent run's params, namespaced ``protocol.*`` so they never collide with the
        raw entry-point params that ``mlflow run`` logs on the same run."""
        hp = self.hparams
        values: dict[str, object] = {
            schema.STUDY: self.study.name,
            schema.TASK: self.task,
            schema.VARIANTS: ",".join(self.variants),
            schema.EPOCHS: hp.epochs,
            schema.BATCH_SIZE: hp.batch_size,
            schema.OPTIMIZER: hp.optimizer,
            schema.LEARNING_RATE: "default" if hp.learning_rate is None else hp.learning_rate,
            schema.DROPOUT: "variant" if hp.dropout is None else hp.dropout,
            schema.SEEDS: len(self.seeds),
            schema.VALIDATION_SIZE: self.validation_size,
            schema.PREPROCESSING: splits.preprocessing,
            schema.DATA_SOURCE: splits.source,
            **_split_params(splits),
            **({schema.LIMIT: self.limit} if self.limit else {}),
            **self.study.analysis_params(self.variants),
            **{
                f"{schema.OVERRIDE_PREFIX}{name}": ", ".join(
                    f"{k}={v}" for k, v in hp.as_params().items()
                    if k != schema.SEED and v != self.hparams.as_params()[k]
                )
                for name, hp in self.per_variant
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

    @property
    def failed(self) -> list[TrainResult]:
        return [r for r in self.results if not r.healthy]


def _split_params(splits: data.Splits) -> dict[str, object]:
    return {f"{schema.SPLIT_PREFIX}{k}": v for k, v in splits.sizes.items()}


def default_experiment(study, task: str) -> str:
    """The study's name; with another ``--task``, the study's name and that task (its runs
    never land among the study's own task's)."""
    return study.name if task == study.task else f"{study.name}-{task}"


def run_comparison(
    settings: Settings,
    *,
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    log_models: bool = True,
    register: bool = False,
    fresh: bool = False,
) -> ComparisonResult:
    """Train every (variant, seed) of ``settings`` under one parent run and log the table.

    An interrupted comparison with the same fingerprint in the experiment is resumed: its
    finished runs are kept and only the rest is trained (``fresh``: start a new one anyway)."""
    study = settings.study
    # Everything that can fail on bad input fails here, before any run exists: the store
    # first (nothing is written, not even the data cache, when it is unusable).
    for name in settings.variants:
        get_variant(name)
    experiment = experiment or default_experiment(study, settings.task)
    check_store(tracking_uri, experiment)
    splits = data.load(
        settings.task, data_dir=data_dir, validation_size=settings.validation_size,
        limit=settings.limit, standardize=study.protocol.standardize,
    )
    stopping.check()
    tracker = Tracker(tracking_uri, experiment, description=study.description, checked=True)
    stale = tracker.close_stale_runs(schema.COMPARISON_KINDS)
    if stale:
        progress.warning(
            "closed %d run(s) left RUNNING by a killed bench process as FAILED: %s", len(stale), ", ".join(stale)
        )
    key = settings.fingerprint(splits, models=log_models, register=register)
    resumed = None if fresh else _resumable(tracker, key)
    description = study.description + (
        "\n\nNotes:\n" + "\n".join(f"- {n}" for n in study.notes) if study.notes else ""
    )
    stopping.check()  # opening the store takes seconds the first time
    with tracker.run(
        f"compare-{study.name}",
        kind=schema.KIND_COMPARISON,
        params=settings.params(splits),
        tags={schema.STUDY_TAG: study.name, schema.TASK_TAG: settings.task, schema.COMPARISON_KEY: key,
              **environment_tags(training.device_description())},
        description=description,
        resume_run_id=resumed.parent_run_id if resumed else None,
    ) as parent_id:
        kept = resumed.kept if resumed else {}
        results, outcome = _train_all(tracker, settings, splits, parent_id, log_models, register, kept)
        stopping.check()
        table = tables.run_table(outcome.rows)
        seed_stats = artifacts.SeedStatistics(table, study.analysis(settings.variants))
        side_by_side = _log_outcome(tracker, parent_id, settings, splits, table, seed_stats, outcome)
        stopping.check()
    return ComparisonResult(
        table=table, side_by_side=side_by_side, parent_run_id=parent_id, experiment_id=tracker.experiment_id,
        experiment_name=tracker.experiment_name, tracking_uri=tracker.uri, results=results,
        notes=tuple(study.notes), summary=seed_stats.summary, rankings=seed_stats.rankings, resumed=len(kept),
    )


def _resumable(tracker: Tracker, key: str) -> resume.Resumable | None:
    """The interrupted comparison with fingerprint ``key`` to go on with, if any, its
    unfinished runs deleted. Under ``mlflow run``, whose run must become the parent, none."""
    found = resume.find(tracker, key)
    if found is None:
        return None
    if tracker.adopts:
        progress.warning(
            "comparison %s with these settings was interrupted; not resumed under `mlflow run`, which "
            "created a new parent run (run `bench compare` with the same options to resume it)", found.parent_run_id,
        )
        return None
    resume.prepare(tracker, found)
    progress.info(
        "resuming comparison %s (%s): %d finished run(s) kept%s", found.parent_run_id, found.status.lower(),
        len(found.kept),
        f", {len(found.discarded)} unfinished deleted ({', '.join(found.discarded)})" if found.discarded else "",
    )
    return found


@dataclass
class _Outcome:
    """Every run of a comparison, trained now or kept from the interrupted one, in job order."""

    rows: list[dict[str, object]] = field(default_factory=list)
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)


def _train_all(
    tracker: Tracker, settings: Settings, splits: data.Splits, parent_id: str, log_models: bool, register: bool,
    kept: Mapping[str, StoredRun],
) -> tuple[list[TrainResult], _Outcome]:
    """Every run of the comparison not in ``kept``, recorded by the run service as child runs
    (a variant's seeds trained together, a tuned setting that kept the default logged again);
    then every run's row and curves, the kept ones' read from the store."""
    study = settings.study
    jobs = [(name, setting, hp, settings.run_name(name, hp.seed, setting)) for name, setting, hp in settings.jobs()]
    progress.info(
        "comparison %s: %d runs (%d variants x %d seeds%s) on %s [%s]%s",
        study.name, len(jobs), len(settings.variants), len(settings.seeds),
        ", default and tuned" if settings.tuned else "", settings.task,
        ", ".join(f"{k} {v}" for k, v in splits.sizes.items()),
        f"; {len(kept)} already finished" if kept else "",
    )
    position = {run: i + 1 for i, (*_, run) in enumerate(jobs)}
    batches = []
    for vname, setting, members in settings.populations():
        units = [_unit(settings, vname, setting, hp, register) for hp in members]
        units = [dataclasses.replace(u, label=f"[{position[u.run_name]}/{len(jobs)}] {u.run_name}")
                 for u in units if u.run_name not in kept]
        if units:
            kind = schema.KIND_TRAIN if setting == schema.SETTING_DEFAULT else schema.KIND_TUNED
            batches.append((setting, runs.Batch(get_variant(vname), kind, tuple(units))))
    recorded = runs.record(runs.Recording(tracker, splits, parent_run_id=parent_id, log_model=log_models),
                           [batch for _, batch in batches])
    trained: dict[str, tuple[TrainResult, dict[str, object]]] = {}
    for (setting, batch), results in zip(batches, recorded, strict=True):
        reference = _reference(settings, batch.variant.name)
        for unit, result in zip(batch.units, results, strict=True):
            trained[unit.run_name] = (result, tables.row_from_result(result, unit.run_name, setting, reference))
    outcome = _Outcome()
    for vname, _, _, name in jobs:
        if name in trained:
            outcome.rows.append(trained[name][1])
            outcome.histories[name] = trained[name][0].history
        else:
            outcome.rows.append(tables.row_from_stored(kept[name]))
            outcome.histories[name] = kept[name].histories
        outcome.groups[name] = get_variant(vname).group
    return [result for result, _ in trained.values()], outcome


def _reference(settings: Settings, variant: str):
    """The notebook's numbers for ``variant``: for the study's own task only, never beside
    another task's results."""
    return settings.study.references.get(variant) if settings.task == settings.study.task else None


def _unit(settings: Settings, variant: str, setting: str, hp: HParams, register: bool) -> runs.Unit:
    """One run of the comparison: its name, params and model."""
    name = settings.run_name(variant, hp.seed, setting)
    params = {schema.STUDY: settings.study.name, schema.SETTING: setting,
              **tables.reference_params(_reference(settings, variant)), **_origin(settings, variant, setting)}
    return runs.Unit(hp, name, params=params,
                     naming=_naming(variant, setting, hp.seed, settings, register))


def _origin(settings: Settings, variant: str, setting: str) -> dict[str, object]:
    """A tuned run's ``tuned_from`` param (the Optuna study and trial its hyperparameters are)
    and its tuning record (``tuning_record.*``: repeats, their winners, what tuning cost)."""
    if setting != schema.SETTING_TUNED:
        return {}
    origin = dict(settings.tuned_from).get(variant)
    record = dict(settings.tuned_record).get(variant, {})
    return {**({schema.TUNED_FROM: origin} if origin else {}),
            **{f"{schema.TUNING_RECORD_PREFIX}{k}": v for k, v in record.items()}}


def _naming(variant: str, setting: str, seed: int, settings: Settings, register: bool) -> artifacts.ModelNaming:
    """A run's model: named for its variant (and setting, where tuned); with ``--register``
    a version of ``<task>-<variant>``, the first seed's carrying the alias ``default`` or
    ``tuned``."""
    name = variant if setting == schema.SETTING_DEFAULT else f"{variant}-{setting}"
    if not register:
        return artifacts.ModelNaming(name)
    alias = setting if seed == settings.seeds[0] else None
    return artifacts.ModelNaming(name, registered=f"{settings.task}-{variant}", alias=alias)


def _log_outcome(
    tracker: Tracker, parent_id: str, settings: Settings, splits: data.Splits, table: pd.DataFrame,
    seed_stats: artifacts.SeedStatistics, outcome: _Outcome,
) -> pd.DataFrame | None:
    """The comparison's tables, figures, statistics and report on its parent run."""
    study = settings.study
    side_by_side = tables.tuned_vs_default(table, dict(settings.tuned))
    if side_by_side is not None:
        tracker.log_text(parent_id, side_by_side.to_csv(index=False), "tuned_vs_default.csv")
        tracker.log_text(parent_id, tables.to_markdown(side_by_side), "tuned_vs_default.md")
    artifacts.log_comparison(
        tracker, parent_id, table, outcome.histories, outcome.groups,
        title=study.name, splits=splits, notes=study.notes, reference_source=study.reference_source,
        seed_statistics=seed_stats,
    )
    healthy = table[table["status"] == "ok"]["test_accuracy"].dropna()
    tracker.set_tags(parent_id, {schema.UNHEALTHY_RUNS: str(int((table["status"] != "ok").sum()))})
    if len(healthy):
        tracker.log_metrics(parent_id, {schema.BEST_TEST_ACCURACY: float(np.max(healthy))})
    log_report(tracker, parent_id)
    return side_by_side
