"""Hyperparameters and the search space as data: declared once, read everywhere."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import optuna
import pytest
from pydantic import ValidationError

from bench.errors import VariantError
from bench.models import HParams, get_variant
from bench.models.hparams import DECLARED, SHARED, TUNABLE
from bench.models.space import DEFAULT_SPACE, FloatRange, SearchSpace
from bench.store import schema
from bench.tuning.search import default_params, make_sampler, suggest


def test_every_field_is_declared_with_its_param_name():
    assert tuple(DECLARED) == schema.HPARAMS == tuple(f.name for f in dataclasses.fields(HParams))
    assert set(TUNABLE) == {name for name, d in DECLARED.items() if d.space}
    assert set(SHARED) == {"optimizer", "batch_size"}  # what shapes a population's graph


@pytest.mark.parametrize(
    "name", [n for n, d in DECLARED.items() if d.kind is float and d.low is not None]
)
def test_every_float_field_refuses_nan_inf_and_values_below_its_range(name):
    for bad in (float("nan"), float("inf"), DECLARED[name].low - 1.0):
        with pytest.raises(VariantError, match=DECLARED[name].label):
            HParams(**{name: bad})


def test_the_default_space_is_learning_rate_and_dropout_as_before():
    space = SearchSpace()
    assert list(space.entries()) == ["learning_rate", "dropout"]
    assert json.loads(space.model_dump_json(exclude_none=True)) == {
        "learning_rate": {"low": 1e-05, "high": 0.01, "log": True},
        "dropout": {"low": 0.0, "high": 0.8, "log": False},
    }
    assert space.learning_rate == DEFAULT_SPACE["learning_rate"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"gamma": {"low": 0.1, "high": 0.2}}, "gamma"),
        ({"dropout": {"low": 0.0, "high": 1.5}}, "dropout: the range must lie in [0, 1)"),
        (
            {"learning_rate": {"low": -1.0, "high": 0.1}},
            "learning_rate: the range must lie in (0, inf)",
        ),
        ({"optimizer": {"choices": ["adam", "adagrad"]}}, "unknown optimizer 'adagrad'"),
        ({"batch_size": {"choices": [0, 64]}}, "batch size must be > 0"),
        ({"batch_size": {"low": 32, "high": 64}}, "batch_size.choices"),
    ],
)
def test_a_space_entry_is_checked_against_its_field(entry, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        SearchSpace.model_validate(entry)


def test_suggest_samples_in_declared_order_whatever_the_files_order():
    """The sampler sees the same distributions in the same order: trials are reproducible."""
    entries = {
        "optimizer": {"choices": ["adam", "sgd"]},
        "batch_size": {"choices": [32, 64]},
        "dropout": {"low": 0.1, "high": 0.5},
        "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    }
    reordered = SearchSpace.model_validate(dict(reversed(list(entries.items()))))
    variant = get_variant("dropout-shallow")
    for space in (SearchSpace.model_validate(entries), reordered):
        study = optuna.create_study(sampler=make_sampler(0, 0))
        trial = study.ask()
        hp = suggest(trial, space, HParams(), variant)
        assert list(trial.params) == ["learning_rate", "dropout", "batch_size", "optimizer"]
        assert (hp.learning_rate, hp.dropout, hp.batch_size, hp.optimizer) == tuple(
            trial.params.values()
        )


def test_parameters_the_variant_cannot_use_are_not_sampled_and_not_defaulted():
    space = SearchSpace()
    study = optuna.create_study(sampler=make_sampler(0, 0))
    trial = study.ask()
    suggest(trial, space, HParams(), get_variant("vanilla-shallow"))
    assert list(trial.params) == ["learning_rate"]
    assert default_params(space, HParams(), get_variant("vanilla-shallow")) == {
        "learning_rate": 0.001
    }
    assert default_params(space, HParams(), get_variant("dropout-shallow")) == {
        "learning_rate": 0.001,
        "dropout": get_variant("dropout-shallow").dropout_rate,
    }
    narrow = SearchSpace.model_validate({"learning_rate": {"low": 0.01, "high": 0.1}})
    assert (
        default_params(narrow, HParams(), get_variant("vanilla-shallow")) is None
    )  # outside: no trial 0


def test_a_range_is_float_or_int_by_its_fields_type():
    assert SearchSpace.model_validate(
        {"learning_rate": {"low": 1e-3, "high": 1e-2}}
    ).learning_rate == FloatRange(low=1e-3, high=1e-2)


def test_beta_2_is_searchable_and_reaches_each_member_through_keras(tiny_splits):
    """Adam's beta_2, added as one declared field (and its param name): searchable, passed
    to Keras' optimizer, per member in a population."""
    from bench.models.build import make_optimizer
    from bench.population import train_population

    space = SearchSpace.model_validate({"beta_2": {"low": 0.9, "high": 0.9999}})
    trial = optuna.create_study(sampler=make_sampler(0, 0)).ask()
    hp = suggest(trial, space, HParams(), get_variant("vanilla-shallow"))
    assert 0.9 <= hp.beta_2 <= 0.9999 and make_optimizer(hp).beta_2 == hp.beta_2
    assert default_params(space, HParams(), get_variant("vanilla-shallow"))["beta_2"] == 0.999
    with pytest.raises(VariantError, match="beta_2 applies to adam"):
        HParams(optimizer="sgd", beta_2=0.9)
    base = HParams(learning_rate=1e-2, batch_size=64, epochs=1, seed=1)
    [a, b] = train_population(
        get_variant("vanilla-shallow"), [base, base.replace(beta_2=0.9)], tiny_splits
    )
    [alone] = train_population(
        get_variant("vanilla-shallow"), [base.replace(beta_2=0.9)], tiny_splits
    )
    np.testing.assert_allclose(b.history["loss"], alone.history["loss"], rtol=1e-5)
    assert a.history["loss"] != b.history["loss"]
