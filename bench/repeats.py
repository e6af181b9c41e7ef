"""Tuned runs that repeat default runs: where tuning kept the default setting, a comparison
logs the default runs a second time as the tuned ones instead of training them again
(training is deterministic per seed: a retrain ends in the same weights)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from bench.models import HParams, get_variant
from bench.result import EpochHook, TrainResult
from bench.store import schema

Chunk = tuple[str, str, list[HParams]]  # (variant, setting, members trained together)


@functools.cache
def effective(variant: str, hp: HParams) -> HParams:
    """``hp`` as training sees it: the optimizer's default learning rate and the variant's
    dropout rate written out (a tuned setting that kept the default spells them out)."""
    from bench.models.build import learning_rate_of

    dropout = hp.dropout if hp.dropout is not None else get_variant(variant).dropout_rate
    return hp.replace(learning_rate=learning_rate_of(hp), dropout=dropout)


def repeat(twin: TrainResult, hp: HParams, hooks: Sequence[EpochHook]) -> TrainResult:
    """``twin``'s result as the result of a run whose hyperparameters train the same way
    (:class:`Repeats` pairs them): its curves replayed into the run's hooks (the store),
    nothing trained."""
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
        wanted = {(name, effective(name, hp)) for name, setting, members in chunks
                  if setting == schema.SETTING_TUNED for hp in members} & fresh
        #: The chunks in order, each tuned one split into its repeating members (``True``:
        #: logged again, not trained) and the rest.
        self.plan: list[tuple[str, str, list[HParams], bool]] = []
        for name, setting, members in chunks:
            again = [hp for hp in members if (name, effective(name, hp)) in wanted]
            if setting != schema.SETTING_TUNED or not again:
                self.plan.append((name, setting, members, False))
                continue
            rest = [hp for hp in members if hp not in again]
            self.plan += [(name, setting, again, True)] + ([(name, setting, rest, False)] if rest else [])
        #: Member-epochs not trained.
        self.epochs = sum(hp.epochs for *_, members, again in self.plan if again for hp in members)
        self._wanted = wanted
        self._held: dict[tuple[str, HParams], TrainResult] = {}

    def holds(self, name: str, setting: str, members: Sequence[HParams]) -> bool:
        """A default chunk whose results a tuned chunk will log again (keep its models)."""
        return setting == schema.SETTING_DEFAULT and any((name, effective(name, hp)) in self._wanted for hp in members)

    def hold(self, name: str, members: Sequence[HParams], results: Sequence[TrainResult]) -> None:
        self._held.update({(name, effective(name, hp)): r for hp, r in zip(members, results, strict=True)})

    def take(self, name: str, members: Sequence[HParams]) -> list[TrainResult]:
        """The held default results the tuned ``members`` repeat (no longer held)."""
        return [self._held.pop((name, effective(name, hp))) for hp in members]
