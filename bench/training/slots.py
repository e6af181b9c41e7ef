"""The population interface, and members that each train in a population of their own.

Every engine trains members in slots they enter and leave at epoch boundaries:
:class:`bench.population.Population` (K members of an MLP as one compiled graph) and
:class:`~bench.training.fit.KerasPopulation` (Keras' ``fit``, one member). :class:`Separate`
gives the same interface to members a shared population cannot hold (each its own batch
size or optimizer, or a variant only ``fit`` trains): each member gets a population of one,
made for its hyperparameters when it enters. Whoever drives a population (a tuning worker,
:func:`bench.training.train_population`) drives all three alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.result import EpochHook, TrainResult
from bench.training.device import device_description
from bench.training.fit import KerasPopulation

ENGINES = ("compiled", "keras")


class Slots(Protocol):
    """Slots that members enter (:meth:`start`), train in one epoch at a time
    (:meth:`run_epoch` returns the slots that stopped) and leave (:meth:`finish`: the result
    and the error one of the member's hooks raised)."""

    @property
    def free(self) -> list[int]: ...

    @property
    def running(self) -> list[int]: ...

    def start(self, k: int, hparams: HParams, hooks: Sequence[EpochHook] = ()) -> None: ...

    def run_epoch(self) -> list[int]: ...

    def stop(self, k: int) -> None: ...

    def finish(self, k: int) -> tuple[TrainResult, Exception | None]: ...


def engine_for(variant: Variant) -> str:
    """The compiled population loop wherever the variant can be stacked (every MLP), Keras'
    ``fit`` elsewhere (the convolutional variants)."""
    from bench import population

    return "compiled" if population.supports(variant) else "keras"


def population_of_one(
    variant: Variant, hparams: HParams, splits: Splits, engine: str | None = None
) -> Slots:
    """A population with one slot, shaped for ``hparams`` (its batch size and optimizer)."""
    engine = engine or engine_for(variant)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "keras":
        return KerasPopulation(variant, splits)
    from bench.population import Population

    return Population(
        variant,
        1,
        splits,
        batch_size=hparams.batch_size,
        optimizer=hparams.optimizer,
        device=device_description(),
    )


class Separate:
    """``size`` slots, each member in a population of one made for it as it enters. An error
    in training a member (not only in its hooks) is that member's alone: it comes back from
    :meth:`finish` as its error, as a hook's does."""

    def __init__(self, variant: Variant, splits: Splits, size: int = 1) -> None:
        self.variant, self.splits = variant, splits
        self.slots: list[Slots | None] = [None] * size
        self._errors: dict[int, Exception] = {}

    @property
    def free(self) -> list[int]:
        return [k for k, own in enumerate(self.slots) if own is None]

    @property
    def running(self) -> list[int]:
        return [k for k, own in enumerate(self.slots) if own is not None and own.running]

    def start(self, k: int, hparams: HParams, hooks: Sequence[EpochHook] = ()) -> None:
        if self.slots[k] is not None:
            raise ValueError(f"slot {k} is taken")
        own = population_of_one(self.variant, hparams, self.splits)
        own.start(0, hparams, hooks)
        self.slots[k] = own

    def run_epoch(self) -> list[int]:
        stopped = []
        for k in self.running:
            own = self.slots[k]
            try:
                if own.run_epoch():
                    stopped.append(k)
            except Exception as exc:  # noqa: BLE001 - its training failed; its owner decides
                self._errors[k] = exc
                own.stop(0)
                stopped.append(k)
        return stopped

    def stop(self, k: int) -> None:
        self.slots[k].stop(0)

    def finish(self, k: int) -> tuple[TrainResult, Exception | None]:
        own, self.slots[k] = self.slots[k], None
        result, error = own.finish(0)
        return result, self._errors.pop(k, None) or error
