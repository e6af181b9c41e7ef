"""Where the MLflow store is and whether it can be used: resolve, check, redact, name.

Nothing here opens a run. Everything here fails fast with a :class:`TrackingError`,
before any run exists, instead of MLflow's minutes of retries and a traceback.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bench.errors import TrackingError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


#: ``scheme://user:password@``: the password of any URL inside a text, parsed or not.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*):[^\s/]*@")
#: ``?password=...`` / ``&token=...``: credentials passed as query parameters.
_QUERY_SECRET = re.compile(
    r"([?&;](?:password|passwd|pwd|pass|token|access_token|secret|api_key|apikey|key|sslpassword)=)[^&;#\s'\"]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Hide every password or token in ``text``: the ``user:password@`` of any URL in it (a
    whole URI or a sentence quoting one, parsable or not) and credential query parameters:
    ``postgresql://u:***@host/db``, ``...?password=***``."""
    if not isinstance(text, str):
        text = str(text)
    return _QUERY_SECRET.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return (uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI).strip()


def sqlite_path(uri: str) -> Path:
    """The file an SQLite URI opens (``Path(":memory:")`` for an in-memory database)."""
    return sqlite_file(uri)[0]


def sqlite_file(uri: str) -> tuple[Path, str | None]:
    """The file an SQLite URI opens and its SQLite ``mode`` (``ro``, ``memory``, ...; None when
    not given), read by SQLAlchemy's own URL parser and driver, as MLflow and Optuna open it:
    a query string is not part of the path, ``~`` is a folder named ``~``, a relative path
    is relative to the working directory. A query argument the driver would ignore is an
    error: whoever wrote it expected something SQLite will not do."""
    import warnings

    from sqlalchemy import exc as sa_exc
    from sqlalchemy.engine import make_url

    malformed = f"malformed SQLite tracking URI {redact(uri)!r}"
    try:
        url = make_url(uri)
        dialect = url.get_dialect()() if url.get_backend_name() == "sqlite" else None
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as exc:
        raise TrackingError(f"{malformed}: {first_line(exc)}") from None
    if dialect is None or url.host:  # sqlite://relative.db names a host, not a file
        raise TrackingError(f"{malformed}: use sqlite:///path/to/mlflow.db")
    if not url.database:  # sqlite:/// (SQLAlchemy would open an in-memory database)
        raise TrackingError(f"{malformed}: no database file named")
    if url.database == ":memory:":
        return Path(":memory:"), "memory"
    with warnings.catch_warnings():
        warnings.simplefilter("error", sa_exc.SAWarning)
        try:
            args, kwargs = dialect.create_connect_args(url)
        except sa_exc.SAWarning as warning:
            reason = str(warning).split(";")[0]
            raise TrackingError(
                f"SQLite URI {redact(uri)!r}: {reason}; leave them out "
                "(SQLite URI arguments need uri=true)"
            ) from None
    filename = str(args[0])
    if not kwargs.get("uri"):
        return Path(filename), None
    parts = urllib.parse.urlsplit(filename)  # file:path?mode=...
    mode = urllib.parse.parse_qs(parts.query).get("mode", [None])[-1]
    path = urllib.parse.unquote(parts.path)
    if mode == "memory" or not path or path == ":memory:":
        return Path(":memory:"), "memory"
    return Path(path).absolute(), mode


def check_artifact_location(location: str) -> None:
    """Fail before any run exists when a local artifact folder cannot be written (a server
    or cloud artifact store is checked when the first artifact is written)."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("", "file"):
        return
    check_writable_folder(Path(urllib.request.url2pathname(parts.path)), "artifact location")


def check_writable_folder(folder: Path, what: str) -> None:
    """``folder`` exists and is writable, or can be created: its nearest existing ancestor is
    a writable folder. Nothing is created (a probe file is written there and removed)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TrackingError(f"{what} {folder} is not writable: {existing} is a file, not a folder")
    if any(len(part.encode()) > 255 for part in folder.parts):
        raise TrackingError(f"{what} {folder}: a folder name longer than 255 bytes")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".bench-write-check-"):
            pass
    except OSError as exc:
        raise TrackingError(f"{what} {folder} is not writable: {exc.strerror or exc}") from None


#: What a path that is not a regular file is, by its file type.
_FILE_TYPES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
#: The files SQLite keeps beside a database (its rollback journal, write-ahead log, shared memory).
SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


def check_regular_file(
    path: Path, what: str, *, sidecars: tuple[str, ...] = (), error: type[Exception] = TrackingError
) -> None:
    """An existing store or journal file (and each of its ``sidecars``) must be a regular
    file, symbolic links followed. A FIFO would block the open() (in SQLite's C code, where
    no signal handler runs: Ctrl-C and SIGTERM would go unheard), a device such as
    /dev/null would swallow every write. Checked before anything opens it."""
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in sidecars)):
        try:
            mode = os.stat(candidate).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise error(f"{what} {candidate} cannot be used: {exc.strerror or exc}") from None
        if stat.S_ISREG(mode):
            continue
        if stat.S_ISDIR(mode) and candidate == path:
            raise error(f"{what} {path} is a folder, not a file")
        kind = next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")
        shown = str(candidate)
        if candidate.is_symlink():
            shown += f" (-> {os.path.realpath(candidate)})"
        raise error(
            f"{what} {shown} is {kind}, not a regular file; name a regular file or a new one"
        )


#: MLflow keeps experiment names up to 500 characters, but each becomes a folder name (255
#: bytes at most on Linux) and the report's folder name adds to it.
MAX_NAME = 200


def check_name(name: str, what: str) -> None:
    """An experiment or study name that bench can store: not empty, at most :data:`MAX_NAME`
    characters, no control characters."""
    if not name or not name.strip():
        raise TrackingError(f"{what} name is empty")
    if len(name) > MAX_NAME:
        raise TrackingError(f"{what} name is {len(name)} characters long; at most {MAX_NAME}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise TrackingError(f"{what} name {name!r} contains control characters")


def sanitize_name(name: str) -> str:
    """A safe file/folder name for an experiment or study (no separators, no traversal)."""
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name)).strip(".-")
    return cleaned or "unnamed"


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, passwords masked."""
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


#: Where ``mlflow ui`` serves by default (the command bench prints starts it there).
LOCAL_UI = "http://127.0.0.1:5000"
#: The MLflow 3 UI opens in its GenAI mode unless told otherwise; this URL parameter opens
#: the model-training view (Runs, Models, Model registry) and is remembered by the browser.
TRAINING_VIEW = "workflowType=machine_learning"
#: The experiment page's chart view, and the saved view it opens (:mod:`bench.store.views`):
#: MLflow's useExperimentPageViewMode.tsx and useSharedExperimentViewState.ts read them.
CHART_VIEW = "compareRunsMode=CHART"
SAVED_VIEW = "viewStateShareKey"


def ui_url(
    base: str,
    experiment_id: str | None = None,
    run_id: str | None = None,
    *,
    view: str | None = None,
) -> str:
    """The MLflow UI page of an experiment (or one of its runs) in the model-training view;
    ``view``: the experiment's Runs tab with its saved view of that id, in the chart view.
    (The tab's own path: ``#/experiments/<id>`` forwards there, dropping the query;
    MLflow's hooks/useNavigateToExperimentPageTab.tsx.)"""
    page = f"{base.rstrip('/')}/#/experiments"
    if experiment_id:
        page += f"/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    query = TRAINING_VIEW
    if view and experiment_id and not run_id:
        page += "/runs"
        query += f"&{CHART_VIEW}&{SAVED_VIEW}={urllib.parse.quote(view, safe='')}"
    return f"{page}?{query}"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def browse_url(
    uri: str,
    experiment_id: str | None = None,
    run_id: str | None = None,
    *,
    view: str | None = None,
) -> str:
    """The UI page of the runs: the server's, or that of ``mlflow ui`` on a local store
    (:func:`ui_command`); ``view``: a saved view of the experiment (:func:`ui_url`)."""
    base = redact(uri) if is_server(uri) else LOCAL_UI
    return ui_url(base, experiment_id, run_id, view=view)


def browse_hint(
    uri: str,
    experiment_id: str | None = None,
    run_id: str | None = None,
    *,
    view: str | None = None,
) -> str:
    """How to look at the runs: a server's page, or the ``mlflow ui`` command for a local
    store and the page to open once it runs; both in the model-training view."""
    page = browse_url(uri, experiment_id, run_id, view=view)
    return page if is_server(uri) else f"{ui_command(uri)}   then open {page}"


def ui_command(uri: str) -> str:
    """The command that serves a local store's UI at :data:`LOCAL_UI`."""
    return f"mlflow ui --backend-store-uri {redact(uri)} --host 127.0.0.1 --port 5000"
