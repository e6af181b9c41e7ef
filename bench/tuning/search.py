"""What a trial tries: the search space sampled, the sampler seeded, the pruner built."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from bench.errors import BenchError
from bench.models import HParams, Variant
from bench.models.hparams import DECLARED
from bench.models.space import FloatRange, IntRange, SearchSpace
from bench.models.spec import MAX_SEED
from bench.studies import PRUNERS


def _applies(name: str, hp: HParams, variant: Variant) -> bool:
    """Whether ``name`` changes anything for ``variant`` trained with ``hp`` (dropout
    needs dropout sites; an optimizer's own hyperparameter needs that optimizer)."""
    declared = DECLARED[name]
    if declared.from_variant == "dropout_rate" and not variant.has_dropout:
        return False
    return not declared.only_for or hp.optimizer in declared.only_for


def _sample(trial: optuna.Trial, name: str, entry: Any) -> object:
    if isinstance(entry, FloatRange):
        return trial.suggest_float(name, entry.low, entry.high, log=entry.log)
    if isinstance(entry, IntRange):
        return trial.suggest_int(name, entry.low, entry.high, log=entry.log)
    return DECLARED[name].kind(trial.suggest_categorical(name, entry.choices))


def suggest(trial: optuna.Trial, space: SearchSpace, base: HParams, variant: Variant) -> HParams:
    """Sample the study's search space, in :data:`~bench.models.hparams.TUNABLE` order;
    parameters the variant (or the optimizer sampled) cannot use are not sampled."""
    hp = base
    for name, entry in space.entries().items():
        if _applies(name, hp, variant):
            hp = dataclasses.replace(hp, **{name: _sample(trial, name, entry)})
    return hp


def _contains(entry: Any, value: object) -> bool:
    if isinstance(entry, FloatRange | IntRange):
        return entry.low <= float(value) <= entry.high  # type: ignore[arg-type]
    return value in entry.choices


def default_params(space: SearchSpace, base: HParams, variant: Variant) -> dict[str, object] | None:
    """The study's untuned setting (what ``bench compare`` trains) as a point of the search
    space, to be trial 0: the best trial is then never worse on validation than the
    default. None when the default lies outside the space (it cannot be a trial there)."""
    from bench.models.build import default_value

    params: dict[str, object] = {}
    for name, entry in space.entries().items():
        if not _applies(name, base, variant):
            continue
        value = default_value(base, variant, name)
        if value is None or not _contains(entry, value):
            return None  # e.g. blocks with different dropout rates: no single value is the default
        params[name] = value
    return params


def make_pruner(name: str, epochs: int, min_epochs: int = 1) -> optuna.pruners.BasePruner:
    """The pruner a study names; steps are epochs trained, so no trial is judged before
    ``min_epochs`` (the median pruner, warmed up by ``min_epochs`` steps, from the one after)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_epochs)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=min_epochs, max_resource=epochs, reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise BenchError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


def trial_seed(seed: int, trial_number: int) -> int:
    """Trial ``n``'s seed, ``seed + n``, wrapped to stay a valid seed (0..MAX_SEED) however
    large ``--seed`` and the trial numbers grow."""
    return (seed + trial_number) % (MAX_SEED + 1)


def make_sampler(seed: int, trial_number: int) -> optuna.samplers.TPESampler:
    """TPE seeded for one trial number: ``seed + number``.

    One sampler per ask, not one per worker: workers started with the same ``--seed``
    would otherwise draw the same random start-up points in step, while this way trial
    ``n`` gets the same proposal however many workers share the study. ``constant_liar``
    keeps TPE from proposing again what a running trial on another worker is trying.
    """
    return optuna.samplers.TPESampler(seed=trial_seed(seed, trial_number), constant_liar=True)
