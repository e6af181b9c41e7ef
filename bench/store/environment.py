"""What a run ran on: library versions, host, device and git commit, as run tags.

Versions come from the installed distributions' metadata, so recording them imports
neither TensorFlow nor Optuna.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from bench.store import schema

_LIBRARIES = ("tensorflow", "keras", "mlflow", "optuna", "numpy")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str | None:
    """HEAD of the working directory's repository, ``-dirty`` when tracked files changed."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out + ("-dirty" if dirty else "") if out else None


def environment_tags(device: str = "") -> dict[str, str]:
    tags = {schema.VERSION_PREFIX + "python": platform.python_version()}
    tags.update({schema.VERSION_PREFIX + lib: _version(lib) for lib in _LIBRARIES})
    tags[schema.HOST_PLATFORM] = platform.platform()
    tags[schema.HOST_CPUS] = str(os.cpu_count())
    if device:
        tags[schema.DEVICE] = device
    commit = git_commit()
    if commit:
        tags[schema.GIT_COMMIT] = commit
    return tags
