"""What the run service takes: units of work, batched by variant and kind, and where they land."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.data import Splits
from bench.models import HParams, Variant
from bench.results.artifacts import ModelNaming
from bench.store.tracker import Tracker


@dataclass(frozen=True)
class Unit:
    """One run to train and record: a member of a variant (its hyperparameters, seed
    included), the name of its MLflow run and what the run carries beside the variant's
    structure, the hyperparameters, the task and the split sizes."""

    hparams: HParams
    run_name: str
    label: str = ""  # what progress lines call it (default: the run name)
    params: Mapping[str, object] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    naming: ModelNaming | None = None  # its model (default: the variant, "-tuned" for a tuned run)

    @property
    def shown(self) -> str:
        return self.label or self.run_name


@dataclass(frozen=True)
class Batch:
    """Units of one variant, recorded as runs of one kind (``train``, ``tuned``, ``selection``)."""

    variant: Variant
    kind: str
    units: tuple[Unit, ...]

    def only(self, units: tuple[Unit, ...]) -> Batch:
        return Batch(self.variant, self.kind, units)


@dataclass(frozen=True)
class Recording:
    """Where the runs land: one experiment (the tracker), the data every unit trains on, the
    parent run they nest under, and whether trained models are logged."""

    tracker: Tracker
    splits: Splits
    parent_run_id: str | None = None
    log_model: bool = True
