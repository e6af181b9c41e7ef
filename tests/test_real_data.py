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
            "compare", "--variants", "vanilla-shallow", "--limit", "5000", "--validation-size", "1000",
            "--epochs", "1", "--batch-size", "32", "--no-model", "--data-dir", str(real_data),
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
