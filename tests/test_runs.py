"""The run service (bench.runs) and the population interface every engine shares.

Keras' ``fit`` driven one epoch at a time is the same training as one ``fit`` over every
epoch; members that train alone fail alone; the service records tested and validation-only
runs and hands back values that name their runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench import runs, training
from bench.models import HParams, get_variant
from bench.result import HISTORY_KEYS, TrainResult
from bench.training import fit
from tests.support import artifact_paths


def _one_fit(variant, hp, splits):
    """The engine as it was: one ``fit`` call over every epoch."""
    fit.seed_everything(hp.seed)
    model = fit._compiled_model(variant, hp, splits, fit.DEFAULT_STEPS_PER_EXECUTION, None)
    history = model.fit(
        fit.make_train_dataset(splits.x_train, splits.y_train, hp.batch_size, hp.seed),
        epochs=hp.epochs,
        validation_data=fit.make_eval_dataset(splits.x_val, splits.y_val),
        shuffle=False,
        verbose=0,
    ).history
    return history, model


@pytest.mark.parametrize("name", ["lenet5-relu", "dropout-shallow"])
def test_keras_fit_one_epoch_at_a_time_is_one_fit_over_every_epoch(tiny_splits, name):
    variant, hp = get_variant(name), HParams(epochs=2, batch_size=64, seed=3)
    history, model = _one_fit(variant, hp, tiny_splits)
    population = training.KerasPopulation(variant, tiny_splits)
    population.start(0, hp)
    stopped = [population.run_epoch() for _ in range(hp.epochs)]
    assert stopped == [[], [0]] and population.running == []
    result, error = population.finish(0)
    assert error is None and population.free == [0]
    for key in HISTORY_KEYS[:4]:
        assert result.history[key] == history[key]
    for ours, theirs in zip(result.keras_model().get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert result.params == model.count_params()


def test_a_hook_error_stops_a_keras_member_and_comes_back_from_finish(tiny_splits):
    """As in the compiled population: the member stops after the epoch, the error is its own."""
    seen = []

    def hook(epoch, metrics):
        seen.append(epoch)
        raise RuntimeError("hook failed")

    population = training.KerasPopulation(get_variant("lenet5-relu"), tiny_splits)
    population.start(0, HParams(epochs=3, batch_size=64), [hook])
    assert population.run_epoch() == [0]
    result, error = population.finish(0)
    assert isinstance(error, RuntimeError) and seen == [0] and result.epochs_run == 1


class _Broken:
    """A population of one whose training raises."""

    def __init__(self) -> None:
        self.running, self.started = [], None

    def start(self, k, hp, hooks=()):
        self.running, self.started = [0], hp

    def run_epoch(self):
        raise ValueError("the engine broke")

    def stop(self, k):
        self.running = []

    def finish(self, k):
        return TrainResult(
            variant="v", hparams=self.started, params=0, history={}, train_seconds=0.0
        ), None


def test_a_member_training_alone_fails_alone(tiny_splits, monkeypatch):
    """In separate populations an engine error is the member's, returned like a hook's; the
    other slots train on."""
    from bench.training import slots

    made = []

    def one(variant, hp, splits, engine=None):
        made.append(_Broken() if hp.seed == 1 else slots.KerasPopulation(variant, splits))
        return made[-1]

    monkeypatch.setattr(slots, "population_of_one", one)
    separate = training.Separate(get_variant("lenet5-relu"), tiny_splits, size=2)
    separate.start(0, HParams(epochs=2, batch_size=64, seed=0))
    separate.start(1, HParams(epochs=2, batch_size=64, seed=1))
    assert separate.free == [] and separate.run_epoch() == [1]
    _, error = separate.finish(1)
    assert isinstance(error, ValueError) and separate.running == [0] and separate.free == [1]
    assert separate.run_epoch() == [0]
    result, error = separate.finish(0)
    assert error is None and result.epochs_run == 2


def test_populations_share_their_shape(tiny_splits):
    """Consecutive units that share batch size, epochs and optimizer train together, in order."""
    variant = get_variant("vanilla-shallow")
    hps = [HParams(batch_size=b, seed=s) for b, s in ((64, 0), (64, 1), (128, 2), (64, 3))]
    batch = runs.Batch(variant, "selection", tuple(runs.Unit(hp, f"u{hp.seed}") for hp in hps))
    shaped = [[u.run_name for u in population] for population in runs.populations(batch)]
    assert shaped == [["u0", "u1"], ["u2"], ["u3"]]
    conv = runs.Batch(get_variant("lenet5-relu"), "train", batch.units[:2])
    assert [len(p) for p in runs.populations(conv)] == [1, 1]  # never stacked


def _recording(tracking_uri, splits, name="runs"):
    from bench.store.tracker import Tracker

    return runs.Recording(Tracker(tracking_uri, name), splits, log_model=False)


def test_train_records_tested_runs_and_returns_values_naming_them(
    tracking_uri, client, tiny_splits
):
    recording = _recording(tracking_uri, tiny_splits)
    units = tuple(
        runs.Unit(HParams(epochs=1, batch_size=64, seed=s), f"r/s{s}", params={"extra": s})
        for s in (0, 1)
    )
    results = runs.train(recording, runs.Batch(get_variant("vanilla-shallow"), "train", units))
    assert [r.hparams.seed for r in results] == [0, 1]
    for result, unit in zip(results, units, strict=True):
        run = client.get_run(result.run_id)
        assert run.info.run_name == unit.run_name and run.info.status == "FINISHED"
        assert run.data.params["params"] == str(result.params) == "101770"  # counted by training
        assert run.data.params["extra"] == str(unit.hparams.seed) and run.data.tags[
            "bench.seed"
        ] == str(unit.hparams.seed)
        assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
        assert len(run.inputs.dataset_inputs) == 3
        assert "history.csv" in artifact_paths(client, result.run_id)
        assert result.keras_model() is None  # released once logged
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].run_id = "another"  # type: ignore[misc]


def test_validate_never_touches_the_test_split(tracking_uri, client, tiny_splits):
    blind = dataclasses.replace(tiny_splits, x_test=np.full_like(tiny_splits.x_test, np.nan))
    recording = _recording(tracking_uri, blind)
    units = (
        runs.Unit(HParams(epochs=1, batch_size=64, seed=7), "select-0-s0", tags={"who": "me"}),
    )
    [result] = runs.validate(
        recording, runs.Batch(get_variant("vanilla-shallow"), "selection", units), lambda r: 0.25
    )
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and result.test_accuracy is None
    assert run.data.metrics["objective"] == 0.25 and "test_accuracy" not in run.data.metrics
    assert run.data.tags["bench.status"] == "ok" and run.data.tags["who"] == "me"
    assert "bench.seed" not in run.data.tags and "params" not in run.data.params
    assert len(run.inputs.dataset_inputs) == 2  # train and validation only
