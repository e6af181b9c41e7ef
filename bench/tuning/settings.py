"""A tuning run's settings: one :class:`TuneSettings` per (task, variant) study."""

from __future__ import annotations

from dataclasses import dataclass

from bench import data
from bench.errors import BenchError, StorageError
from bench.models import HParams
from bench.store import schema
from bench.store.tracker import check_store
from bench.store.uri import check_name, redact, resolve_tracking_uri
from bench.studies import Study, resolve
from bench.tuning.storage import default_storage, open_storage, storage_exists

HEARTBEAT_SECONDS = 20.0
GRACE_SECONDS = 300.0  # a trial on another host is stale after this long without a heartbeat


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
    min_epochs: int  # the pruner's first judgement, after this many epochs (at most `epochs`)
    validation_size: int
    data_dir: str | None
    tracking_uri: str
    experiment: str
    timeout: float | None = None
    limit: int | None = None
    heartbeat: float = HEARTBEAT_SECONDS
    grace: float = GRACE_SECONDS
    population: int | None = None  # trials trained at once per worker; None: by device (bench.population.sizing)


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
    population: int | None = None,
) -> list[TuneSettings]:
    """One study per variant, with the study file's protocol after the command line's values
    (:func:`bench.studies.resolve`, as ``bench compare`` applies them)."""
    if trials is not None and trials <= 0:
        raise BenchError(f"--trials must be > 0, got {trials}")
    if population is not None and population <= 0:
        raise BenchError(f"--population must be > 0, got {population}")
    resolved = resolve(
        study, task=task, variants=variants, epochs=epochs or study.tuning.epochs, validation_size=validation_size
    )
    url = storage or default_storage(tracking_uri)
    uri = resolve_tracking_uri(tracking_uri)
    suffix = "" if resolved.task == study.task else f"-{resolved.task}"  # another task: its own experiment
    out = []
    for name in resolved.variants:
        if study_name:
            sname = study_name if len(variants) == 1 else f"{study_name}-{name}"
        else:
            sname = f"{study.name}-{resolved.task}-{name}"
        check_name(sname, "Optuna study")
        base = resolved.hparams_for(name)
        out.append(
            TuneSettings(
                study=study, variant=name, task=resolved.task, trials=trials or study.tuning.trials,
                epochs=base.epochs, base=base, storage=url, study_name=sname, seed=seed,
                pruner=pruner or study.tuning.pruner, min_epochs=min(study.tuning.min_epochs, base.epochs),
                validation_size=resolved.validation_size,
                data_dir=data_dir, tracking_uri=uri, experiment=experiment or f"{study.name}{suffix}-tuning",
                timeout=timeout, limit=limit, population=population,
            )
        )
    return out


def load_splits(s: TuneSettings) -> data.Splits:
    return data.load(
        s.task, data_dir=s.data_dir, validation_size=s.validation_size, limit=s.limit,
        standardize=s.study.protocol.standardize,
    )


def check(s: TuneSettings) -> None:
    """Fail on unusable data or Optuna storage before anything is written (the tracking
    store is checked when the study opens it, before the Optuna study exists)."""
    check_store(s.tracking_uri, s.experiment)  # first: nothing (not even the data cache) is written for a bad store
    if storage_exists(s.storage):  # read what is there before anything is written
        check_identity(s, open_storage(s.storage))
    load_splits(s)
    if not storage_exists(s.storage):
        open_storage(s.storage)


def check_identity(s: TuneSettings, storage) -> None:
    """A study name already in the storage must belong to the same variant and task: reusing
    it for another would mix their trials and report one's best as the other's."""
    try:
        study_id = storage.get_study_id_from_name(s.study_name)
    except KeyError:
        return  # a new study
    attrs = storage.get_study_user_attrs(study_id)
    for key, wanted, what in ((schema.STUDY_VARIANT, s.variant, "variant"), (schema.STUDY_TASK, s.task, "task")):
        held = attrs.get(key)
        if held is not None and held != wanted:
            raise StorageError(
                f"Optuna study {s.study_name!r} in {redact(s.storage)} tunes {what} {held!r}, not {wanted!r}; "
                "name another study with --study-name (or leave it out for one per variant and task)"
            )
