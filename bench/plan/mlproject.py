"""The ``MLproject`` file, written from the option table: each run command is an entry point
whose parameters are the command's rows that ``mlflow run`` passes (an empty default: the
study's value). ``python -m bench.plan.mlproject > MLproject`` rewrites it; a test checks
the file is what this writes."""

from __future__ import annotations

import textwrap

from bench.plan.table import COMMANDS, options

HEADER = """\
name: bench

# Written by `python -m bench.plan.mlproject > MLproject` from the option table
# (bench/plan/table.py), as the click options are: edit the table, not this file.
# `mlflow run . -e compare --env-manager local -P epochs=1` runs in the current Python
# environment (these machines have no conda); without --env-manager MLflow builds the
# conda environment from conda.yaml. Empty parameters mean "use the study's value".
conda_env: conda.yaml

entry_points:
"""


def entry_points() -> dict[str, dict[str, object]]:
    """Entry point -> its parameters (name -> type and default) and command (``main`` is
    ``compare``)."""
    out = {}
    for command in COMMANDS:
        rows = [row for row in options(command) if row.mlproject]
        words = ["python -m bench", command]
        words += [
            f"{{{r.parameter}}}" if r.positional else f"{r.option} {{{r.parameter}}}" for r in rows
        ]
        out[command] = {
            "parameters": {
                r.parameter: {"type": "string", "default": r.mlproject_default} for r in rows
            },
            "command": " ".join(words),
        }
    return {"main": out["compare"], **out}


def render() -> str:
    """The ``MLproject`` file's text."""
    points = entry_points()
    lines = [HEADER.rstrip("\n")]
    for command in COMMANDS:
        point = points[command]
        lines.append("  main: &compare" if command == "compare" else f"\n  {command}:")
        lines.append("    parameters:")
        lines += [
            f'      {name}: {{type: string, default: "{p["default"]}"}}'
            for name, p in point["parameters"].items()
        ]
        lines.append("    command: >-")
        lines += textwrap.wrap(
            point["command"],
            width=100,
            initial_indent=" " * 6,
            subsequent_indent=" " * 6,
            break_on_hyphens=False,
            break_long_words=False,
        )
        if command == "compare":
            lines.append("  compare: *compare")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
