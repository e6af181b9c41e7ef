"""Tasks and their data: find the IDX files, validate them, decode, split, cache.

Sources are tried in a fixed order (first hit wins):

1. a data directory (``--data-dir`` or ``BENCH_DATA_DIR``) holding ``<task>/`` folders
   with the four standard IDX files (``.gz`` or uncompressed);
2. the Keras cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``);
3. Debian's ``dataset-fashion-mnist`` location (``/usr/share/datasets/fashion-mnist``);
4. a Keras download (skipped when ``BENCH_OFFLINE=1``).

The test split is the official 10,000 test images; the validation split is the *last*
``validation_size`` training images (seed 000's protocol, identical to Keras'
``validation_split``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.errors import DataError

log = logging.getLogger(__name__)

IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
DEFAULT_VALIDATION_SIZE = 10_000

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

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


@dataclass(frozen=True)
class Task:
    """A dataset the suite can train on."""

    name: str
    folder_names: tuple[str, ...]  # accepted ``<data-dir>/<folder>`` names
    class_names: tuple[str, ...]
    train_size: int = 60_000
    test_size: int = 10_000
    keras_cache_npz: str | None = None  # Keras caches MNIST as one .npz file
    system_dirs: tuple[str, ...] = ()


TASKS: dict[str, Task] = {
    "fashion_mnist": Task(
        name="fashion_mnist",
        folder_names=("fashion-mnist", "fashion_mnist"),
        class_names=FASHION_CLASSES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    "mnist": Task(
        name="mnist",
        folder_names=("mnist",),
        class_names=tuple(str(i) for i in range(10)),
        keras_cache_npz="mnist.npz",
    ),
}


def get_task(name: str) -> Task:
    key = name.strip().lower().replace("-", "_")
    if key not in TASKS:
        raise DataError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[key]


@dataclass(frozen=True)
class Splits:
    """Train / validation / test arrays of one task, images as float32.

    Every image is ``raw * scale + offset``: by default ``raw / 255`` (in [0, 1]); with
    ``standardize`` the training split's mean and standard deviation map it to mean 0,
    std 1 (the same constants then apply to validation and test, and to served models).
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
    scale: float = 1.0 / 255.0
    offset: float = 0.0

    @property
    def standardized(self) -> bool:
        return self.offset != 0.0

    @property
    def preprocessing(self) -> str:
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
        """Preprocessed images back as the original uint8 pixels."""
        return np.clip(np.rint((x - self.offset) / self.scale), 0, 255).astype(np.uint8)

    def raw_test_images(self) -> np.ndarray:
        """The test images as the original uint8 pixels (what a served model receives)."""
        return self.raw(self.x_test)


# --------------------------------------------------------------------------- IDX files


def _open_idx(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc} (truncated or corrupt file?)") from exc


def read_idx(path: Path, *, kind: str) -> np.ndarray:
    """Decode one IDX file and check its header against its length and the expected kind."""
    data = _open_idx(path)
    if len(data) < 8:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic, count = struct.unpack(">II", data[:8])
    if kind == "images":
        if magic != IMAGE_MAGIC:
            raise DataError(
                f"{path}: bad magic number 0x{magic:08x} for an image file (expected 0x{IMAGE_MAGIC:08x})"
            )
        if len(data) < 16:
            raise DataError(f"{path}: truncated header")
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != IMAGE_SHAPE:
            raise DataError(f"{path}: images are {rows}x{cols}, expected 28x28")
        expected = 16 + count * rows * cols
        offset, shape = 16, (count, rows, cols)
    else:
        if magic != LABEL_MAGIC:
            raise DataError(
                f"{path}: bad magic number 0x{magic:08x} for a label file (expected 0x{LABEL_MAGIC:08x})"
            )
        expected = 8 + count
        offset, shape = 8, (count,)
    if len(data) != expected:
        raise DataError(
            f"{path}: header promises {count} items ({expected} bytes) but the file has "
            f"{len(data)} bytes (truncated or corrupt)"
        )
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)
    if kind == "labels" and arr.size and int(arr.max()) >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(arr.max())} out of range 0-{NUM_CLASSES - 1}")
    return arr


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_files(folder: Path) -> dict[str, Path] | None:
    found = {key: _find_file(folder, stem) for key, stem in FILES.items()}
    if all(found.values()):
        return found  # type: ignore[return-value]
    return None


# --------------------------------------------------------------------------- sources

RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Source:
    description: str
    load: Callable[[], RawArrays] | None  # None: not present here
    cache_key: str | None = None


def _cache_dir() -> Path:
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bench"


def _files_key(files: dict[str, Path]) -> str:
    h = hashlib.sha1()
    for key in sorted(files):
        st = files[key].stat()
        h.update(f"{files[key].resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _load_idx_folder(files: dict[str, Path]) -> RawArrays:
    x_train = read_idx(files["x_train"], kind="images")
    y_train = read_idx(files["y_train"], kind="labels")
    x_test = read_idx(files["x_test"], kind="images")
    y_test = read_idx(files["y_test"], kind="labels")
    return x_train, y_train, x_test, y_test


def _load_npz(path: Path) -> RawArrays:
    try:
        with np.load(path) as npz:
            return npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        raise DataError(f"cannot read {path}: {exc}") from exc


def _folder_source(folder: Path, label: str) -> _Source:
    files = _idx_files(folder) if folder.is_dir() else None
    if files is None:
        return _Source(f"{label}: {folder} (no IDX files)", None)
    return _Source(f"{label}: {folder}", lambda: _load_idx_folder(files), _files_key(files))


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or (Path.home() / ".keras"))


def _keras_download(task: Task) -> RawArrays:
    import keras

    loader = {"fashion_mnist": keras.datasets.fashion_mnist, "mnist": keras.datasets.mnist}
    try:
        (x_train, y_train), (x_test, y_test) = loader[task.name].load_data()
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise DataError(f"Keras download failed: {exc}") from exc
    return x_train, y_train, x_test, y_test


def candidate_sources(task: Task, data_dir: str | Path | None = None) -> list[_Source]:
    """Every place the task's data may come from, in the order they are tried."""
    sources: list[_Source] = []
    explicit = data_dir if data_dir is not None else os.environ.get("BENCH_DATA_DIR") or None
    if explicit is not None:
        root = Path(explicit).expanduser()
        if not root.is_dir():
            raise DataError(f"data directory {root} does not exist or is not a directory")
        if not os.access(root, os.R_OK | os.X_OK):
            raise DataError(f"data directory {root} is not readable")
        for name in task.folder_names:
            sources.append(_folder_source(root / name, "data dir"))
    keras_datasets = _keras_home() / "datasets"
    for name in task.folder_names:
        sources.append(_folder_source(keras_datasets / name, "Keras cache"))
    if task.keras_cache_npz:
        npz = keras_datasets / task.keras_cache_npz
        if npz.is_file():
            st = npz.stat()
            key = hashlib.sha1(f"{npz.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
            sources.append(
                _Source(f"Keras cache: {npz}", lambda: _load_npz(npz), key.hexdigest()[:16])
            )
        else:
            sources.append(_Source(f"Keras cache: {npz} (missing)", None))
    for folder in task.system_dirs:
        sources.append(_folder_source(Path(folder), "system"))
    if os.environ.get("BENCH_OFFLINE", "").lower() in ("1", "true", "yes"):
        sources.append(_Source("Keras download (disabled by BENCH_OFFLINE)", None))
    else:
        sources.append(_Source("Keras download", lambda: _keras_download(task)))
    return sources


def _validate(task: Task, arrays: RawArrays, source: str) -> None:
    x_train, y_train, x_test, y_test = arrays
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{source}: {name} images have shape {x.shape[1:]}, expected 28x28")
        if len(x) != len(y):
            raise DataError(f"{source}: {len(x)} {name} images but {len(y)} labels")
        if len(y) == 0:
            raise DataError(f"{source}: the {name} split is empty")
        if int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES:
            raise DataError(f"{source}: {name} labels outside 0-{NUM_CLASSES - 1}")
    if (len(x_train), len(x_test)) != (task.train_size, task.test_size):
        log.warning(
            "%s: %d train / %d test images; the official %s has %d / %d",
            source,
            len(x_train),
            len(x_test),
            task.name,
            task.train_size,
            task.test_size,
        )


def _cached_load(src: _Source) -> RawArrays:
    """Load through an on-disk .npz cache of decoded arrays (decoding gzip is the slow part)."""
    assert src.load is not None
    path = _cache_dir() / f"{src.cache_key}.npz" if src.cache_key else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as npz:
                return npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]
        except Exception:  # noqa: BLE001 - a bad cache entry is rebuilt
            log.debug("ignoring unreadable cache file %s", path)
    arrays = src.load()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("cannot write data cache %s: %s", path, exc)
    return arrays


@lru_cache(maxsize=4)
def _load_raw(task_name: str, data_dir: str | None) -> tuple[RawArrays, str]:
    task = get_task(task_name)
    tried: list[str] = []
    for src in candidate_sources(task, data_dir):
        if src.load is None:
            tried.append(src.description)
            continue
        try:
            arrays = _cached_load(src)
        except DataError as exc:
            if src.description.startswith("Keras download"):
                tried.append(f"{src.description} ({exc})")
                continue
            raise  # a file that exists but is broken is an error, not a fallthrough
        arrays = tuple(np.ascontiguousarray(a) for a in arrays)  # type: ignore[assignment]
        _validate(task, arrays, src.description)
        log.info("loaded %s from %s", task.name, src.description)
        return arrays, src.description
    folders = "/".join(task.folder_names)
    raise DataError(
        f"no data for task {task.name!r}; tried: {'; '.join(tried)}. "
        f"Fix: pass --data-dir DIR (or set BENCH_DATA_DIR) to a folder holding {folders}/ "
        f"with the four IDX .gz files"
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

    ``limit`` keeps only the first ``limit`` development and test images (for smoke runs);
    the validation split is still the last ``validation_size`` of what is kept.
    ``standardize`` maps pixels to mean 0, std 1 using the *training split's* statistics
    only (one mean and one std over all pixels), so validation and test leak nothing into
    the preprocessing and a served model applies the same two constants.
    """
    t = get_task(task)
    raw, source = _load_raw(t.name, None if data_dir is None else str(data_dir))
    x_dev, y_dev, x_test, y_test = raw
    if limit is not None:
        x_dev, y_dev = x_dev[:limit], y_dev[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    if not 0 < validation_size < len(x_dev):
        raise DataError(
            f"validation size {validation_size} must be between 1 and {len(x_dev) - 1} "
            f"(the task has {len(x_dev)} training images)"
        )
    cut = len(x_dev) - validation_size
    scale, offset = 1.0 / 255.0, 0.0
    if standardize:
        train01 = x_dev[:cut].astype(np.float64) / 255.0
        mean, std = float(train01.mean()), float(train01.std())
        if not std > 0:
            raise DataError(f"cannot standardize {t.name}: the training images are all one value")
        scale, offset = 1.0 / (255.0 * std), -mean / std
    x_dev_f = _affine(x_dev, scale, offset)
    splits = Splits(
        task=t.name,
        class_names=t.class_names,
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
    return splits


def _affine(raw: np.ndarray, scale: float, offset: float) -> np.ndarray:
    x = raw.astype(np.float32) * np.float32(scale)
    if offset:
        x += np.float32(offset)
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
            round(float(splits.x_train.mean()), 4) + 0.0, round(float(splits.x_train.std()), 4)
        ),  # + 0.0 turns -0.0 into 0.0
        "class balance (min / max images per class)": {
            name: (min(counts), max(counts)) for name, counts in balance.items()
        },
    }


def class_balance(splits: Splits) -> dict[str, list[int]]:
    """Per-class counts of each split (seed 000 checked the data set is balanced)."""
    return {
        name: np.bincount(y, minlength=splits.num_classes).tolist()
        for name, y in (("train", splits.y_train), ("validation", splits.y_val), ("test", splits.y_test))
    }


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip when the name ends in .gz). Used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 3:
        header = struct.pack(">IIII", IMAGE_MAGIC, *array.shape)
    elif array.ndim == 1:
        header = struct.pack(">II", LABEL_MAGIC, array.shape[0])
    else:
        raise ValueError("IDX writer supports images (N, 28, 28) and labels (N,)")
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
