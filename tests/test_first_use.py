"""Processes starting together on a fresh store (issue 27, E): the first use is serialised.

MLflow creates a new SQLite store's tables when a client first opens it; two processes
doing that at once used to race (``duplicate column name``, ``Online migration``, or a store
check that read the half-made schema as "another MLflow version"). Both tests start the
processes on one fresh store at the same moment, several times over, and every process must
succeed.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support import study_yaml

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 3


def _open(uri: str, experiment: str, barrier, results) -> None:
    """A process that opens ``uri`` as a tracker the moment every other one is ready."""
    from bench.store.tracker import Tracker

    barrier.wait(timeout=120)
    try:
        Tracker(uri, experiment)
        results.put((experiment, "ok"))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put((experiment, f"{type(exc).__name__}: {exc}"))


def test_trackers_opening_a_fresh_store_together_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        uri = f"sqlite:///{folder}/mlflow.db"
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [
            ctx.Process(target=_open, args=(uri, f"exp-{i}", barrier, results)) for i in range(3)
        ]
        for p in procs:
            p.start()
        outcome = dict(results.get(timeout=300) for _ in procs)
        for p in procs:
            p.join(timeout=60)
        assert outcome == {f"exp-{i}": "ok" for i in range(3)}, outcome
        names = {e.name for e in MlflowClient(uri).search_experiments()}
        assert {f"exp-{i}" for i in range(3)} <= names


@pytest.mark.long
def test_two_different_bench_commands_on_one_fresh_store_at_the_same_moment(tmp_path):
    study = tmp_path / "race.yaml"
    study.write_text(study_yaml("race", variants=["vanilla-shallow"]))
    commands = [
        ["train", "vanilla-shallow", "--study", str(study), "--no-model"],
        ["tune", "--study", str(study), "--trials", "1", "--epochs", "1", "--no-model"],
    ]
    for round_ in range(ROUNDS):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
            "BENCH_CACHE_DIR": str(folder / "bench-cache"),
            "KERAS_HOME": str(folder / "keras-home"),
        }
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench", *args],
                cwd=folder,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for args in commands
        ]
        outputs = [p.communicate(timeout=600) for p in procs]
        for args, p, (_out, err) in zip(commands, procs, outputs, strict=True):
            assert p.returncode == 0, f"round {round_}, bench {args[0]}: {err[-3000:]}"
            assert not [line for line in err.splitlines() if line.startswith("error:")], err
