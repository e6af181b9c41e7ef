"""What a run ran on: library versions, host, device and git commit, as run tags.

Versions come from the installed distributions' metadata, so recording them imports
neither TensorFlow nor Optuna.
"""

from __future__ import annotations

import functools
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.store import schema

_LIBRARIES = ("tensorflow", "keras", "mlflow", "optuna", "numpy")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    """HEAD of the repository bench's code runs from (an editable install's checkout),
    ``-dirty`` when tracked files changed; None for an installed package or without git."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():  # an installed package: its folder is no checkout of bench
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out + ("-dirty" if dirty else "") if out else None


def environment_tags(device: str = "") -> dict[str, str]:
    tags = {schema.VERSION_PREFIX + "python": platform.python_version()}
    tags.update({schema.VERSION_PREFIX + lib: _version(lib) for lib in _LIBRARIES})
    tags[schema.HOST_PLATFORM] = platform.platform()
    tags[schema.HOST_CPUS] = str(os.cpu_count())
    tags.update(_hardware())
    tags[schema.COMMAND] = command()
    if device:
        tags[schema.DEVICE] = device
    tags.update(git_tags())
    return tags


@functools.cache
def git_tags() -> dict[str, str]:
    """The commit as MLflow's UI shows it (``mlflow.source.git.commit``), whether the tree
    was dirty, and bench's own ``commit[-dirty]`` tag; empty outside a git checkout. Read
    once per process: every run bench creates carries them."""
    commit = git_commit()
    if not commit:
        return {}
    return {
        schema.GIT_COMMIT: commit,
        schema.MLFLOW_GIT_COMMIT: commit.removesuffix("-dirty"),
        schema.GIT_DIRTY: str(commit.endswith("-dirty")).lower(),
    }


def command() -> str:
    """The command line this process runs, as a shell would take it back (``bench ...``
    for the console script, whatever launched it)."""
    args = list(sys.argv)
    if args and Path(args[0]).name in ("bench", "__main__.py"):
        args[0] = "bench"
    return " ".join(shlex.quote(a) for a in args)


@functools.cache
def _hardware() -> dict[str, str]:
    """The CPU model and the memory, where Linux says them."""
    found = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                found[schema.HOST_CPU] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                found[schema.HOST_MEMORY] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError, IndexError):
        pass
    return found
