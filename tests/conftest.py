"""Shared fixtures: tiny generated IDX datasets, an isolated environment per test, toy studies.

Every test runs in its own ``tmp_path`` with its own SQLite MLflow store, data cache and
Keras home, so no test reads a user's data or writes a user's ``mlflow.db`` / ``./mlruns``.
Tests marked ``slow`` use the real datasets and run only when ``BENCH_REAL_DATA_DIR``
names a folder holding ``fashion-mnist/`` and ``mnist/`` IDX files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import data, xla
from bench.data import FILES
from tests.support import (
    REAL_DATA_ENV,
    TASK_FOLDERS,
    TINY_VALIDATION,
    Store,
    TinyData,
    make_task_arrays,
    study_yaml,
    write_task,
)

# No XLA in tests unless a test asks for it (tests/test_xla.py, the Keras-twin checks):
# TensorFlow never frees a compiled XLA executable, so a worker process training hundreds
# of different tiny networks grew past 10 GB and two of them exhausted a 24 GB machine.
# Set before any test starts, so the `bench` processes tests start inherit it too.
os.environ.setdefault(xla.ENV, "off")

_LOGGERS = ("bench", "mlflow", "alembic", "absl", "tensorflow", "h5py", "matplotlib")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    """2,400 train / 300 test images per task, as real IDX .gz files, learnable in one epoch."""
    root = tmp_path_factory.mktemp("tiny-data")
    raw = {}
    for seed, task in enumerate(TASK_FOLDERS):
        raw[task] = make_task_arrays(task, seed=1000 + seed)
        write_task(root / TASK_FOLDERS[task], raw[task])
    return TinyData(root=root, raw=raw)


def _reset_mlflow_state() -> None:
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite MLflow store with its schema made: creating one runs MLflow's 68
    migrations (2 s), so each worker makes it once and every test starts from a copy."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def copy_empty_store(template: Path, workdir: Path) -> None:
    """``template`` as ``workdir/mlflow.db``, its Default experiment's artifacts under
    ``workdir/mlruns/0`` as if the store had been created there."""
    target = workdir / "mlflow.db"
    shutil.copyfile(template, target)
    with contextlib.closing(sqlite3.connect(target)) as con, con:
        con.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(workdir / "mlruns" / "0"),),
        )


@contextlib.contextmanager
def isolated_environment(
    mp: pytest.MonkeyPatch, workdir: Path, data_dir: Path, empty_store: Path
) -> Iterator[str]:
    """Point every store, cache and data source at ``workdir`` / ``data_dir``; yield the URI."""
    import mlflow

    copy_empty_store(empty_store, workdir)
    uri = f"sqlite:///{workdir}/mlflow.db"
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        mp.delenv(var, raising=False)
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("BENCH_DATA_DIR", str(data_dir))
    mp.setenv("BENCH_CACHE_DIR", str(workdir / "bench-cache"))
    mp.setenv("BENCH_OFFLINE", "1")
    mp.setenv("KERAS_HOME", str(workdir / "keras-home"))
    # The CLI sets these with os.environ.setdefault; pin them so nothing leaks between tests.
    mp.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    mp.setenv("MLFLOW_LOGGING_LEVEL", os.environ.get("MLFLOW_LOGGING_LEVEL", "WARNING"))
    mp.chdir(workdir)
    _reset_mlflow_state()
    mlflow.set_tracking_uri(uri)  # the fluent API keeps a global; make it this test's store
    data._load_raw.cache_clear()
    try:
        yield uri
    finally:
        _reset_mlflow_state()
        data._load_raw.cache_clear()


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """The CLI reconfigures logging and installs a SIGTERM handler: undo both after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    sigterm = signal.getsignal(signal.SIGTERM)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
    signal.signal(signal.SIGTERM, sigterm)


@pytest.fixture(autouse=True)
def isolated(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_data: TinyData, empty_store: Path
) -> Iterator[str]:
    """Every test: its own MLflow store, data cache and Keras home; the tiny data; cwd = tmp."""
    with isolated_environment(monkeypatch, tmp_path, tiny_data.root, empty_store) as uri:
        yield uri


@pytest.fixture(scope="module")
def module_store(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: TinyData, empty_store: Path
) -> Iterator[Store]:
    """An isolated environment shared by one module's tests (for expensive shared runs).

    Each test's own ``isolated`` environment is layered on top and undone after it, so
    module fixtures must pass ``module_store.uri`` explicitly when they query the store.
    """
    workdir = tmp_path_factory.mktemp("module-store")
    with (
        pytest.MonkeyPatch.context() as mp,
        isolated_environment(mp, workdir, tiny_data.root, empty_store) as uri,
    ):
        yield Store(workdir, uri)


@pytest.fixture
def tracking_uri(isolated: str) -> str:
    return isolated


@pytest.fixture
def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """``write_study(name="toy", variants=[...], **protocol) -> Path`` of a toy study YAML."""

    def write(name: str = "toy", **kwargs: object) -> Path:
        path = tmp_path / "studies-under-test" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(study_yaml(name, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
        return path

    return write


@pytest.fixture(scope="session")
def tiny_splits_factory(tiny_data: TinyData) -> Callable[..., data.Splits]:
    """Load the tiny data through ``bench.data.load`` (explicit data dir, 200 validation)."""

    def load(task: str = "fashion_mnist", **kwargs: object) -> data.Splits:
        kwargs.setdefault("validation_size", TINY_VALIDATION)
        return data.load(task, data_dir=tiny_data.root, **kwargs)  # type: ignore[arg-type]

    return load


@pytest.fixture
def tiny_splits(tiny_splits_factory: Callable[..., data.Splits]) -> data.Splits:
    return tiny_splits_factory("fashion_mnist")


# --------------------------------------------------------------------------- slow tests


def _find_real_data() -> Path | None:
    """``$BENCH_REAL_DATA_DIR`` (absolute) when it holds both tasks' IDX files, else None."""
    value = os.environ.get(REAL_DATA_ENV)
    if not value:
        return None
    root = Path(value).expanduser().resolve()  # relative to where pytest was started
    for folder in TASK_FOLDERS.values():
        if not all(
            (root / folder / f"{stem}.gz").is_file() or (root / folder / stem).is_file()
            for stem in FILES.values()
        ):
            return None
    return root


_real_data: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _real_data
    # Resolved once, before any test changes the working folder (CI passes a relative path).
    _real_data = _find_real_data()
    config.addinivalue_line(
        "markers",
        f"slow: uses the real datasets (needs {REAL_DATA_ENV}); deselect with -m 'not slow'",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _real_data is not None:
        return
    reason = (
        f"needs the real datasets: set {REAL_DATA_ENV} to a folder holding fashion-mnist/ and "
        "mnist/ with the four IDX files each"
    )
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def real_data() -> Path:
    """The real datasets' folder (tests using it are marked slow and skipped without it)."""
    if _real_data is None:  # pragma: no cover - collection already skips these tests
        pytest.skip(f"{REAL_DATA_ENV} does not point at the real datasets")
    return _real_data


@pytest.fixture
def fresh_registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Variants and tasks a test declares (in a study file, a plug-in) stay in that test."""
    from bench.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))
    monkeypatch.setattr(data.tasks, "TASKS", dict(data.TASKS))
    monkeypatch.setattr(data, "TASKS", data.tasks.TASKS)
    data._load_raw.cache_clear()
    yield
    data._load_raw.cache_clear()
