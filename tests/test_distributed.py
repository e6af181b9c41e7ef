"""Scaling out for real: PostgreSQL (Optuna's RDB storage) and an MLflow tracking server
with a PostgreSQL backend, both started here on 127.0.0.1, and two `bench tune` worker
processes pulling trials from one study, as the README's "Scaling out" commands do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.services import HOST, PG_PASSWORD, mlflow_server, postgres, postgres_bin

TRIALS = 6
WORKERS = 2

pytestmark = pytest.mark.skipif(
    postgres_bin() is None,
    reason=(
        "PostgreSQL is not installed and could not be (.ci/system-packages installs Debian's "
        "postgresql)"
    ),
)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    folder = tmp_path_factory.mktemp("services")
    with (
        postgres(folder / "pg") as pg,
        mlflow_server(
            pg.url("mlflow"), folder / "artifacts", folder / "mlflow-server.log"
        ) as server,
    ):
        yield pg, server


def _study_file(folder: Path, name: str = "dist", trials: int = TRIALS) -> Path:
    doc = {
        "name": name,
        "task": "fashion_mnist",
        "variants": ["dropout-shallow"],
        "protocol": {"epochs": 2, "batch_size": 64, "validation_size": 200},
        "tuning": {"trials": trials, "pruner": "none"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _worker(
    services, study_file: Path, study_name: str, tmp_path: Path, data_root: Path, *extra: str
):
    pg, server = services
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "tune",
        "--study",
        str(study_file),
        "--storage",
        pg.url("optuna"),
        "--study-name",
        study_name,
        "--tracking-uri",
        server.url,
        "--data-dir",
        str(data_root),
        *extra,
    ]
    env = {**os.environ, "BENCH_OFFLINE": "1"}
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_the_services_listen_on_127_0_0_1_only(services):
    pg, server = services
    loopback = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
    assert _listening_addresses(pg.port) == {loopback}
    assert _listening_addresses(int(server.url.rsplit(":", 1)[1])) == {loopback}
    assert HOST == "127.0.0.1"


def test_two_workers_share_one_study_on_postgresql_and_an_mlflow_server(
    services, tmp_path, tiny_data
):
    pg, server = services
    storage = pg.url("optuna")
    study_file = _study_file(tmp_path)
    procs = [
        _worker(services, study_file, "shared", tmp_path, tiny_data.root, "--trials", str(TRIALS))
        for _ in range(WORKERS)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert PG_PASSWORD not in out  # credentials never printed

    # Optuna: exactly the requested trials, each number once, none failed.
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == TRIALS
    assert not [t for t in trials if t.state == TrialState.FAIL]
    assert len({t.number for t in trials}) == len(trials)
    workers = Counter(t.system_attrs.get("bench:worker") for t in finished)
    assert len(workers) == WORKERS, workers  # both processes pulled trials

    # MLflow (through the server): one parent, every trial a child run with its params.
    client = MlflowClient(server.url)
    [exp] = [e for e in client.search_experiments() if e.name == "dist-tuning"]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "study"]
    assert len(parents) == 1, "both workers share one parent run"
    parent = parents[0]
    trial_runs = {
        int(r.data.params["trial_number"]): r
        for r in runs
        if r.data.tags.get("bench.kind") == "trial"
    }
    assert sorted(trial_runs) == sorted(t.number for t in trials)
    for t in finished:
        run = trial_runs[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.state"] == t.state.name
        assert float(run.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
        assert float(run.data.params["dropout"]) == pytest.approx(t.params["dropout"])
        assert run.info.status == "FINISHED"
    # The best trial agrees, and it was retrained exactly once.
    best_run = max(
        (trial_runs[t.number] for t in finished if t.state == TrialState.COMPLETE),
        key=lambda r: r.data.metrics["val_accuracy"],
    )
    assert int(best_run.data.params["trial_number"]) == study.best_trial.number
    assert best_run.data.metrics["val_accuracy"] == pytest.approx(study.best_value)
    tuned = [r for r in runs if r.data.tags.get("bench.kind") == "tuned"]
    assert len(tuned) == 1 and int(tuned[0].data.params["best_trial"]) == study.best_trial.number
    # No credential anywhere in what MLflow recorded.
    for run in runs:
        recorded = " ".join([*run.data.params.values(), *run.data.tags.values()])
        assert PG_PASSWORD not in recorded
    # ... nor in the reports and other artifacts the server stored.
    for path in (pg.folder.parent / "artifacts").rglob("*"):
        if path.is_file():
            assert PG_PASSWORD.encode() not in path.read_bytes(), path


def test_a_worker_killed_mid_trial_on_postgresql(services, tmp_path, tiny_data):
    """kill -9 one worker in the middle of its trials (a population of two), then rerun: the
    rerun fails the trials that were in flight (their worker is gone) and brings the study to
    its total, nothing lost or duplicated."""
    pg, server = services
    storage = pg.url("optuna")
    study_file = _study_file(tmp_path, "distkill", trials=4)
    # Long enough that the kill lands mid-trial (after its first reported epoch), short
    # enough that the rerun's trials (the same settings) take seconds, not minutes.
    settings = ("--epochs", "60", "--population", "2")
    slow = _worker(services, study_file, "killed", tmp_path, tiny_data.root, *settings)
    try:
        deadline, doomed = time.monotonic() + 180, None
        while doomed is None and time.monotonic() < deadline:
            assert slow.poll() is None, slow.stdout.read()[-3000:]
            try:
                running = optuna.load_study(study_name="killed", storage=storage).get_trials(
                    states=(TrialState.RUNNING,)
                )
            except KeyError:
                running = []
            doomed = next(
                (t for t in running if "mlflow_run_id" in t.user_attrs and t.intermediate_values),
                None,
            )
            time.sleep(0.2)
        assert doomed is not None, "the slow worker never reported an epoch of a trial"
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=30)
    client = MlflowClient(server.url)
    assert client.get_run(doomed.user_attrs["mlflow_run_id"]).info.status == "RUNNING"
    in_flight = sorted(
        t.number
        for t in optuna.load_study(study_name="killed", storage=storage).get_trials(
            states=(TrialState.RUNNING,)
        )
    )
    assert len(in_flight) == 2 and doomed.number in in_flight  # the whole population was training

    # the same settings: a study resumes only under the ones it was tuned with (issue 27, M)
    rerun = _worker(services, study_file, "killed", tmp_path, tiny_data.root, *settings)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out[-3000:]
    assert PG_PASSWORD not in out
    assert f"trial #{doomed.number} failed: its worker" in out

    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == 4
    assert states[TrialState.FAIL] == 2 and states[TrialState.RUNNING] == 0
    assert [t.number for t in trials if t.state == TrialState.FAIL] == in_flight
    assert len({t.number for t in trials}) == len(trials)
    killed = client.get_run(doomed.user_attrs["mlflow_run_id"])
    assert killed.info.status == "FAILED" and killed.data.tags["optuna.state"] == "FAIL"
    [exp] = [e for e in client.search_experiments() if e.name == "distkill-tuning"]
    runs = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'trial'", max_results=1000)
    numbers = Counter(int(r.data.params["trial_number"]) for r in runs)
    assert set(numbers.values()) == {1}  # no trial recorded twice
    status = {int(r.data.params["trial_number"]): r.info.status for r in runs}
    assert {n: status[n] for n in in_flight} == {n: "FAILED" for n in in_flight}
    assert {v for n, v in status.items() if n not in in_flight} == {"FINISHED"}
