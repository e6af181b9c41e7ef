"""A study after the command line's values: what a command runs, and where it records it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from bench import stats
from bench.data import get_task
from bench.errors import BenchError, StudyError
from bench.models import HParams, list_variants
from bench.plan.table import OPTIONS, given
from bench.store import schema
from bench.studies import Study, Tuning, load_study

#: Hyperparameters a value of the same name overrides (the seed is the plan's seeds).
HYPERPARAMETERS = tuple(f.name for f in dataclasses.fields(HParams) if f.name != schema.SEED)


@dataclass(frozen=True)
class Plan:
    """A study, the values the command line gave (:data:`bench.plan.table.OPTIONS`: a
    value given beats the study's protocol and its per-variant overrides; a value not given
    leaves the study's), and the tuned settings a comparison also runs. Everything a command
    reads (the variants, each one's hyperparameters, the seeds, the data, the stores) is
    derived here, once. Picklable: tuning's worker processes get it."""

    study: Study
    overrides: Mapping[str, object] = field(default_factory=dict)
    # variant -> its tuned hyperparameters; the Optuna study and trial they come from; its
    # tuning's record (repeats, their winners, what tuning cost)
    tuned: tuple[tuple[str, dict[str, object]], ...] = ()
    tuned_from: tuple[tuple[str, str], ...] = ()
    tuned_record: tuple[tuple[str, dict[str, object]], ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.overrides) - set(OPTIONS))
        if unknown:
            raise BenchError(
                f"unknown plan value(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
            )
        # bad names fail here, before anything runs
        self.task, self.variants, self.seeds  # noqa: B018

    @classmethod
    def from_study(cls, study: Study, **overrides: object) -> Plan:
        """``study`` with ``overrides`` (option names; None: not given)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "margin" in values:
            study = study.model_copy(update={"equivalence_margin": values["margin"]})
        return cls(study, values)

    @classmethod
    def from_options(cls, command: str, values: Mapping[str, object]) -> Plan:
        """The plan of ``command`` given its command-line ``values`` (checked against each
        other first), its study loaded."""
        values = given(command, values)
        return cls.from_study(load_study(values.pop("study", None)), **values)

    def given(self, **changes: object) -> Plan:
        """This plan with ``changes`` to its values (None: back to the study's)."""
        values = {**self.overrides, **changes}
        return dataclasses.replace(
            self, overrides={k: v for k, v in values.items() if v is not None}
        )

    def with_tuned(self, found: Mapping[str, object]) -> Plan:
        """This plan also running each variant's tuned setting (``found``: variant -> its
        ``params``, ``origin`` and ``record``, as :func:`bench.tuning.best_params` finds them)."""
        return dataclasses.replace(
            self,
            tuned=tuple((v, t.params) for v, t in found.items()),
            tuned_from=tuple((v, t.origin) for v, t in found.items()),
            tuned_record=tuple((v, t.record) for v, t in found.items()),
        )

    def value(self, name: str) -> object:
        """The value ``name`` was given, else its table default."""
        return self.overrides.get(name, OPTIONS[name].default)

    # -- what runs -----------------------------------------------------------------------

    @cached_property
    def task(self) -> str:
        task = self.overrides.get("task")
        return get_task(task).name if task else self.study.task

    @cached_property
    def variants(self) -> tuple[str, ...]:
        wanted = self.overrides.get("variants", self.overrides.get("variant"))
        return tuple(list_variants(wanted) if wanted else self.study.variant_names)

    @cached_property
    def seeds(self) -> tuple[int, ...]:
        """The one ``seed`` given, else seeds 0..N-1."""
        if "seed" in self.overrides:
            return (int(self.overrides["seed"]),)
        n = self.overrides.get("seeds", self.study.protocol.seeds)
        if n <= 0:
            raise StudyError(f"seeds must be > 0, got {n}")
        return tuple(range(n))

    @property
    def hparams(self) -> HParams:
        """The protocol's hyperparameters after the command line's."""
        return self.study.hparams().replace(**self._hparam_overrides)

    def hparams_for(self, variant: str) -> HParams:
        """``variant``'s hyperparameters: the study's override for it, after the command line's."""
        return self.study.hparams(variant=variant).replace(**self._hparam_overrides)

    @property
    def per_variant(self) -> tuple[tuple[str, HParams], ...]:
        """The variants the study overrides, each with its hyperparameters."""
        return tuple((n, self.hparams_for(n)) for n in self.variants if n in self.study.overrides)

    @property
    def _hparam_overrides(self) -> dict[str, object]:
        return {k: self.overrides[k] for k in HYPERPARAMETERS if k in self.overrides}

    @property
    def tuning(self) -> Tuning:
        """The study's tuning section after the command line's values (trials, pruner, ...)."""
        changes = {k: v for k, v in self.overrides.items() if k in Tuning.model_fields}
        return self.study.tuning.model_copy(update=changes)

    @property
    def validation_size(self) -> int:
        """The given one, else the study's; with ``--limit N`` that the study's would not leave
        a training split in, N // 6 (the built-in tasks' 10,000 of 60,000; at least 1)."""
        given = self.overrides.get("validation_size")
        if given:
            return given
        studied, limit = self.study.protocol.validation_size, self.limit
        return max(1, limit // 6) if limit is not None and studied >= limit else studied

    @property
    def limit(self) -> int | None:
        return self.overrides.get("limit")

    def analysis(self) -> stats.Analysis:
        return self.study.analysis(self.variants)

    def analysis_params(self) -> dict[str, object]:
        return self.study.analysis_params(self.variants)

    # -- where it lands ------------------------------------------------------------------

    @property
    def data_dir(self) -> str | None:
        return self.overrides.get("data_dir")

    @property
    def tracking_uri(self) -> str | None:
        return self.overrides.get("tracking_uri")

    @property
    def experiment(self) -> str | None:
        return self.overrides.get("experiment")

    @property
    def log_model(self) -> bool:
        return not self.value("no_model")

    # -- a comparison's runs -------------------------------------------------------------

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
            out.append(
                (name, schema.SETTING_DEFAULT, [base.replace(seed=seed) for seed in self.seeds])
            )
            if name in tuned:
                setting = [
                    dataclasses.replace(base, seed=seed, **tuned[name]) for seed in self.seeds
                ]
                out.append((name, schema.SETTING_TUNED, setting))
        return out

    def jobs(self) -> list[tuple[str, str, HParams]]:
        """(variant, setting, hyperparameters) for every run, in the order they are trained."""
        return [
            (name, setting, hp) for name, setting, members in self.populations() for hp in members
        ]
