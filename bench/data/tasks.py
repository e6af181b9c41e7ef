"""Tasks: what a dataset is (its input shape, classes, where its data comes from), as data
in one registry. The two built-in tasks are entries like any other; a study file or a
plug-in adds more (:func:`register_task`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from bench.declaring import BUILT_IN, current_origin
from bench.errors import DataError

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FORMATS = ("idx", "npz", "csv", "parquet")


@dataclass(frozen=True)
class FileSource:
    """A dataset in one file (npz, csv, parquet) or one IDX folder, declared in a study.

    npz: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (Keras' ``load_data`` layout), or
    ``x`` and ``y`` with ``test_size`` (the last rows are the test split). csv / parquet: one
    row per example, the ``label`` column an integer class, every other column a numeric
    feature; the last ``test_size`` rows are the test split. idx: a folder with the four
    standard IDX files."""

    format: str
    path: Path
    label: str = "label"
    test_size: int | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DataError(f"unknown dataset format {self.format!r}; known: {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Task:
    """A dataset the suite can train on."""

    name: str
    class_names: tuple[str, ...] = ()  # empty: numbered from the labels ("0", "1", ...)
    input_shape: tuple[int, ...] | None = (28, 28)  # None: whatever the data holds
    folder_names: tuple[
        str, ...
    ] = ()  # accepted ``<data-dir>/<folder>`` names (built-in IDX tasks)
    train_size: int | None = None  # the official sizes, for a warning when the data differs
    test_size: int | None = None
    keras_cache_npz: str | None = None  # Keras caches MNIST as one .npz file
    keras_dataset: str | None = None  # keras.datasets.<name>, to download when allowed
    system_dirs: tuple[str, ...] = ()
    source: FileSource | None = None  # a declared file: the only place the data comes from
    origin: str = BUILT_IN  # where the task was declared: built-in, a study file, a plug-in

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) or None


TASKS: dict[str, Task] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add ``task`` to the registry; a name already taken is an error unless ``replace`` (the
    same declaration registered again is fine)."""
    if task.origin == BUILT_IN and current_origin() != BUILT_IN:
        task = dataclasses.replace(task, origin=current_origin())  # a plug-in's, by default
    key = _key(task.name)
    held = TASKS.get(key)
    if held is not None and held != task and not replace:
        raise DataError(
            f"task {task.name!r} is already declared ({held.origin}); choose another name"
        )
    TASKS[key] = task
    return task


def get_task(name: str) -> Task:
    key = _key(name)
    if key not in TASKS:
        raise DataError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[key]


register_task(
    Task(
        name="fashion_mnist",
        class_names=FASHION_CLASSES,
        folder_names=("fashion-mnist", "fashion_mnist"),
        train_size=60_000,
        test_size=10_000,
        keras_dataset="fashion_mnist",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    )
)
register_task(
    Task(
        name="mnist",
        class_names=tuple(str(i) for i in range(10)),
        folder_names=("mnist",),
        train_size=60_000,
        test_size=10_000,
        keras_cache_npz="mnist.npz",
        keras_dataset="mnist",
    )
)
