"""Where the MLflow store is and whether it can be used: resolve, check, redact, name.

Nothing here opens a run. Everything here fails fast with a :class:`TrackingError`,
before any run exists, instead of MLflow's minutes of retries and a traceback.
"""

from __future__ import annotations

import os
import re
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
    if not uri.startswith("sqlite:///"):
        raise TrackingError(f"malformed SQLite tracking URI {redact(uri)!r}: use sqlite:///path/to/mlflow.db")
    path = uri[len("sqlite:///") :]
    if not path or path.endswith("/"):
        raise TrackingError(f"malformed SQLite tracking URI {redact(uri)!r}: no database file named")
    return Path(path if path.startswith("/") or path == ":memory:" else path).expanduser()


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


def ui_url(base: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (or one of its runs) in the model-training view."""
    page = f"{base.rstrip('/')}/#/experiments"
    if experiment_id:
        page += f"/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{page}?{TRAINING_VIEW}"


def browse_hint(uri: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """How to look at the runs: a server's page, or the ``mlflow ui`` command for a local
    store and the page to open once it runs; both in the model-training view."""
    if uri.startswith(("http://", "https://")):
        return ui_url(redact(uri), experiment_id, run_id)
    command = f"mlflow ui --backend-store-uri {redact(uri)} --host 127.0.0.1 --port 5000"
    return f"{command}   then open {ui_url(LOCAL_UI, experiment_id, run_id)}"
