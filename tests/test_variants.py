"""bench.variants and bench.models: the registry, validation, and what the builder builds."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from bench.errors import VariantError
from bench.models import (
    CORE_VARIANTS,
    Conv,
    Dense,
    HParams,
    Variant,
    get_variant,
    list_variants,
    origin_of,
    register,
)
from bench.models.build import (
    build_model,
    logged_params,
    make_optimizer,
    serving_model,
    weight_tensors,
)
from tests.support import LENET_LIKE, SEED_000_PARAMS, inbound, layers_of

# --------------------------------------------------------------------------- every variant


@pytest.mark.parametrize("name", list_variants())
def test_every_registered_variant_builds(name):
    variant = get_variant(name)
    model = build_model(variant)
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)
    assert model.count_params() > 0
    probs = np.asarray(model(np.zeros((2, 28, 28), dtype=np.float32), training=False))
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # What the variant declares is what the model has.
    assert len(layers_of(model, keras.layers.Dropout)) == sum(
        1 for b in variant.blocks if b.dropout
    ) + (1 if variant.input_dropout else 0)
    assert bool(layers_of(model, keras.layers.BatchNormalization)) == variant.has_batch_norm
    assert len(layers_of(model, keras.layers.Add)) == sum(
        1 for b in variant.blocks if isinstance(b, Dense) and b.residual_from is not None
    )
    params = variant.structure_params()
    assert params["variant"] == name
    assert params["variant.layers"] == str(len(variant.blocks))
    assert variant.summary()


def test_core_variants_are_registered_in_order():
    assert tuple(list_variants(",".join(CORE_VARIANTS))) == CORE_VARIANTS
    assert set(CORE_VARIANTS) <= set(list_variants())
    assert tuple(SEED_000_PARAMS) == CORE_VARIANTS


@pytest.mark.parametrize("name", CORE_VARIANTS)
def test_core_variants_have_seed_000_parameter_counts(name):
    assert build_model(get_variant(name)).count_params() == SEED_000_PARAMS[name]


def test_core_variant_structure():
    shallow = build_model(get_variant("vanilla-shallow"))
    assert [layer.units for layer in layers_of(shallow, keras.layers.Dense)] == [128, 10]
    deep = build_model(get_variant("vanilla-deep"))
    assert [layer.units for layer in layers_of(deep, keras.layers.Dense)] == [512] * 6 + [10]
    dropout = build_model(get_variant("dropout-deep"))
    assert [layer.rate for layer in layers_of(dropout, keras.layers.Dropout)] == [0.5] * 6
    bn = build_model(get_variant("batchnorm-shallow"))
    assert inbound(bn, "b0_bn") == ["b0_relu"]  # seed 000: Dense -> relu -> BatchNorm
    assert inbound(bn, "output") == ["b0_bn"]


def test_residual_variant_is_wired_as_in_seed_000():
    model = build_model(get_variant("batchnorm-residual-deep"))
    adds = layers_of(model, keras.layers.Add)
    assert len(adds) == 2
    skip1, skip2 = (a.name for a in adds)
    # out_k is block k's output (Dense -> relu -> BatchNorm), 1-based as in the notebook.
    assert sorted(inbound(model, skip1)) == ["b0_bn", "b2_bn"]  # skip1 = add(out1, out3)
    assert inbound(model, "b3_dense") == [skip1]  # skip1 feeds layer 4
    assert sorted(inbound(model, skip2)) == sorted([skip1, "b4_bn"])  # skip2 = add(skip1, out5)
    assert inbound(model, "b5_dense") == [skip2]  # skip2 feeds layer 6
    assert inbound(model, "output") == ["b5_bn"]
    assert inbound(model, "b1_dense") == ["b0_bn"]  # out1 also feeds layer 2 directly
    assert inbound(model, "b4_dense") == ["b3_bn"]
    assert (
        get_variant("batchnorm-residual-deep").structure_params()["variant.residual"] == "0->2,2->4"
    )


def test_weight_tensors_are_every_kernel_in_order():
    model = build_model(get_variant("vanilla-deep"))
    kernels = weight_tensors(model)
    assert list(kernels) == [f"b{i}_dense" for i in range(6)] + ["output"]
    assert kernels["b0_dense"].shape == (784, 512)
    assert kernels["output"].shape == (512, 10)


# --------------------------------------------------------------------------- the registry


def test_glob_listing():
    deep = list_variants("*-deep")
    assert {"vanilla-deep", "dropout-deep", "batchnorm-residual-deep"} <= set(deep)
    assert deep == [n for n in list_variants() if n.endswith("-deep")]
    both = list_variants("vanilla-*, batchnorm-shallow")
    assert both[:2] == ["vanilla-shallow", "vanilla-deep"]
    assert "batchnorm-shallow" in both
    assert all(n.startswith("vanilla-") or n == "batchnorm-shallow" for n in both)
    assert list_variants("vanilla-*,vanilla-shallow") == list_variants("vanilla-*")  # no duplicates
    assert list_variants(["dropout-shallow", "*-residual-*"]) == [
        "dropout-shallow",
        "batchnorm-residual-deep",
    ]
    assert list_variants("*") == list_variants()


@pytest.mark.parametrize("lookup", [get_variant, list_variants])
def test_unknown_variant_suggests_a_close_name(lookup):
    with pytest.raises(VariantError) as info:
        lookup("vanila-deep")
    message = str(info.value)
    assert "unknown variant 'vanila-deep'" in message
    assert "did you mean vanilla-deep" in message
    assert "known: " in message and "batchnorm-residual-deep" in message


def test_unknown_variant_without_a_close_name():
    with pytest.raises(VariantError) as info:
        get_variant("transformer")
    assert "did you mean" not in str(info.value)
    assert "known: " in str(info.value)


@pytest.mark.parametrize("patterns", ["nothing-*", "", " , "])
def test_patterns_that_match_nothing(patterns):
    with pytest.raises(VariantError):
        list_variants(patterns)


def test_a_name_cannot_be_registered_twice():
    """A taken name is refused for another structure or from another place; the same
    declaration from the same place again (a study file read twice) is the same entry."""
    before = list_variants()
    held = get_variant("vanilla-shallow")
    with pytest.raises(VariantError, match=r"already declared \(built-in\)"):
        register(dataclasses.replace(held, description="another"))
    with pytest.raises(VariantError, match="already declared"):
        register(held, origin="study file my.yaml")
    assert register(held) is held
    assert list_variants() == before and origin_of("vanilla-shallow") == "built-in"


# --------------------------------------------------------------------------- HParams


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"learning_rate": 0.0}, "learning rate must be a finite number > 0"),
        ({"learning_rate": -1e-3}, "learning rate must be a finite number > 0"),
        ({"learning_rate": float("inf")}, "learning rate must be a finite number > 0"),
        ({"seed": 2**31}, "seed must be in 0..2147483647"),
        ({"batch_size": 0}, "batch size must be > 0"),
        ({"batch_size": -32}, "batch size must be > 0"),
        ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; known: adam, sgd, rmsprop, adamw"),
        ({"dropout": 1.0}, r"dropout rate must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout rate must be in \[0, 1\)"),
        ({"epochs": 0}, "epochs must be > 0"),
    ],
)
def test_hparams_validation(changes, match):
    with pytest.raises(VariantError, match=match):
        HParams(**changes)


def test_hparams_replace_and_params():
    hp = HParams(learning_rate=1e-3, epochs=3)
    assert hp.replace(epochs=None, batch_size=64).epochs == 3  # None means "keep"
    assert hp.replace(batch_size=64).batch_size == 64
    assert HParams().as_params() == {
        "optimizer": "adam",
        "learning_rate": "default",
        "dropout": "default",
        "batch_size": "32",
        "epochs": "50",
        "seed": "0",
        "restore_best": "False",
    }


def test_runs_log_every_hyperparameter_as_the_number_it_trains_with():
    """MLflow compares, groups and plots params as numbers: never "default" on a run."""
    assert logged_params(HParams(), get_variant("vanilla-shallow")) == {
        "optimizer": "adam",
        "learning_rate": "0.001",
        "dropout": "0.0",
        "batch_size": "32",
        "epochs": "50",
        "seed": "0",
        "restore_best": "False",
    }
    dropout = get_variant("dropout-shallow")
    assert logged_params(HParams(), dropout)["dropout"] == str(dropout.dropout_rate)
    assert logged_params(HParams(dropout=0.3), dropout)["dropout"] == "0.3"  # the member's own
    assert (
        logged_params(HParams(optimizer="sgd"), dropout)["learning_rate"] == "0.01"
    )  # Keras' SGD default
    mixed = Variant(
        "mixed-rates", "mlp", "test", blocks=(Dense(8, dropout=0.2), Dense(8, dropout=0.4))
    )
    assert "dropout" not in logged_params(
        HParams(), mixed
    )  # several rates: the layer summary has them


@pytest.mark.parametrize(
    ("optimizer", "cls"),
    [
        ("adam", keras.optimizers.Adam),
        ("sgd", keras.optimizers.SGD),
        ("rmsprop", keras.optimizers.RMSprop),
    ],
)
def test_make_optimizer(optimizer, cls):
    opt = make_optimizer(HParams(optimizer=optimizer, learning_rate=0.0123))
    assert isinstance(opt, cls)
    assert float(opt.learning_rate) == pytest.approx(0.0123)
    default = make_optimizer(HParams(optimizer=optimizer))
    assert float(default.learning_rate) == pytest.approx(cls().learning_rate)


def test_hparams_dropout_overrides_the_variants_rates():
    variant = get_variant("dropout-deep")
    assert [d.rate for d in layers_of(build_model(variant), keras.layers.Dropout)] == [0.5] * 6
    tuned = build_model(variant, HParams(dropout=0.2))
    assert [d.rate for d in layers_of(tuned, keras.layers.Dropout)] == [0.2] * 6
    # Only the variant's dropout sites get dropout: a rate does not add layers.
    assert not layers_of(
        build_model(get_variant("vanilla-deep"), HParams(dropout=0.3)), keras.layers.Dropout
    )
    # A rate of 0 removes the layers at the variant's sites.
    assert not layers_of(build_model(variant, HParams(dropout=0.0)), keras.layers.Dropout)


# --------------------------------------------------------------------------- Variant validation


@pytest.mark.parametrize(
    ("blocks", "match"),
    [
        ((Dense(8, residual_from=1), Dense(8)), "not an earlier block"),
        ((Dense(8), Dense(8, residual_from=1)), "not an earlier block"),  # itself
        ((Dense(8), Dense(8, residual_from=-1)), "not an earlier block"),
        ((Dense(8), Conv(4)), "a Conv block follows a Dense block"),
        ((Dense(8, dropout=1.0),), r"dropout rate 1.0 not in \[0, 1\)"),
        ((Conv(4, dropout=-0.5),), r"not in \[0, 1\)"),
        ((), "has no blocks"),
    ],
)
def test_variant_validation(blocks, match):
    with pytest.raises(VariantError, match=match):
        Variant("broken", family="test", group="test", blocks=blocks)


def test_conv_variant_builds_and_takes_28x28_images():
    variant = LENET_LIKE
    assert variant.is_convolutional and variant.has_batch_norm and variant.has_dropout
    model = build_model(variant)
    assert model.input_shape == (None, 28, 28)
    assert model.output_shape == (None, 10)
    assert model.get_layer("add_channel").output.shape == (None, 28, 28, 1)
    assert model.get_layer("b0_avgpool").output.shape == (None, 27, 27, 6)  # 2x2, stride 1
    assert model.get_layer("b1_conv").output.shape == (None, 23, 23, 16)
    assert model.get_layer("b1_maxpool").output.shape == (None, 11, 11, 16)
    # batch_norm="pre": conv -> BN -> activation
    assert inbound(model, "b0_bn") == ["b0_conv"]
    assert inbound(model, "b0_tanh") == ["b0_bn"]
    assert inbound(model, "b2_bn") == ["b2_dense"]
    assert model.get_layer("b0_conv").use_bias is False
    expected = (
        5 * 5 * 1 * 6
        + 4 * 6  # conv 1 (no bias) + BN
        + 5 * 5 * 6 * 16
        + 4 * 16  # conv 2 (no bias) + BN
        + (11 * 11 * 16) * 84
        + 84
        + 4 * 84  # dense 84 + BN
        + 84 * 10
        + 10  # output
    )
    assert model.count_params() == expected
    probs = np.asarray(model(np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)))
    assert probs.shape == (3, 10)
    assert "[0] C6@5x5 same BN tanh avgpool2/1" in variant.summary()  # in the order applied


# --------------------------------------------------------------------------- serving


@pytest.mark.parametrize("name", ["batchnorm-shallow", "vanilla-deep"])
def test_serving_model_takes_uint8_and_matches_the_model(name, tiny_splits):
    model = build_model(get_variant(name))
    serving = serving_model(model)
    assert serving.inputs[0].dtype == "uint8"
    assert serving.input_shape == (None, 28, 28)
    raw = tiny_splits.raw_test_images()[:64]
    served = np.asarray(serving.predict(raw, verbose=0))
    direct = np.asarray(model.predict(raw.astype(np.float32) / 255.0, verbose=0))
    assert served.shape == (64, 10)
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-5)
