"""Test helpers shared by the test modules: tiny generated datasets, toy studies, stores.

Fixtures live in ``conftest.py``; plain helpers live here and are imported as
``from tests.support import ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from bench.data import FILES, write_idx
from bench.models import Conv, Dense, Variant

TINY_TRAIN = 2_400
TINY_TEST = 300
TINY_VALIDATION = 200
LABEL_NOISE = 0.08
TASK_FOLDERS = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}
REAL_DATA_ENV = "BENCH_REAL_DATA_DIR"

# Top-left corners of the 7x7 bright block that marks each class (10 of the 16 cells of a
# 4x4 grid). MNIST uses the reverse order, so the two tiny tasks differ.
_CELLS = [(r, c) for r in range(4) for c in range(4)]
_CLASS_CELLS = {
    "fashion_mnist": [_CELLS[i] for i in (0, 2, 5, 7, 8, 10, 13, 15, 3, 12)],
    "mnist": [_CELLS[i] for i in (12, 3, 15, 13, 10, 8, 7, 5, 2, 0)],
}


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Labels 0-9 where every run of 10 consecutive images holds each class once.

    So any split cut at a multiple of 10 (train, the last-200 validation, test) is balanced.
    """
    return np.concatenate([rng.permutation(10) for _ in range(n // 10)]).astype(np.uint8)


def tiny_images(labels: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """Noise plus one bright 7x7 block per image, placed by class (jittered by a pixel).

    About 8% of the images show another class's block (label noise), so no model is
    perfect and accuracies differ between models, seeds and epochs.
    """
    n = len(labels)
    images = rng.integers(0, 80, size=(n, 28, 28), dtype=np.uint8)
    cells = _CLASS_CELLS[task]
    shown = labels.copy()
    flip = rng.random(n) < LABEL_NOISE
    shown[flip] = (labels[flip] + rng.integers(1, 10, size=int(flip.sum()))) % 10
    shifts = rng.integers(-1, 2, size=(n, 2))
    for i, label in enumerate(shown):
        r, c = cells[int(label)]
        r0 = int(np.clip(r * 7 + shifts[i, 0], 0, 21))
        c0 = int(np.clip(c * 7 + shifts[i, 1], 0, 21))
        images[i, r0 : r0 + 7, c0 : c0 + 7] = rng.integers(190, 256, size=(7, 7), dtype=np.uint8)
    return images


@dataclass(frozen=True)
class TinyData:
    """The generated data folder and the exact arrays written into its IDX files."""

    root: Path
    raw: dict[str, dict[str, np.ndarray]]  # task -> x_train / y_train / x_test / y_test

    def folder(self, task: str) -> Path:
        return self.root / TASK_FOLDERS[task]


def write_task(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = True) -> None:
    """Write the four IDX files of one task (the standard names) into ``folder``."""
    for key, stem in FILES.items():
        write_idx(folder / (f"{stem}.gz" if gz else stem), arrays[key])


def make_task_arrays(task: str, seed: int, n_train: int = TINY_TRAIN, n_test: int = TINY_TEST):
    rng = np.random.default_rng(seed)
    y_train = balanced_labels(n_train, rng)
    y_test = balanced_labels(n_test, rng)
    return {
        "x_train": tiny_images(y_train, task, rng),
        "y_train": y_train,
        "x_test": tiny_images(y_test, task, rng),
        "y_test": y_test,
    }


@dataclass(frozen=True)
class Store:
    """A working folder and the SQLite MLflow store in it."""

    workdir: Path
    uri: str

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)


def study_yaml(
    name: str = "toy",
    *,
    variants: list[str] | tuple[str, ...] = ("vanilla-shallow", "batchnorm-shallow"),
    task: str = "fashion_mnist",
    references: dict[str, dict[str, float]] | None = None,
    **protocol: object,
) -> str:
    """The text of a toy study: 1 epoch, batch 32, validation 200 unless overridden."""
    proto = {"epochs": 1, "batch_size": 32, "validation_size": TINY_VALIDATION, **protocol}
    doc: dict[str, object] = {
        "name": name,
        "description": f"toy study {name} for the tests",
        "task": task,
        "variants": list(variants),
        "protocol": proto,
    }
    if references:
        doc["references"] = references
    return yaml.safe_dump(doc, sort_keys=False)


# --------------------------------------------------------------------------- reading a store back


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    paths: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            paths |= artifact_paths(client, run_id, item.path)
        else:
            paths.add(item.path)
    return paths


def download(client, run_id: str, path: str, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst)))


def write_toy_study(folder: Path, name: str = "toy", **kwargs) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(study_yaml(name, **kwargs), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- models


SEED_000_PARAMS = {
    "vanilla-shallow": 101_770,
    "vanilla-deep": 1_720_330,
    "dropout-shallow": 101_770,
    "dropout-deep": 1_720_330,
    "batchnorm-shallow": 102_282,
    "batchnorm-residual-deep": 1_732_618,
}


def inbound(model, layer_name: str) -> list[str]:
    """Names of the layers feeding ``layer_name`` (in call order)."""
    layer = model.get_layer(layer_name)
    return [t._keras_history.operation.name for n in layer._inbound_nodes for t in n.input_tensors]


def layers_of(model, cls: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, cls)]


LENET_LIKE = Variant(
    "test-lenet",
    family="conv",
    group="cnn",
    blocks=(
        Conv(
            6,
            5,
            padding="same",
            batch_norm="pre",
            use_bias=False,
            activation="tanh",
            pool="avg",
            pool_size=2,
            pool_strides=1,
        ),
        Conv(16, 5, batch_norm="pre", use_bias=False, activation="tanh", pool="max", dropout=0.25),
        Dense(84, batch_norm="pre", activation="tanh", dropout=0.5),
    ),
    description="seed 002-style LeNet with batch norm before the activation",
)
