"""Train / validation / test splits of a task, preprocessed, as every engine trains on them.

The test split is the task's own (the official 10,000 test images for the built-ins); the
validation split is the *last* ``validation_size`` training examples (seed 000's protocol,
identical to Keras' ``validation_split``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

import bench.data.arrays as checks
import bench.data.sources as sources
from bench.data.tasks import Task, get_task
from bench.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_VALIDATION_SIZE = 10_000


@dataclass(frozen=True)
class Splits:
    """Train / validation / test arrays of one task, examples as float32.

    Every example is ``raw * scale + offset``: for pixel data (uint8) by default ``raw /
    255`` (in [0, 1]); with ``standardize`` the training split's mean and standard
    deviation map it to mean 0, std 1. Other numeric data (tabular features) is always
    standardised per feature with the training split's statistics (``scale`` and
    ``offset`` are then arrays). The same constants apply to validation and test, and to
    served models.
    """

    task: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""
    sizes: dict[str, int] = field(default_factory=dict)
    scale: float | np.ndarray = 1.0 / 255.0
    offset: float | np.ndarray = 0.0

    @property
    def pixels(self) -> bool:
        """Whether the examples are images of uint8 pixels (figures show them as images)."""
        return np.ndim(self.scale) == 0 and self.x_train.ndim == 3

    @property
    def standardized(self) -> bool:
        return np.ndim(self.offset) > 0 or self.offset != 0.0

    @property
    def preprocessing(self) -> str:
        if np.ndim(self.scale) > 0:
            return "(x - mean) / std per feature (training split's)"
        if not self.standardized:
            return "x / 255"
        mean = -self.offset / self.scale / 255.0
        std = 1.0 / self.scale / 255.0
        return f"(x / 255 - {mean:.4f}) / {std:.4f}  (training split's mean and std)"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed examples back as the original values (uint8 pixels for images)."""
        back = (x - self.offset) / self.scale
        return np.clip(np.rint(back), 0, 255).astype(np.uint8) if np.ndim(self.scale) == 0 else back

    def raw_test_images(self) -> np.ndarray:
        """The test examples as the original values (what a served model receives)."""
        return self.raw(self.x_test)


@lru_cache(maxsize=4)
def _load_raw(
    task_name: str, data_dir: str | None
) -> tuple[checks.RawArrays, str, int, Callable[[], None]]:
    """The task's raw arrays, where they came from, its number of classes, and the function
    that caches the decoded arrays (called once the splits asked of them are possible)."""
    task = get_task(task_name)
    tried: list[str] = []

    def check(arrays) -> int:
        return checks.check(
            arrays,
            src.description,
            input_shape=task.input_shape,
            num_classes=task.num_classes,
            pixels_only=task.source is None,
            feature_names=list(src.feature_names) or None,
        )

    for src in sources.candidate_sources(task, data_dir):
        if src.load is None:
            tried.append(src.description)
            continue
        try:
            arrays, keep = sources.cached_load(src, check)
        except DataError as exc:
            if src.description.startswith("Keras download"):
                tried.append(f"{src.description} ({exc})")
                continue
            raise  # a file that exists but is broken is an error, not a fallthrough
        classes = check(arrays)
        _warn_sizes(task, arrays, src.description)
        log.info("loaded %s from %s", task.name, src.description)
        return arrays, src.description, classes, keep
    folders = "/".join(task.folder_names)
    raise DataError(
        f"no data for task {task.name!r}; tried: {'; '.join(tried)}. "
        f"Fix: pass --data-dir DIR (or set BENCH_DATA_DIR) to a folder holding {folders}/ "
        f"with the four IDX .gz files"
    )


def _warn_sizes(task: Task, arrays: checks.RawArrays, source: str) -> None:
    sizes = (len(arrays[0]), len(arrays[2]))
    if task.train_size is not None and sizes != (task.train_size, task.test_size):
        log.warning(
            "%s: %d train / %d test images; the official %s has %d / %d",
            source,
            *sizes,
            task.name,
            task.train_size,
            task.test_size,
        )


def load(
    task: str,
    *,
    data_dir: str | Path | None = None,
    validation_size: int = DEFAULT_VALIDATION_SIZE,
    limit: int | None = None,
    standardize: bool = False,
) -> Splits:
    """Load a task's train / validation / test splits (decoded arrays are cached).

    ``limit`` keeps only the first ``limit`` development and test examples (for smoke runs);
    the validation split is still the last ``validation_size`` of what is kept.
    ``standardize`` maps pixels to mean 0, std 1 using the *training split's* statistics
    only (one mean and one std over all pixels), so validation and test leak nothing into
    the preprocessing and a served model applies the same two constants.
    """
    t = get_task(task)
    if limit is not None:
        _check_split(validation_size, limit, limit)  # decided by the options alone: before any read
    raw, source, classes, keep = _load_raw(t.name, None if data_dir is None else str(data_dir))
    x_dev, y_dev, x_test, y_test = raw
    if limit is not None:
        x_dev, y_dev = x_dev[:limit], y_dev[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    _check_split(validation_size, len(x_dev), limit)
    cut = len(x_dev) - validation_size
    scale, offset = _preprocessing(x_dev[:cut], t.name, standardize)
    x_dev_f = _affine(x_dev, scale, offset)
    splits = Splits(
        task=t.name,
        class_names=t.class_names or tuple(str(i) for i in range(classes)),
        x_train=x_dev_f[:cut],
        y_train=y_dev[:cut].astype(np.int32),
        x_val=x_dev_f[cut:],
        y_val=y_dev[cut:].astype(np.int32),
        x_test=_affine(x_test, scale, offset),
        y_test=y_test.astype(np.int32),
        source=source,
        sizes={"train": cut, "validation": validation_size, "test": len(x_test)},
        scale=scale,
        offset=offset,
    )
    keep()  # the data and the splits asked of it hold: now the decoded arrays are cached
    return splits


def _check_split(validation_size: int, kept: int, limit: int | None) -> None:
    """The validation split leaves at least one training image; the error names the option
    that decided (``--limit 1`` is not a bad validation size)."""
    if 0 < validation_size < kept:
        return
    held = f"--limit {limit} keeps {kept}" if limit is not None else f"the task has {kept}"
    if kept < 2:
        raise DataError(
            f"{held} training image(s); at least 2 are needed (one to train on, one to "
            "validate on)" + (": raise --limit" if limit else "")
        )
    raise DataError(
        f"validation size {validation_size} must be between 1 and {kept - 1} ({held} training "
        "images): lower --validation-size" + (" or raise --limit" if limit else "")
    )


def _preprocessing(train: np.ndarray, task: str, standardize: bool) -> tuple[object, object]:
    """(scale, offset) from the training split alone."""
    if not checks.is_pixels(train):
        flat = train.reshape(len(train), -1).astype(np.float64)
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        std[std == 0] = 1.0  # constant over these rows (a --limit subset): leave it centred
        shape = train.shape[1:]
        return (1.0 / std).reshape(shape).astype(np.float32), (-mean / std).reshape(shape).astype(
            np.float32
        )
    if not standardize:
        return 1.0 / 255.0, 0.0
    train01 = train.astype(np.float64) / 255.0
    mean, std = float(train01.mean()), float(train01.std())
    if not std > 0:
        raise DataError(f"cannot standardize {task}: the training images are all one value")
    return 1.0 / (255.0 * std), -mean / std


def _affine(raw: np.ndarray, scale, offset) -> np.ndarray:
    x = (
        raw.astype(np.float32) * np.float32(scale)
        if np.ndim(scale) == 0
        else raw.astype(np.float32) * scale
    )
    if np.ndim(offset) > 0 or offset:
        x += np.float32(offset) if np.ndim(offset) == 0 else offset
    return x


def summary(splits: Splits, balance: dict[str, list[int]] | None = None) -> dict[str, object]:
    """What a comparison records about its data: source, sizes, preprocessing, balance
    (pass ``balance`` when :func:`class_balance` was already computed)."""
    balance = balance if balance is not None else class_balance(splits)
    return {
        "task": splits.task,
        "source": splits.source,
        "sizes": dict(splits.sizes),
        "preprocessing": splits.preprocessing,
        "train pixel mean / std (after preprocessing)": (
            round(float(splits.x_train.mean()), 4) + 0.0,
            round(float(splits.x_train.std()), 4),
        ),  # + 0.0 turns -0.0 into 0.0
        "class balance (min / max images per class)": {
            name: (min(counts), max(counts)) for name, counts in balance.items()
        },
    }


def class_balance(splits: Splits) -> dict[str, list[int]]:
    """Per-class counts of each split (seed 000 checked the data set is balanced)."""
    return {
        name: np.bincount(y, minlength=splits.num_classes).tolist()
        for name, y in (
            ("train", splits.y_train),
            ("validation", splits.y_val),
            ("test", splits.y_test),
        )
    }
