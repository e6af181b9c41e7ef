"""`bench tune`: trials in Optuna and MLflow, pruning, divergence, resume, kill, workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench.cli import cli
from bench.errors import StudyError
from bench.models import get_variant
from bench.plan import Plan
from bench.studies import load_study
from bench.tuning import load_optuna_study, make_sampler, open_storage, suggest, targets, tune
from bench.tuning.target import load_splits

REPO = Path(__file__).resolve().parent.parent


def write_tune_study(
    tmp_path: Path,
    name: str = "tunetoy",
    *,
    variants=("dropout-shallow",),
    search_space: dict | None = None,
    epochs: int = 1,
    trials: int = 3,
    pruner: str = "none",
    min_epochs: int | None = None,
    **tuning: object,
) -> Path:
    doc = {
        "name": name,
        "task": "fashion_mnist",
        "variants": list(variants),
        "protocol": {"epochs": epochs, "batch_size": 64, "validation_size": 200},
        "tuning": {"trials": trials, "pruner": pruner},
    }
    if min_epochs is not None:
        doc["tuning"]["min_epochs"] = min_epochs
    doc["tuning"].update(tuning)
    if search_space is not None:
        doc["search_space"] = search_space
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def settings_for(path: Path, tracking_uri: str, **kw):
    return targets(Plan.from_study(load_study(path), tracking_uri=tracking_uri, **kw))


def runs_of(client, kind: str):
    exps = client.search_experiments()
    return client.search_runs(
        [e.experiment_id for e in exps], filter_string=f"tags.`bench.kind` = '{kind}'"
    )


def test_few_trials_land_in_optuna_and_mlflow(tmp_path, tracking_uri, client):
    path = write_tune_study(tmp_path, trials=3, epochs=2)
    [s] = settings_for(path, tracking_uri)
    result = tune(s)

    study = load_optuna_study(s, create=False)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {"learning_rate", "dropout"} == set(trials[0].params)

    [parent] = runs_of(client, "study")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials.complete"] == 3
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(study.best_value)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert {
        "figures/optimization_history.png",
        "figures/intermediate_values.png",
        "figures/parallel_coordinate.png",
        "figures/param_importances.png",
    } <= artifacts
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    # Optuna's interactive figures, one self-contained page; the objective named in Optuna.
    assert study.metric_names == ["val_accuracy"]
    page = Path(
        client.download_artifacts(parent.info.run_id, "optuna/figures.html", str(tmp_path))
    ).read_text()
    assert (
        page.count("Plotly.newPlot") >= 5 and page.count("plotly.js v") == 1
    )  # plotly.js inlined once
    assert "val_accuracy" in page and "learning_rate" in page
    # The study's report, built from the store: the trials and the best one.
    report = Path(client.download_artifacts(parent.info.run_id, "report/report.md", str(tmp_path)))
    text = report.read_text()
    assert "## Trials" in text and "3 trials: 3 complete" in text
    assert (
        f"Best trial {study.best_trial.number}: validation accuracy {study.best_value:.4f}" in text
    )
    assert "optimization history" in text

    trial_runs = runs_of(client, "trial")
    assert len(trial_runs) == 3
    by_number = {int(r.data.params["trial_number"]): r for r in trial_runs}
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.info.status == "FINISHED"
        assert float(run.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
        assert float(run.data.params["dropout"]) == pytest.approx(t.params["dropout"])
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [0, 1]
        assert history[-1].value == pytest.approx(t.value)
        assert "test_accuracy" not in run.data.metrics  # trials never see the test set

    [tuned] = runs_of(client, "tuned")
    assert tuned.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert int(tuned.data.params["best_trial"]) == study.best_trial.number
    assert float(tuned.data.params["learning_rate"]) == pytest.approx(
        study.best_params["learning_rate"]
    )
    assert tuned.data.metrics["test_accuracy"] == pytest.approx(result.tuned_test_accuracy)
    assert "bench.model_uri" in tuned.data.tags


def test_studies_are_named_without_the_task_unless_an_older_one_was(tmp_path, tracking_uri):
    """``<study>-<variant>``; the task only for a task other than the study's; a study an
    earlier bench named ``<study>-<task>-<variant>`` keeps its name (it resumes, --tuned finds
    it)."""
    path = write_tune_study(tmp_path)
    storage = f"journal://{tmp_path}/optuna.journal"
    [fresh] = settings_for(path, tracking_uri, storage=storage)
    assert fresh.study_name == "tunetoy-dropout-shallow"
    [other_task] = settings_for(path, tracking_uri, storage=storage, task="mnist")
    assert other_task.study_name == "tunetoy-mnist-dropout-shallow"
    optuna.create_study(
        study_name="tunetoy-fashion_mnist-dropout-shallow", storage=open_storage(storage)
    )
    [older] = settings_for(path, tracking_uri, storage=storage)
    assert older.study_name == "tunetoy-fashion_mnist-dropout-shallow"


def test_repeats_and_selection_choose_on_validation_and_record_it(tmp_path, tracking_uri, client):
    """Two repeats (two Optuna studies, sampler seeds apart), then the top 2 distinct trials
    and the default re-trained on 2 unseen seeds each: the winner is the best mean validation
    score, recorded in repeat 0's study; only the retrained winner is ever tested. A rerun
    finds the selection made; compare --tuned trains the selected setting and logs the record."""
    from bench.tuning import tune_variant
    from bench.tuning.selection import SELECT_SEED_BASE
    from bench.tuning.study import stored_selection

    path = write_tune_study(tmp_path, trials=3, epochs=1, repeats=2, select_top=2, select_seeds=2)
    repeats = settings_for(path, tracking_uri)
    assert [s.study_name for s in repeats] == [
        "tunetoy-dropout-shallow",
        "tunetoy-dropout-shallow-r1",
    ]
    assert repeats[1].seed - repeats[0].seed == 1_000_003
    result = tune_variant(repeats)

    studies = [load_optuna_study(s, create=False) for s in repeats]
    assert [len(st.get_trials()) for st in studies] == [3, 3]
    assert {t.params["learning_rate"] for t in studies[0].get_trials()[1:]}.isdisjoint(
        t.params["learning_rate"] for t in studies[1].get_trials()[1:]
    )  # other sampler seeds, other proposals
    record = stored_selection(studies[0])
    cands = record["candidates"]
    assert 2 <= len(cands) <= 3 and any(c["default"] for c in cands)
    means = [sum(c["values"]) / 2 for c in cands]
    assert record["chosen"] == max(range(len(cands)), key=lambda i: means[i])
    assert result.best_params == record["params"] == cands[record["chosen"]]["params"]

    selection_runs = runs_of(client, "selection")
    assert len(selection_runs) == 2 * len(cands)
    assert {int(r.data.params["seed"]) for r in selection_runs} == {
        SELECT_SEED_BASE,
        SELECT_SEED_BASE + 1,
    }
    for run in selection_runs:
        assert "test_accuracy" not in run.data.metrics and run.info.status == "FINISHED"
        i = [c["source"] for c in cands].index(run.data.params["candidate"])
        assert run.data.metrics["objective"] == pytest.approx(
            cands[i]["values"][int(run.data.params["seed"]) - SELECT_SEED_BASE]
        )
    [tuned] = runs_of(client, "tuned")
    assert float(tuned.data.params["learning_rate"]) == pytest.approx(
        record["params"]["learning_rate"]
    )
    parent = client.get_run(tuned.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["tuning_record.repeats"] == "2"
    assert (
        studies[0].user_attrs["bench:cpu_seconds"] > 0
        and studies[1].user_attrs["bench:cpu_seconds"] > 0
    )

    tune_variant(settings_for(path, tracking_uri))  # resumed: nothing more to train or select
    assert (
        len(runs_of(client, "selection")) == len(selection_runs)
        and len(runs_of(client, "tuned")) == 1
    )

    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--study",
            str(path),
            "--tuned",
            "--seeds",
            "1",
            "--no-model",
            "--tracking-uri",
            tracking_uri,
        ],
    )
    assert result.exit_code == 0, result.output
    [run] = [r for r in runs_of(client, "tuned") if r.data.params.get("setting") == "tuned"]
    assert float(run.data.params["learning_rate"]) == pytest.approx(
        record["params"]["learning_rate"]
    )
    assert run.data.params["tuning_record.repeats"] == "2"
    assert run.data.params["tuning_record.candidates"] == str(len(cands))
    assert "selected over 2 repeats" in run.data.params["tuned_from"]


def test_aggressive_pruner_prunes_and_marks_runs(tmp_path, tracking_uri, client):
    path = write_tune_study(
        tmp_path, variants=("vanilla-shallow",), trials=8, epochs=4, pruner="successive-halving"
    )
    [s] = settings_for(path, tracking_uri)
    tune(s)
    study = load_optuna_study(s, create=False)
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert pruned, "successive halving over 8 trials x 4 epochs should prune something"
    runs = {int(r.data.params["trial_number"]): r for r in runs_of(client, "trial")}
    for t in pruned:
        assert runs[t.number].data.tags["optuna.state"] == "PRUNED"
        assert runs[t.number].info.status == "FINISHED"


def test_min_epochs_holds_the_pruner_back_until_that_epoch(tmp_path, tracking_uri, client):
    """tuning.min_epochs: the same search that successive halving prunes after epoch 1
    (the test above) has no trial stopped by the pruner before epoch 3."""
    path = write_tune_study(
        tmp_path,
        variants=("vanilla-shallow",),
        trials=8,
        epochs=4,
        pruner="successive-halving",
        min_epochs=3,
    )
    [s] = settings_for(path, tracking_uri)
    tune(s)
    study = load_optuna_study(s, create=False)
    judged = [
        t
        for t in study.get_trials()
        if t.state == TrialState.PRUNED and not t.user_attrs["reason"].startswith("diverged")
    ]
    assert judged, "successive halving over 8 trials x 4 epochs should prune something"
    assert all(max(t.intermediate_values) == 3 for t in judged), {
        t.number: t.intermediate_values for t in judged
    }
    [parent] = runs_of(client, "study")
    assert parent.data.params["tuning.pruner.min_epochs"] == "3"


def test_min_epochs_reaches_every_pruner_and_stops_at_the_studys_epochs(tmp_path, tracking_uri):
    from bench.tuning import make_pruner

    assert make_pruner("successive-halving", 20, 4)._min_resource == 4
    assert make_pruner("hyperband", 20, 4)._min_resource == 4
    assert make_pruner("median", 20, 4)._n_warmup_steps == 4
    path = write_tune_study(tmp_path, trials=2, epochs=5, pruner="hyperband", min_epochs=9)
    [s] = settings_for(path, tracking_uri)
    assert s.min_epochs == 5  # a trial cannot train longer than the study's epochs
    [s] = settings_for(path, tracking_uri, epochs=2)
    assert s.min_epochs == 2
    with pytest.raises(StudyError, match="tuning.min_epochs: Input should be greater than 0"):
        load_study(write_tune_study(tmp_path, name="bad", min_epochs=0))


def test_diverging_learning_rate_does_not_crash(tmp_path, tracking_uri, client):
    space = {"learning_rate": {"low": 1e5, "high": 1e7, "log": True}}
    path = write_tune_study(
        tmp_path, variants=("vanilla-shallow",), search_space=space, trials=2, epochs=2
    )
    [s] = settings_for(path, tracking_uri)
    result = tune(s)
    study = load_optuna_study(s, create=False)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 2
    for t in study.get_trials():
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["reason"].startswith("diverged")
    assert result.counts["complete"] + result.counts["pruned"] == 2
    runs = runs_of(client, "trial")
    assert all(r.info.status == "FINISHED" for r in runs)


def test_rerun_resumes_to_the_requested_total(tmp_path, tracking_uri, client):
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), trials=2)
    [s] = settings_for(path, tracking_uri)
    tune(s)
    [s3] = settings_for(path, tracking_uri, trials=3)
    tune(s3)
    study = load_optuna_study(s3, create=False)
    assert (
        len([t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)])
        == 3
    )
    assert len(runs_of(client, "trial")) == 3
    assert len(runs_of(client, "study")) == 1  # the parent run is reused, not duplicated


def _replayed(seed: int, number: int, s, variant) -> dict:
    """What trial ``number`` of a study tuned with ``--seed seed`` tries, without training."""
    replay = optuna.create_study(sampler=make_sampler(seed, number), direction="maximize")
    suggest(replay.ask(), s.study.search_space, s.base, variant)
    return replay.trials[0].params


def test_same_sampler_seed_proposes_the_same_trials(tmp_path, tracking_uri):
    """What trial n tries depends on --seed and n only (no training needed to see it; the
    two-worker test below checks real workers' trials against this replay)."""
    path = write_tune_study(tmp_path, variants=("dropout-shallow",), trials=4)
    [s] = settings_for(path, tracking_uri)
    variant = get_variant("dropout-shallow")

    def proposals(seed: int) -> list[dict]:
        return [_replayed(seed, n, s, variant) for n in range(4)]

    assert proposals(0) == proposals(0)
    assert proposals(0) != proposals(7)
    assert all(set(p) == {"learning_rate", "dropout"} for p in proposals(0))


def _tune_cmd(path: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "tune",
        "--study",
        str(path),
        "--storage",
        f"journal://{tmp_path}/optuna.journal",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_two_workers_make_exactly_the_requested_trials(tmp_path, tracking_uri, client):
    """Two worker processes on one study: exactly the requested trials, each its own
    hyperparameters, the ones trial numbers get with this seed however many workers run.
    Under this load a learning rate that blows the loss up is a pruned trial and one too
    small to learn a dead one, both recorded, neither crashing a worker."""
    space = {"learning_rate": {"low": 1e-9, "high": 1e7, "log": True}}
    path = write_tune_study(
        tmp_path, variants=("vanilla-shallow",), search_space=space, trials=6, epochs=3
    )
    proc = subprocess.run(
        _tune_cmd(path, tmp_path, "--workers", "2", "--study-name", "par"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(
        study_name="par", storage=open_storage(f"journal://{tmp_path}/optuna.journal")
    )
    trials = study.get_trials()
    assert len(trials) == 6  # no surplus trial was started ...
    assert all(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials
    )  # ... none failed
    assert sorted(t.number for t in trials) == list(range(6))
    workers = {t.system_attrs["bench:worker"] for t in trials}
    assert len(workers) == 2, "both worker processes should have run trials"
    # Same --seed in both workers, yet every trial tries its own hyperparameters, the ones
    # the sampler proposes for that trial number (replayed here without any training).
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    [s] = settings_for(path, tracking_uri)
    assert (
        trials[0].params == {"learning_rate": 0.001} and trials[0].user_attrs["bench_default"]
    )  # the default
    for t in trials[1:]:
        assert _replayed(0, t.number, s, get_variant("vanilla-shallow")) == t.params
    runs = {int(r.data.params["trial_number"]): r for r in runs_of(client, "trial")}
    assert sorted(runs) == list(range(6))
    statuses = {}
    for t in trials:
        run = runs[t.number]
        assert run.info.status == "FINISHED"
        assert run.data.tags["optuna.state"] == t.state.name
        assert float(run.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
        statuses[t.number] = run.data.tags["bench.status"]
        if statuses[t.number] == "diverged":
            assert t.state == TrialState.PRUNED and t.user_attrs["reason"].startswith("diverged")
        if statuses[t.number] == "dead":
            assert t.state == TrialState.COMPLETE and t.value < 0.2  # at chance, as recorded
    assert {"diverged", "dead"} <= set(statuses.values()), statuses


@pytest.mark.parametrize("population", [1, 3])
def test_a_store_failure_stops_the_worker_instead_of_failing_every_trial(
    tmp_path, tracking_uri, client, monkeypatch, population
):
    import errno

    from bench.store.tracker import Tracker

    def full_disk_hook(self, run_id):
        def hook(epoch, metrics):
            raise OSError(errno.ENOSPC, "No space left on device")

        return hook

    monkeypatch.setattr(Tracker, "epoch_hook", full_disk_hook)
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), trials=5)
    result = CliRunner().invoke(
        cli, ["tune", "--study", str(path), "--study-name", "full", "--population", str(population)]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.output
    study = optuna.load_study(
        study_name="full", storage=open_storage(f"journal://{tmp_path}/optuna.journal")
    )
    # The trials in flight fail (one, or the population's three); no further trial starts.
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * population
    trial_runs = runs_of(client, "trial")
    assert len(trial_runs) == population and {r.info.status for r in trial_runs} == {"FAILED"}
    assert {r.info.status for r in runs_of(client, "study")} == {"FAILED"}


def test_a_failed_default_trial_is_queued_again_on_resume(
    tmp_path, tracking_uri, client, monkeypatch
):
    """Trial 0 (the untuned setting) failing, e.g. interrupted, must not drop the default
    from the study: the next `bench tune` queues it again, and it is scored."""
    from bench.store.tracker import Tracker

    real = Tracker.epoch_hook

    def failing_hook(self, run_id):
        def hook(epoch, metrics):
            raise OSError(28, "No space left on device")

        return hook

    monkeypatch.setattr(Tracker, "epoch_hook", failing_hook)
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), trials=3)
    args = ["tune", "--study", str(path), "--study-name", "again"]
    assert CliRunner().invoke(cli, args).exit_code == 1
    monkeypatch.setattr(Tracker, "epoch_hook", real)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name="again", storage=open_storage(f"journal://{tmp_path}/optuna.journal")
    )
    trials = study.get_trials()
    defaults = [t for t in trials if t.user_attrs.get("bench_default")]
    assert [t.state for t in defaults] == [TrialState.FAIL, TrialState.COMPLETE]
    assert defaults[1].params == {"learning_rate": 0.001}
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3


def test_killed_worker_trial_is_failed_and_rerun_completes(tmp_path, tracking_uri, client):
    # Long enough a trial to be killed in, short enough to rerun: a study resumes only under
    # the settings its trials were trained with (issue 27, M), so the rerun trains 120 epochs too.
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), trials=2, epochs=120)
    storage = f"journal://{tmp_path}/optuna.journal"
    proc = subprocess.Popen(
        _tune_cmd(path, tmp_path, "--study-name", "killme"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        running = None
        while time.monotonic() < deadline and running is None:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                study = optuna.load_study(study_name="killme", storage=open_storage(storage))
                running = next(
                    (
                        t
                        for t in study.get_trials()
                        if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs
                    ),
                    None,
                )
            except KeyError:
                pass
            if running is None:
                time.sleep(0.5)
        assert running is not None, "the trial never started"
        # let it train an epoch so the MLflow run has something in it
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    run_id = running.user_attrs["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"  # what a kill -9 leaves behind

    # rerun: the dead trial is failed, the total is still reached
    rerun = subprocess.run(
        _tune_cmd(path, tmp_path, "--study-name", "killme"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    study = optuna.load_study(study_name="killme", storage=open_storage(storage))
    states = {t.number: t.state for t in study.get_trials()}
    assert states[running.number] == TrialState.FAIL
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states.values()) == 2
    killed = client.get_run(run_id)
    assert killed.info.status == "FAILED"
    assert killed.data.tags["optuna.state"] == "FAIL"
    assert not [r for r in runs_of(client, "trial") if r.info.status == "RUNNING"]


@pytest.mark.parametrize(
    ("args", "space", "message"),
    [
        (["--trials", "0"], None, "--trials"),
        (["--variants", "no-such-variant"], None, "unknown variant"),
        ([], {"learning_rate": {"low": 0.1, "high": 0.01}}, "inverted"),
        ([], {"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "low > 0"),
        ([], {"gamma": {"low": 0.1, "high": 0.9}}, "gamma"),
        (
            ["--storage", "postgresql://bench:secret@127.0.0.1:1/nothing"],
            None,
            "Optuna storage postgresql://bench:***@127.0.0.1:1/nothing is unreachable",
        ),
        (["--storage", "ftp://example/x"], None, "unsupported Optuna storage"),
        (["--workers", "2", "--storage", "sqlite:///optuna.db"], None, "concurrent"),
        (["--pruner", "sometimes"], None, "sometimes"),
        ([], {"learning_rate": {"low": 0.01, "high": 0.01}}, "empty or inverted range"),
        ([], {"dropout": {"low": -0.5, "high": 0.5}}, "dropout: the range must lie in [0, 1)"),
        (
            ["--tracking-uri", "postgresql://bench:secret@127.0.0.1:1/mlflow"],
            None,
            "is unreachable",
        ),
        (
            ["--tracking-uri", "mysql+nodriver://bench:secret@127.0.0.1/mlflow"],
            None,
            "database driver",
        ),
        (["--tracking-uri", "gopher://example/x"], None, "malformed tracking URI"),
        (["--epochs", "0"], None, "--epochs"),
        (["--population", "0"], None, "--population"),
        (["--population", "-2"], None, "--population"),
        (["--population", "lots"], None, "--population"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path, tracking_uri, client, args, space, message
):
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), search_space=space)
    result = CliRunner().invoke(cli, ["tune", "--study", str(path), *args])
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert message in errors[0]
    assert "Traceback" not in result.output
    assert "secret" not in result.output
    assert not runs_of(client, "trial") and not runs_of(client, "study")
    journal = tmp_path / "optuna.journal"
    assert not journal.exists() or not open_storage(f"journal://{journal}").get_all_studies()


def test_compare_tuned_shows_default_and_tuned_side_by_side(tmp_path, tracking_uri, client):
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), trials=2)
    [s] = settings_for(path, tracking_uri)
    tune(s)
    best = load_optuna_study(s, create=False).best_params
    result = CliRunner().invoke(
        cli, ["compare", "--study", str(path), "--tuned", "--no-model", "--seeds", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "tuned test acc" in result.output
    [parent] = runs_of(client, "comparison")
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert len(children) == 4  # default and tuned, two seeds each
    report = Path(
        client.download_artifacts(parent.info.run_id, "report/report.md", str(tmp_path))
    ).read_text()
    assert "**Effect of tuning on test accuracy**" in report and "Ranking (tuned)" in report
    hyper = report.split("**Tuned hyperparameters**", 1)[1].split("**Effect of tuning", 1)[0]
    if best["learning_rate"] != pytest.approx(0.001):  # tuning moved it: both, as numbers
        assert "learning_rate tuned" in hyper and f"{best['learning_rate']:.3g}" in hyper
        assert "0.001" in hyper  # the default run's Adam default, logged as the number
    else:  # the default trial won: the learning rate is left out as unchanged
        assert "learning_rate" not in hyper and "trial 0" in hyper
    effect = Path(
        client.download_artifacts(parent.info.run_id, "tuning_effect.csv", str(tmp_path))
    ).read_text()
    assert effect.startswith("variant,seeds,delta_mean")
    acc = {
        setting: np.mean(
            [
                r.data.metrics["test_accuracy"]
                for r in children
                if r.data.params["setting"] == setting
            ]
        )
        for setting in ("default", "tuned")
    }
    settings = {r.data.params["setting"]: r for r in children if r.data.params["seed"] == "0"}
    assert set(settings) == {"default", "tuned"}
    assert float(settings["tuned"].data.params["learning_rate"]) == pytest.approx(
        best["learning_rate"]
    )
    origin = f"{s.study_name} trial {load_optuna_study(s, create=False).best_trial.number}"
    assert (
        settings["tuned"].data.params["tuned_from"] == origin
        and "tuned_from" not in settings["default"].data.params
    )
    assert origin in hyper
    # the default run logs Adam's default as the number it trains with, never "default"
    assert float(settings["default"].data.params["learning_rate"]) == pytest.approx(0.001)
    text = client.download_artifacts(parent.info.run_id, "tuned_vs_default.csv", str(tmp_path))
    rows = Path(text).read_text().splitlines()
    assert rows[0].startswith("variant,default test acc,tuned test acc")
    cells = rows[1].split(",")  # means over the two seeds
    assert float(cells[1]) == pytest.approx(acc["default"])
    assert float(cells[2]) == pytest.approx(acc["tuned"])


def test_compare_tuned_without_a_study_is_a_clear_error(tmp_path, tracking_uri, client):
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",))
    result = CliRunner().invoke(cli, ["compare", "--study", str(path), "--tuned"])
    assert result.exit_code != 0
    assert "no tuned hyperparameters" in result.output and "bench tune" in result.output
    assert not runs_of(client, "comparison")


def test_a_population_refills_its_slots_and_keeps_every_trial_apart(tmp_path, tracking_uri, client):
    """Three trials train at once; pruned trials free their slots for the next ones. The study
    still holds exactly the trials asked for, each with its own run and its own curves."""
    path = write_tune_study(
        tmp_path, variants=("dropout-shallow",), trials=7, epochs=3, pruner="successive-halving"
    )
    [s] = settings_for(path, tracking_uri, population=3)
    tune(s)
    study = load_optuna_study(s, create=False)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(7))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 7
    assert any(t.state == TrialState.PRUNED for t in trials), (
        "successive halving should prune some of 7"
    )
    runs = {int(r.data.params["trial_number"]): r for r in runs_of(client, "trial")}
    assert sorted(runs) == list(range(7))
    for t in trials:
        run = runs[t.number]
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == t.state.name
        assert float(run.data.params["dropout"]) == pytest.approx(t.params["dropout"])
        curve = [
            m.value
            for m in sorted(
                client.get_metric_history(run.info.run_id, "val_accuracy"), key=lambda m: m.step
            )
        ]
        # the run's curve is the trial's own: what it reported to Optuna, epoch by epoch
        assert curve == pytest.approx(
            [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        )
        assert (
            len(curve) == (3 if t.state == TrialState.COMPLETE else len(curve))
            and 1 <= len(curve) <= 3
        )
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(curve[-1])


def test_a_trial_gets_the_same_result_alone_or_in_a_population(tmp_path, tracking_uri):
    """Same --seed, no pruning: trial n gets the same hyperparameters (TPE's random start-up)
    and trains to the same validation accuracy, one trial at a time or three at once."""
    path = write_tune_study(tmp_path, variants=("dropout-shallow",), trials=4, epochs=2)
    [alone] = settings_for(path, tracking_uri, study_name="alone", population=1)
    [crowd] = settings_for(path, tracking_uri, study_name="crowd", population=3)
    tune(alone)
    tune(crowd)
    a = {t.number: t for t in load_optuna_study(alone, create=False).get_trials()}
    c = {t.number: t for t in load_optuna_study(crowd, create=False).get_trials()}
    assert sorted(a) == sorted(c) == [0, 1, 2, 3]
    for n in a:
        assert a[n].params == c[n].params
        assert a[n].value == pytest.approx(c[n].value, abs=1e-6)


@pytest.mark.parametrize("population", [1, 3])
def test_a_trial_whose_training_breaks_fails_alone_and_the_search_goes_on(
    tmp_path, tracking_uri, client, monkeypatch, population
):
    """Not a store failure: that trial fails (FailedTrialError: its run FAILED, the reason on the
    trial), the next trial takes its slot, and the study still ends with the trials asked for."""
    from bench.store.tracker import Tracker

    real, broken = Tracker.epoch_hook, []

    def epoch_hook(self, run_id):
        broken[:] = broken or [run_id]  # the first trial's run
        logged = real(self, run_id)

        def hook(epoch, metrics):
            if run_id == broken[0]:
                raise RuntimeError("injected: this trial's training broke")
            logged(epoch, metrics)

        return hook

    monkeypatch.setattr(Tracker, "epoch_hook", epoch_hook)
    path = write_tune_study(tmp_path, variants=("vanilla-shallow",), trials=3)
    result = CliRunner().invoke(
        cli,
        [
            "tune",
            "--study",
            str(path),
            "--study-name",
            "alone",
            "--population",
            str(population),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)["studies"]  # --json: stdout is one document
    assert (
        entry["study_name"] == "alone"
        and entry["trials"]["complete"] == 3
        and entry["trials"]["failed"] == 1
    )
    assert (
        MlflowClient(tracking_uri).get_run(entry["parent_run_id"]).data.tags["bench.kind"]
        == "study"
    )
    study = optuna.load_study(
        study_name="alone", storage=open_storage(f"journal://{tmp_path}/optuna.journal")
    )
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert trials[0].user_attrs["reason"] == "RuntimeError: injected: this trial's training broke"
    assert "trial #0 FAIL: RuntimeError: injected" in result.output, result.output[:3000]
    runs = {r.data.params["trial_number"]: r for r in runs_of(client, "trial")}
    assert (
        runs["0"].info.status == "FAILED"
        and "RuntimeError: injected" in runs["0"].data.tags["bench.error"]
    )
    assert {runs[n].info.status for n in "123"} == {"FINISHED"}
    assert {r.info.status for r in runs_of(client, "study")} == {"FINISHED"}


def test_a_convolutional_variant_tunes_in_keras_fit_one_trial_at_a_time(
    tmp_path, tracking_uri, client
):
    """Keras' fit as a population of one, in the same trial loop: each trial its run and its
    curve, scored exactly as training it alone scores it."""
    from bench import training
    from bench.tuning.search import trial_seed

    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    path = write_tune_study(
        tmp_path, variants=("lenet5-relu",), search_space=space, trials=2, epochs=1
    )
    [s] = settings_for(
        path, tracking_uri, population=3
    )  # ignored: a convolutional variant trains alone
    tune(s, retrain=False)
    trials = load_optuna_study(s, create=False).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    runs = {int(r.data.params["trial_number"]): r for r in runs_of(client, "trial")}
    for t in trials:
        curve = [
            m.value
            for m in sorted(
                client.get_metric_history(runs[t.number].info.run_id, "val_accuracy"),
                key=lambda m: m.step,
            )
        ]
        assert runs[t.number].info.status == "FINISHED" and len(curve) == 1 and t.value == curve[-1]
    last = trials[-1]
    hp = s.base.replace(seed=trial_seed(s.seed, last.number), **last.params)
    alone = training.train(get_variant("lenet5-relu"), hp, load_splits(s), evaluate_test=False)
    assert alone.history["val_accuracy"] == [last.intermediate_values[1]]


def test_compare_tuned_logs_a_kept_default_again_instead_of_training_it(
    tmp_path, tracking_uri, client, monkeypatch
):
    """Where tuning kept the default setting (trial 0 won), its tuned runs are the default
    runs logged a second time: the same curves, scores and model, trained once."""
    from dataclasses import replace

    from bench import training
    from bench.compare import run_comparison

    path = write_tune_study(tmp_path, variants=("vanilla-shallow", "dropout-shallow"), epochs=2)
    trained: list[tuple[str, list[float | None]]] = []
    real = training.train_population

    def counting(variant, members, splits, **kw):
        trained.append((variant.name, [hp.learning_rate for hp in members]))
        return real(variant, members, splits, **kw)

    monkeypatch.setattr(training, "train_population", counting)
    settings = Plan.from_study(load_study(path), seeds=1)
    # the Adam default spelled out, as `bench tune` records a kept default; dropout-shallow
    # really changed
    tuned = {
        "vanilla-shallow": {"learning_rate": 0.001},
        "dropout-shallow": {"learning_rate": 0.003, "dropout": 0.2},
    }
    settings = replace(settings, tuned=tuple(tuned.items()))
    run_comparison(settings, tracking_uri=tracking_uri, log_models=True)

    assert sorted(name for name, _ in trained) == [
        "dropout-shallow",
        "dropout-shallow",
        "vanilla-shallow",
    ]
    assert sum(len(lrs) for _, lrs in trained) == 3  # of 4 runs
    [parent] = runs_of(client, "comparison")
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    runs = {
        (r.data.tags["bench.variant"], r.data.params["setting"], r.data.params["seed"]): r
        for r in children
    }
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in children)
    default, again = runs["vanilla-shallow", "default", "0"], runs["vanilla-shallow", "tuned", "0"]
    assert again.data.tags["bench.same_as"] == default.info.run_id
    scores = [
        {k: v for k, v in r.data.metrics.items() if not k.startswith("system/")}
        for r in (default, again)
    ]
    assert (
        again.data.params["learning_rate"] == "0.001"
        and scores[0] == scores[1]
        and "test_accuracy" in scores[0]
    )
    curves = [
        [m.value for m in client.get_metric_history(r.info.run_id, "val_accuracy")]
        for r in (default, again)
    ]
    assert curves[0] == curves[1] and len(curves[0]) == 2
    assert client.search_logged_models(
        [parent.info.experiment_id], filter_string=f"source_run_id = '{again.info.run_id}'"
    )
    changed = runs["dropout-shallow", "tuned", "0"]
    assert "bench.same_as" not in changed.data.tags and changed.data.params["dropout"] == "0.2"
    table = Path(
        client.download_artifacts(parent.info.run_id, "tuned_vs_default.csv", str(tmp_path))
    ).read_text()
    row = next(line for line in table.splitlines() if line.startswith("vanilla-shallow,"))
    assert row.split(",")[1] == row.split(",")[2]  # default and tuned means: the same runs
