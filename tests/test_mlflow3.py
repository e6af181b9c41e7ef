"""MLflow 3 as its users expect it, queried back from a store that ``bench compare`` and
``bench tune`` wrote: datasets, named and registered models, system metrics, the git
commit, trial 0 = the default, and the UI's model-training view in a real browser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from bench import data
from bench.cli import cli
from bench.tuning import open_storage
from tests.services import chromium, free_port
from tests.support import Store, study_yaml

STUDY = "toy-mlflow3"
VARIANTS = ("vanilla-shallow", "dropout-shallow")


@dataclass(frozen=True)
class Written(Store):
    """The module's store, and what the two commands printed."""

    compare_output: str = ""
    tune_output: str = ""

    def runs(self, kind: str) -> list:
        c = self.client()
        ids = [e.experiment_id for e in c.search_experiments()]
        return c.search_runs(ids, f"tags.`bench.kind` = '{kind}'", max_results=1000)


@pytest.fixture(scope="module")
def written(module_store) -> Written:
    folder = module_store.workdir
    study = folder / f"{STUDY}.yaml"
    study.write_text(study_yaml(STUDY, variants=list(VARIANTS)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        compared = CliRunner().invoke(
            cli,
            [
                "compare",
                "--study",
                str(study),
                "--register",
                "--seeds",
                "2",
                "--epochs",
                "2",
                "--tracking-uri",
                module_store.uri,
            ],
        )
        assert compared.exit_code == 0, compared.output
        tuned = CliRunner().invoke(
            cli,
            [
                "tune",
                "--study",
                str(study),
                "--variants",
                "dropout-shallow",
                "--trials",
                "4",
                "--epochs",
                "2",
                "--tracking-uri",
                module_store.uri,
            ],
        )
        assert tuned.exit_code == 0, tuned.output
    return Written(folder, module_store.uri, compared.output, tuned.output)


def test_every_training_run_logs_its_splits_as_datasets(written):
    for kind, contexts in (
        ("train", {"training", "validation", "test"}),
        ("tuned", {"training", "validation", "test"}),
        ("trial", {"training", "validation"}),
    ):
        runs = written.runs(kind)
        assert runs, kind
        for run in runs:
            inputs = {
                next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
                for d in run.inputs.dataset_inputs
            }
            assert set(inputs) == contexts, (kind, inputs)
            assert inputs["training"].name == "fashion_mnist-train"
            assert len(inputs["training"].digest) == 10
            assert '"num_rows": 2200' in inputs["training"].profile  # the tiny training split
    # The digest follows the data: another split, another digest.
    [train] = written.runs("train")[:1]
    digests = {d.dataset.name: d.dataset.digest for d in train.inputs.dataset_inputs}
    assert len(set(digests.values())) == 3


def test_models_are_named_for_their_variant_and_carry_params_and_linked_test_scores(written):
    c = written.client()
    ids = [e.experiment_id for e in c.search_experiments()]
    models = c.search_logged_models(ids)
    names = sorted(m.name for m in models)
    assert names == [
        "dropout-shallow",
        "dropout-shallow",
        "dropout-shallow-tuned",
        "vanilla-shallow",
        "vanilla-shallow",
    ]
    for model in models:
        run = c.get_run(model.source_run_id)
        assert model.params["learning_rate"] == run.data.params["learning_rate"]
        tested = {m.key: m for m in model.metrics if m.key.startswith("test_")}
        assert set(tested) == {"test_accuracy", "test_loss"}
        assert tested["test_accuracy"].value == run.data.metrics["test_accuracy"]
        assert tested["test_accuracy"].dataset_name == "fashion_mnist-test"
        # The kept model's curves (its last epoch here), never the first epoch's, never system
        # metrics.
        linked = {m.key: m for m in model.metrics if not m.key.startswith("test_")}
        assert set(linked) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        last = {k: c.get_metric_history(run.info.run_id, k)[-1] for k in linked}
        for key, metric in linked.items():
            assert (metric.step, metric.value) == (last[key].step, last[key].value), key
        assert model.tags["mlflow.note.content"].startswith(
            model.name.removesuffix("-tuned") + " trained on fashion_mnist"
        )
        assert (
            f"test accuracy {run.data.metrics['test_accuracy']:.4f}"
            in model.tags["mlflow.note.content"]
        )
        folder = Path(
            mlflow.artifacts.download_artifacts(
                f"{model.artifact_location}/serving_input_example.json",
                dst_path=str(written.workdir / "dl" / model.model_id),
            )
        )
        assert np.array(json.loads(folder.read_text())["inputs"]).shape == (
            2,
            28,
            28,
        )  # two raw test images


def test_the_tuned_model_is_registered_and_loads_by_its_alias(written):
    c = written.client()
    tuned = c.get_model_version_by_alias("fashion_mnist-dropout-shallow", "tuned")
    [run] = written.runs("tuned")
    assert tuned.run_id == run.info.run_id
    default = c.get_model_version_by_alias("fashion_mnist-vanilla-shallow", "default")
    assert default.tags["bench.seed"] == "0"
    assert (
        default.tags["test_accuracy"]
        == f"{c.get_run(default.run_id).data.metrics['test_accuracy']:.4f}"
    )
    assert default.description.startswith("vanilla-shallow trained on fashion_mnist")
    assert tuned.description.startswith("dropout-shallow trained on fashion_mnist")
    assert (
        len(c.search_model_versions("name = 'fashion_mnist-vanilla-shallow'")) == 2
    )  # --register: every seed
    mlflow.set_tracking_uri(written.uri)
    model = mlflow.pyfunc.load_model("models:/fashion_mnist-dropout-shallow@tuned")
    splits = data.load("fashion_mnist", validation_size=200)
    predicted = np.argmax(model.predict(splits.raw_test_images()), axis=1)  # raw uint8 images in
    assert float(np.mean(predicted == splits.y_test)) == pytest.approx(
        run.data.metrics["test_accuracy"], abs=1e-6
    )


def test_training_runs_record_system_metrics_and_the_git_commit(written):
    for kind in ("train", "tuned", "trial"):
        for run in written.runs(kind):
            system = {k for k in run.data.metrics if k.startswith("system/")}
            assert {
                "system/cpu_utilization_percentage",
                "system/system_memory_usage_megabytes",
            } <= system, kind
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).parents[1]), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for run in written.runs("train") + written.runs("comparison"):
        assert run.data.tags["mlflow.source.git.commit"] == head
        assert run.data.tags["bench.git_dirty"] in ("true", "false")
    for run in written.runs("comparison") + written.runs("study"):  # what a published report names
        assert run.data.tags["bench.command"] and run.data.tags["bench.host.cpus"] == str(
            os.cpu_count()
        )
        assert "bench.version.tensorflow" in run.data.tags


def test_the_command_is_recorded_as_a_shell_would_take_it_back(monkeypatch):
    from bench.store import environment

    monkeypatch.setattr(
        sys, "argv", ["/opt/venv/bin/bench", "compare", "--experiment", "a b", "--seeds", "5"]
    )
    assert environment.command() == "bench compare --experiment 'a b' --seeds 5"


def test_trial_0_is_the_default_and_the_best_is_never_worse_on_validation(written):
    storage = open_storage(f"journal://{written.workdir}/optuna.journal")
    [summary] = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    first = study.trials[0]
    assert first.params == {
        "learning_rate": 0.001,
        "dropout": 0.5,
    }  # Adam's default, the variant's rate
    assert first.user_attrs["bench_default"] is True
    assert first.state == optuna.trial.TrialState.COMPLETE  # never pruned
    assert study.best_value >= first.value


def _link(output: str, label: str) -> str:
    """The page a command printed on its ``label`` line (after ``then open``)."""
    [line] = [line for line in output.splitlines() if line.startswith(label)]
    return line.split("then open ", 1)[1]


def test_links_open_a_saved_view_of_the_runs_in_the_chart_view(written):
    c = written.client()
    [parent] = written.runs("comparison")
    [study] = written.runs("study")
    for output, label, run in (
        (written.compare_output, "browse:", parent),
        (written.tune_output, "browse runs:", study),
    ):
        link = _link(output, label)
        expected = (
            rf"http://127\.0\.0\.1:5000/#/experiments/{run.info.experiment_id}/runs\?workflowType=machine_learning"
            rf"&compareRunsMode=CHART&viewStateShareKey={run.info.run_id}"
        )
        assert re.fullmatch(expected, link), link
        # The view is the experiment's tag, MLflow's saved-view envelope around the page's state.
        tags = c.get_experiment(run.info.experiment_id).tags
        envelope = json.loads(tags[f"mlflow.sharedViewState.{run.info.run_id}"])
        assert envelope["name"].startswith(run.info.run_name) and isinstance(
            envelope["createdAt"], int
        )
        state = json.loads(envelope["state"])
        found = c.search_runs([run.info.experiment_id], state["searchFilter"], max_results=100)
        kind = "trial" if run is study else "train"
        assert found and {r.data.tags["bench.kind"] for r in found} == {
            kind
        }  # the children, not the parent
        assert {r.data.tags["mlflow.parentRunId"] for r in found} == {run.info.run_id}
        assert [chart["metricKey"] for chart in state["compareRunCharts"]] == [
            "val_accuracy",
            "loss",
        ]
    compare_state = json.loads(
        json.loads(
            c.get_experiment(parent.info.experiment_id).tags[
                f"mlflow.sharedViewState.{parent.info.run_id}"
            ]
        )["state"]
    )
    assert compare_state["groupBy"]["groupByKeys"] == [
        {"mode": "tag", "groupByData": "bench.variant"}
    ]
    tune_state = json.loads(
        json.loads(
            c.get_experiment(study.info.experiment_id).tags[
                f"mlflow.sharedViewState.{study.info.run_id}"
            ]
        )["state"]
    )
    assert tune_state["groupBy"]["groupByKeys"] == [
        {"mode": "param", "groupByData": "learning_rate"}
    ]


def test_a_tune_of_several_studies_prints_one_page_per_study():
    from types import SimpleNamespace

    from bench import present

    target = {
        "tracking_uri": "sqlite:////data/mlflow.db",
        "storage": "journal:///data/optuna.journal",
    }
    results = [
        SimpleNamespace(
            target=SimpleNamespace(study_name=f"toy-{v}", **target),
            parent_run_id=v * 32,
            experiment_id="3",
        )
        for v in "ab"
    ]
    lines = present._study_links(results)
    assert lines[0] == (
        "browse runs:    mlflow ui --backend-store-uri sqlite:////data/mlflow.db --host 127.0.0.1 "
        "--port 5000   then open, per study:"
    )
    for line, v in zip(lines[1:], "ab", strict=True):
        assert line == (
            f"  toy-{v}: http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
            f"&compareRunsMode=CHART&viewStateShareKey={v * 32}"
        )


def test_parent_runs_log_no_metric_named_for_a_run_or_a_variant(written):
    """MLflow reads "/" in a metric key as a chart section: a parent's per-run metrics took
    over the chart view. The per-variant numbers are tables and the description now."""
    c = written.client()
    for run in written.runs("comparison") + written.runs("study"):
        keys = set(c.get_run(run.info.run_id).data.metrics)
        assert keys and not any("/" in key for key in keys), keys
        assert not any(variant in key for key in keys for variant in VARIANTS), keys
    [parent] = written.runs("comparison")
    assert set(parent.data.metrics) == {"best_test_accuracy"}  # two variants: no omnibus test
    tables = json.loads(parent.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "summary.json", "type": "table"} in tables and {
        "path": "ranking.json",
        "type": "table",
    } in tables
    note = parent.data.tags["mlflow.note.content"]
    assert all(f"| {variant}" in note for variant in VARIANTS), note


# --------------------------------------------------------------------------- the UI in a browser


def _dom(url: str, profile: Path, *window: str) -> str:
    return subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            *window,
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout


def _charts_page(url: str, profile: Path) -> str:
    """The text of ``url`` in the chart view, its chart cards drawn. Cards are drawn once in
    the viewport (so a desktop window) and once their chunk and data have loaded, which
    headless Chromium's virtual time does not always wait for: a fresh browser, up to three
    times, until the first card is drawn (its axis label "Step")."""
    for attempt in range(3):
        window = ("--window-size=1400,900", "--virtual-time-budget=90000")
        page = _text(_dom(url, profile / f"try{attempt}", *window))
        if " Step " in page:
            break
    return page


def _legend(page: str, metric: str) -> set[str]:
    """The labels of ``metric``'s chart legend: MLflow names a curve "<run or group> (<metric>)"."""
    return set(re.findall(rf"(\S+) \({re.escape(metric)}\)", page))


@pytest.fixture(scope="module")
def ui(written, tmp_path_factory):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            written.uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow ui did not start")
        yield f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("chromium")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _text(dom: str) -> str:
    return re.sub(
        r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", " ", dom, flags=re.S))
    )


def test_the_printed_compare_link_shows_every_variants_curves_side_by_side(written, ui):
    """Exactly the link ``bench compare --seeds 2`` printed, no click: the comparison's runs
    grouped by variant, and the validation accuracy and loss curves, one per variant."""
    base, profile = ui
    url = _link(written.compare_output, "browse:").replace("http://127.0.0.1:5000", base)
    page = _charts_page(url, profile / "compare")
    assert "Group by: bench.variant" in page and "Sort: test_accuracy" in page
    assert "4 matching runs" in page  # 2 variants x 2 seeds, the parent run not among them
    for variant in VARIANTS:
        assert f"Group: {variant} 2" in page, page[:3000]  # the variant's row, its two seeds
        assert f"{variant}/s0" in page and f"{variant}/s1" in page  # and their rows, expanded
    assert "Learning curves (2)" in page
    assert _legend(page, "val_accuracy") == set(VARIANTS), page[:3000]  # one curve per variant
    assert _legend(page, "loss") == set(VARIANTS)
    # The control: the experiment's own page (the link before this one) lists the parent run
    # alone, its variants nested under it, collapsed.
    experiment = written.runs("comparison")[0].info.experiment_id
    plain = _text(
        _dom(f"{base}/#/experiments/{experiment}?workflowType=machine_learning", profile / "plain")
    )
    assert f"compare-{STUDY}" in plain and "vanilla-shallow/s0" not in plain


def test_the_printed_tune_link_shows_the_trials_curves_by_learning_rate(written, ui):
    """Exactly the link ``bench tune`` printed, no click: the study's trials, one group (one
    color, its value as the label) per learning rate, their curves side by side."""
    base, profile = ui
    url = _link(written.tune_output, "browse runs:").replace("http://127.0.0.1:5000", base)
    page = _charts_page(url, profile / "tune")
    trials = written.runs("trial")
    rates = {t.data.params["learning_rate"] for t in trials}
    assert (
        len(rates) > 1
        and "Group by: learning_rate" in page
        and f"{len(trials)} matching runs" in page
    )
    for trial in trials:
        assert trial.info.run_name in page
    assert _legend(page, "val_accuracy") == rates, page[:3000]
    assert _legend(page, "loss") == rates


def test_a_training_runs_page_shows_its_datasets(written, ui):
    base, profile = ui
    run = written.runs("train")[0]
    page = _text(
        _dom(
            f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning",
            profile / "run",
        )
    )
    assert "fashion_mnist-train" in page and "training" in page
    assert f"fashion_mnist-{run.data.tags['bench.variant']}" in page  # registered with --register


def test_the_models_view_lists_the_variant_named_models(written, ui):
    base, profile = ui
    experiment = written.client().get_experiment_by_name(STUDY).experiment_id
    dom = _dom(
        f"{base}/#/experiments/{experiment}/models?workflowType=machine_learning",
        profile / "models",
    )
    assert "vanilla-shallow" in dom and "dropout-shallow" in dom
    registry = _dom(f"{base}/#/models?workflowType=machine_learning", profile / "registry")
    assert "fashion_mnist-dropout-shallow" in registry


def test_a_runs_system_metrics_tab_has_charts(written, ui):
    base, profile = ui
    run = written.runs("train")[0]
    url = (
        f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/system-metrics"
        "?workflowType=machine_learning"
    )
    page = _text(_dom(url, profile / "system"))
    # The tab's header counts its charts; headless Chromium's virtual time draws the charts'
    # bodies only sometimes (virtualised off-screen), so their count is what is checked.
    charts = re.search(r"System metrics \((\d+)\)", page)
    assert charts and int(charts.group(1)) >= 5, page[:2000]


# ------------------------------------------------------------------------ everyday CLI conventions


def test_progress_lines_show_elapsed_and_remaining_time(written):
    epochs = [line for line in written.compare_output.splitlines() if " epoch " in line]
    assert epochs and all("| elapsed " in line for line in epochs)
    assert any(" left" in line for line in epochs[:-1])  # an estimate while work remains
    trials = [line for line in written.tune_output.splitlines() if "] trial #" in line]
    assert trials and all("| elapsed " in line for line in trials)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("bench train dropout-", {"dropout-shallow", "dropout-deep"}),
        (
            "bench compare --variants vanilla-shallow,batchnorm-r",
            {"vanilla-shallow,batchnorm-residual-deep"},
        ),
        (
            "bench tune --study seed-00",
            {"seed-000", "seed-001", "seed-002", "seed-003", "seed-004"},
        ),
        ("bench compare --task mn", {"mnist"}),
    ],
)
def test_shell_completion_offers_variants_studies_and_tasks(words, expected, monkeypatch):
    monkeypatch.setenv("_BENCH_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - 1))
    result = CliRunner().invoke(cli, [], prog_name="bench")
    offered = {
        line.split(",", 1)[1] for line in result.output.splitlines() if line.startswith("plain,")
    }
    assert offered == expected, result.output


def test_help_names_the_environment_variables():
    out = " ".join(CliRunner().invoke(cli, ["tune", "--help"]).output.split())  # unwrapped
    for var in ("BENCH_DATA_DIR", "MLFLOW_TRACKING_URI", "BENCH_OPTUNA_STORAGE"):
        assert f"[env var: {var}]" in out
