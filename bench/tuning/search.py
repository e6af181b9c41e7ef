"""What a trial tries: the search space sampled, the sampler seeded, the pruner built."""

from __future__ import annotations

import dataclasses

import optuna

from bench.errors import BenchError
from bench.models import HParams, Variant
from bench.models.spec import MAX_SEED
from bench.store import schema
from bench.studies import PRUNERS, SearchSpace


def suggest(trial: optuna.Trial, space: SearchSpace, base: HParams, variant: Variant) -> HParams:
    """Sample the study's search space; parameters the variant cannot use are not sampled."""
    lr = space.learning_rate
    changes: dict[str, object] = {schema.LEARNING_RATE: trial.suggest_float(schema.LEARNING_RATE, lr.low, lr.high, log=lr.log)}
    if space.dropout is not None and variant.has_dropout:
        d = space.dropout
        changes[schema.DROPOUT] = trial.suggest_float(schema.DROPOUT, d.low, d.high, log=d.log)
    if space.batch_size is not None:
        changes[schema.BATCH_SIZE] = int(trial.suggest_categorical(schema.BATCH_SIZE, space.batch_size.choices))
    if space.optimizer is not None:
        changes[schema.OPTIMIZER] = str(trial.suggest_categorical(schema.OPTIMIZER, space.optimizer.choices))
    return dataclasses.replace(base, **changes)


def default_params(space: SearchSpace, base: HParams, variant: Variant) -> dict[str, object] | None:
    """The study's untuned setting (what ``bench compare`` trains) as a point of the search
    space, to be trial 0: the best trial is then never worse on validation than the
    default. None when the default lies outside the space (it cannot be a trial there)."""
    from bench.models.build import learning_rate_of

    params: dict[str, object] = {schema.LEARNING_RATE: learning_rate_of(base)}
    if space.dropout is not None and variant.has_dropout:
        dropout = base.dropout if base.dropout is not None else variant.dropout_rate
        if dropout is None:
            return None  # blocks with different rates: no single dropout value is the default
        params[schema.DROPOUT] = dropout
    if space.batch_size is not None:
        params[schema.BATCH_SIZE] = base.batch_size
    if space.optimizer is not None:
        params[schema.OPTIMIZER] = base.optimizer
    ranges = {schema.LEARNING_RATE: space.learning_rate, schema.DROPOUT: space.dropout}
    for key, value in params.items():
        r = ranges.get(key)
        if r is not None and not r.low <= float(value) <= r.high:
            return None
    if space.batch_size is not None and base.batch_size not in space.batch_size.choices:
        return None
    if space.optimizer is not None and base.optimizer not in space.optimizer.choices:
        return None
    return params


def make_pruner(name: str, epochs: int, min_epochs: int = 1) -> optuna.pruners.BasePruner:
    """The pruner a study names; steps are epochs trained, so no trial is judged before
    ``min_epochs`` (the median pruner, warmed up by ``min_epochs`` steps, from the one after)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min_epochs)
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs, reduction_factor=3)
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
