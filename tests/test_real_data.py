"""The real Fashion-MNIST and MNIST files (slow: needs BENCH_REAL_DATA_DIR)."""

from __future__ import annotations

import gzip
import hashlib
import re

import numpy as np
import pytest
from click.testing import CliRunner

from bench import data
from bench.cli import cli
from bench.models import HParams, get_variant
from bench.training import train

pytestmark = pytest.mark.slow

FASHION_TRAIN_IMAGES_MD5 = "f4a8712d7a061bf5bd6d2ca38dc4d50a"


@pytest.mark.parametrize("task", ["fashion_mnist", "mnist"])
def test_real_sizes_and_splits(task, real_data):
    splits = data.load(task, data_dir=real_data)
    assert splits.sizes == {"train": 50_000, "validation": 10_000, "test": 10_000}
    assert len(splits.x_train) + len(splits.x_val) == 60_000
    assert len(splits.x_test) == 10_000
    assert splits.input_shape == (28, 28)
    assert splits.x_train.dtype == np.float32
    assert float(splits.x_train.min()) >= 0.0 and float(splits.x_train.max()) <= 1.0
    balance = data.class_balance(splits)
    assert sum(balance["train"]) + sum(balance["validation"]) == 60_000
    assert sum(balance["test"]) == 10_000
    assert min(balance["test"]) > 800  # every class is present in quantity


def test_fashion_mnist_bytes_are_the_published_ones(real_data):
    with gzip.open(real_data / "fashion-mnist" / "train-images-idx3-ubyte.gz") as fh:
        raw = fh.read()
    assert hashlib.md5(raw).hexdigest() == FASHION_TRAIN_IMAGES_MD5
    # The loader keeps every byte, in order: train first, then the last 10,000 as validation.
    splits = data.load("fashion_mnist", data_dir=real_data)
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(60_000, 28, 28)
    assert np.array_equal(np.rint(splits.x_val * 255).astype(np.uint8), pixels[50_000:])
    assert np.array_equal(np.rint(splits.x_train[:1000] * 255).astype(np.uint8), pixels[:1000])
    assert data.class_balance(splits)["test"] == [1000] * 10


def test_mnist_train_label_333_is_8(real_data):
    splits = data.load("mnist", data_dir=real_data)
    assert int(splits.y_train[333]) == 8  # seed notebook 004's example


def test_one_epoch_compare_on_real_data(real_data, tracking_uri, client):
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--variants",
            "vanilla-shallow",
            "--limit",
            "5000",
            "--validation-size",
            "1000",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--no-model",
            "--data-dir",
            str(real_data),
        ],
    )
    assert result.exit_code == 0, result.output
    parent_id = re.search(r"^parent run: ([0-9a-f]{32})$", result.stdout, re.MULTILINE).group(1)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["protocol.split.train"] == "4000"
    assert parent.data.params["protocol.split.test"] == "5000"
    [child] = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert child.data.tags["bench.status"] == "ok"
    assert child.data.metrics["test_accuracy"] > 0.7


def test_seed_004s_dead_run_on_real_mnist(real_data):
    """Seed 004's model 1 with RMSprop at lr 1.0 collapses onto one class on real MNIST,
    as the notebook's broken run did; the suite flags it dead and stops early."""
    splits = data.load("mnist", data_dir=real_data, limit=6000, validation_size=1000)
    hp = HParams(optimizer="rmsprop", learning_rate=1.0, batch_size=128, epochs=10)
    result = train(get_variant("mlp-64-64-dropout"), hp, splits)
    assert result.status == "dead", result.message
    assert result.epochs_run < hp.epochs
    classes, counts = np.unique(result.test_predictions, return_counts=True)
    assert counts.max() / counts.sum() > 0.9  # (almost) one class for every image
    assert result.test_accuracy < 0.15


def test_seed_003_standardises_real_fashion_mnist(real_data, tracking_uri, client):
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--study",
            "seed-003",
            "--variants",
            "mlp-128-64",
            "--epochs",
            "2",
            "--data-dir",
            str(real_data),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "notes on the protocol" in result.output
    parent_id = re.search(r"^parent run: ([0-9a-f]{32})$", result.stdout, re.MULTILINE).group(1)
    parent = client.get_run(parent_id)
    assert parent.data.params["protocol.split.validation"] == "12000"  # 8:2
    assert parent.data.params["protocol.split.train"] == "48000"
    # Fashion-MNIST's pixel mean and std are about 0.286 and 0.353
    mean, std = map(float, re.findall(r"\d\.\d{4}", parent.data.params["protocol.preprocessing"]))
    assert mean == pytest.approx(0.286, abs=0.01) and std == pytest.approx(0.353, abs=0.01)
    [child] = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert child.data.metrics["test_accuracy"] > 0.75
    # The logged model applies the same standardisation to raw uint8 images.
    import mlflow

    model = mlflow.pyfunc.load_model(child.data.tags["bench.model_uri"])
    splits = data.load("fashion_mnist", data_dir=real_data, validation_size=12000, standardize=True)
    predicted = np.argmax(model.predict(splits.raw_test_images()[:500]), axis=1)
    assert np.mean(predicted == splits.y_test[:500]) == pytest.approx(
        child.data.metrics["test_accuracy"], abs=0.06
    )
