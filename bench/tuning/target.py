"""A plan's Optuna studies: one :class:`Target` per variant and tuning repeat."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from bench import data
from bench.errors import BenchError, StorageError
from bench.models import HParams
from bench.models.spec import MAX_SEED
from bench.plan import Plan
from bench.store import schema
from bench.store.tracker import check_store
from bench.store.uri import check_name, redact, resolve_tracking_uri
from bench.studies import Study
from bench.tuning.identity import check_resumable
from bench.tuning.storage import check_storage, default_storage, open_storage, storage_exists

HEARTBEAT_SECONDS = 20.0
GRACE_SECONDS = 300.0  # a trial on another host is stale after this long without a heartbeat


@dataclass(frozen=True)
class Target:
    """What one Optuna study tunes: a plan's variant, one repeat (picklable: worker processes get
    it). Holds no setting of its own; every value is the plan's (:class:`bench.plan.Plan`)."""

    plan: Plan
    variant: str
    repeat: int = (
        0  # this study is the variant's repeat `repeat` of `repeats` (sampler seeds apart)
    )
    heartbeat: float = HEARTBEAT_SECONDS
    grace: float = GRACE_SECONDS

    @property
    def study(self) -> Study:
        return self.plan.study

    @property
    def task(self) -> str:
        return self.plan.task

    @property
    def base(self) -> HParams:
        """The variant's hyperparameters, trained for the tuning's epochs."""
        return self.plan.hparams_for(self.variant).replace(epochs=self.plan.tuning.epochs)

    @property
    def epochs(self) -> int:
        return self.base.epochs

    @property
    def trials(self) -> int:
        return self.plan.tuning.trials

    @property
    def pruner(self) -> str:
        return self.plan.tuning.pruner

    @property
    def min_epochs(self) -> int:
        """The pruner's first judgement, after this many epochs (at most ``epochs``)."""
        return min(self.plan.tuning.min_epochs, self.epochs)

    @property
    def repeats(self) -> int:
        return self.plan.tuning.repeats

    @property
    def select_top(self) -> int:
        return self.plan.tuning.select_top

    @property
    def select_seeds(self) -> int:
        """0: no selection, the best trial is the tuned setting."""
        return self.plan.tuning.select_seeds

    @property
    def seed(self) -> int:
        """The sampler's seed: repeats are :data:`REPEAT_STRIDE` apart."""
        return (int(self.plan.value("sampler_seed")) + self.repeat * REPEAT_STRIDE) % (MAX_SEED + 1)

    @property
    def first_study(self) -> str:
        """Repeat 0's study name: where the selection over the repeats is kept."""
        name = self.plan.value("study_name")
        if name:
            return name if len(self.plan.variants) == 1 else f"{name}-{self.variant}"
        return self._default_first_study

    @functools.cached_property
    def _default_first_study(self) -> str:
        """``<study>-<variant>``, with the task between them only where it is not the study's
        own (as the experiment is named). A study an earlier bench named
        ``<study>-<task>-<variant>`` keeps that name, so it resumes and ``--tuned`` finds it."""
        suffix = "" if self.task == self.study.task else f"-{self.task}"
        name = f"{self.study.name}{suffix}-{self.variant}"
        legacy = f"{self.study.name}-{self.task}-{self.variant}"
        return legacy if legacy != name and _holds_study(self.storage, legacy) else name

    @property
    def study_name(self) -> str:
        return repeat_name(self.first_study, self.repeat)

    @property
    def storage(self) -> str:
        return self.plan.value("storage") or default_storage(self.plan.tracking_uri)

    @property
    def tracking_uri(self) -> str:
        return resolve_tracking_uri(self.plan.tracking_uri)

    @property
    def experiment(self) -> str:
        suffix = (
            "" if self.task == self.study.task else f"-{self.task}"
        )  # another task: its own experiment
        return self.plan.experiment or f"{self.study.name}{suffix}-tuning"

    @property
    def validation_size(self) -> int:
        return self.plan.validation_size

    @property
    def data_dir(self) -> str | None:
        return self.plan.data_dir

    @property
    def limit(self) -> int | None:
        return self.plan.limit

    @property
    def timeout(self) -> float | None:
        return self.plan.value("timeout")

    @property
    def population(self) -> int | None:
        """Trials trained at once per worker; None: by device (bench.population.sizing)."""
        return self.plan.value("population")

    @property
    def log_model(self) -> bool:
        """Whether the retrained tuned model is logged (and registered)."""
        return self.plan.log_model

    @property
    def selects(self) -> bool:
        """Whether the tuned setting is chosen by re-training the top trials on more seeds."""
        return self.select_seeds > 0


#: Repeat r's sampler seed is ``seed + r * REPEAT_STRIDE``: far enough apart that no two
#: repeats' trials (each seeded ``seed + trial number``) share a seed.
REPEAT_STRIDE = 1_000_003


def _holds_study(url: str, name: str) -> bool:
    """Whether the storage at ``url`` exists and holds a study ``name`` (nothing is created)."""
    if not storage_exists(url):
        return False
    try:
        open_storage(url).get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def repeat_name(study_name: str, repeat: int) -> str:
    """Repeat 0 keeps the study's name (a study tuned once stays where it was); repeat r > 0
    is ``<name>-r<r>``."""
    return study_name if repeat == 0 else f"{study_name}-r{repeat}"


def targets(plan: Plan) -> list[Target]:
    """One study per variant and tuning repeat of the plan (the variant's repeats next to
    each other)."""
    _check_counts(
        **{
            k: plan.overrides.get(k)
            for k in ("trials", "population", "repeats", "select_top", "select_seeds")
        }
    )
    out = []
    for name in plan.variants:
        first = Target(plan, name)
        check_name(repeat_name(first.first_study, first.repeats - 1), "Optuna study")
        out += [Target(plan, name, r) for r in range(first.repeats)]
    return out


def prepare(plan: Plan) -> list[Target]:
    """The plan's studies, each checked (:func:`check`): bad data, a bad storage or a study of
    another variant fails before anything is written."""
    planned = targets(plan)
    for one in planned:
        check(one)
    return planned


def _check_counts(**counts: int | None) -> None:
    for name, value in counts.items():
        least = 0 if name == "select_seeds" else 1
        if value is not None and value < least:
            raise BenchError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")


def load_splits(s: Target) -> data.Splits:
    return data.load(
        s.task,
        data_dir=s.data_dir,
        validation_size=s.validation_size,
        limit=s.limit,
        standardize=s.study.protocol.standardize,
    )


def check(s: Target) -> None:
    """Fail on unusable data or Optuna storage before anything is written (the tracking
    store is checked when the study opens it, before the Optuna study exists)."""
    check_store(
        s.tracking_uri, s.experiment
    )  # first: nothing (not even the data cache) is written for a bad store
    check_storage(s.storage)  # likewise a storage file that cannot be (FIFO, /dev/null, no folder)
    if storage_exists(s.storage):  # read what is there before anything is written
        storage = open_storage(s.storage)
        check_identity(s, storage)
        check_resumable(s, storage)  # the same study under other settings: refused
    load_splits(s)
    if not storage_exists(s.storage):
        open_storage(s.storage)


def check_identity(s: Target, storage) -> None:
    """A study name already in the storage must belong to the same variant and task: reusing
    it for another would mix their trials and report one's best as the other's."""
    try:
        study_id = storage.get_study_id_from_name(s.study_name)
    except KeyError:
        return  # a new study
    attrs = storage.get_study_user_attrs(study_id)
    for key, wanted, what in (
        (schema.STUDY_VARIANT, s.variant, "variant"),
        (schema.STUDY_TASK, s.task, "task"),
    ):
        held = attrs.get(key)
        if held is not None and held != wanted:
            raise StorageError(
                f"Optuna study {s.study_name!r} in {redact(s.storage)} tunes {what} {held!r}, "
                f"not {wanted!r}; name another study with --study-name (or leave it out for one "
                "per variant and task)"
            )
