"""Stopping on Ctrl-C or SIGTERM: the signal is recorded, the work stops at its next boundary.

A handler that raises can fire anywhere: inside a garbage-collection or weakref callback
(Keras' ``clear_session``), where Python prints "Exception ignored" and carries on as if
nothing happened, or between a run's creation and the block that would close it. So the
handlers installed here only record the request. The work asks :func:`check` at its
boundaries (every compiled call of the training loop, every Keras execution and epoch, before
every run, job and trial), which raises :class:`Interrupted`: a ``KeyboardInterrupt``, so
every path that closes runs KILLED and fails trials on Ctrl-C handles it.

Inside :func:`at_once` (importing TensorFlow: seconds in which nothing is open) a signal
raises at once. A second signal while a stop is pending raises at once, wherever the process
is: the way out of a process blocked where no check is reached (off in worker processes,
whose parent passes the request on and kills them on its own second signal).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator

LAYER = 0  # import layer (docs/development.md#layers): imports only lower layers' units

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The exit status of a process that stopped on a signal (128 + SIGINT, as shells report Ctrl-C).
EXIT_STATUS = 130


class Interrupted(KeyboardInterrupt):
    """A stop was requested (Ctrl-C or SIGTERM); raised by :func:`check`, at a boundary."""


_request: tuple[str, float] | None = None  # (signal name, time.time() it arrived)
_escape = True
_at_once = False


def _record(signum: int, frame) -> None:
    global _request
    name = signal.Signals(signum).name
    if _request is None:
        _request = (name, time.time())
        if _at_once:
            raise Interrupted(f"interrupted ({name})")
    elif _escape:
        raise Interrupted(f"interrupted ({name} again: stopping at once)")


def install(*, escape: bool = True) -> Callable[[], None]:
    """Record SIGINT and SIGTERM from now on (an earlier request is forgotten); returns the
    function that puts the previous handlers back. ``escape``: a second signal raises at once.
    Outside the main thread nothing can be installed, and nothing is."""
    global _request, _escape
    _request, _escape = None, escape
    try:
        previous = {s: signal.signal(s, _record) for s in SIGNALS}
    except ValueError:  # not the main thread
        return lambda: None

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)

    return restore


@contextlib.contextmanager
def handling(*, escape: bool = True) -> Iterator[None]:
    """Record signals inside; on leaving, the previous handlers are back, and a stop that was
    requested meanwhile is raised as :class:`Interrupted` even where the work had finished (so
    the command exits non-zero whenever a signal arrived before it ended)."""
    global _request
    restore = install(escape=escape)
    try:
        yield
    finally:
        restore()
        pending, _request = _request, None
        if pending is not None:
            raise Interrupted(f"interrupted ({pending[0]})")


@contextlib.contextmanager
def at_once() -> Iterator[None]:
    """Inside, a signal raises at once (after it is recorded, so a raise Python swallows still
    stops at the next check): for work that leaves nothing half-done, such as importing
    TensorFlow, which takes seconds."""
    global _at_once
    check()
    _at_once = True
    try:
        yield
    finally:
        _at_once = False


def requested() -> tuple[str, float] | None:
    """(signal name, time it arrived) when a stop is pending, else None."""
    return _request


def check() -> None:
    """Raise :class:`Interrupted` when a stop was requested; call it where work could go on."""
    if _request is not None:
        raise Interrupted(f"interrupted ({_request[0]})")


def sleep(seconds: float) -> None:
    """``time.sleep`` that a stop request ends within a tenth of a second (by raising)."""
    end = time.monotonic() + seconds
    while True:
        check()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))
