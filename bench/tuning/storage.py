"""Where Optuna keeps a study, and the lock its workers take turns under.

:func:`open_study` opens the storage (a journal file by default, or SQLite, PostgreSQL,
MySQL, Redis) and returns a :class:`StudyStore`: the study together with the storage object
and the database engine bench opened itself, so locks and trial attributes go through
objects bench holds and Optuna's public storage API, never through Optuna's private
attributes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna

from bench.errors import NoStudyError, StorageError
from bench.store import schema
from bench.store.uri import (
    check_regular_file,
    redact,
    resolve_tracking_uri,
    sanitize_name,
    sqlite_path,
)

STORAGE_ENV = "BENCH_OPTUNA_STORAGE"


def default_storage(tracking_uri: str | None) -> str:
    """``$BENCH_OPTUNA_STORAGE``, else a journal file beside the MLflow store (or in the
    working directory). Credentials in the environment stay out of shell history and out
    of the params ``mlflow run -P storage=...`` would record verbatim."""
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    uri = resolve_tracking_uri(tracking_uri)
    folder = Path(".")
    if uri.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite":
        folder = sqlite_path(uri).parent  # as MLflow opens it (bench.store.uri.sqlite_file)
    return f"journal://{(folder / 'optuna.journal').resolve()}"


def journal_path(url: str) -> Path | None:
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if "://" not in url and url.endswith((".journal", ".log")):
        return Path(url)
    return None


def storage_exists(url: str) -> bool:
    """Whether opening ``url`` would read an existing storage rather than create one (a
    database server always counts as existing)."""
    path = journal_path(url) or _sqlite_file(url)
    return path is None or str(path) == ":memory:" or os.path.lexists(path.expanduser())


def supports_concurrency(url: str) -> bool:
    return not url.startswith("sqlite")


# --------------------------------------------------------------------------- locks


class FileLock:
    """An ``fcntl`` lock on a file beside the storage: workers on one machine take turns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        import fcntl  # POSIX only; imported here so the package imports anywhere

        # O_NONBLOCK: a FIFO put where the lock goes cannot block the open (nor the signals
        # that would stop it); anything but a regular file is then refused.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StorageError(f"lock file {self.path} is not a regular file; remove it")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock in the study's own database: workers on any
    number of machines take turns."""

    def __init__(self, engine, name: str) -> None:
        self.engine = engine
        self.key = int.from_bytes(
            hashlib.sha256(f"bench:{name}".encode()).digest()[:8], "big", signed=True
        )

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        import sqlalchemy

        with self.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                conn.commit()


# --------------------------------------------------------------------------- opening


@dataclass
class OpenedStorage:
    """An Optuna storage and, for a database, the SQLAlchemy engine bench created for it."""

    url: str
    storage: optuna.storages.BaseStorage
    engine: object | None = None

    def claim_lock(self, study_name: str) -> FileLock | AdvisoryLock:
        """Serialises "count trials, then ask for one" between the workers of one study."""
        if self.engine is not None and self.engine.dialect.name == "postgresql":
            return AdvisoryLock(self.engine, study_name)
        path = journal_path(self.url) or _sqlite_file(self.url)
        folder = path.expanduser().resolve().parent if path is not None else Path.cwd()
        return FileLock(folder / f".{sanitize_name(study_name)}.claim.lock")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage at ``url`` (what ``optuna.load_study(storage=...)`` takes)."""
    return connect(url).storage


def check_storage(url: str) -> None:
    """What can be known about a file storage without creating or writing anything (run
    before the data cache, the MLflow store or the storage is written): a journal or SQLite
    file must be a regular file or none (a FIFO would block Optuna's open() and the signals
    that would stop it, /dev/null would swallow the study) in a folder that exists; an
    existing one must be whole and Optuna's. A database server is checked when connected."""
    path = journal_path(url)
    if path is not None:
        check_regular_file(path.expanduser(), "Optuna journal", error=StorageError)
        path = path.expanduser().resolve()
        if not path.parent.is_dir():
            raise StorageError(f"storage folder {path.parent} does not exist")
        _check_journal(path)
    elif _sqlite_file(url) is not None:
        _check_database(url)


def connect(url: str) -> OpenedStorage:
    """Journal files (``journal:///path`` or ``*.journal``), RDB URLs (sqlite, postgresql,
    mysql), Redis."""
    path = journal_path(url)
    try:
        if path is not None:
            check_storage(url)
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            backend = JournalFileBackend(str(path.expanduser().resolve()))
            return OpenedStorage(url, JournalStorage(backend))
        scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
        if scheme in ("sqlite", "postgresql", "mysql"):
            _check_database(url)
            rdb = _rdb_storage(url, scheme)
            return OpenedStorage(url, rdb, rdb.engine)
        if scheme == "redis":
            from optuna.storages.journal import JournalRedisBackend, JournalStorage

            return OpenedStorage(url, JournalStorage(JournalRedisBackend(url)))
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - drivers raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open Optuna storage {redact(url)}: {redact(first)}") from None
    raise StorageError(
        f"unsupported Optuna storage URL {redact(url)!r}: use journal:///path/file.journal, "
        "sqlite:///file.db, postgresql://user:pass@host/db or mysql://..."
    )


def _check_journal(path: Path) -> None:
    """Every line of an existing journal is one whole JSON record. Optuna skips a damaged
    last line when it reads, then appends after it, and the study never opens again."""
    import json

    if not path.exists():
        return
    if path.is_dir():
        raise StorageError(f"Optuna journal {path} is a folder, not a file")
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line and number == len(lines):
            break  # the newline that ends the last record
        try:
            json.loads(line)
            whole = number < len(lines)  # a record without its newline was cut off mid-write
        except ValueError:
            whole = False
        if not whole:
            raise StorageError(
                f"Optuna journal {path} is damaged at line {number} of "
                f"{len(lines) - (not lines[-1])} (a write cut off, or edited by hand); back it up, "
                f"then keep its first {number - 1} lines: head -n {number - 1} FILE > FIXED"
            )


def _sqlite_file(url: str) -> Path | None:
    """The file an SQLite storage URL opens, read as Optuna's SQLAlchemy reads it (a query
    string is not part of the path); None for any other URL."""
    from bench.errors import TrackingError

    if url.split(":", 1)[0].split("+", 1)[0].lower() != "sqlite":
        return None
    try:
        return sqlite_path(url)
    except TrackingError as exc:
        text = str(exc).replace("SQLite tracking URI", "Optuna storage URL", 1)
        raise StorageError(text.replace("SQLite URI", "Optuna storage URL", 1)) from None


def _check_database(url: str) -> None:
    """An Optuna storage must be an Optuna database or an empty one: never the MLflow store
    or another application's database (Optuna would add its tables to it)."""
    from bench.errors import TrackingError
    from bench.store.probe import database_contents, sqlite_contents

    path = _sqlite_file(url)
    if path is not None and str(path) == ":memory:":
        raise StorageError(
            f"Optuna storage {redact(url)!r}: name a database file, sqlite:///path/optuna.db"
        )
    if path is not None and not os.path.lexists(path):
        if not path.parent.is_dir():
            raise StorageError(f"storage folder {path.parent} does not exist")
        return
    try:
        if path is not None:
            contents = sqlite_contents(path)
        else:
            contents = database_contents(url, "Optuna storage")
    except TrackingError as exc:
        raise StorageError(str(exc)) from None
    if contents.kind not in ("empty", "optuna"):
        what = "the MLflow store" if contents.kind == "mlflow" else contents.describe()
        raise StorageError(
            f"Optuna storage {redact(url)} is {what}, not an Optuna database; "
            "give Optuna its own (the default is a journal file beside the MLflow store)"
        )


def _rdb_storage(url: str, scheme: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage. Workers started together on a fresh database race to create
    Optuna's tables (a unique-constraint error for all but one); the losers retry."""
    import sqlalchemy.exc

    kwargs = {
        "pool_pre_ping": True,
        **({"connect_args": {"timeout": 60}} if scheme == "sqlite" else {}),
    }
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
            sqlalchemy.exc.InternalError,
        ):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


@dataclass
class StudyStore:
    """One Optuna study with the storage bench opened for it and its workers' claim lock."""

    study: optuna.Study
    opened: OpenedStorage
    study_id: int

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        return self.opened.storage

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        with self.opened.claim_lock(self.study.study_name).held():
            yield

    def set_trial_system_attr(self, number: int, key: str, value: object) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.set_trial_system_attr(trial_id, key, value)

    def study_system_attrs(self) -> dict[str, object]:
        return self.storage.get_study_system_attrs(self.study_id)

    def set_study_system_attr(self, key: str, value: object) -> None:
        self.storage.set_study_system_attr(self.study_id, key, value)


def open_study(
    url: str,
    study_name: str,
    *,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    create: bool,
) -> StudyStore:
    """Create (``create``) or load the study ``study_name`` in the storage at ``url``."""
    opened = connect(url)
    try:
        if create:
            study = optuna.create_study(
                study_name=study_name,
                storage=opened.storage,
                sampler=sampler,
                pruner=pruner,
                direction="maximize",
                load_if_exists=True,
            )
            if (
                study.metric_names is None
            ):  # the objective by name in Optuna's figures and dashboard
                study.set_metric_names([schema.VAL_ACCURACY])
        else:
            study = optuna.load_study(
                study_name=study_name, storage=opened.storage, sampler=sampler, pruner=pruner
            )
    except KeyError:
        raise NoStudyError(f"no Optuna study {study_name!r} in {redact(url)}") from None
    return StudyStore(study, opened, opened.storage.get_study_id_from_name(study_name))
