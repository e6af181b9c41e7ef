"""A tuning run's settings: one :class:`TuneSettings` per (task, variant) study."""

from __future__ import annotations

from dataclasses import dataclass

from bench import data
from bench.errors import BenchError, StorageError
from bench.models import HParams
from bench.models.spec import MAX_SEED
from bench.store import schema
from bench.store.tracker import check_store
from bench.store.uri import check_name, redact, resolve_tracking_uri
from bench.studies import Study, resolve
from bench.tuning.identity import check_resumable
from bench.tuning.storage import check_storage, default_storage, open_storage, storage_exists

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
    repeat: int = 0  # this study is the variant's repeat `repeat` of `repeats` (sampler seeds apart)
    repeats: int = 1
    select_top: int = 3
    select_seeds: int = 0  # 0: no selection, the best trial is the tuned setting
    first_study: str = ""  # repeat 0's study name: where the selection over the repeats is kept
    log_model: bool = True  # the retrained tuned model logged (and registered)

    @property
    def selects(self) -> bool:
        """Whether the tuned setting is chosen by re-training the top trials on more seeds."""
        return self.select_seeds > 0


#: Repeat r's sampler seed is ``seed + r * REPEAT_STRIDE``: far enough apart that no two
#: repeats' trials (each seeded ``seed + trial number``) share a seed.
REPEAT_STRIDE = 1_000_003


def repeat_name(study_name: str, repeat: int) -> str:
    """Repeat 0 keeps the study's name (a study tuned once stays where it was); repeat r > 0
    is ``<name>-r<r>``."""
    return study_name if repeat == 0 else f"{study_name}-r{repeat}"


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
    repeats: int | None = None,
    select_top: int | None = None,
    select_seeds: int | None = None,
    log_model: bool = True,
) -> list[TuneSettings]:
    """One study per variant and tuning repeat (the variant's repeats next to each other), with
    the study file's protocol after the command line's values (:func:`bench.studies.resolve`,
    as ``bench compare`` applies them)."""
    _check_counts(trials=trials, population=population, repeats=repeats, select_top=select_top,
                  select_seeds=select_seeds)
    t = study.tuning
    repeats = t.repeats if repeats is None else repeats
    select_top = t.select_top if select_top is None else select_top
    select_seeds = t.select_seeds if select_seeds is None else select_seeds
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
        check_name(repeat_name(sname, repeats - 1), "Optuna study")
        base = resolved.hparams_for(name)
        out += [
            TuneSettings(
                study=study, variant=name, task=resolved.task, trials=trials or t.trials,
                epochs=base.epochs, base=base, storage=url, study_name=repeat_name(sname, r),
                seed=(seed + r * REPEAT_STRIDE) % (MAX_SEED + 1),
                pruner=pruner or t.pruner, min_epochs=min(t.min_epochs, base.epochs),
                validation_size=resolved.validation_size,
                data_dir=data_dir, tracking_uri=uri, experiment=experiment or f"{study.name}{suffix}-tuning",
                timeout=timeout, limit=limit, population=population, repeat=r, repeats=repeats,
                select_top=select_top, select_seeds=select_seeds, first_study=sname, log_model=log_model,
            )
            for r in range(repeats)
        ]
    return out


def _check_counts(**counts: int | None) -> None:
    for name, value in counts.items():
        least = 0 if name == "select_seeds" else 1
        if value is not None and value < least:
            raise BenchError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")


def load_splits(s: TuneSettings) -> data.Splits:
    return data.load(
        s.task, data_dir=s.data_dir, validation_size=s.validation_size, limit=s.limit,
        standardize=s.study.protocol.standardize,
    )


def check(s: TuneSettings) -> None:
    """Fail on unusable data or Optuna storage before anything is written (the tracking
    store is checked when the study opens it, before the Optuna study exists)."""
    check_store(s.tracking_uri, s.experiment)  # first: nothing (not even the data cache) is written for a bad store
    check_storage(s.storage)  # likewise a storage file that cannot be (FIFO, /dev/null, no folder)
    if storage_exists(s.storage):  # read what is there before anything is written
        storage = open_storage(s.storage)
        check_identity(s, storage)
        check_resumable(s, storage)  # the same study under other settings: refused
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
