"""Tuned runs that repeat default runs: where tuning kept the default setting, a comparison
logs the default runs a second time as the tuned ones instead of training them again
(training is deterministic per seed: a retrain ends in the same weights)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bench.models import HParams, get_variant
from bench.result import EpochHook, TrainResult
from bench.store import schema

Chunk = tuple[str, str, list[HParams]]  # (variant, setting, members trained together)


def effective(variant: str, hp: HParams) -> HParams:
    """``hp`` as training sees it: the optimizer's default learning rate and the variant's
    dropout rate written out (a tuned setting that kept the default spells them out)."""
    from bench.models.build import learning_rate_of

    rates = {b.dropout for b in get_variant(variant).blocks if b.dropout}
    dropout = hp.dropout if hp.dropout is not None or len(rates) != 1 else next(iter(rates))
    return hp.replace(learning_rate=learning_rate_of(hp), dropout=dropout)


def repeat(twin: TrainResult, hp: HParams, hooks: Sequence[EpochHook]) -> TrainResult:
    """``twin``'s result as the result of a run whose hyperparameters train the same way:
    its curves replayed into the run's hooks (the store), nothing trained."""
    if effective(twin.variant, twin.hparams) != effective(twin.variant, hp):
        raise ValueError(f"{twin.variant}: {hp} is not the setting {twin.hparams} was trained with")
    for epoch in range(twin.epochs_run):
        metrics = {key: values[epoch] for key, values in twin.history.items()}
        for hook in hooks:
            hook(epoch, metrics)
    twin.keras_model()  # built once, shared by both runs' logged models
    return dataclasses.replace(twin, hparams=hp, run_id=None)


class Repeats:
    """Which tuned members of a comparison's chunks repeat a default member trained in the
    same comparison, and the default results held until their twins are logged."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        fresh = {(name, effective(name, hp)) for name, setting, members in chunks
                 if setting == schema.SETTING_DEFAULT for hp in members}
        self.wanted = {(name, effective(name, hp)) for name, setting, members in chunks
                       if setting == schema.SETTING_TUNED for hp in members} & fresh
        self.chunks = chunks
        self._held: dict[tuple[str, HParams], TrainResult] = {}

    def is_repeat(self, name: str, hp: HParams) -> bool:
        return (name, effective(name, hp)) in self.wanted

    @property
    def epochs(self) -> int:
        """Member-epochs not trained."""
        return sum(hp.epochs for name, setting, members in self.chunks if setting == schema.SETTING_TUNED
                   for hp in members if self.is_repeat(name, hp))

    def plan(self) -> list[tuple[str, str, list[HParams], bool]]:
        """The chunks in order, each tuned one split into its repeating members (``True``:
        logged again, not trained) and the rest."""
        out = []
        for name, setting, members in self.chunks:
            if setting != schema.SETTING_TUNED:
                out.append((name, setting, members, False))
                continue
            again = [hp for hp in members if self.is_repeat(name, hp)]
            rest = [hp for hp in members if not self.is_repeat(name, hp)]
            out += [(name, setting, group, group is again) for group in (again, rest) if group]
        return out

    def holds(self, name: str, setting: str, members: Sequence[HParams]) -> bool:
        """A default chunk whose results a tuned chunk will log again (keep its models)."""
        return setting == schema.SETTING_DEFAULT and any(self.is_repeat(name, hp) for hp in members)

    def hold(self, name: str, members: Sequence[HParams], results: Sequence[TrainResult]) -> None:
        self._held.update({(name, effective(name, hp)): r for hp, r in zip(members, results, strict=True)})

    def take(self, name: str, members: Sequence[HParams]) -> list[TrainResult]:
        """The held default results the tuned ``members`` repeat (no longer held)."""
        return [self._held.pop((name, effective(name, hp))) for hp in members]
