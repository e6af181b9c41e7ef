"""Training recipes in the compiled engine: a member trained with one matches Keras' own.

The reference is the same as for the update rules (``tests/test_population.py``): a Keras
model built with the member's seed, trained by the Keras optimizer that
:func:`bench.models.build.make_optimizer` makes for the member, with ``train_on_batch`` on
the member's batches. After an epoch the member and the model hold the same weights
within float32 round-off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.models import HParams, get_variant
from bench.models.build import make_optimizer
from bench.population import train_population
from tests.test_population import _keras_epoch, _weights

#: (optimizer, learning rate, recipe fields): each recipe against Keras' implementation.
RECIPES = {
    "adamw": ("adamw", 1e-3, {"weight_decay": 0.05}),
    "adamw-keras-default-decay": ("adamw", 1e-3, {}),
    "adam-weight-decay": ("adam", 1e-3, {"weight_decay": 0.02}),
    "sgd-momentum": ("sgd", 0.02, {"momentum": 0.9}),
    "sgd-nesterov": ("sgd", 0.02, {"momentum": 0.9, "nesterov": True}),
    "sgd-momentum-weight-decay": ("sgd", 0.02, {"momentum": 0.5, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_a_member_with_a_recipe_ends_its_epoch_with_the_weights_keras_gives(tiny_splits, recipe):
    optimizer, learning_rate, fields = RECIPES[recipe]
    variant = get_variant("batchnorm-shallow")  # kernels, biases and batch-norm weights all decay
    n = 64 * 12 + 32  # twelve full batches (three unrolled iterations) and a partial one
    splits = dataclasses.replace(tiny_splits, x_train=tiny_splits.x_train[:n], y_train=tiny_splits.y_train[:n])
    hp = HParams(optimizer=optimizer, learning_rate=learning_rate, batch_size=64, epochs=1, seed=3, **fields)
    plain = HParams(optimizer="adam" if optimizer == "adamw" else optimizer, learning_rate=learning_rate,
                    batch_size=64, epochs=1, seed=3)
    # a member with the recipe beside one without: recipes are per member
    [member, other] = train_population(variant, [hp, dataclasses.replace(hp, seed=11)], splits)
    expected = _weights(_keras_epoch(variant, hp, splits))
    got = _weights(member.keras_model())
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4, err_msg=name)
    # and the recipe did something: the plain rule ends elsewhere
    baseline = _weights(_keras_epoch(variant, plain, splits))
    assert any(not np.array_equal(baseline[k], expected[k]) for k in expected)
    assert other.history["loss"] != member.history["loss"]


def test_recipes_reach_keras_through_the_declared_arguments():
    opt = make_optimizer(HParams(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-4))
    assert (opt.momentum, opt.nesterov, opt.weight_decay) == (0.9, True, 1e-4)
    assert make_optimizer(HParams(optimizer="adamw")).weight_decay == pytest.approx(0.004)
    assert make_optimizer(HParams()).weight_decay is None  # the default: no decay, as before


def test_members_differ_in_recipe_inside_one_population(tiny_splits):
    variant = get_variant("vanilla-shallow")
    hp = HParams(optimizer="sgd", learning_rate=0.02, batch_size=64, epochs=1, seed=3)
    members = [hp, hp.replace(momentum=0.9), hp.replace(momentum=0.9, nesterov=True, weight_decay=0.01)]
    together = train_population(variant, members, tiny_splits)
    for hparams, result in zip(members, together, strict=True):
        [alone] = train_population(variant, [hparams], tiny_splits)
        np.testing.assert_allclose(result.history["loss"], alone.history["loss"], rtol=1e-5)
