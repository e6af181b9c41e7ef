"""Which process owns a run or a trial, and whether that process is certainly gone.

A run or trial records its owner as ``host:pid:start`` (``start``: the process's start
time in clock ticks since boot, from ``/proc``), so a later ``bench`` on the same host
can tell a worker that was killed (``kill -9``, OOM, power loss of a terminal) from one
still training, even when the pid has since been reused. On another host nothing can
be told from here: such owners are never declared dead by this module.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_ticks(pid: int) -> str:
    """The process's start time (field 22 of ``/proc/PID/stat``), or "" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def identity(pid: int | None = None) -> str:
    """``host:pid:start`` of this process (or of ``pid``)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def is_dead(owner: str) -> bool:
    """True only when ``owner`` ran on this host and that process no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, run by another user
    now = _start_ticks(pid)
    return bool(start and now and now != start)  # the pid was reused by a new process
