"""Training recipes in the compiled engine: a member trained with one matches Keras' own.

The reference is the same as for the update rules (``tests/test_population.py``): a Keras
model built with the member's seed, trained by the Keras optimizer that
:func:`bench.models.build.make_optimizer` makes for the member, with ``train_on_batch`` on
the member's batches. After an epoch the member and the model hold the same weights
within float32 round-off.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import optuna
import pytest
import yaml

from bench.models import HParams, declare_variant, get_variant
from bench.models.build import build_model, make_loss, make_optimizer
from bench.population import train_population
from bench.population.loop import epoch_order
from bench.population.net import StackedNet
from bench.studies import parse_study
from bench.tuning.search import make_sampler, suggest
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
    splits = dataclasses.replace(
        tiny_splits, x_train=tiny_splits.x_train[:n], y_train=tiny_splits.y_train[:n]
    )
    hp = HParams(
        optimizer=optimizer, learning_rate=learning_rate, batch_size=64, epochs=1, seed=3, **fields
    )
    plain = HParams(
        optimizer="adam" if optimizer == "adamw" else optimizer,
        learning_rate=learning_rate,
        batch_size=64,
        epochs=1,
        seed=3,
    )
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
    members = [
        hp,
        hp.replace(momentum=0.9),
        hp.replace(momentum=0.9, nesterov=True, weight_decay=0.01),
    ]
    together = train_population(variant, members, tiny_splits)
    for hparams, result in zip(members, together, strict=True):
        [alone] = train_population(variant, [hparams], tiny_splits)
        np.testing.assert_allclose(result.history["loss"], alone.history["loss"], rtol=1e-5)


def _keras_run(
    variant,
    hp: HParams,
    splits,
    *,
    epochs: int = 1,
    loss="sparse_categorical_crossentropy",
    one_hot: bool = False,
    optimizer=None,
) -> keras.Model:
    """``epochs`` epochs of a plain Keras model from the member's initial weights, on the
    member's batches in the member's order (``one_hot``: the labels one-hot, for Keras'
    categorical losses)."""
    model = build_model(variant, hp, input_shape=splits.input_shape, num_classes=splits.num_classes)
    classes = splits.num_classes
    net = StackedNet(variant, 1, input_size=int(np.prod(splits.input_shape)), num_classes=classes)
    net.write_into(model, net.initial_values(hp.seed))
    model.compile(optimizer=optimizer or make_optimizer(hp), loss=loss, jit_compile=False)
    for epoch in range(epochs):
        order = epoch_order(hp.seed, epoch, len(splits.x_train))
        for start in range(0, len(order), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            labels = splits.y_train[idx]
            labels = np.eye(classes, dtype=np.float32)[labels] if one_hot else labels
            model.train_on_batch(splits.x_train[idx], labels)
    return model


def _assert_same_weights(got: keras.Model, expected: keras.Model) -> None:
    expected_weights, got_weights = _weights(expected), _weights(got)
    for name in expected_weights:
        np.testing.assert_allclose(
            got_weights[name], expected_weights[name], rtol=1e-3, atol=1e-4, err_msg=name
        )


def _small(splits, n: int = 64 * 12 + 32):
    """Twelve full batches of 64 (three unrolled iterations) and a partial one."""
    return dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n])


#: Each recipe hyperparameter: the protocol's value, a variant's override and a search entry.
SETTINGS = {
    "label_smoothing": (0.1, 0.05, {"low": 0.0, "high": 0.2}),
    "schedule": ("cosine", "step", {"choices": ["constant", "cosine", "step"]}),
    "warmup_epochs": (2, 1, {"low": 0, "high": 3}),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_a_recipe_is_set_in_the_protocol_per_variant_and_in_the_search_space(name):
    value, override, searched = SETTINGS[name]
    study = parse_study(
        yaml.safe_dump(
            {
                "name": "recipe",
                "task": "fashion_mnist",
                "variants": ["vanilla-shallow", "vanilla-deep"],
                "protocol": {name: value},
                "overrides": {"vanilla-deep": {name: override}},
                "search_space": {name: searched},
            }
        )
    )
    assert getattr(study.hparams(variant="vanilla-shallow"), name) == value
    assert getattr(study.hparams(variant="vanilla-deep"), name) == override
    assert study.hparams().as_params()[name] == str(value)  # logged as a param
    assert name in study.search_space.entries()
    trial = optuna.create_study(sampler=make_sampler(0, 0)).ask()
    hp = suggest(trial, study.search_space, study.hparams(), get_variant("vanilla-shallow"))
    if "choices" in searched:
        assert getattr(hp, name) in searched["choices"]
    else:
        assert searched["low"] <= getattr(hp, name) <= searched["high"]


def test_label_smoothing_matches_keras_categorical_crossentropy(tiny_splits):
    # no dropout: Keras would draw its own masks
    variant, splits = get_variant("batchnorm-shallow"), _small(tiny_splits)
    hp = HParams(
        optimizer="adam", learning_rate=1e-3, batch_size=64, epochs=1, seed=3, label_smoothing=0.2
    )
    [member, plain] = train_population(variant, [hp, hp.replace(label_smoothing=0.0)], splits)
    smoothed = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)
    expected = _keras_run(variant, hp, splits, loss=smoothed, one_hot=True)
    _assert_same_weights(member.keras_model(), expected)
    # the smoothed loss is reported; the member beside it without smoothing kept the plain one
    assert member.history["loss"][0] > plain.history["loss"][0]
    _assert_same_weights(plain.keras_model(), _keras_run(variant, plain.hparams, splits))
    # Keras' fit path: the same loss on the integer labels
    probs = keras.ops.softmax(np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32))
    labels = np.array([0, 3, 9, 2, 2])
    loss = make_loss(hp, 10)(labels, probs)
    np.testing.assert_allclose(
        loss,
        keras.losses.categorical_crossentropy(np.eye(10)[labels], probs, label_smoothing=0.2),
        rtol=1e-6,
    )
    assert make_loss(HParams(), 10) == "sparse_categorical_crossentropy"  # the default, as before


#: Keras' schedules for a member of 3 (cosine) or 4 (step) epochs of 13 steps at rate 0.05:
#: the engine's schedule and the one Keras' fit gets must both give these rates.
STEPS = 13
KERAS_SCHEDULES = {
    "cosine-warmup": (
        {"schedule": "cosine", "warmup_epochs": 1, "epochs": 3},
        keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=2 * STEPS, warmup_target=0.05, warmup_steps=STEPS
        ),
    ),
    "cosine": (
        {"schedule": "cosine", "epochs": 3},
        keras.optimizers.schedules.CosineDecay(0.05, decay_steps=3 * STEPS),
    ),
    "step": (
        {"schedule": "step", "epochs": 4},  # x0.1 from epoch 2, x0.01 from epoch 3
        keras.optimizers.schedules.PiecewiseConstantDecay(
            [2 * STEPS - 1, 3 * STEPS - 1], [0.05, 0.005, 0.0005]
        ),
    ),
}


@pytest.mark.parametrize("case", list(KERAS_SCHEDULES))
def test_a_member_with_a_schedule_matches_keras_schedules(tiny_splits, case):
    fields, expected_rate = KERAS_SCHEDULES[case]
    variant, splits = get_variant("batchnorm-shallow"), _small(tiny_splits)
    hp = HParams(optimizer="sgd", learning_rate=0.05, batch_size=64, seed=3, momentum=0.5, **fields)
    [member, constant] = train_population(
        variant, [hp, hp.replace(schedule="constant", warmup_epochs=0)], splits
    )
    reference = keras.optimizers.SGD(learning_rate=expected_rate, momentum=0.5)
    _assert_same_weights(
        member.keras_model(), _keras_run(variant, hp, splits, epochs=hp.epochs, optimizer=reference)
    )
    assert member.history["loss"] != constant.history["loss"]
    # Keras' fit gets the same rates, step by step
    optimizer = make_optimizer(hp, steps_per_epoch=STEPS)
    for step in range(hp.epochs * STEPS):
        optimizer.iterations.assign(step)  # the rate Keras' optimizer uses at this update
        np.testing.assert_allclose(
            float(optimizer.learning_rate),
            float(expected_rate(step)),
            rtol=1e-6,
            atol=1e-9,
            err_msg=f"step {step}",
        )


def test_an_unscheduled_member_keeps_a_plain_rate():
    plain = make_optimizer(HParams(learning_rate=0.01), steps_per_epoch=STEPS)
    assert float(plain.learning_rate) == pytest.approx(0.01)
    assert isinstance(plain.get_config()["learning_rate"], float)  # no schedule object
    rate = make_optimizer(HParams(learning_rate=0.01, warmup_epochs=1), steps_per_epoch=STEPS)
    assert float(rate.learning_rate) == 0.0  # warming up from 0


def test_a_member_with_max_norm_matches_keras_maxnorm(tiny_splits):
    variant = declare_variant(
        {"name": "maxnorm-test", "base": "batchnorm-shallow", "max_norm": 1.0}
    )
    splits = _small(tiny_splits)
    hp = HParams(optimizer="adam", learning_rate=3e-3, batch_size=64, epochs=1, seed=3)
    [member] = train_population(variant, [hp], splits)
    _assert_same_weights(member.keras_model(), _keras_run(variant, hp, splits))
    kernel = _weights(member.keras_model())["b0_dense/kernel"]
    assert np.linalg.norm(kernel, axis=0).max() <= 1.0 + 1e-6  # the limit held
    assert "maxnorm(1)" in variant.summary()  # logged with the structure
    # off means no constraint at all, in either engine
    plain = get_variant("batchnorm-shallow")
    assert build_model(plain).get_layer("b0_dense").kernel.constraint is None
    net = StackedNet(plain, 1, input_size=784, num_classes=10)
    assert all(var.constraint is None for var in net.trainable)
