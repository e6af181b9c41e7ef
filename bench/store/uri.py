"""Where the MLflow store is and whether it can be used: resolve, check, redact, name.

Nothing here opens a run. Everything here fails fast with a :class:`TrackingError`,
before any run exists, instead of MLflow's minutes of retries and a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bench.errors import TrackingError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def redact(uri: str) -> str:
    """Hide the password (or token) in a URI: ``postgresql://u:***@host/db``."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return (uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI).strip()


def sqlite_path(uri: str) -> Path:
    if not uri.startswith("sqlite:///"):
        raise TrackingError(f"malformed SQLite tracking URI {redact(uri)!r}: use sqlite:///path/to/mlflow.db")
    path = uri[len("sqlite:///") :]
    if not path or path.endswith("/"):
        raise TrackingError(f"malformed SQLite tracking URI {redact(uri)!r}: no database file named")
    return Path(path if path.startswith("/") or path == ":memory:" else path).expanduser()


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before any run exists, on a malformed, unwritable or unreachable store."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in _SCHEMES:
        raise TrackingError(
            f"malformed tracking URI {redact(uri)!r}: expected sqlite:///path.db, "
            "http(s)://host:port, postgresql://..., or file:///dir"
        )
    if scheme == "sqlite":
        path = sqlite_path(uri)
        folder = path.parent if str(path.parent) else Path(".")
        if folder.exists() and not folder.is_dir():
            raise TrackingError(f"tracking store folder {folder} is a file, not a folder")
        if not folder.is_dir():
            raise TrackingError(f"tracking store folder {folder} does not exist")
        target = path if path.exists() else folder
        if not os.access(target, os.W_OK):
            raise TrackingError(f"tracking store {path} is not writable")
        if path.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                    con.execute("select count(*) from sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                raise TrackingError(f"tracking store {path} is not an SQLite database: {exc}") from None
    elif scheme == "file":
        folder = Path(urllib.parse.urlsplit(uri).path)
        probe = folder if folder.exists() else folder.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK):
            raise TrackingError(f"tracking folder {folder} is not a writable directory")
    elif scheme in ("http", "https"):
        parts = urllib.parse.urlsplit(uri)
        if not parts.hostname:
            raise TrackingError(f"malformed tracking URI {redact(uri)!r}: no host")
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as resp:  # noqa: S310
                resp.read(64)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"tracking server {redact(uri)} is unreachable: {reason}") from None
    elif scheme in ("postgresql", "mysql", "mssql"):
        _check_database(uri, scheme)


def _check_database(uri: str, scheme: str) -> None:
    """The driver is installed and the database answers within 10 s (MLflow itself would
    retry for minutes, then print a traceback)."""
    import sqlalchemy
    import sqlalchemy.exc

    try:
        args = {"connect_timeout": 10} if scheme in ("postgresql", "mysql") else {}
        engine = sqlalchemy.create_engine(uri, connect_args=args)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise TrackingError(
            f"tracking store {redact(uri)}: {first_line(exc)} (is its database driver installed? "
            "for PostgreSQL: pip install 'bench[postgres]')"
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = first_line(getattr(exc, "orig", None) or exc)
        raise TrackingError(f"tracking store {redact(uri)} is unreachable: {reason}") from None
    finally:
        engine.dispose()


def check_artifact_location(location: str) -> None:
    """Fail before any run exists when a local artifact folder cannot be written (a server
    or cloud artifact store is checked when the first artifact is written)."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("", "file"):
        return
    folder = Path(urllib.request.url2pathname(parts.path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bench-write-check-"):
            pass
    except OSError as exc:
        raise TrackingError(f"artifact location {folder} is not writable: {exc.strerror or exc}") from None


def sanitize_name(name: str) -> str:
    """A safe file/folder name for an experiment or study (no separators, no traversal)."""
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name)).strip(".-")
    return cleaned or "unnamed"


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, passwords masked."""
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


def browse_hint(uri: str, experiment_id: str | None = None) -> str:
    """How to look at the runs: a server's page, or the ``mlflow ui`` command for a local store."""
    if uri.startswith(("http://", "https://")):
        page = f"{redact(uri).rstrip('/')}/#/experiments"
        return f"{page}/{experiment_id}" if experiment_id else page
    return f"mlflow ui --backend-store-uri {redact(uri)} --host 127.0.0.1 --port 5000"
