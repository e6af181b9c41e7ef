"""The MLproject file: `mlflow run . -e compare` runs a comparison into the configured store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.entities import ViewType

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_mlflow_run_compare_entry_point(tmp_path, write_study, tracking_uri, client, tiny_data):
    study = write_study("toy-mlproject", variants=["vanilla-shallow", "batchnorm-shallow"])
    env = {
        **os.environ,  # MLFLOW_TRACKING_URI, BENCH_DATA_DIR, ... from the isolated environment
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BENCH_DATA_DIR": str(tiny_data.root),
        # The entry point runs `python -m bench`: make that this interpreter.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(REPO_ROOT),
            "-e",
            "compare",
            "--env-manager",
            "local",
            "-P",
            f"study={study}",
            "-P",
            "epochs=1",
            "-P",
            "variants=vanilla-shallow",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "Traceback" not in output
    # Without --experiment-name the run is in MLflow's Default experiment: bench says so (issue
    # 27, K).
    assert "put this run into MLflow's Default experiment" in output

    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL)
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "comparison"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    [parent] = parents
    assert parent.info.status == "FINISHED"
    # `mlflow run` created the run and logged its entry-point parameters on it.
    assert parent.data.params["epochs"] == "1"
    assert parent.data.params["variants"] == "vanilla-shallow"
    assert parent.data.params["protocol.epochs"] == "1"
    assert parent.data.tags.get("mlflow.project.entryPoint") == "compare"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert [r.data.params["variant"] for r in children] == ["vanilla-shallow"]
    assert children[0].info.status == "FINISHED"
    assert "test_accuracy" in children[0].data.metrics
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_mlflow_run_tune_entry_point(tmp_path, write_study, tracking_uri, client, tiny_data):
    study = write_study("toy-mlproject-tune", variants=["dropout-shallow"])
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "BENCH_DATA_DIR": str(tiny_data.root),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(REPO_ROOT),
            "-e",
            "tune",
            "--env-manager",
            "local",
            "-P",
            f"study={study}",
            "-P",
            "trials=2",
            "-P",
            "epochs=1",
            "-P",
            "study_name=via-mlflow-run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL)
    [parent] = [r for r in runs if r.data.tags.get("bench.kind") == "study"]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["trials"] == "2"  # the entry point's own parameter...
    assert parent.data.params["tuning.optuna.study"] == "via-mlflow-run"  # ...and ours beside it
    assert parent.data.metrics["trials.complete"] + parent.data.metrics["trials.pruned"] == 2
    trials = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    assert len(trials) == 2
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_conda_env_installs_the_project_instead_of_repeating_its_dependencies():
    import tomllib

    import yaml

    env = yaml.safe_load((REPO_ROOT / "conda.yaml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["."]  # pyproject.toml is the one list of dependencies and their ranges
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    low = project["requires-python"].split(",")[0].removeprefix(">=")
    assert tuple(map(int, python.removeprefix("python=").split("."))) >= tuple(
        map(int, low.split("."))
    )
    assert not any(
        d.startswith("optuna-integration") for d in project["dependencies"]
    )  # never imported
