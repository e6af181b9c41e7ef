"""The code is formatted and linted as pyproject.toml's ``[tool.ruff]`` says, long lines
(E501) included: CI fails on unformatted or unlinted code. ``ruff format .`` and
``ruff check --fix .`` mend most of what these report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command", [("format", "--check"), ("check",)], ids=["ruff format", "ruff check"]
)
def test_ruff_is_clean(command):
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"ruff {' '.join(command)}:\n{done.stdout}{done.stderr}"
