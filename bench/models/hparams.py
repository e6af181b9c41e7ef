"""Hyperparameters as declared data: how a variant is trained, one declared field each.

Every :class:`HParams` field carries a :class:`Declared` (its type, valid values, whether the
members of one population may differ in it, whether a search space may vary it and whether
Keras' optimizer takes it by name). Validation, the search space
(:mod:`bench.models.space`), tuning's one ``suggest``, the optimizer's arguments
(:func:`bench.models.build.make_optimizer`) and the population's per-member optimizer state
read these declarations; none of them names a hyperparameter. A new hyperparameter that
Keras' optimizer already has is one field here and its param name in
:mod:`bench.store.schema`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.errors import VariantError
from bench.models.schedule import SCHEDULES
from bench.store import schema

OPTIMIZERS = (
    "adam",
    "sgd",
    "rmsprop",
    "adamw",
)  # the names bench.models.build maps to Keras classes

#: The largest seed: TensorFlow takes seeds as 32-bit signed integers (a study's trials and
#: a comparison's seeds count up from the one given, and must stay at or below it too).
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Declared:
    """What one hyperparameter is. ``low``/``high`` bound its values (``open_low`` /
    ``open_high``: the bound itself excluded; floats are always finite); ``choices`` lists
    them instead. ``per_member``: members of one population may differ in it (else it shapes
    the compiled graph). ``space``: how a search space gives it (None: not searchable).
    ``keras``: Keras' optimizer takes it under this name (None means Keras' default).
    ``from_variant``: the :class:`~bench.models.spec.Variant` property None means.
    ``only_for``: the optimizers it applies to (set for another, it is an error).
    ``label``: how errors name it. ``logged_unset``: logged as an MLflow param at its default
    too (the original fields, so stores keep their params); a training recipe's field is
    logged where it is set, and only for the optimizers it applies to."""

    kind: type
    label: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[Any, ...] | None = None
    per_member: bool = True
    space: Literal["range", "choices"] | None = None
    keras: str | None = None
    only_for: tuple[str, ...] | None = None
    from_variant: str | None = None
    logged_unset: bool = True

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not valid (None: it is). None values are checked by the caller."""
        if self.choices is not None:
            if value not in self.choices:
                return f"unknown {self.label} {value!r}; known: {', '.join(map(str, self.choices))}"
            return None
        if self.kind is bool or self.low is None:
            return None
        finite = self.kind is float and not math.isfinite(value)
        below = value < self.low or (self.open_low and value == self.low)
        above = self.high is not None and (
            value > self.high or (self.open_high and value == self.high)
        )
        if not (finite or below or above):
            return None
        return f"{self.label} must be {self.interval()}, got {value}"

    def interval(self) -> str:
        """``> 0``, ``a finite number > 0``, ``in [0, 1)`` or ``in 0..2147483647``."""
        if self.high is None:
            bound = f"{'>' if self.open_low else '>='} {self.low:g}"
            return f"a finite number {bound}" if self.kind is float else bound
        if self.kind is int:
            return f"in {self.low}..{self.high}"
        return f"in {self.bounds()}"

    def bounds(self) -> str:
        """The valid values as an interval: ``(0, inf)``, ``[0, 1)``."""
        high = "inf)" if self.high is None else f"{self.high:g}{')' if self.open_high else ']'}"
        return f"{'(' if self.open_low else '['}{self.low:g}, {high}"


def _hp(default: Any, declared: Declared) -> Any:
    return field(default=default, metadata={"declared": declared})


@dataclass(frozen=True)
class HParams:
    """How a variant is trained. ``dropout`` (when set) replaces every hidden dropout rate.
    None: the optimizer's Keras default (``learning_rate``), the variant's (``dropout``)."""

    optimizer: str = _hp(
        "adam", Declared(str, "optimizer", choices=OPTIMIZERS, per_member=False, space="choices")
    )
    learning_rate: float | None = _hp(
        None,
        Declared(
            float, "learning rate", low=0.0, open_low=True, space="range", keras="learning_rate"
        ),
    )
    dropout: float | None = _hp(
        None,
        Declared(
            float,
            "dropout rate",
            low=0.0,
            high=1.0,
            open_high=True,
            space="range",
            from_variant="dropout_rate",
        ),
    )
    batch_size: int = _hp(
        32, Declared(int, "batch size", low=0, open_low=True, per_member=False, space="choices")
    )
    epochs: int = _hp(50, Declared(int, "epochs", low=0, open_low=True))
    seed: int = _hp(0, Declared(int, "seed", low=0, high=MAX_SEED))
    #: Keep the weights of the epoch with the best validation accuracy (Keras'
    #: ``EarlyStopping(restore_best_weights=True)`` idea, without stopping early): the
    #: model tested, logged and scored is that epoch's, not the last one's.
    restore_best: bool = _hp(False, Declared(bool, "restore_best"))
    beta_2: float | None = _hp(
        None,
        Declared(
            float,
            "beta_2",
            low=0.0,
            high=1.0,
            open_high=True,
            space="range",
            keras="beta_2",
            only_for=("adam", "adamw"),
            logged_unset=False,
        ),
    )
    #: Decoupled weight decay, as Keras applies it (``w -= w * weight_decay * lr`` before each
    #: update, every trainable weight): None is Keras' default (AdamW 0.004, else none).
    weight_decay: float | None = _hp(
        None,
        Declared(
            float, "weight decay", low=0.0, space="range", keras="weight_decay", logged_unset=False
        ),
    )
    momentum: float | None = _hp(
        None,
        Declared(
            float,
            "momentum",
            low=0.0,
            high=1.0,
            open_high=True,
            space="range",
            keras="momentum",
            only_for=("sgd",),
            logged_unset=False,
        ),
    )
    nesterov: bool = _hp(
        False,
        Declared(
            bool,
            "nesterov",
            space="choices",
            keras="nesterov",
            only_for=("sgd",),
            logged_unset=False,
        ),
    )
    #: Keras' ``CategoricalCrossentropy(label_smoothing=...)`` on the one-hot labels: each
    #: target is ``(1 - s) * one_hot + s / classes``. The training and validation loss are this
    #: objective (as Keras reports them); the test loss stays the plain cross-entropy. 0: none.
    label_smoothing: float = _hp(
        0.0,
        Declared(
            float,
            "label smoothing",
            low=0.0,
            high=1.0,
            open_high=True,
            space="range",
            logged_unset=False,
        ),
    )
    #: The learning-rate schedule over the member's epochs and its linear warm-up
    #: (:mod:`bench.models.schedule`: constant, Keras' cosine decay, or x0.1 at half and
    #: three quarters of the epochs).
    schedule: str = _hp(
        "constant",
        Declared(str, "schedule", choices=SCHEDULES, space="choices", logged_unset=False),
    )
    warmup_epochs: int = _hp(
        0, Declared(int, "warmup epochs", low=0, space="range", logged_unset=False)
    )

    def __post_init__(self) -> None:
        for name, declared in DECLARED.items():
            value = getattr(self, name)
            if value is None:
                continue
            problem = declared.check(value)
            if problem is not None:
                raise VariantError(problem)
            if (
                declared.only_for
                and self.optimizer not in declared.only_for
                and value != DEFAULTS[name]
            ):
                raise VariantError(
                    f"{declared.label} applies to {', '.join(declared.only_for)}, "
                    f"not {self.optimizer}"
                )

    def replace(self, **changes: object) -> HParams:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_params(self) -> dict[str, str]:
        """One MLflow param per field that applies (the names are
        :data:`bench.store.schema.HPARAMS`): a recipe's field where it is set, and only for
        the optimizers it applies to (:attr:`Declared.logged_unset`, :attr:`Declared.only_for`)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        out = {}
        for name, value in dataclasses.asdict(self).items():
            d = DECLARED[name]
            if (d.only_for and self.optimizer not in d.only_for) or (
                not d.logged_unset and value == defaults[name]
            ):
                continue
            out[name] = "default" if value is None else str(value)
        return out

    def keras_arguments(self) -> dict[str, Any]:
        """The values Keras' optimizer takes by name (those set; unset ones keep Keras')."""
        return {
            d.keras: getattr(self, n)
            for n, d in DECLARED.items()
            if d.keras
            and getattr(self, n) is not None
            and (not d.only_for or self.optimizer in d.only_for)
        }


#: Every hyperparameter's declaration, in field order (= :data:`bench.store.schema.HPARAMS`).
DECLARED: dict[str, Declared] = {
    f.name: f.metadata["declared"] for f in dataclasses.fields(HParams)
}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(HParams)}
#: What a search space may vary, in the order tuning samples them (schema.TUNABLE's order:
#: the sampler sees the same distributions in the same order whatever the file's order).
TUNABLE: tuple[str, ...] = schema.TUNABLE
#: What shapes a population's compiled graph: its members share these.
SHARED: tuple[str, ...] = tuple(n for n, d in DECLARED.items() if not d.per_member)
assert tuple(DECLARED) == schema.HPARAMS, "one param name per HParams field, in order"
assert set(TUNABLE) == {n for n, d in DECLARED.items() if d.space}, (
    "schema.TUNABLE: the searchable fields"
)
