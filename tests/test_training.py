"""bench.training: the TrainResult contract, determinism, and honest dead / diverged runs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench import training
from bench.models import HParams, Variant, get_variant
from bench.models.build import build_model
from bench.training import DEAD_PATIENCE, HISTORY_KEYS, TrainResult, train
from tests.support import LENET_LIKE, TINY_TEST, TINY_VALIDATION

ONE_EPOCH = HParams(epochs=1, batch_size=32, learning_rate=1e-3, seed=0)
COMPARED = ("loss", "accuracy", "val_loss", "val_accuracy")


def test_tiny_data_is_learnable_in_one_epoch(tiny_splits):
    """The generated data is easy: a shallow model is far above chance after one epoch."""
    result = train(get_variant("vanilla-shallow"), ONE_EPOCH, tiny_splits)
    assert result.status == "ok"
    assert result.history["val_accuracy"][0] > 0.5
    assert result.test_accuracy > 0.5


def _check_result(result: TrainResult, variant: Variant, epochs: int) -> None:
    assert isinstance(result, TrainResult)
    assert result.variant == variant.name
    assert set(result.history) == set(HISTORY_KEYS)
    for key in HISTORY_KEYS:
        assert len(result.history[key]) == epochs, key
        assert all(isinstance(v, float) for v in result.history[key])
    assert result.epochs_run == epochs
    assert all(s > 0 for s in result.history["epoch_seconds"])
    assert result.train_seconds > 0
    assert result.device.startswith(("CPU", "GPU"))
    assert result.params == build_model(variant).count_params()
    assert 0.0 <= result.test_accuracy <= 1.0
    assert math.isfinite(result.test_loss) and result.test_loss >= 0
    assert result.confusion.shape == (10, 10)
    assert result.confusion.sum() == TINY_TEST
    assert result.test_predictions.shape == (TINY_TEST,)
    assert np.trace(result.confusion) / TINY_TEST == pytest.approx(result.test_accuracy)
    assert result.best_epoch in range(epochs)
    assert result.best_val_accuracy == max(result.history["val_accuracy"])
    assert result.final_val_accuracy == result.history["val_accuracy"][-1]


# Every registered variant trains end to end in the toy run of its study
# (tests/test_studies.py, which also requires every variant to be in a study).


def test_a_declared_conv_variant_trains(tiny_splits):
    result = train(LENET_LIKE, ONE_EPOCH, tiny_splits)  # declared here, not registered
    _check_result(result, LENET_LIKE, epochs=1)
    assert result.status != "diverged"


def test_epoch_hooks_get_every_epochs_metrics(tiny_splits):
    seen: list[tuple[int, dict[str, float]]] = []
    result = train(
        get_variant("vanilla-shallow"),
        ONE_EPOCH.replace(epochs=3),
        tiny_splits,
        on_epoch=[lambda epoch, metrics: seen.append((epoch, dict(metrics)))],
    )
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    for epoch, metrics in seen:
        assert set(metrics) == set(HISTORY_KEYS)
        for key in HISTORY_KEYS:
            assert metrics[key] == result.history[key][epoch]
    # Three epochs on easy data: the training loss goes down.
    assert result.history["loss"][2] < result.history["loss"][0]


def test_same_seed_same_numbers_different_seed_different_numbers(tiny_splits):
    variant = get_variant("dropout-shallow")  # dropout and shuffling both draw random numbers
    hp = ONE_EPOCH.replace(epochs=2, seed=7)
    first = train(variant, hp, tiny_splits)
    again = train(variant, hp, tiny_splits)
    other = train(variant, hp.replace(seed=8), tiny_splits)
    for key in COMPARED:
        assert first.history[key] == again.history[key], key
    assert first.test_loss == again.test_loss
    assert first.test_accuracy == again.test_accuracy
    assert np.array_equal(first.confusion, again.confusion)
    assert np.array_equal(first.test_predictions, again.test_predictions)
    assert first.history["loss"] != other.history["loss"]
    assert first.test_loss != other.test_loss


@pytest.mark.parametrize(
    ("optimizer", "learning_rate"), [("sgd", 1e6), ("adam", 1e4), ("sgd", 1e30)]
)
def test_a_huge_learning_rate_is_reported_as_diverged(tiny_splits, optimizer, learning_rate):
    hp = ONE_EPOCH.replace(optimizer=optimizer, learning_rate=learning_rate, epochs=4)
    result = train(get_variant("vanilla-shallow"), hp, tiny_splits)  # no exception
    assert result.status == "diverged"
    assert not result.healthy
    assert "loss became" in result.message and "epoch 1" in result.message
    assert result.epochs_run < 4  # stopped early
    assert result.test_accuracy is None and result.test_loss is None  # no score for a broken model
    assert result.confusion is None


def _uninformative(splits):
    """Every image blank: the network's output cannot depend on its input (seed 004's dead run)."""
    return dataclasses.replace(
        splits,
        x_train=np.zeros_like(splits.x_train),
        x_val=np.zeros_like(splits.x_val),
    )


def test_training_stuck_at_chance_is_reported_as_dead(tiny_splits):
    result = train(
        get_variant("vanilla-shallow"), ONE_EPOCH.replace(epochs=6), _uninformative(tiny_splits)
    )
    assert result.status == "dead"
    assert not result.healthy
    assert "stuck at chance" in result.message
    assert f"for {DEAD_PATIENCE} epochs" in result.message
    assert result.epochs_run == DEAD_PATIENCE < 6  # stopped early
    assert all(acc <= 0.15 for acc in result.history["val_accuracy"])
    assert result.test_accuracy is not None  # a dead model is still scored (at chance)


def test_final_validation_accuracy_at_chance_is_dead(tiny_splits):
    result = train(get_variant("vanilla-shallow"), ONE_EPOCH, _uninformative(tiny_splits))
    assert result.status == "dead"
    assert "final validation accuracy" in result.message and "at chance" in result.message


def test_seed_004s_dead_run_is_reproduced_and_flagged(tiny_splits_factory):
    """Seed 004 reported a run stuck at 8.92% test accuracy with a constant loss: a network
    that had collapsed onto one class. Its model 1 with RMSprop at a learning rate far too
    big (0.3 here, 1.0 on real MNIST) collapses the same way; the suite must flag it "dead",
    stop early, and still show what the collapsed network does (one class for every image)."""
    splits = tiny_splits_factory("mnist")
    hp = HParams(optimizer="rmsprop", learning_rate=0.3, batch_size=128, epochs=12, seed=0)
    result = train(get_variant("mlp-64-64-dropout"), hp, splits)
    assert result.status == "dead" and not result.healthy
    assert "stuck at chance" in result.message
    assert DEAD_PATIENCE <= result.epochs_run < hp.epochs  # stopped, not 12 epochs of nothing
    last = slice(-DEAD_PATIENCE, None)  # the streak that got it flagged
    assert all(acc <= 0.15 for acc in result.history["val_accuracy"][last])
    assert min(result.history["loss"][last]) >= 0.99 * math.log(
        10
    )  # no better than a uniform guess
    # The collapsed network answers (almost) the same class for every test image, so its
    # accuracy is that class's share of the test set, as seed 004's 8.92% was digit 5's.
    classes, counts = np.unique(result.test_predictions, return_counts=True)
    top = classes[np.argmax(counts)]
    assert counts.max() >= 0.9 * TINY_TEST
    assert result.test_accuracy == pytest.approx(np.mean(splits.y_test == top), abs=0.1)


def test_test_split_untouched_without_evaluate_test(tiny_splits, monkeypatch):
    def no_peeking(*args, **kwargs):
        raise AssertionError("the test split was evaluated")

    monkeypatch.setattr(training, "evaluate", no_peeking)
    blind = dataclasses.replace(tiny_splits, x_test=np.full_like(tiny_splits.x_test, np.nan))
    result = train(get_variant("vanilla-shallow"), ONE_EPOCH, blind, evaluate_test=False)
    assert result.status == "ok"
    assert result.test_accuracy is None
    assert result.test_loss is None
    assert result.confusion is None
    assert result.test_predictions is None
    assert len(result.history["val_accuracy"]) == 1


def test_validation_is_the_validation_split(tiny_splits):
    """Validation metrics come from x_val (200 images), never from the test split."""
    flipped = dataclasses.replace(tiny_splits, y_val=(tiny_splits.y_val + 1) % 10)
    result = train(get_variant("vanilla-shallow"), ONE_EPOCH.replace(epochs=2), flipped)
    assert result.history["val_accuracy"][-1] < 0.3  # wrong validation labels: low val accuracy
    assert result.test_accuracy > 0.5  # while the test split is scored on its own labels
    assert len(flipped.y_val) == TINY_VALIDATION


def test_best_epoch_ignores_nan():
    result = TrainResult(
        variant="x",
        hparams=HParams(epochs=4),
        params=1,
        history={"loss": [1.0] * 4, "val_accuracy": [0.5, float("nan"), 0.7, 0.6]},
        train_seconds=1.0,
    )
    assert result.best_epoch == 2
    assert result.best_val_accuracy == 0.7
    assert result.final_val_accuracy == 0.6
    assert result.epochs_run == 4
    empty = dataclasses.replace(result, history={})
    assert empty.best_epoch is None and empty.best_val_accuracy is None
    assert empty.final_val_accuracy is None and empty.epochs_run == 0
