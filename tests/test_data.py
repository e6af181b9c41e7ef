"""bench.data: sources and their order, IDX validation, splits, the on-disk cache."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from bench import data
from bench.data import FASHION_CLASSES, FILES, DataError
from tests.support import TINY_TEST, TINY_TRAIN, TINY_VALIDATION, make_task_arrays, write_task

TRAIN = TINY_TRAIN - TINY_VALIDATION


def _as_pixels(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("task", ["fashion_mnist", "mnist"])
def test_load_from_data_dir(task, tiny_data):
    splits = data.load(task, validation_size=TINY_VALIDATION)  # BENCH_DATA_DIR -> tiny data
    raw = tiny_data.raw[task]

    assert splits.task == task
    assert splits.sizes == {"train": TRAIN, "validation": TINY_VALIDATION, "test": TINY_TEST}
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (
        TRAIN,
        TINY_VALIDATION,
        TINY_TEST,
    )
    assert splits.source.startswith("data dir: ")
    assert str(tiny_data.folder(task)) in splits.source
    assert splits.input_shape == (28, 28)
    assert splits.num_classes == 10
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
    for y in (splits.y_train, splits.y_val, splits.y_test):
        assert np.issubdtype(y.dtype, np.integer)
    # Validation is the LAST n training images, train is everything before them.
    assert np.array_equal(_as_pixels(splits.x_val), raw["x_train"][-TINY_VALIDATION:])
    assert np.array_equal(splits.y_val, raw["y_train"][-TINY_VALIDATION:])
    assert np.array_equal(_as_pixels(splits.x_train), raw["x_train"][:TRAIN])
    assert np.array_equal(splits.y_train, raw["y_train"][:TRAIN])
    assert np.array_equal(splits.y_test, raw["y_test"])
    # The served model gets exactly the original pixels back.
    raw_test = splits.raw_test_images()
    assert raw_test.dtype == np.uint8
    assert np.array_equal(raw_test, raw["x_test"])


def test_class_names():
    fashion = data.load("fashion_mnist", validation_size=TINY_VALIDATION)
    assert fashion.class_names == FASHION_CLASSES
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    mnist = data.load("mnist", validation_size=TINY_VALIDATION)
    assert mnist.class_names == tuple(str(i) for i in range(10))


def test_limit_keeps_the_first_images_and_validates_on_their_tail(tiny_data):
    splits = data.load("fashion_mnist", validation_size=100, limit=1000)
    raw = tiny_data.raw["fashion_mnist"]
    assert splits.sizes == {"train": 900, "validation": 100, "test": TINY_TEST}
    assert np.array_equal(_as_pixels(splits.x_val), raw["x_train"][900:1000])
    assert np.array_equal(_as_pixels(splits.x_train), raw["x_train"][:900])

    small = data.load("fashion_mnist", validation_size=50, limit=200)
    assert small.sizes == {"train": 150, "validation": 50, "test": 200}
    assert np.array_equal(small.y_test, raw["y_test"][:200])


@pytest.mark.parametrize("name", ["fashion_mnist", "fashion-mnist", "Fashion-MNIST", " mnist "])
def test_task_aliases(name):
    assert data.get_task(name).name in ("fashion_mnist", "mnist")


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown task 'cifar10'.*fashion_mnist, mnist"):
        data.get_task("cifar10")


def test_class_balance_counts(tiny_splits):
    balance = data.class_balance(tiny_splits)
    assert balance == {
        "train": [TRAIN // 10] * 10,
        "validation": [TINY_VALIDATION // 10] * 10,
        "test": [TINY_TEST // 10] * 10,
    }
    skewed = dataclasses.replace(
        tiny_splits,
        y_train=np.array([0, 0, 0, 3, 9], dtype=np.int32),
        y_val=np.array([1], dtype=np.int32),
        y_test=np.array([], dtype=np.int32),
    )
    assert data.class_balance(skewed) == {
        "train": [3, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        "validation": [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        "test": [0] * 10,
    }


# --------------------------------------------------------------------------- source order


def _keras_datasets(tmp_path: Path) -> Path:
    return tmp_path / "keras-home" / "datasets"  # KERAS_HOME is tmp_path/keras-home


def test_data_dir_beats_the_keras_cache(tmp_path, monkeypatch):
    other = make_task_arrays("fashion_mnist", seed=7, n_train=600, n_test=100)
    write_task(_keras_datasets(tmp_path) / "fashion-mnist", other)

    first = data.load("fashion_mnist", validation_size=100)
    assert first.source.startswith("data dir: ")
    assert first.sizes["test"] == TINY_TEST

    monkeypatch.delenv("BENCH_DATA_DIR")
    data._load_raw.cache_clear()
    cached = data.load("fashion_mnist", validation_size=100)
    assert cached.source.startswith("Keras cache: ")
    assert cached.sizes == {"train": 500, "validation": 100, "test": 100}
    assert np.array_equal(_as_pixels(cached.x_val), other["x_train"][-100:])


def test_data_dir_argument_beats_the_environment(tmp_path, monkeypatch, tiny_data):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "does-not-exist"))
    splits = data.load("mnist", data_dir=tiny_data.root, validation_size=TINY_VALIDATION)
    assert splits.source.startswith("data dir: ")


def test_uncompressed_files_and_the_underscore_folder_name(tmp_path, monkeypatch):
    arrays = make_task_arrays("fashion_mnist", seed=8, n_train=300, n_test=50)
    write_task(tmp_path / "plain" / "fashion_mnist", arrays, gz=False)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "plain"))
    splits = data.load("fashion_mnist", validation_size=100)
    assert splits.sizes == {"train": 200, "validation": 100, "test": 50}
    assert np.array_equal(splits.raw_test_images(), arrays["x_test"])


def test_keras_cache_mnist_npz(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR")
    arrays = make_task_arrays("mnist", seed=9, n_train=400, n_test=60)
    npz = _keras_datasets(tmp_path) / "mnist.npz"
    npz.parent.mkdir(parents=True)
    np.savez(npz, **arrays)

    splits = data.load("mnist", validation_size=100)
    assert splits.source == f"Keras cache: {npz}"
    assert splits.sizes == {"train": 300, "validation": 100, "test": 60}
    assert np.array_equal(splits.y_val, arrays["y_train"][-100:])
    assert np.array_equal(splits.raw_test_images(), arrays["x_test"])


def test_broken_keras_npz_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR")
    npz = _keras_datasets(tmp_path) / "mnist.npz"
    npz.parent.mkdir(parents=True)
    npz.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match="mnist.npz"):
        data.load("mnist", validation_size=100)


def test_offline_with_nothing_found_lists_what_was_tried(tmp_path, monkeypatch):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv("BENCH_DATA_DIR", str(empty))
    with pytest.raises(DataError) as info:
        data.load("mnist")
    message = str(info.value)
    assert "no data for task 'mnist'" in message
    assert f"data dir: {empty / 'mnist'} (no IDX files)" in message
    keras_datasets = _keras_datasets(tmp_path)
    assert f"Keras cache: {keras_datasets / 'mnist'} (no IDX files)" in message
    assert f"Keras cache: {keras_datasets / 'mnist.npz'} (missing)" in message
    assert "Keras download (disabled by BENCH_OFFLINE)" in message
    assert "--data-dir" in message and "BENCH_DATA_DIR" in message


def test_offline_fashion_mnist_also_tries_the_system_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR")
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    task = dataclasses.replace(data.TASKS["fashion_mnist"], system_dirs=(str(system),))
    monkeypatch.setitem(data.TASKS, "fashion_mnist", task)
    with pytest.raises(DataError) as info:
        data.load("fashion_mnist")
    message = str(info.value)
    assert f"system: {system} (no IDX files)" in message
    assert "Keras download (disabled by BENCH_OFFLINE)" in message

    write_task(system, make_task_arrays("fashion_mnist", seed=10, n_train=300, n_test=40))
    data._load_raw.cache_clear()
    assert data.load("fashion_mnist", validation_size=100).source == f"system: {system}"


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_missing_data_dir(tmp_path, monkeypatch, how):
    missing = tmp_path / "no-such-folder"
    if how == "environment":
        monkeypatch.setenv("BENCH_DATA_DIR", str(missing))
        kwargs = {}
    else:
        kwargs = {"data_dir": missing}
    with pytest.raises(DataError, match=f"data directory {missing} does not exist"):
        data.load("fashion_mnist", **kwargs)


def test_data_dir_that_is_a_file(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        data.load("fashion_mnist", data_dir=afile)


# --------------------------------------------------------------------------- corrupt files


def _idx_bytes(array: np.ndarray, *, magic: int | None = None, count: int | None = None) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 3:
        header = struct.pack(
            ">IIII",
            data.IMAGE_MAGIC if magic is None else magic,
            count or len(array),
            *array.shape[1:],
        )
    else:
        header = struct.pack(
            ">II", data.LABEL_MAGIC if magic is None else magic, count or len(array)
        )
    return header + array.tobytes()


def _corrupt(folder: Path, arrays: dict[str, np.ndarray], case: str) -> tuple[str, str]:
    """Break one file of a freshly written task folder; return (file name, expected text)."""
    images = folder / f"{FILES['x_train']}.gz"
    labels = folder / f"{FILES['y_train']}.gz"
    test_images = folder / f"{FILES['x_test']}.gz"
    if case == "bad image magic":
        images.write_bytes(gzip.compress(_idx_bytes(arrays["x_train"], magic=0x00000804)))
        return images.name, "bad magic number 0x00000804"
    if case == "bad label magic":
        labels.write_bytes(gzip.compress(_idx_bytes(arrays["y_train"], magic=0x00000803)))
        return labels.name, "bad magic number 0x00000803"
    if case == "truncated gzip":
        blob = images.read_bytes()
        images.write_bytes(blob[: len(blob) // 2])
        return images.name, "truncated or corrupt"
    if case == "not gzip at all":
        test_images.write_bytes(b"hello, I am not compressed")
        return test_images.name, "cannot read"
    if case == "header count larger than payload":
        images.write_bytes(
            gzip.compress(_idx_bytes(arrays["x_train"], count=len(arrays["x_train"]) + 5))
        )
        return images.name, "header promises"
    if case == "label count larger than payload":
        labels.write_bytes(
            gzip.compress(_idx_bytes(arrays["y_train"], count=len(arrays["y_train"]) + 1))
        )
        return labels.name, "header promises"
    if case == "image size 27x28":
        data.write_idx(test_images, arrays["x_test"][:, :27, :])
        return test_images.name, "27x28"
    if case == "label 10":
        bad = arrays["y_train"].copy()
        bad[5] = 10
        data.write_idx(labels, bad)
        return labels.name, "label 10 out of range"
    if case == "too short":
        labels.write_bytes(gzip.compress(b"\x00\x00\x08"))
        return labels.name, "too short"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "bad image magic",
        "bad label magic",
        "truncated gzip",
        "not gzip at all",
        "header count larger than payload",
        "label count larger than payload",
        "image size 27x28",
        "label 10",
        "too short",
    ],
)
def test_corrupt_files_are_errors_naming_the_file(tmp_path, monkeypatch, case):
    arrays = make_task_arrays("fashion_mnist", seed=11, n_train=300, n_test=50)
    folder = tmp_path / "broken" / "fashion-mnist"
    write_task(folder, arrays)
    file_name, expected = _corrupt(folder, arrays, case)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "broken"))

    with pytest.raises(DataError) as info:
        data.load("fashion_mnist", validation_size=100)
    message = str(info.value)
    assert file_name in message
    assert expected in message
    # A broken file is an error, not a silent fall-through to another source.
    assert "no data for task" not in message


def test_images_and_labels_of_different_lengths(tmp_path, monkeypatch):
    arrays = make_task_arrays("mnist", seed=12, n_train=300, n_test=50)
    arrays["y_test"] = arrays["y_test"][:40]
    write_task(tmp_path / "mismatch" / "mnist", arrays)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "mismatch"))
    with pytest.raises(DataError, match="50 test images but 40 labels"):
        data.load("mnist", validation_size=100)


@pytest.mark.parametrize("validation_size", [TINY_TRAIN, TINY_TRAIN + 1, 0, -5])
def test_validation_size_must_leave_training_images(validation_size):
    with pytest.raises(DataError, match="validation size"):
        data.load("fashion_mnist", validation_size=validation_size)


def test_write_and_read_idx_round_trip(tmp_path):
    arrays = make_task_arrays("mnist", seed=13, n_train=20, n_test=10)
    for name in ("images.idx", "images.idx.gz"):
        data.write_idx(tmp_path / name, arrays["x_train"])
        assert np.array_equal(data.read_idx(tmp_path / name, kind="images"), arrays["x_train"])
    data.write_idx(tmp_path / "labels.gz", arrays["y_train"])
    assert np.array_equal(data.read_idx(tmp_path / "labels.gz", kind="labels"), arrays["y_train"])
    with pytest.raises(ValueError):
        data.write_idx(tmp_path / "bad.gz", np.zeros((2, 2)))


# --------------------------------------------------------------------------- on-disk cache


@pytest.fixture
def count_reads(monkeypatch) -> list[Path]:
    """Spy on read_idx: the list of files it decoded."""
    calls: list[Path] = []
    real = data.read_idx

    def spy(path, *, kind, **kw):
        calls.append(Path(path))
        return real(path, kind=kind, **kw)

    monkeypatch.setattr(data.idx, "read_idx", spy)
    return calls


def test_second_load_reads_the_npz_cache(tmp_path, count_reads):
    cache = tmp_path / "bench-cache"  # BENCH_CACHE_DIR
    first = data.load("fashion_mnist", validation_size=TINY_VALIDATION)
    assert len(count_reads) == 4
    assert len(list(cache.glob("*.npz"))) == 1

    data._load_raw.cache_clear()  # a new process: only the disk cache is left
    second = data.load("fashion_mnist", validation_size=TINY_VALIDATION)
    assert len(count_reads) == 4, "the IDX files were decoded again instead of read from the cache"
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert second.source == first.source


def test_in_process_cache_skips_even_the_npz(count_reads):
    data.load("mnist", validation_size=TINY_VALIDATION)
    data.load("mnist", validation_size=100, limit=1000)
    assert len(count_reads) == 4


def test_changed_files_invalidate_the_cache(tmp_path, monkeypatch, count_reads):
    folder = tmp_path / "mutable" / "mnist"
    write_task(folder, make_task_arrays("mnist", seed=14, n_train=300, n_test=50))
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "mutable"))
    assert data.load("mnist", validation_size=100).sizes["test"] == 50

    newer = make_task_arrays("mnist", seed=15, n_train=400, n_test=60)
    shutil.rmtree(folder)
    write_task(folder, newer)
    data._load_raw.cache_clear()
    splits = data.load("mnist", validation_size=100)
    assert splits.sizes == {"train": 300, "validation": 100, "test": 60}
    assert np.array_equal(splits.raw_test_images(), newer["x_test"])
    assert len(count_reads) == 8
    assert len(list((tmp_path / "bench-cache").glob("*.npz"))) == 2


def test_unreadable_cache_entry_is_rebuilt(tmp_path, count_reads):
    data.load("fashion_mnist", validation_size=TINY_VALIDATION)
    [entry] = (tmp_path / "bench-cache").glob("*.npz")
    entry.write_bytes(b"garbage")
    data._load_raw.cache_clear()
    splits = data.load("fashion_mnist", validation_size=TINY_VALIDATION)
    assert splits.sizes["train"] == TRAIN
    assert len(count_reads) == 8
    with np.load(entry) as npz:  # rewritten, readable again
        assert npz["x_train"].shape == (TINY_TRAIN, 28, 28)
