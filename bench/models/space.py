"""The search space as data: hyperparameter name -> range | choices.

:class:`SearchSpace` is generated from the declared hyperparameters
(:data:`bench.models.hparams.DECLARED`): one optional entry per searchable field, a
:class:`FloatRange` or :class:`IntRange` where the field is declared ``space="range"``, a
list of choices of the field's type where ``"choices"``; every bound and choice is checked
against the field's valid values. A study file's unknown name is an error that names it.
Tuning samples the entries in :data:`~bench.models.hparams.TUNABLE` order
(:func:`bench.tuning.search.suggest`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from bench.models.hparams import DECLARED, TUNABLE, Declared


class _Strict(BaseModel):
    # As the study file's schema (bench.studies): unknown keys, wrong types, inf and NaN are errors.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class _Range(_Strict):
    """A range of values; ``log`` samples it log-uniformly. Subclasses type ``low``/``high``."""

    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.low < self.high:
            raise ValueError(f"empty or inverted range: low {self.low} must be < high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self

    def distribution(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


class FloatRange(_Range):
    """A float hyperparameter's range."""

    low: float
    high: float


class IntRange(_Range):
    """An integer hyperparameter's range, both ends included."""

    low: int
    high: int


Range = FloatRange | IntRange


def _choices(kind: type) -> type[BaseModel]:
    """``{choices: [...]}`` of ``kind`` values (strict: ``true`` is no integer)."""
    return create_model(
        f"Choices_{kind.__name__}", __base__=_Strict, choices=(list[kind], Field(min_length=1))
    )  # type: ignore[valid-type]


_CHOICES = {kind: _choices(kind) for kind in (int, str, bool, float)}


def _entry_type(declared: Declared) -> type:
    if declared.space == "choices":
        return _CHOICES[declared.kind]
    return FloatRange if declared.kind is float else IntRange


def _check_entry(name: str, declared: Declared, entry: Any) -> None:
    """Every value ``entry`` can give must be valid for the field."""
    if declared.space == "choices":
        for choice in entry.choices:
            problem = declared.check(choice)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
        return
    if declared.check(entry.low) or declared.check(entry.high):
        raise ValueError(f"{name}: the range must lie in {declared.bounds()}")


#: The space a study has when it names none: learning rate always, dropout where a variant
#: has it. Why the learning rate's range is 1e-5 to 1e-2, measured: docs/tuning.md (the
#: default learning-rate range).
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": FloatRange(low=1e-5, high=1e-2, log=True),
    "dropout": FloatRange(low=0.0, high=0.8),
}


class _Space(_Strict):
    """What tuning may change: an entry per searchable hyperparameter (None: not searched)."""

    @model_validator(mode="after")
    def _valid_values(self) -> _Space:
        for name in TUNABLE:
            entry = getattr(self, name)
            if entry is not None:
                _check_entry(name, DECLARED[name], entry)
        return self

    def entries(self) -> dict[str, Any]:
        """The searched hyperparameters and their ranges or choices, in sampling order."""
        return {name: entry for name in TUNABLE if (entry := getattr(self, name)) is not None}


SearchSpace = create_model(
    "SearchSpace",
    __base__=_Space,
    **{name: (_entry_type(DECLARED[name]) | None, DEFAULT_SPACE.get(name)) for name in TUNABLE},  # type: ignore[call-overload]
)
