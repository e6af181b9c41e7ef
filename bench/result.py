"""What one training run produced, and how its health is judged while it trains.

Shared by every way bench trains a model (Keras' ``fit`` in :mod:`bench.training`, the
compiled population loop in :mod:`bench.population`), and read by tracking and tuning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.models.spec import HParams
from bench.store import schema

LAYER = 3  # import layer (docs/development.md#layers): imports only lower layers' units

EpochHook = Callable[[int, dict[str, float]], None]
"""Called after every epoch with the 0-based epoch index and that epoch's metrics."""

HISTORY_KEYS = schema.HISTORY  # the metric names the curves are logged under

STATUS_OK = "ok"
STATUS_DIVERGED = "diverged"
STATUS_DEAD = "dead"

# The run these rules were drawn from, seed 004's dead one: docs/troubleshooting.md,
# "Training that dies or diverges".
#: Training accuracy within this margin of chance (1 / classes) counts as "not learning".
DEAD_MARGIN = 0.05
#: Stop after this many consecutive epochs at chance...
DEAD_PATIENCE = 3
#: ...during which the loss fell by less than this fraction,
DEAD_LOSS_PROGRESS = 0.01
#: ...or never dropped below this fraction of ln(classes), the loss of a uniform guess: a
#: network at chance whose loss stays at or above that has learned nothing, however its
#: loss jitters (a collapsed network predicting one class for every input does exactly this).
DEAD_LOSS_FLOOR = 0.99
#: A loss above this many times the chance-level loss ln(classes) counts as diverged even while
#: it is finite: Keras computes the cross-entropy from the softmax's logits, so an exploding
#: model's loss grows without bound instead of turning NaN.
DIVERGED_LOSS_FACTOR = 1e4


class TrainedModel:
    """A result's trained Keras model: built on first use (a population member's weights stay
    arrays until then), dropped on release. Every result derived from one with
    :func:`dataclasses.replace` holds the same one, so a run logged again logs the very same
    model and one release frees it for all of them."""

    __slots__ = ("_factory", "_model")

    def __init__(
        self, model: object | None = None, factory: Callable[[], object] | None = None
    ) -> None:
        self._model, self._factory = model, factory

    def get(self) -> object | None:
        if self._model is None and self._factory is not None:
            self._model, self._factory = self._factory(), None
        return self._model

    def release(self) -> None:
        self._model = self._factory = None


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced (the contract tracking and tuning rely on): a value.
    Training makes it, :func:`bench.training.evaluate` derives the tested one, and the run
    service (:mod:`bench.runs`) the one that names its MLflow run; each with
    :func:`dataclasses.replace`, never by changing a result someone already holds."""

    variant: str
    hparams: HParams
    params: int
    history: dict[str, list[float]]
    train_seconds: float
    status: str = STATUS_OK
    message: str = ""
    test_loss: float | None = None
    test_accuracy: float | None = None
    test_predictions: np.ndarray | None = None
    confusion: np.ndarray | None = None
    device: str = ""
    run_id: str | None = None  # the MLflow run, once tracking has logged it
    #: The trained Keras model, or a :class:`TrainedModel` holding it.
    model: object | None = field(default=None, repr=False, compare=False)
    #: Builds ``model`` on first use (a population member's weights are kept as arrays until then).
    model_factory: Callable[[], object] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The one place a result's fields are set after construction: the model, however it
        # was given, moves into one TrainedModel that every derived result shares.
        if not isinstance(self.model, TrainedModel):
            object.__setattr__(self, "model", TrainedModel(self.model, self.model_factory))
            object.__setattr__(self, "model_factory", None)

    def keras_model(self) -> object | None:
        """The trained Keras model, built from the kept weights the first time it is asked for."""
        return self.model.get()

    def release_model(self) -> None:
        """Drop the model and its weights (memory), once everything that needs them has run."""
        self.model.release()

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def best_epoch(self) -> int | None:
        """0-based epoch of the best validation accuracy (model selection uses validation only)."""
        val = self.history.get("val_accuracy", [])
        finite = [v if math.isfinite(v) else -1.0 for v in val]
        return int(np.argmax(finite)) if finite else None

    @property
    def best_val_accuracy(self) -> float | None:
        i = self.best_epoch
        return None if i is None else self.history["val_accuracy"][i]

    @property
    def final_val_accuracy(self) -> float | None:
        val = self.history.get("val_accuracy", [])
        return val[-1] if val else None

    @property
    def healthy(self) -> bool:
        return self.status == STATUS_OK


class Health:
    """Judges a run as it trains: diverged (NaN or an exploding loss), dead (stuck at chance
    with a loss that does not fall), or ok. Knows nothing of Keras, so any training loop
    can use it."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.chance = 1.0 / num_classes
        self.loss_limit = DIVERGED_LOSS_FACTOR * math.log(num_classes)
        self.status = STATUS_OK
        self.message = ""
        self._at_chance: list[float] = []  # losses of the current run of at-chance epochs

    def exploded(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.loss_limit

    def _diverged(self, loss: float, epoch: int) -> bool:
        limit = (
            f" (over {self.loss_limit:.4g}, the divergence limit)" if math.isfinite(loss) else ""
        )
        self.status = STATUS_DIVERGED
        self.message = self.message or f"loss became {loss:.4g} in epoch {epoch}{limit}"
        return True

    def batch(self, loss: float, epoch: int) -> bool:
        """After a batch of (1-based) ``epoch``: True when training must stop."""
        return self._diverged(loss, epoch) if self.exploded(loss) else False

    def epoch(self, metrics: dict[str, float], epoch: int) -> bool:
        """After (1-based) ``epoch``: True when training must stop."""
        if self.status == STATUS_DIVERGED or self.exploded(metrics["loss"]):
            return self._diverged(metrics["loss"], epoch)
        if max(metrics["accuracy"], metrics["val_accuracy"]) > self.chance + DEAD_MARGIN:
            self._at_chance = []
            return False
        self._at_chance.append(metrics["loss"])
        streak = self._at_chance[-DEAD_PATIENCE:]
        # Dead = at chance AND the loss is not going down (a slow start is not dead).
        flat = min(streak[1:], default=0.0) >= streak[0] * (1 - DEAD_LOSS_PROGRESS)
        guess = math.log(self.num_classes)
        above_guess = min(streak) >= DEAD_LOSS_FLOOR * guess
        if len(streak) < DEAD_PATIENCE or not (flat or above_guess):
            return False
        self.status = STATUS_DEAD
        how = "a flat loss" if flat else f"a loss never below a uniform guess's ({guess:.3f})"
        self.message = (
            f"accuracy stuck at chance ({metrics['accuracy']:.3f} train, "
            f"{metrics['val_accuracy']:.3f} validation; chance is {self.chance:.3f}) "
            f"with {how} ({streak[0]:.4g} -> {streak[-1]:.4g}) for {len(self._at_chance)} epochs"
        )
        return True

    def final(self, history: dict[str, list[float]]) -> None:
        """A run that ended at chance is dead even when no streak was long enough."""
        if self.status == STATUS_OK and history["val_accuracy"]:
            final = history["val_accuracy"][-1]
            if final <= self.chance + DEAD_MARGIN:
                self.status = STATUS_DEAD
                self.message = (
                    f"final validation accuracy {final:.3f} is at chance ({self.chance:.3f})"
                )
