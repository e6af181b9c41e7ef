"""Run the README's command 1 as a new user would and put what it printed into the README.

    .venv/bin/python scripts/readme_command_1.py [--data-dir ../shared/data]

Runs ``bench compare --data-dir DIR`` (command 1 after its install step) from this
checkout, in a fresh temporary folder (so ``./mlflow.db`` starts empty), times it, and
writes what it printed, with the commit and the wall time, to docs/readme-command-1.txt.
The README's block between ``<!-- BEGIN command-1 -->`` and ``<!-- END command-1 -->`` is
then rewritten from that file; tests/test_docs.py checks that the two agree, so the README
never shows a table that the command did not print. The commit must be clean: the numbers
are that commit's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "readme-command-1.txt"
README = ROOT / "README.md"
BEGIN, END = "<!-- BEGIN command-1 -->", "<!-- END command-1 -->"


def table_lines(text: str) -> list[str]:
    """The comparison table command 1 printed (its markdown rows)."""
    return [line for line in text.splitlines() if line.startswith("|")]


def readme_block(output: str) -> str:
    """The README's block for the saved output: when and where it ran, then the table."""
    header = dict(re.findall(r"^# (\w+): (.*)$", output, flags=re.M))
    minutes, seconds = divmod(round(float(header["seconds"])), 60)
    return "\n".join(
        [
            BEGIN,
            f"On this 2-core VM (CPU only), at commit {header['commit']}, command 1 ran for "
            f"{minutes} min {seconds:02d} s after the install and printed (one seed each; the "
            "`seconds` column is training time per variant; `scripts/readme_command_1.py` "
            "reruns it):",
            "",
            "```",
            *table_lines(output),
            "```",
            END,
        ]
    )


def rewrite_readme(output: str) -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    README.write_text(text[:start] + readme_block(output) + text[end:], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--readme-only",
        action="store_true",
        help="rewrite the README block from the saved output without running",
    )
    args = parser.parse_args()
    if not args.readme_only:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if status.strip():
            sys.exit(
                "error: the checkout has uncommitted changes; commit first "
                "(the numbers are a commit's)"
            )
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        bench = Path(sys.executable).with_name("bench")
        with tempfile.TemporaryDirectory() as work:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENCH_"))}
            started = time.monotonic()
            done = subprocess.run(
                [str(bench), "compare", "--data-dir", str(Path(args.data_dir).resolve())],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"error: command 1 failed ({done.returncode}):\n{done.stderr[-3000:]}")
        OUTPUT.write_text(
            f"# commit: {commit}\n# seconds: {seconds:.0f}\n# command: bench compare --data-dir "
            f"../shared/data\n{done.stdout}",
            encoding="utf-8",
        )
        print(f"command 1: {seconds:.0f} s; output in {OUTPUT.relative_to(ROOT)}")
    rewrite_readme(OUTPUT.read_text(encoding="utf-8"))
    print(f"README block rewritten from {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
