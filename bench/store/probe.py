"""What a store is, checked before anything writes to it.

``check_tracking_uri`` fails fast, before any run or experiment exists, on a store that is
malformed, unreachable, unwritable, damaged, or not an MLflow store at all: an Optuna
database, another application's database, an MLflow database of an older schema (MLflow
would migrate it in place, or add its tables to the foreign one). Every failure is one
:class:`TrackingError` line, passwords masked. ``database_contents`` is also how tuning
checks that ``--storage`` is an Optuna database and not the MLflow store.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.errors import TrackingError
from bench.store._first_use import first_use
from bench.store.uri import SQLITE_SIDECARS, check_regular_file, first_line, redact, sqlite_file

_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
#: Tables that only an MLflow tracking store has, and that only an Optuna storage has.
MLFLOW_TABLES = frozenset({"experiments", "runs", "metrics", "params", "tags"})
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


@dataclass(frozen=True)
class Contents:
    """The tables a database holds, and its MLflow schema revision when it has one."""

    tables: frozenset[str]
    revision: str | None = None

    @property
    def kind(self) -> str:
        if not self.tables:
            return "empty"
        if self.tables >= MLFLOW_TABLES:
            return "mlflow"
        if self.tables >= OPTUNA_TABLES:
            return "optuna"
        return "foreign"

    def describe(self) -> str:
        names = sorted(self.tables)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (
            "an Optuna storage"
            if self.kind == "optuna"
            else f"another application's database (tables {shown})"
        )


def sqlite_contents(path: Path) -> Contents:
    """An existing SQLite file's tables (read-only; a damaged file is a TrackingError)."""
    # A FIFO would block sqlite3's open() (where no signal handler runs): refused first.
    check_regular_file(path, "database", sidecars=SQLITE_SIDECARS)
    try:
        read_only = f"{path.absolute().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(read_only, uri=True)) as con:
            verdict = con.execute("pragma quick_check").fetchone()[0]
            if verdict != "ok":
                raise TrackingError(
                    f"database {path} is damaged ({verdict}); restore it from a backup"
                )
            tables = frozenset(
                row[0] for row in con.execute("select name from sqlite_master where type = 'table'")
            )
            revision = None
            if "alembic_version" in tables:
                row = con.execute("select version_num from alembic_version").fetchone()
                revision = row[0] if row else None
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"{path} is not an SQLite database, or is damaged: {exc}") from None
    return Contents(tables, revision)


def database_contents(url: str, what: str = "database") -> Contents:
    """A database server's tables (PostgreSQL, MySQL, ...), connecting within 10 s."""
    import sqlalchemy
    import sqlalchemy.exc

    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    try:
        args = {"connect_timeout": 10} if scheme in ("postgresql", "mysql") else {}
        engine = sqlalchemy.create_engine(url, connect_args=args)
    except (
        sqlalchemy.exc.ArgumentError,
        sqlalchemy.exc.NoSuchModuleError,
        ImportError,
        ValueError,
    ) as exc:
        raise TrackingError(
            f"{what} {redact(url)}: {first_line(exc)} (is its database driver installed? "
            "for PostgreSQL: pip install 'bench[postgres]')"
        ) from None
    try:
        with engine.connect() as con:
            tables = frozenset(sqlalchemy.inspect(con).get_table_names())
            revision = None
            if "alembic_version" in tables:
                row = con.execute(
                    sqlalchemy.text("select version_num from alembic_version")
                ).fetchone()
                revision = row[0] if row else None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)
        raise TrackingError(f"{what} {redact(url)} is unreachable: {reason}") from None
    finally:
        engine.dispose()
    return Contents(tables, revision)


@functools.cache
def mlflow_schema_head() -> str:
    """The schema revision this MLflow writes (its newest migration)."""
    import mlflow.store
    from alembic.script import ScriptDirectory

    return ScriptDirectory(
        os.path.join(os.path.dirname(mlflow.store.__file__), "db_migrations")
    ).get_current_head()


def _check_contents(contents: Contents, where: str, write: bool) -> None:
    if contents.kind == "empty":
        if not write:
            raise TrackingError(f"{where} holds no MLflow runs (an empty database)")
        return
    if contents.kind != "mlflow":
        raise TrackingError(
            f"{where} is not an MLflow store: it is {contents.describe()}; name a new file or an "
            "MLflow database"
        )
    head = mlflow_schema_head()
    if contents.revision != head:
        raise TrackingError(
            f"{where} is an MLflow store of another MLflow version (schema {contents.revision}, "
            f"this MLflow writes {head}): upgrade it first with `mlflow db upgrade URI` "
            "(back it up before), or use another store"
        )


def _port_ok(uri: str) -> None:
    try:
        urllib.parse.urlsplit(uri).port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise TrackingError(f"malformed tracking URI {redact(uri)!r}: {exc}") from None


def check_tracking_uri(uri: str, *, write: bool = True) -> None:
    """Fail fast on a store that cannot be used: before any run exists (``write``), or
    before a report reads it (``write=False``: it must exist and hold MLflow's schema)."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in _SCHEMES:
        raise TrackingError(
            f"malformed tracking URI {redact(uri)!r}: expected sqlite:///path.db, "
            "http(s)://host:port or postgresql://..."
        )
    _port_ok(uri)
    if scheme == "sqlite":
        with first_use(uri):  # not while another bench process creates the store
            _check_sqlite(uri, write)
    elif scheme == "file":
        if not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
            raise TrackingError(
                f"{redact(uri)}: MLflow 3 no longer writes file stores; use "
                "sqlite:///path/mlflow.db (`mlflow migrate-filestore` converts an old one)"
            )
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme in ("postgresql", "mysql", "mssql"):
        _check_contents(
            database_contents(uri, "tracking store"), f"tracking store {redact(uri)}", write
        )


def _check_sqlite(uri: str, write: bool) -> None:
    path, mode = sqlite_file(uri)
    if mode == "memory":
        raise TrackingError(
            f"{redact(uri)}: an in-memory store loses every run when bench exits; "
            "use sqlite:///mlflow.db"
        )
    if write and mode == "ro":
        raise TrackingError(
            f"{redact(uri)} opens the store read-only (mode=ro); bench writes runs into it"
        )
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise TrackingError(f"tracking store folder {folder} is a file, not a folder")
    if not folder.is_dir():
        literal = ""
        if "~" in uri:
            literal = " (SQLite takes ~ literally, as MLflow opens it: write the full path)"
        raise TrackingError(f"tracking store folder {folder} does not exist{literal}")
    if path.is_dir():
        raise TrackingError(f"tracking store {path} is a folder, not a database file")
    check_regular_file(path, "tracking store", sidecars=SQLITE_SIDECARS)
    if not path.exists():
        if not write:
            raise TrackingError(f"no MLflow store at {redact(uri)}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise TrackingError(f"tracking store folder {folder} is not writable")
        return
    if write and not (os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)):
        raise TrackingError(
            f"tracking store {path} is not writable (SQLite also needs its folder writable)"
        )
    _check_contents(sqlite_contents(path), f"tracking store {path}", write)


def _check_server(uri: str) -> None:
    """The server answers its health check (credentials in the URI sent as basic auth)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.hostname:
        raise TrackingError(f"malformed tracking URI {redact(uri)!r}: no host")
    plain = urllib.parse.urlunsplit(
        parts._replace(netloc=parts.netloc.rpartition("@")[2])
    )  # no credentials
    request = urllib.request.Request(plain.rstrip("/") + "/health")
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - http(s) only
            resp.read(64)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"tracking server {redact(uri)} is unreachable: {redact(str(reason))}"
        ) from None
