"""bench.models.program: the one program of layer operations every reader of a variant uses."""

from __future__ import annotations

import pytest

from bench.errors import VariantError
from bench.models import Conv, Dense, HParams, Variant, get_variant, list_variants
from bench.models import program as p
from bench.models.build import build_model

SHAPES = [((28, 28), 10), ((32, 32, 3), 5)]  # the seed tasks' images; colour images, 5 classes


@pytest.mark.parametrize("name", list_variants())
def test_the_program_counts_the_parameters_keras_counts(name):
    variant = get_variant(name)
    for input_shape, classes in SHAPES:
        model = build_model(variant, input_shape=input_shape, num_classes=classes)
        assert p.parameter_count(variant, input_shape, classes) == model.count_params(), input_shape


@pytest.mark.parametrize("name", list_variants())
def test_the_keras_layers_are_the_programs_operations_in_order(name):
    variant = get_variant(name)
    ops = p.compile_variant(variant).ops
    model = build_model(variant)
    assert [layer.name for layer in model.layers[1:]] == [op.name for op in ops]  # [0]: the input
    # A tuned rate of 0 removes the hidden dropout layers, and only those.
    untuned = build_model(variant, HParams(dropout=0.0))
    kept = [op.name for op in ops if not (isinstance(op, p.Dropout) and op.tunable)]
    assert [layer.name for layer in untuned.layers[1:]] == kept


def test_a_block_compiles_to_its_operations_in_the_documented_order():
    variant = Variant(
        "test-every-feature",
        family="test",
        group="test",
        blocks=(
            Dense(32),
            Dense(
                64, dropout=0.5, dropout_place="pre", batch_norm="post", l2=1e-4, residual_from=0
            ),
        ),
        input_dropout=0.2,
    )
    compiled = p.compile_variant(variant)
    assert [type(op) for op in compiled.stem] == [p.Dropout]
    assert [type(op) for op in compiled.blocks[1]] == [
        p.Linear,
        p.Dropout,
        p.Activation,
        p.BatchNorm,
        p.Residual,
    ]
    assert compiled.output == p.Linear(
        "output", 64, 10, True, "glorot_uniform", activation="softmax"
    )
    assert variant.summary() == "D0.2 -> [0] 32 relu -> [1] 64 L2(0.0001) D0.5 relu BN +[0]"
    # the input's dropout keeps its rate; the blocks' take HParams.dropout
    assert [op.rate_for(0.1) for op in compiled.ops if isinstance(op, p.Dropout)] == [0.2, 0.1]


def test_batch_norm_and_missing_biases_are_counted():
    plain = Variant("test-plain", family="test", group="test", blocks=(Dense(16),))
    no_bias = Variant(
        "test-no-bias", family="test", group="test", blocks=(Dense(16, use_bias=False),)
    )
    bn = Variant("test-bn", family="test", group="test", blocks=(Dense(16, batch_norm="pre"),))
    assert p.parameter_count(plain) == 784 * 16 + 16 + 16 * 10 + 10
    assert p.parameter_count(no_bias) == p.parameter_count(plain) - 16
    assert p.parameter_count(bn) == p.parameter_count(plain) + 4 * 16  # gamma, beta, mean, variance


def test_convolutions_that_leave_no_pixels_are_an_error_naming_the_block():
    variant = Variant(
        "test-too-small", family="test", group="test", blocks=(Conv(4, 5), Conv(4, 25))
    )
    with pytest.raises(VariantError, match="'test-too-small': block 1 leaves nothing"):
        p.compile_variant(variant)
