"""The seed notebooks as the suite runs them: every model they list, wired as they wired it,
with their parameter counts, and each study carrying the notebook's protocol and numbers.

The numbers here are copied from the notebooks (``../shared/seeds``), not from our runs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bench.errors import StudyError
from bench.models import get_variant
from bench.models.build import build_model, serving_model
from bench.plan import Plan
from bench.studies import load_study, parse_study
from tests.support import SEED_000_PARAMS, inbound, layers_of

# Every parameter count a notebook's model summary prints.
NOTEBOOK_PARAMS = {
    **SEED_000_PARAMS,
    # seed 001 (model 1b prints no summary)
    "mlp2-plain": 1_333_770,
    "mlp3-plain": 567_434,
    "mlp3-dropout-bn": 568_458,
    "mlp5-plain": 4_396_170,
    "mlp5-dropout-bn": 4_401_802,
    # seed 003
    "mlp-128-64": 109_386,
    "lenet5-relu": 142_346,
    "lenet5-relu-dropout": 142_346,
    "lenet5-relu-bn": 142_434,
    # seed 004
    "mlp-64-64-dropout": 55_050,
    "mlp-400-300-dropout": 437_310,
    "mlp-64-16-l2": 51_450,
}

# study -> (task, epochs, batch, optimizer, lr, validation, standardize, {variant: (acc, loss)})
SEED_STUDIES = {
    "seed-001": (
        "mnist",
        15,
        128,
        "adam",
        0.001,
        10_000,
        False,
        {
            "mlp2-plain": (0.9815, None),
            "mlp2-dropout-bn": (0.9844, None),
            "mlp3-plain": (0.9828, None),
            "mlp3-dropout-bn": (0.9844, None),
            "mlp5-plain": (0.9779, None),
            "mlp5-dropout-bn": (0.9846, None),
        },
    ),
    "seed-002": (
        "mnist",
        10,
        256,
        "sgd",
        None,
        10_000,
        False,
        {
            "lenet5-tanh-bn": (0.9875, 0.0498),
            "lenet5-tanh-bn-input": (0.9872, 0.0509),
            "lenet5-tanh-dropout": (0.9294, 0.2486),
            "lenet5-tanh-dropout-bn": (0.9469, 0.1875),
        },
    ),
    "seed-003": (
        "fashion_mnist",
        20,
        128,
        "adam",
        0.001,
        12_000,
        True,
        {
            "mlp-128-64": (0.8878, None),
            "lenet5-relu": (0.8673, None),
            "lenet5-relu-dropout": (0.8826, None),
            "lenet5-relu-bn": (0.7302, None),
        },
    ),
    "seed-004": (
        "mnist",
        30,
        128,
        "rmsprop",
        0.001,
        10_000,
        False,
        {
            "mlp-64-64-dropout": (0.9762, 0.1082),
            "mlp-400-300-dropout": (0.9836, 0.0965),
            "mlp-64-16-l2": (0.9678, 0.1409),
        },
    ),
}

# Epochs per model where a notebook trained its models differently.
SEED_EPOCHS = {
    "seed-003": {
        "mlp-128-64": 20,
        "lenet5-relu": 10,
        "lenet5-relu-dropout": 15,
        "lenet5-relu-bn": 15,
    },
    "seed-004": {"mlp-64-64-dropout": 30, "mlp-400-300-dropout": 20, "mlp-64-16-l2": 30},
}


@pytest.mark.parametrize("name", list(NOTEBOOK_PARAMS))
def test_every_model_a_notebook_lists_has_its_parameter_count(name):
    assert build_model(get_variant(name)).count_params() == NOTEBOOK_PARAMS[name]


@pytest.mark.parametrize("study", list(SEED_STUDIES))
def test_seed_study_protocol_and_references(study):
    task, epochs, batch, optimizer, lr, validation, standardize, refs = SEED_STUDIES[study]
    s = load_study(study)
    p = s.protocol
    assert (s.task, p.epochs, p.batch_size, p.optimizer, p.learning_rate) == (
        task,
        epochs,
        batch,
        optimizer,
        lr,
    )
    assert (p.validation_size, p.standardize, p.seeds) == (validation, standardize, 1)
    assert s.variant_names == list(refs)
    for variant, (acc, loss) in refs.items():
        ref = s.references[variant]
        assert (ref.test_accuracy, ref.test_loss) == (acc, loss), variant
        assert ref.params == NOTEBOOK_PARAMS.get(variant), (
            variant
        )  # every count the notebook prints
    assert s.notes, "a seed study says where its protocol departs from the notebook's"
    jobs = Plan.from_study(s).jobs()
    expected = SEED_EPOCHS.get(study, {v: epochs for v in refs})
    assert {v: hp.epochs for v, _, hp in jobs} == expected


def test_notebooks_that_validated_on_test_say_so():
    for study in ("seed-001", "seed-004"):
        assert any(
            "validation_data" in note and "test set" in note for note in load_study(study).notes
        )


# --------------------------------------------------------------------------- wiring


def test_seed_001_initializers():
    for name in ("mlp2-plain", "mlp3-dropout-bn", "mlp5-dropout-bn"):
        model = build_model(get_variant(name))
        for layer in layers_of(model, keras.layers.Dense):
            assert isinstance(layer.kernel_initializer, keras.initializers.RandomNormal), (
                name,
                layer.name,
            )
    # Model 1b's output layer was left at the Keras default.
    model = build_model(get_variant("mlp2-dropout-bn"))
    assert isinstance(
        model.get_layer("b0_dense").kernel_initializer, keras.initializers.RandomNormal
    )
    assert isinstance(
        model.get_layer("output").kernel_initializer, keras.initializers.GlorotUniform
    )


def test_seed_001_model_3b_order():
    model = build_model(get_variant("mlp5-dropout-bn"))
    # 2048 -> D0.5 -> 1024 -> BN -> 512 -> D0.5 -> 256 -> BN -> 128 -> D0.5 -> BN
    assert inbound(model, "b1_dense") == ["b0_dropout"]
    assert inbound(model, "b2_dense") == ["b1_bn"]
    assert inbound(model, "b3_dense") == ["b2_dropout"]
    assert inbound(model, "b4_dense") == ["b3_bn"]
    assert inbound(model, "output") == ["b4_bn"]
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.5, 0.5, 0.5]


def test_seed_002_lenet_wiring():
    model = build_model(get_variant("lenet5-tanh-dropout-bn"))
    # Dropout(0.2) -> BatchNorm on the input, then Conv (no bias) -> Dropout 0.5 -> BN -> tanh.
    assert inbound(model, "input_bn") == ["input_dropout"]
    assert inbound(model, "b0_conv") == ["input_bn"]
    assert inbound(model, "b0_dropout") == ["b0_conv"]
    assert inbound(model, "b0_bn") == ["b0_dropout"]
    assert inbound(model, "b0_tanh") == ["b0_bn"]
    convs = layers_of(model, keras.layers.Conv2D)
    assert [c.use_bias for c in convs] == [False, False, True]
    pools = layers_of(model, keras.layers.AveragePooling2D)
    assert [p.strides for p in pools] == [(1, 1), (2, 2)]
    # 28 same -> pool/1 -> 27 -> conv 5 -> 23 -> pool/2 -> 11 -> conv 5 -> 7x7x120
    assert model.get_layer("b2_conv").output.shape[1:] == (7, 7, 120)
    plain = build_model(get_variant("lenet5-tanh-bn"))
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in plain.layers)
    assert "input_bn" not in [layer.name for layer in plain.layers]


def test_seed_003_lenet_wiring():
    model = build_model(get_variant("lenet5-relu-dropout"))
    assert model.get_layer("b1_conv").output.shape[1:] == (
        14,
        14,
        16,
    )  # 'same', as the summary shows
    assert model.get_layer("b2_conv").output.shape[1:] == (3, 3, 120)
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.1, 0.1, 0.5]
    assert inbound(model, "b0_maxpool") == ["b0_relu"]  # Dropout -> relu == relu -> Dropout
    bn = build_model(get_variant("lenet5-relu-bn"))
    assert inbound(bn, "b0_bn") == ["b0_relu"] and inbound(bn, "b0_maxpool") == ["b0_bn"]
    assert isinstance(bn.get_layer("b0_conv").kernel_initializer, keras.initializers.RandomUniform)
    assert isinstance(bn.get_layer("b1_conv").kernel_initializer, keras.initializers.HeUniform)


def test_seed_004_l2_model():
    model = build_model(get_variant("mlp-64-16-l2"))
    dense = layers_of(model, keras.layers.Dense)
    assert [d.units for d in dense] == [64, 16, 10]
    assert [
        d.kernel_regularizer.l2 if d.kernel_regularizer else 0.0 for d in dense
    ] == pytest.approx([1e-4, 1e-4, 0.0])
    assert [layer.rate for layer in layers_of(model, keras.layers.Dropout)] == [0.5]


def test_dropout_before_relu_is_dropout_after_it():
    """The zoo writes "relu -> Dropout" as "Dropout -> relu": the same function, mask for mask."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 32)).astype(np.float32)
    drop = keras.layers.Dropout(0.5, seed=3)
    a = keras.ops.relu(drop(z, training=True))
    drop = keras.layers.Dropout(0.5, seed=3)
    b = drop(keras.ops.relu(z), training=True)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------- standardised data


def test_standardize_uses_the_training_split_only(tiny_splits_factory):
    plain = tiny_splits_factory("fashion_mnist")
    std = tiny_splits_factory("fashion_mnist", standardize=True)
    assert std.standardized and not plain.standardized
    assert float(std.x_train.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(std.x_train.std()) == pytest.approx(1.0, abs=1e-4)
    mean, sd = float(plain.x_train.mean()), float(plain.x_train.std())
    # validation and test get the training split's constants, not their own
    np.testing.assert_allclose(std.x_val, (plain.x_val - mean) / sd, atol=1e-4)
    np.testing.assert_allclose(std.x_test, (plain.x_test - mean) / sd, atol=1e-4)
    np.testing.assert_array_equal(std.raw_test_images(), plain.raw_test_images())
    assert "training split's mean and std" in std.preprocessing


def test_a_served_model_applies_the_standardisation(tiny_splits_factory):
    splits = tiny_splits_factory("fashion_mnist", standardize=True)
    model = build_model(get_variant("mlp-128-64"))
    served = serving_model(model, scale=splits.scale, offset=splits.offset)
    raw = splits.raw_test_images()[:32]
    np.testing.assert_allclose(
        np.asarray(served.predict(raw, verbose=0)),
        np.asarray(model.predict(splits.x_test[:32], verbose=0)),
        rtol=1e-4,
        atol=1e-5,
    )


# --------------------------------------------------------------------------- overrides


def _study(extra: str) -> str:
    return (
        "name: toy\ntask: mnist\nvariants: [mlp-64-64-dropout, mlp-64-16-l2]\n"
        "protocol: {epochs: 4, batch_size: 64, optimizer: rmsprop}\n" + extra
    )


def test_overrides_apply_per_variant_and_the_command_line_beats_them():
    study = parse_study(
        _study("overrides:\n  mlp-64-16-l2: {epochs: 7, batch_size: 32, learning_rate: 0.01}\n")
    )
    jobs = {v: hp for v, _, hp in Plan.from_study(study).jobs()}
    assert (jobs["mlp-64-64-dropout"].epochs, jobs["mlp-64-64-dropout"].batch_size) == (4, 64)
    assert (jobs["mlp-64-16-l2"].epochs, jobs["mlp-64-16-l2"].batch_size) == (7, 32)
    assert (
        jobs["mlp-64-16-l2"].learning_rate == 0.01 and jobs["mlp-64-16-l2"].optimizer == "rmsprop"
    )
    cli = {v: hp for v, _, hp in Plan.from_study(study, epochs=1).jobs()}
    assert cli["mlp-64-64-dropout"].epochs == cli["mlp-64-16-l2"].epochs == 1
    assert cli["mlp-64-16-l2"].batch_size == 32  # only what the command line gives is replaced


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "overrides:\n  vanilla-deep: {epochs: 3}\n",
            "overrides for variants not in the study: vanilla-deep",
        ),
        ("overrides:\n  mlp-64-16-l2: {epochs: 0}\n", "overrides.mlp-64-16-l2.epochs"),
        ("overrides:\n  mlp-64-16-l2: {epoch: 3}\n", "overrides.mlp-64-16-l2.epoch"),
        ("notes: just one string\n", "notes"),
    ],
)
def test_bad_overrides_and_notes_are_rejected(extra, message):
    with pytest.raises(StudyError, match=message.replace(".", r"\.")):
        parse_study(_study(extra), source="toy.yaml")
