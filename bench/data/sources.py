"""Where a task's data comes from, tried in order, and the on-disk cache of decoded arrays.

A built-in task is searched for (first hit wins):

1. a data directory (``--data-dir`` or ``BENCH_DATA_DIR``) holding ``<task>/`` folders
   with the four standard IDX files (``.gz`` or uncompressed);
2. the Keras cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``);
3. Debian's ``dataset-fashion-mnist`` location (``/usr/share/datasets/fashion-mnist``);
4. a Keras download (skipped when ``BENCH_OFFLINE=1``).

A declared task (a study file's ``task: {source: ...}``) has one source: its file. Every
source's arrays are validated (:mod:`bench.data.arrays`) *before* they are cached, so a
refused input leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import bench.data.idx as idx
from bench.data.arrays import RawArrays
from bench.data.tasks import FileSource, Task
from bench.errors import DataError

log = logging.getLogger(__name__)

#: Share of the available memory one dataset's arrays may take (twice over: raw and float).
MEMORY_SHARE = 0.25


@dataclass(frozen=True)
class Source:
    description: str
    load: Callable[[], RawArrays] | None  # None: not present here
    cache_key: str | None = None
    feature_names: tuple[str, ...] = ()


def cache_dir() -> Path:
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bench"


def _stat_key(*paths: Path) -> str:
    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _idx_folder(
    files: dict[str, Path], shape: tuple[int, int] | None, classes: int | None = None
) -> RawArrays:
    images = {k: idx.read_idx(files[k], kind="images", shape=shape) for k in ("x_train", "x_test")}
    labels = {k: idx.read_idx(files[k], kind="labels") for k in ("y_train", "y_test")}
    for k, y in labels.items():
        if classes is not None and y.size and int(y.max()) >= classes:
            raise DataError(f"{files[k]}: label {int(y.max())} out of range 0-{classes - 1}")
    return images["x_train"], labels["y_train"], images["x_test"], labels["y_test"]


def _folder_source(folder: Path, label: str, task: Task) -> Source:
    files = idx.find_idx_files(folder) if folder.is_dir() else None
    if files is None:
        return Source(f"{label}: {folder} (no IDX files)", None)
    shape = (
        task.input_shape if task.input_shape is not None and len(task.input_shape) == 2 else None
    )
    return Source(
        f"{label}: {folder}",
        lambda: _idx_folder(files, shape, task.num_classes),
        _stat_key(*files.values()),
    )


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or (Path.home() / ".keras"))


def _keras_download(task: Task) -> RawArrays:
    import contextlib
    import io

    import keras

    dataset = getattr(keras.datasets, task.keras_dataset)
    # Keras prints "Downloading data from ..." and a progress bar on stdout: not bench's output.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            (x_train, y_train), (x_test, y_test) = dataset.load_data()
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise DataError(f"Keras download failed: {exc}") from exc
    return x_train, y_train, x_test, y_test


def _explicit_root(data_dir: str | Path | None) -> Path | None:
    explicit = data_dir if data_dir is not None else os.environ.get("BENCH_DATA_DIR") or None
    if explicit is None:
        return None
    root = Path(explicit).expanduser()
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist or is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"data directory {root} is not readable")
    return root


def candidate_sources(task: Task, data_dir: str | Path | None = None) -> list[Source]:
    """Every place the task's data may come from, in the order they are tried."""
    if task.source is not None:
        return [file_source(task.source)]
    root = _explicit_root(data_dir)
    sources = (
        [_folder_source(root / name, "data dir", task) for name in task.folder_names]
        if root
        else []
    )
    keras_datasets = _keras_home() / "datasets"
    sources += [
        _folder_source(keras_datasets / name, "Keras cache", task) for name in task.folder_names
    ]
    if task.keras_cache_npz:
        npz = keras_datasets / task.keras_cache_npz
        sources.append(
            Source(f"Keras cache: {npz}", (lambda: _npz(npz, None)), _stat_key(npz))
            if npz.is_file()
            else Source(f"Keras cache: {npz} (missing)", None)
        )
    sources += [_folder_source(Path(folder), "system", task) for folder in task.system_dirs]
    if os.environ.get("BENCH_OFFLINE", "").lower() in ("1", "true", "yes"):
        sources.append(Source("Keras download (disabled by BENCH_OFFLINE)", None))
    elif task.keras_dataset:
        sources.append(Source("Keras download", lambda: _keras_download(task)))
    return sources


# --------------------------------------------------------------------------- declared files


def file_source(src: FileSource) -> Source:
    """A declared dataset file (or IDX folder) as a source; a missing one is an error."""
    path = Path(src.path)
    if src.format == "idx":
        files = idx.find_idx_files(path) if path.is_dir() else None
        if files is None:
            raise DataError(
                f"{path}: no folder with the four IDX files ({', '.join(idx.FILES.values())})"
            )
        return Source(f"idx: {path}", lambda: _idx_folder(files, None), _stat_key(*files.values()))
    if not path.is_file():
        raise DataError(f"dataset file {path} does not exist")
    _fits(path, src.format)
    if src.format == "npz":
        return Source(f"npz: {path}", lambda: _npz(path, src.test_size), _stat_key(path))
    names = _table_columns(path, src)
    return Source(
        f"{src.format}: {path}",
        lambda: _table(path, src),
        _stat_key(path) + f"-{src.label}-{src.test_size}",
        tuple(names),
    )


def _fits(path: Path, fmt: str) -> None:
    """Refuse a dataset whose arrays would not fit in memory, before reading it."""
    import psutil

    if fmt == "npz":
        try:
            with zipfile.ZipFile(path) as z:
                size = sum(i.file_size for i in z.infolist())
        except (OSError, zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
    else:
        size = path.stat().st_size * (
            8 if fmt == "csv" else 4
        )  # text to float64; parquet decompresses
    room = MEMORY_SHARE * psutil.virtual_memory().available
    if size > room:
        raise DataError(
            f"{path}: its arrays take about {size / 2**30:.1f} GiB, more than this machine can "
            f"hold for one dataset ({room / 2**30:.1f} GiB free for it); use a subset or a larger "
            "machine"
        )


def _npz(path: Path, test_size: int | None) -> RawArrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if {"x_train", "y_train", "x_test", "y_test"} <= keys:
                return npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]
            if {"x", "y"} <= keys:
                return _split_tail(npz["x"], npz["y"], test_size, path)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        raise DataError(f"cannot read {path}: {exc}") from None
    raise DataError(
        f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y with test_size); "
        f"found {', '.join(sorted(keys)) or 'none'}"
    )


def _split_tail(x: np.ndarray, y: np.ndarray, test_size: int | None, path: Path) -> RawArrays:
    if test_size is None:
        raise DataError(
            f"{path}: one split only (x, y): declare test_size, the last rows to test on"
        )
    if not 0 < test_size < len(x):
        raise DataError(
            f"{path}: test_size {test_size} must be between 1 and {len(x) - 1} (the file has "
            f"{len(x)} rows)"
        )
    cut = len(x) - test_size
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _read_table(path: Path, fmt: str, columns=None):
    import pandas as pd

    try:
        return (
            pd.read_csv(path, usecols=columns)
            if fmt == "csv"
            else pd.read_parquet(path, columns=columns)
        )
    except Exception as exc:  # noqa: BLE001 - parser errors come in many types
        raise DataError(
            f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def _table_columns(path: Path, src: FileSource) -> list[str]:
    import pandas as pd

    head = _read_table(path, src.format) if src.format == "parquet" else pd.read_csv(path, nrows=0)
    if src.label not in head.columns:
        raise DataError(
            f"{path}: no label column {src.label!r}; columns: {', '.join(map(str, head.columns))}"
        )
    return [str(c) for c in head.columns if c != src.label]


def _table(path: Path, src: FileSource) -> RawArrays:
    frame = _read_table(path, src.format)
    y = frame.pop(src.label).to_numpy()
    import pandas as pd

    for column in frame.columns:
        if frame[column].dtype.kind not in "uifb":
            numbers = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][numbers.isna() & frame[column].notna()].iloc[0]
            raise DataError(
                f"{path}: column {column!r} holds text ({bad!r}); every column but {src.label!r} "
                "must be a number"
            )
    return _split_tail(frame.to_numpy(dtype=np.float32), y, src.test_size, path)


# --------------------------------------------------------------------------- the cache


def cached_load(
    src: Source, check: Callable[[RawArrays], object]
) -> tuple[RawArrays, Callable[[], None]]:
    """``src``'s arrays through an on-disk .npz cache of decoded arrays (decoding gzip is
    the slow part), and the function that caches them: ``check`` validates freshly loaded
    arrays, and the caller calls ``keep()`` once everything it asked of them holds (the
    split sizes too), so refused data is never cached."""
    assert src.load is not None
    path = cache_dir() / f"{src.cache_key}.npz" if src.cache_key else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return (npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]), _nothing
        except Exception:  # noqa: BLE001 - a bad cache entry is rebuilt
            log.debug("ignoring unreadable cache file %s", path)
    arrays = tuple(np.ascontiguousarray(a) for a in src.load())
    check(arrays)
    if path is None:
        return arrays, _nothing  # type: ignore[return-value]
    pending = [arrays]

    def keep() -> None:  # once: a load repeated from memory does not write it again
        if pending:
            _write_cache(path, pending.pop())

    return arrays, keep  # type: ignore[return-value]


def _nothing() -> None:
    return None


def _write_cache(path: Path, arrays: RawArrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot write data cache %s: %s", path, exc)


__all__ = ["Source", "cache_dir", "cached_load", "candidate_sources", "file_source"]
