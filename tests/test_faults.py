"""Faults a real user meets: ``kill -9`` in the middle of a comparison, a disk that fills up
under the artifact folder, an artifact location that cannot be written. Each ends in a
clear error or a clean rerun, never in a run left RUNNING or a half-written run FINISHED."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from bench.cli import cli
from bench.store import owner

REPO = Path(__file__).resolve().parent.parent


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _runs(client: MlflowClient) -> list:
    exps = client.search_experiments(view_type=ViewType.ALL)
    return client.search_runs(
        [e.experiment_id for e in exps], run_view_type=ViewType.ALL, max_results=1000
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- owners


def test_a_live_process_is_not_dead_a_gone_one_is():
    assert not owner.is_dead(owner.identity())
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ident = owner.identity(proc.pid)
    assert not owner.is_dead(ident)
    proc.kill()
    proc.wait()
    assert owner.is_dead(ident)
    host, pid, start = owner.identity().split(":")
    assert owner.is_dead(f"{host}:{pid}:{int(start) + 1}")  # same pid, another process: reused
    assert not owner.is_dead(f"another-host:{proc.pid}:1")  # elsewhere: cannot tell, so alive
    assert not owner.is_dead("")


# --------------------------------------------------------------------------- kill -9


def test_killed_comparison_is_closed_on_the_next_start_and_the_rerun_completes(
    write_study, tracking_uri
):
    study = write_study("killcmp", variants=["vanilla-shallow"], epochs=500)
    client = MlflowClient(tracking_uri)
    proc = subprocess.Popen(
        _bench("compare", "--study", str(study), "--no-model"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, child = time.monotonic() + 180, None
        while child is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            if Path(tracking_uri.removeprefix("sqlite:///")).exists():
                child = next(
                    (
                        r
                        for r in _runs(client)
                        if r.data.tags.get("bench.kind") == "train"
                        and r.data.metrics.get("val_accuracy") is not None
                    ),
                    None,
                )
            time.sleep(0.5)
        assert child is not None, "training never logged an epoch"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed = {r.info.run_id: r for r in _runs(client)}
    assert {r.info.status for r in killed.values()} == {"RUNNING"}  # what kill -9 leaves behind
    assert len(killed) == 2  # the comparison and its one training run

    rerun = subprocess.run(
        _bench("compare", "--study", str(study), "--epochs", "1", "--no-model"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "closed 2 run(s) left RUNNING by a killed bench process" in rerun.stderr

    runs = _runs(client)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for run_id in killed:
        old = client.get_run(run_id)
        assert old.info.status == "FAILED"
        assert "died before the run ended" in old.data.tags["bench.error"]
    new = [r for r in runs if r.info.run_id not in killed]
    assert sorted(r.data.tags["bench.kind"] for r in new) == ["comparison", "train"]
    assert {r.info.status for r in new} == {"FINISHED"}
    # The killed run kept the epochs it had logged (nothing logged so far is lost).
    assert client.get_metric_history(child.info.run_id, "val_accuracy")


def test_a_running_comparison_of_another_live_process_is_left_alone(write_study, tracking_uri):
    """Only runs whose process is certainly gone are closed: a concurrent comparison is not."""
    study = write_study("busy", variants=["vanilla-shallow"])
    client = MlflowClient(tracking_uri)
    from bench.store.tracker import Tracker

    tracker = Tracker(tracking_uri, "busy")
    with tracker.run("someone-else", kind="comparison") as live_id:
        rerun = CliRunner().invoke(cli, ["compare", "--study", str(study), "--no-model"])
        assert rerun.exit_code == 0, rerun.output
        assert "closed" not in rerun.output
        assert client.get_run(live_id).info.status == "RUNNING"
    assert client.get_run(live_id).info.status == "FINISHED"


# --------------------------------------------------------------------------- full disk


def _can_mount_tmpfs(target: Path) -> str | None:
    """None when a private tmpfs can be mounted (root, or an unprivileged user namespace)."""
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{target}'"],
        capture_output=True,
        text=True,
    )
    return (
        None
        if probe.returncode == 0
        else f"cannot mount a private tmpfs here: {probe.stderr.strip()}"
    )


def test_a_full_disk_under_the_artifacts_is_one_clear_error_and_no_finished_run(
    write_study, tracking_uri, tmp_path
):
    """A real full disk: the artifact folder is a 300 KB tmpfs, mounted in a private mount
    namespace around the ``bench compare`` process only."""
    artifacts = tmp_path / "small-disk"
    artifacts.mkdir()
    reason = _can_mount_tmpfs(artifacts)
    if reason:
        pytest.skip(reason)
    client = MlflowClient(tracking_uri)
    client.create_experiment("fulldisk", artifact_location=artifacts.as_uri())
    study = write_study("fulldisk", variants=["vanilla-shallow"])
    script = 'mount -t tmpfs -o size=300k tmpfs "$1" && shift && exec "$@"'
    cmd = [
        "unshare",
        "-rm",
        "sh",
        "-c",
        script,
        "sh",
        str(artifacts),
        *_bench("compare", "--study", str(study), "--experiment", "fulldisk"),
    ]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)

    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    [line] = _error_lines(result.stderr)
    assert "No space left on device" in line and "marked FAILED" in line
    runs = _runs(client)
    assert sorted(r.data.tags["bench.kind"] for r in runs) == ["comparison", "train"]
    assert {r.info.status for r in runs} == {"FAILED"}
    for run in runs:
        assert "No space left on device" in run.data.tags["bench.error"]
    assert not list(artifacts.iterdir())  # the tmpfs went away with the process's namespace


def test_an_unwritable_artifact_location_fails_before_any_run(write_study, tracking_uri, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    client = MlflowClient(tracking_uri)
    client.create_experiment("blocked", artifact_location=(blocker / "artifacts").as_uri())
    study = write_study("blocked", variants=["vanilla-shallow"])
    result = CliRunner().invoke(cli, ["compare", "--study", str(study), "--experiment", "blocked"])
    assert result.exit_code == 1, result.output
    [line] = _error_lines(result.stderr)
    assert (
        f"artifact location {blocker / 'artifacts'} is not writable: {blocker} is a file, not a "
        "folder" in line
    )
    assert _runs(client) == []
