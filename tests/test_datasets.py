"""Declared datasets (npz, csv, parquet, an IDX folder) as tasks, and inputs refused before
anything is cached: one DataError each, the cache folder untouched."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import data
from bench.data import DataError, FileSource, Task
from tests.support import make_task_arrays, write_task


@pytest.fixture
def declare(monkeypatch):
    """Register a task for this test only."""

    def add(name: str, source: FileSource, **kw) -> Task:
        task = Task(name=name, input_shape=None, source=source, origin="test", **kw)
        monkeypatch.setitem(data.TASKS, name, task)
        data._load_raw.cache_clear()
        return task

    yield add
    data._load_raw.cache_clear()


def _blobs(
    n: int = 600, features: int = 5, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, features)) * (1 + np.arange(features)) + y[:, None] * 2.0 + 50.0
    return x.astype(np.float64), y


def _cache(tmp_path: Path) -> list[Path]:
    return sorted(
        (tmp_path / "bench-cache").glob("*.npz")
    )  # BENCH_CACHE_DIR of the isolated environment


def test_an_npz_in_keras_layout_is_a_task_with_classes_from_its_labels(tmp_path, declare):
    x, y = _blobs()
    np.savez(
        tmp_path / "blobs.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:]
    )
    declare("blobs", FileSource("npz", tmp_path / "blobs.npz"))
    splits = data.load("blobs", validation_size=100)
    assert splits.sizes == {"train": 400, "validation": 100, "test": 100}
    assert splits.input_shape == (5,) and splits.class_names == ("0", "1", "2")
    # Tabular features: standardised per feature with the training split's statistics only.
    assert np.allclose(splits.x_train.mean(axis=0), 0, atol=1e-5) and np.allclose(
        splits.x_train.std(axis=0), 1, atol=1e-4
    )
    assert np.allclose(splits.raw(splits.x_test), x[500:], rtol=1e-5)
    assert not splits.pixels and "per feature" in splits.preprocessing
    assert len(_cache(tmp_path)) == 1


def test_csv_and_parquet_tables_split_their_last_rows_for_test(tmp_path, declare):
    x, y = _blobs(features=3)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(label=y)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for fmt in ("csv", "parquet"):
        declare(f"t_{fmt}", FileSource(fmt, tmp_path / f"t.{fmt}", test_size=150))
        splits = data.load(f"t_{fmt}", validation_size=50)
        assert splits.sizes == {"train": 400, "validation": 50, "test": 150}
        assert np.array_equal(splits.y_test, y[-150:])
        assert np.allclose(splits.raw(splits.x_train), x[:400], rtol=1e-5)


def test_an_idx_folder_of_any_image_size(tmp_path, declare):
    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.integers(0, 256, (300, 12, 9), dtype=np.uint8),
        "y_train": rng.integers(0, 4, 300),
        "x_test": rng.integers(0, 256, (40, 12, 9), dtype=np.uint8),
        "y_test": rng.integers(0, 4, 40),
    }
    write_task(tmp_path / "small", arrays)
    declare("small", FileSource("idx", tmp_path / "small"))
    splits = data.load("small", validation_size=60)
    assert splits.input_shape == (12, 9) and splits.num_classes == 4 and splits.pixels
    assert np.array_equal(splits.raw_test_images(), arrays["x_test"])


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


BAD = {
    "nan feature": (
        lambda x, y: dict(
            x_train=np.where(np.arange(x[:500].size).reshape(500, -1) == 7, np.nan, x[:500]),
            y_train=y[:500],
            x_test=x[500:],
            y_test=y[500:],
        ),
        "NaN or infinite",
    ),
    "labels out of range": (
        lambda x, y: dict(x_train=x[:500], y_train=y[:500] - 1, x_test=x[500:], y_test=y[500:]),
        "negative",
    ),
    "fractional labels": (
        lambda x, y: dict(x_train=x[:500], y_train=y[:500] + 0.5, x_test=x[500:], y_test=y[500:]),
        "must be integers",
    ),
    "more labels than examples": (
        lambda x, y: dict(x_train=x[:500], y_train=y[:501], x_test=x[500:], y_test=y[500:]),
        "500 train examples but 501 labels",
    ),
    "empty test split": (
        lambda x, y: dict(x_train=x[:500], y_train=y[:500], x_test=x[:0], y_test=y[:0]),
        "test split is empty",
    ),
    "constant feature": (
        lambda x, y: dict(
            x_train=np.c_[x[:500], np.ones(500)],
            y_train=y[:500],
            x_test=np.c_[x[500:], np.ones(100)],
            y_test=y[500:],
        ),
        "feature 5 is constant",
    ),
    "one class": (
        lambda x, y: dict(x_train=x[:500], y_train=y[:500] * 0, x_test=x[500:], y_test=y[500:] * 0),
        "at least 2 classes",
    ),
    "wrong keys": (lambda x, y: dict(images=x, labels=y), "expected arrays x_train"),
    "one split, no test_size": (lambda x, y: dict(x=x, y=y), "declare test_size"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_npz_is_one_error_and_nothing_is_cached(tmp_path, declare, case):
    build, message = BAD[case]
    x, y = _blobs()
    declare("bad", FileSource("npz", _write_npz(tmp_path / "bad.npz", **build(x, y))))
    with pytest.raises(DataError, match=message):
        data.load("bad", validation_size=100)
    assert _cache(tmp_path) == []


def test_a_csv_with_text_in_a_feature_column_names_the_column(tmp_path, declare):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n3,oops,1\n5,6,0\n7,8,1\n")
    declare("t", FileSource("csv", tmp_path / "t.csv", test_size=1))
    with pytest.raises(DataError, match=r"column 'b' holds text \('oops'\)"):
        data.load("t", validation_size=1)
    (tmp_path / "u.csv").write_text("a,b,y\n1,2,0\n")
    declare("u", FileSource("csv", tmp_path / "u.csv", test_size=1))
    with pytest.raises(DataError, match="no label column 'label'; columns: a, b, y"):
        data.load("u", validation_size=1)
    assert _cache(tmp_path) == []


def test_a_missing_file_and_an_unknown_format_are_errors(tmp_path, declare):
    declare("gone", FileSource("npz", tmp_path / "gone.npz"))
    with pytest.raises(DataError, match="does not exist"):
        data.load("gone")
    with pytest.raises(DataError, match="unknown dataset format 'xlsx'"):
        FileSource("xlsx", tmp_path / "x.xlsx")


def test_a_gzip_bomb_is_refused_without_decompressing_it(tmp_path, monkeypatch):
    """An IDX .gz whose stream is far longer than its header promises (issue 27, L): read
    what the header promises plus one byte, then stop."""
    arrays = make_task_arrays("mnist", seed=9, n_train=300, n_test=50)
    folder = tmp_path / "bomb" / "mnist"
    write_task(folder, arrays)
    header = struct.pack(">IIII", data.IMAGE_MAGIC, 300, 28, 28)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as fh:
        fh.write(header + arrays["x_train"].tobytes())
        for _ in range(64):  # 64 MiB of zeros that the header never promised
            fh.write(bytes(1 << 20))
    reads = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(
        gzip.GzipFile, "read", lambda self, n=-1: reads.append(n) or real_read(self, n)
    )
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "bomb"))
    data._load_raw.cache_clear()
    with pytest.raises(DataError, match="header promises 300 items .* but the file has more"):
        data.load("mnist", validation_size=100)
    assert -1 not in reads and max(reads) <= 300 * 28 * 28 + 1
    assert _cache(tmp_path) == []


def test_a_keras_cache_npz_of_floats_is_refused_not_rescaled(tmp_path, monkeypatch):
    """float64 images in [0, 1] were divided by 255 again and trained on (issue 27, D): the
    built-in tasks take uint8 pixels only."""
    arrays = make_task_arrays("mnist", seed=2, n_train=300, n_test=50)
    home = tmp_path / "keras-home"
    (home / "datasets").mkdir(parents=True)
    np.savez(
        home / "datasets" / "mnist.npz",
        x_train=arrays["x_train"] / 255.0,
        y_train=arrays["y_train"],
        x_test=arrays["x_test"] / 255.0,
        y_test=arrays["y_test"],
    )
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delenv("BENCH_DATA_DIR")
    data._load_raw.cache_clear()
    with pytest.raises(DataError, match="float64, expected uint8 pixel values"):
        data.load("mnist", validation_size=100)
    assert _cache(tmp_path) == []


# ------------------------------------------------------------------------ declared in a study file


def _study(tmp_path: Path, task: str, extra: str = "") -> Path:
    path = tmp_path / "studies" / "mine.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f"name: mine\n{task}\nvariants: [vanilla-shallow]\nprotocol: {{epochs: 1, batch_size: "
        f"64}}\n{extra}"
    )
    return path


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.setattr(data.tasks, "TASKS", dict(data.TASKS))
    monkeypatch.setattr(data, "TASKS", data.tasks.TASKS)
    data._load_raw.cache_clear()
    yield
    data._load_raw.cache_clear()


def test_a_study_declares_its_dataset_relative_to_itself(tmp_path, fresh_registry):
    import pickle

    from bench.studies import load_study

    x, y = _blobs()
    (tmp_path / "studies").mkdir()
    np.savez(
        tmp_path / "studies" / "blobs.npz",
        x_train=x[:500],
        y_train=y[:500],
        x_test=x[500:],
        y_test=y[500:],
    )
    path = _study(
        tmp_path,
        "task:\n  name: blobs\n  source: {format: npz, path: blobs.npz}\n  validation_size: 50",
    )
    study = load_study(path)
    assert study.task == "blobs" and study.protocol.validation_size == 50
    task = data.get_task("blobs")
    assert task.source.path == tmp_path / "studies" / "blobs.npz" and task.origin == str(path)
    assert data.load("blobs", validation_size=50).sizes == {
        "train": 450,
        "validation": 50,
        "test": 100,
    }
    del data.tasks.TASKS["blobs"]  # a worker process: the study arrives pickled, its task with it
    assert pickle.loads(pickle.dumps(study)).task == "blobs" and data.get_task("blobs") == task


BAD_STUDIES = {
    "unknown format": ("task:\n  name: t\n  source: {format: xlsx, path: t.xlsx}", "format"),
    "no source": ("task:\n  name: t", "source"),
    "unknown key": ("task:\n  name: t\n  source: {format: npz, path: t.npz, sheet: 1}", "sheet"),
    "shadows a built-in": (
        "task:\n  name: mnist\n  source: {format: npz, path: t.npz}",
        r"already declared \(built-in\)",
    ),
    "bad name": ("task:\n  name: 'a b'\n  source: {format: npz, path: t.npz}", "name"),
    "validation twice": (
        "task:\n  name: t\n  source: {format: npz, path: t.npz}\n  validation_size: 5\n"
        "protocol: {validation_size: 6}",
        "duplicate key|given twice",
    ),
    "one class name": (
        "task:\n  name: t\n  source: {format: npz, path: t.npz}\n  class_names: [a]",
        "class_names",
    ),
    "negative test size": (
        "task:\n  name: t\n  source: {format: csv, path: t.csv, test_size: -1}",
        "test_size",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STUDIES))
def test_a_bad_task_declaration_is_one_error_naming_the_file(tmp_path, fresh_registry, case):
    from bench.errors import StudyError
    from bench.studies import load_study

    task, message = BAD_STUDIES[case]
    path = _study(tmp_path, task)
    with pytest.raises(StudyError, match=message) as info:
        load_study(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
