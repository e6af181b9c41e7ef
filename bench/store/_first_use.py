"""The first use of an SQLite store, one process at a time (a private helper of the store).

MLflow creates a new SQLite store's tables with 68 migrations when a client first opens
it. Two bench processes starting together on a fresh store (two ``bench tune``, a
``bench compare`` beside a ``bench tune``, the workers of one) would both migrate it: one
fails (``duplicate column name``, ``Online migration ...``), or its store check reads the
half-made schema and calls it an MLflow store of another version. So the store check and
the client's first opening (which creates and migrates) hold an exclusive lock on the
store's folder: the others wait seconds, then find the store made. The lock is the
folder's own (``flock`` on the directory), so no lock file is added beside the store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

#: Whether this process holds the lock already (a nested use must not wait for itself).
_held: set[str] = set()


@contextlib.contextmanager
def first_use(uri: str) -> Iterator[None]:
    """Hold the store folder's lock inside (SQLite stores only; others pass through)."""
    folder = _folder(uri)
    if folder is None or str(folder) in _held:
        yield
        return
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # no such folder, not a folder, not readable: the store check says so
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits; a signal meanwhile is handled (PEP 475)
        _held.add(str(folder))
        try:
            yield
        finally:
            _held.discard(str(folder))
    finally:
        os.close(fd)  # releases the lock


def _folder(uri: str) -> Path | None:
    from bench.errors import TrackingError
    from bench.store.uri import sqlite_file

    if uri.split(":", 1)[0].split("+", 1)[0].lower() != "sqlite":
        return None
    try:
        path, mode = sqlite_file(uri)
    except TrackingError:
        return None  # malformed: the store check says so
    return None if mode == "memory" else path.parent
