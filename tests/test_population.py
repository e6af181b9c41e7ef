"""Population training: a member is a Keras model trained alone, only faster.

The reference is Keras itself: a model that :func:`build_model` built with the member's
seed, trained by its Keras optimizer with ``train_on_batch`` on the member's batches in the
member's order. After the same steps the member and the model hold the same weights (and
the same batch-norm moving statistics) within float32 round-off.

Not every network can be compared over a whole epoch: ``batchnorm-residual-deep`` (6 x 512,
batch norm after ReLU) is chaotic in float32 on the tiny data. Two Keras runs whose initial
weights differ by one part in a million end its first epoch with biases 23% apart (relative
norm), as far as a member and its Keras twin end. So every stackable variant is compared
over a few steps, where round-off stays round-off, and small networks over an epoch.
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from bench import xla
from bench.models import Dense, HParams, Variant, get_variant, list_variants
from bench.models.build import build_model, make_optimizer
from bench.population import Population, supports, train_population
from bench.population.loop import epoch_order
from bench.population.net import StackedNet, hashed_uniform
from bench.result import Health

BN_RESIDUAL = Variant(
    "test-bn-residual",
    family="bn",
    group="test",
    blocks=(
        Dense(64, batch_norm="post"),
        Dense(64, batch_norm="pre"),
        Dense(64, batch_norm="post", residual_from=0),
    ),
)


def _keras_epoch(variant: Variant, hp: HParams, splits) -> keras.Model:
    """One epoch of a plain Keras model from the member's initial weights, on the member's
    batches, in the member's order."""
    model = build_model(variant, hp, input_shape=splits.input_shape, num_classes=splits.num_classes)
    net = StackedNet(
        variant, 1, input_size=int(np.prod(splits.input_shape)), num_classes=splits.num_classes
    )
    net.write_into(model, net.initial_values(hp.seed))
    model.compile(
        optimizer=make_optimizer(hp), loss="sparse_categorical_crossentropy", jit_compile=False
    )
    order = epoch_order(hp.seed, 0, len(splits.x_train))
    for start in range(0, len(order), hp.batch_size):
        idx = order[start : start + hp.batch_size]
        model.train_on_batch(splits.x_train[idx], splits.y_train[idx])
    return model


def _weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        v.path: keras.ops.convert_to_numpy(v.value)
        for v in model.weights
        if "seed_generator" not in v.path
    }


#: Every registered variant the stacked engine supports, and one that covers what none of
#: them has (batch norm before the activation, with a residual addition).
STACKED = [get_variant(name) for name in list_variants() if supports(get_variant(name))] + [
    BN_RESIDUAL
]
#: Each update rule in turn ("rmsprop" at Keras' default learning rate).
RULES = [("adam", 1e-3), ("rmsprop", None), ("sgd", 0.05)]
#: Four steps of every stackable variant: one pass of the compiled loop's unrolled body.
#: Whole epochs of small networks: the unrolled body, the steps after it and the last,
#: partial batch (the tiny data's 2,400 images are 37 batches of 64 and one of 32).
#: The last two compile with XLA, as training does by default (the others without: the
#: test suite keeps XLA off, tests/conftest.py, since XLA executables are never freed).
CASES = [(variant, RULES[i % len(RULES)], 4 * 64, False) for i, variant in enumerate(STACKED)] + [
    (get_variant("vanilla-shallow"), ("rmsprop", None), None, True),
    (get_variant("batchnorm-shallow"), ("sgd", 0.05), None, True),
]


@pytest.mark.parametrize(
    ("variant", "rule", "images", "use_xla"),
    CASES,
    ids=[f"{v.name}-{rule[0]}-{images or 'epoch'}{'-xla' * x}" for v, rule, images, x in CASES],
)
def test_a_member_ends_its_steps_with_the_weights_keras_gives(
    tiny_splits, monkeypatch, variant, rule, images, use_xla
):
    """A member against its Keras twin, on the same batches. Dropout is off (``dropout=0``):
    Keras draws its masks from its own generator (the hashed masks are checked below, by
    their statistics and by the accuracy they train to). The deep variants train four steps,
    not an epoch: over more steps their round-off grows past round-off (the module
    docstring; ten steps of mlp5-plain with RMSprop end 1% apart, four 1e-7 apart)."""
    monkeypatch.setenv(xla.ENV, "on" if use_xla else "off")
    optimizer, learning_rate = rule
    n = images or len(tiny_splits.x_train)
    splits = dataclasses.replace(
        tiny_splits, x_train=tiny_splits.x_train[:n], y_train=tiny_splits.y_train[:n]
    )
    hp = HParams(
        optimizer=optimizer,
        learning_rate=learning_rate,
        dropout=0.0,
        batch_size=64,
        epochs=1,
        seed=3,
    )
    [member, _] = train_population(variant, [hp, hp.replace(seed=11)], splits)
    expected = _weights(_keras_epoch(variant, hp, splits))
    got = _weights(member.keras_model())
    assert got.keys() == expected.keys()
    for name in expected:
        # float32 round-off: a wrong update rule or layer is off by the learning rate per step
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4, err_msg=name)
    if variant.has_batch_norm:
        assert any("moving_mean" in name for name in got)  # the moving statistics were compared too


def test_a_member_is_the_same_whatever_the_population_around_it(tiny_splits):
    variant = get_variant("dropout-shallow")
    hp = HParams(learning_rate=1e-3, batch_size=32, epochs=2, seed=5)
    [alone] = train_population(variant, [hp], tiny_splits)
    crowd = train_population(variant, [hp.replace(seed=9), hp.replace(seed=6), hp], tiny_splits)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(crowd[2].history[key], alone.history[key], rtol=1e-5)
    np.testing.assert_allclose(
        crowd[2].keras_model().get_layer("b0_dense").kernel.numpy(),
        alone.keras_model().get_layer("b0_dense").kernel.numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    assert crowd[0].history["loss"] != alone.history["loss"]  # another seed: other masks and order


def test_an_exported_member_computes_what_the_member_computes(tiny_splits):
    variant = get_variant("batchnorm-residual-deep")
    members = [HParams(batch_size=64, epochs=1, seed=s) for s in (1, 2)]
    results = train_population(variant, members, tiny_splits)
    net = StackedNet(variant, 2, input_size=784, num_classes=10)
    for k, r in enumerate(results):
        net.load_member(k, r.keras_model(), members[k], seed=members[k].seed)
    x = tiny_splits.x_val[:50]
    stacked = tf.nn.softmax(net.logits(tf.constant(x.reshape(50, -1)), training=False)).numpy()
    for k, r in enumerate(results):
        np.testing.assert_allclose(
            r.keras_model().predict(x, verbose=0), stacked[k], rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("name", ["batchnorm-residual-deep", "dropout-shallow", "mlp2-plain"])
def test_members_start_from_their_own_seeded_weights_without_a_keras_model(name):
    variant = get_variant(name)
    one = StackedNet(variant, 1, input_size=784, num_classes=10)
    four = StackedNet(variant, 4, input_size=784, num_classes=10)
    model = build_model(variant, HParams())
    assert one.param_count() == four.param_count() == model.count_params()
    seven = one.initial_values(7)
    for a, b in zip(
        seven, four.initial_values(7), strict=True
    ):  # the same weights in any population
        np.testing.assert_array_equal(a, b)
    four.init_member(2, HParams(), seed=7)
    for a, b in zip(seven, four.member_values(2), strict=True):  # ...and in any slot
        np.testing.assert_array_equal(a, b)
    kernel = seven[0]
    assert not np.array_equal(kernel, one.initial_values(8)[0])  # another seed, another network
    if (
        variant.kernel_initializer == "glorot_uniform"
    ):  # Keras' Glorot limit, sqrt(6 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= np.sqrt(6 / sum(kernel.shape)) and kernel.std() > 0


def test_members_with_different_learning_rates_and_dropout_train_side_by_side(tiny_splits):
    variant = get_variant("dropout-shallow")
    members = [
        HParams(learning_rate=1e-3, dropout=0.0, batch_size=32, epochs=2, seed=0),
        HParams(learning_rate=1e-3, dropout=0.7, batch_size=32, epochs=2, seed=0),
        HParams(learning_rate=1e-7, dropout=0.5, batch_size=32, epochs=2, seed=0),
    ]
    results = train_population(variant, members, tiny_splits)
    no_dropout, heavy, frozen = results
    assert [
        layer.rate
        for layer in heavy.keras_model().layers
        if isinstance(layer, keras.layers.Dropout)
    ] == [0.7]
    assert not any(
        isinstance(layer, keras.layers.Dropout) for layer in no_dropout.keras_model().layers
    )
    assert (
        no_dropout.history["accuracy"][-1] > heavy.history["accuracy"][-1]
    )  # dropout costs train accuracy
    assert (
        frozen.history["val_accuracy"][-1] < no_dropout.history["val_accuracy"][-1] - 0.2
    )  # lr 1e-7 barely moves


def test_a_diverging_member_stops_and_the_others_go_on(tiny_splits):
    variant = get_variant("vanilla-shallow")
    members = [
        HParams(optimizer="sgd", learning_rate=lr, batch_size=32, epochs=3, seed=1)
        for lr in (1e6, 0.05)
    ]
    seen: list[list[int]] = [[], []]
    hooks = [[lambda e, m, k=k: seen[k].append(e)] for k in range(2)]
    wild, calm = train_population(variant, members, tiny_splits, on_epoch=hooks)
    assert wild.status == "diverged" and wild.epochs_run == 1 and seen[0] == [0]
    assert calm.status == "ok" and calm.epochs_run == 3 and seen[1] == [0, 1, 2]


class _Pruned(Exception):
    pass


def _prune(epoch: int, metrics: dict[str, float]) -> None:
    raise _Pruned(f"pruned after epoch {epoch + 1}")


def test_a_member_its_hook_stopped_is_not_judged_by_the_epoch_it_stopped_at(tiny_splits, caplog):
    """A pruner stopping a trial after one epoch at chance does not make it a dead run (the
    tuning log said 'training dead' of pruned trials); a member that trained to its end is
    judged."""
    variant = get_variant("vanilla-shallow")
    stuck = HParams(learning_rate=1e-9, batch_size=32, epochs=2, seed=0)
    population = Population(variant, 2, tiny_splits, batch_size=32, optimizer="adam")
    population.start(0, stuck, [])
    population.start(1, stuck, [_prune])  # as bench tune's pool runs trials with Optuna's reporter
    with caplog.at_level(logging.WARNING, logger="bench.population.engine"):
        while population.running:
            population.run_epoch()
        (ran, _), (pruned, error) = population.finish(0), population.finish(1)
    assert isinstance(error, _Pruned)
    assert ran.status == "dead" and "at chance" in ran.message
    judged = Health(tiny_splits.num_classes)
    judged.final(pruned.history)
    assert judged.status == "dead"  # where the pruned member stopped, it was at chance too
    assert pruned.epochs_run == 1 and pruned.status == "ok" and pruned.message == ""
    assert (
        sum("training dead" in r.getMessage() for r in caplog.records) == 1
    )  # the member that ran only


def test_hashed_uniform_masks_are_uniform_and_per_member():
    from scipy import stats

    seeds = tf.constant([0, 1, 2], tf.int32)
    u = hashed_uniform(seeds, tf.constant([7, 7, 7], tf.int32), [3, 64, 512]).numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    for k in range(3):
        assert stats.kstest(u[k].ravel(), "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[0].ravel(), u[1].ravel())[0, 1]) < 0.02
    alone = hashed_uniform(seeds[2:], tf.constant([7], tf.int32), [1, 64, 512]).numpy()
    np.testing.assert_array_equal(alone[0], u[2])  # a member's draws do not depend on its slot
    later = hashed_uniform(seeds, tf.constant([8, 8, 8], tf.int32), [3, 64, 512]).numpy()
    assert abs(np.corrcoef(u[0].ravel(), later[0].ravel())[0, 1]) < 0.02  # a new step, new masks


def test_convolutional_variants_are_not_stacked():
    assert supports(get_variant("dropout-deep")) and supports(get_variant("mlp-64-16-l2"))
    assert not supports(get_variant("lenet5-tanh-bn"))
    with pytest.raises(ValueError, match="cannot be stacked"):
        StackedNet(get_variant("lenet5-tanh-bn"), 2, input_size=784, num_classes=10)


def test_members_must_share_batch_size_and_epochs(tiny_splits):
    variant = get_variant("vanilla-shallow")
    with pytest.raises(ValueError, match="share batch size"):
        train_population(variant, [HParams(batch_size=32), HParams(batch_size=64)], tiny_splits)


def test_population_size_by_device_model_and_memory():
    from bench.population.sizing import member_bytes, size_population

    shallow, deep = get_variant("vanilla-shallow"), get_variant("vanilla-deep")
    plenty = 64 << 30
    assert size_population(shallow, 32, None, gpu=False, memory=plenty).size == 4
    assert (
        size_population(deep, 256, None, gpu=False, memory=plenty).size == 1
    )  # large members train alone on a CPU
    assert size_population(deep, 256, None, gpu=True, memory=plenty).size == 32
    assert (
        size_population(shallow, 32, 16, gpu=False, limit=5, memory=plenty).size == 5
    )  # no more than trials left
    tight = size_population(deep, 256, 12, gpu=False, memory=5 * member_bytes(deep, 256))
    assert tight.size == 2 and "sized down from 12 to 2" in tight.note
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="needs"):
        size_population(deep, 256, 1, gpu=False, memory=member_bytes(deep, 256))


def test_memory_sizing_counts_the_parameters_keras_counts():
    from bench.models import parameter_count
    from bench.population.sizing import member_bytes

    plain, bn = get_variant("vanilla-shallow"), get_variant("batchnorm-shallow")
    assert (
        parameter_count(bn) - parameter_count(plain) == 4 * 128
    )  # gamma, beta, moving mean, variance
    assert member_bytes(bn, 32) - member_bytes(plain, 32) == 4 * 5 * (
        4 * 128
    )  # float32, 5 copies each


def test_dropout_members_score_like_keras_dropout_over_seeds(tiny_splits):
    """Hashed masks against Keras' own dropout: five seeds each of dropout-shallow, trained in
    one population and one by one with Keras' fit; the mean test accuracies agree within
    their noise (Welch's t-test, p > 0.01) and both learn (well above chance)."""
    from scipy import stats

    from bench.training import train_population as train

    variant = get_variant("dropout-shallow")
    members = [HParams(learning_rate=3e-3, batch_size=64, epochs=3, seed=s) for s in range(5)]
    ours = [r.test_accuracy for r in train(variant, members, tiny_splits, engine="compiled")]
    keras_fit = [r.test_accuracy for r in train(variant, members, tiny_splits, engine="keras")]
    assert min(ours) > 0.5 and min(keras_fit) > 0.5  # chance is 0.1
    assert stats.ttest_ind(ours, keras_fit, equal_var=False).pvalue > 0.01, (ours, keras_fit)
    assert abs(np.mean(ours) - np.mean(keras_fit)) < 0.05


def _val_accuracy(model, splits) -> float:
    probs = model.predict(splits.x_val, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == splits.y_val))


@pytest.mark.parametrize(
    ("name", "learning_rate", "wanders"),
    [
        (
            "dropout-shallow",
            0.1,
            True,
        ),  # the compiled loop; this rate makes validation fall after epoch 1
        (
            "lenet5-relu",
            0.02,
            False,
        ),  # Keras' fit (on the tiny data it climbs, or dies: no rate wanders)
    ],
)
def test_restore_best_keeps_the_best_validation_epochs_weights(
    tiny_splits, name, learning_rate, wanders
):
    from bench.training import train
    from bench.tuning.worker import judge

    hp = HParams(learning_rate=learning_rate, batch_size=64, epochs=4, seed=2)
    kept = train(get_variant(name), hp.replace(restore_best=True), tiny_splits, evaluate_test=False)
    last = train(get_variant(name), hp, tiny_splits, evaluate_test=False)
    assert kept.history["val_accuracy"] == pytest.approx(
        last.history["val_accuracy"]
    )  # the same training
    best = max(kept.history["val_accuracy"])
    if wanders:
        assert (
            best > kept.history["val_accuracy"][-1]
        )  # the case that matters: the best epoch is not the last
    assert _val_accuracy(kept.keras_model(), tiny_splits) == pytest.approx(best, abs=1e-6)
    assert _val_accuracy(last.keras_model(), tiny_splits) == pytest.approx(
        last.history["val_accuracy"][-1], abs=1e-6
    )
    assert judge(kept).value == best and judge(last).value == last.history["val_accuracy"][-1]
