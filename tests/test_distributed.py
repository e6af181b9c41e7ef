"""Scaling out for real: PostgreSQL (Optuna's RDB storage) and an MLflow tracking server
with a PostgreSQL backend, both started here on 127.0.0.1, and two `bench tune` worker
processes pulling trials from one study, as the README's "Scaling out" commands do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from services import PG_PASSWORD, mlflow_server, postgres, postgres_bin

TRIALS = 6
WORKERS = 2

pytestmark = pytest.mark.skipif(
    postgres_bin() is None,
    reason="PostgreSQL is not installed and could not be (.ci/system-packages installs Debian's postgresql)",
)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    folder = tmp_path_factory.mktemp("services")
    with postgres(folder / "pg") as pg, mlflow_server(
        pg.url("mlflow"), folder / "artifacts", folder / "mlflow-server.log"
    ) as server:
        yield pg, server


def _study_file(folder: Path) -> Path:
    doc = {
        "name": "dist",
        "task": "fashion_mnist",
        "variants": ["dropout-shallow"],
        "protocol": {"epochs": 2, "batch_size": 64, "validation_size": 200},
        "tuning": {"trials": TRIALS, "pruner": "none"},
    }
    path = folder / "dist.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_two_workers_share_one_study_on_postgresql_and_an_mlflow_server(services, tmp_path, tiny_data):
    pg, server = services
    storage = pg.url("optuna")
    study_file = _study_file(tmp_path)
    cmd = [
        sys.executable, "-m", "bench", "tune", "--study", str(study_file), "--trials", str(TRIALS),
        "--storage", storage, "--study-name", "shared", "--tracking-uri", server.url,
        "--data-dir", str(tiny_data.root),
    ]
    env = {**os.environ, "BENCH_OFFLINE": "1"}
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    trial_runs = {int(r.data.params["trial_number"]): r for r in runs if r.data.tags.get("bench.kind") == "trial"}
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
