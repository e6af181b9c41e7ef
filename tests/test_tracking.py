"""bench.tracking through bench.compare: what lands in the MLflow store, queried back."""

from __future__ import annotations

import re
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from bench import compare, data
from bench.compare import ComparisonResult, run_comparison
from bench.errors import TrackingError
from bench.models import get_variant
from bench.plan import Plan
from bench.store.probe import check_tracking_uri
from bench.store.schema import EXPERIMENT_KIND_VALUE as EXPERIMENT_KIND
from bench.store.schema import MLFLOW_EXPERIMENT_KIND as EXPERIMENT_KIND_TAG
from bench.store.tracker import Tracker
from bench.store.uri import redact
from bench.studies import load_study
from bench.training import HISTORY_KEYS
from tests.support import (
    TINY_TEST,
    TINY_TRAIN,
    TINY_VALIDATION,
    Store,
    artifact_paths,
    download,
    write_toy_study,
)

VARIANTS = ("vanilla-shallow", "batchnorm-residual-deep")
EPOCHS = 2
STUDY = "toy-compare"


# --------------------------------------------------------------------------- helpers


def all_runs(client: MlflowClient) -> list:
    experiments = client.search_experiments(view_type=ViewType.ALL)
    if not experiments:
        return []
    return client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=1000
    )


def parents(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], "tags.`bench.kind` = 'comparison'")


def children_of(client: MlflowClient, run) -> list:
    found = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    return sorted(found, key=lambda r: r.info.start_time)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- one shared comparison


@dataclass(frozen=True)
class Compared:
    store: Store
    result: ComparisonResult
    client: MlflowClient

    @property
    def parent(self):
        return self.client.get_run(self.result.parent_run_id)

    def child(self, variant: str):
        [run] = [
            r for r in children_of(self.client, self.parent) if r.data.params["variant"] == variant
        ]
        return run

    def row(self, variant: str) -> pd.Series:
        table = self.result.table
        return table[table["variant"] == variant].iloc[0]


@pytest.fixture(scope="module")
def compared(module_store: Store) -> Compared:
    """Two variants (shallow and the residual deep one), two epochs, models logged."""
    path = write_toy_study(
        module_store.workdir, STUDY, variants=VARIANTS, epochs=EPOCHS, learning_rate=0.001
    )
    result = run_comparison(Plan.from_study(load_study(path)))  # store and data from the env
    return Compared(module_store, result, module_store.client())


def test_experiment_is_named_after_the_study_and_tagged(compared):
    exp = compared.client.get_experiment_by_name(STUDY)
    assert exp is not None
    assert exp.experiment_id == compared.result.experiment_id
    assert compared.result.experiment_name == STUDY
    assert compared.result.tracking_uri == compared.store.uri
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    assert exp.tags["mlflow.note.content"] == f"toy study {STUDY} for the tests"
    # Artifacts live beside the SQLite file, not in ./mlruns.
    assert exp.artifact_location == (compared.store.workdir / "mlartifacts" / STUDY).as_uri()


def test_one_finished_parent_run(compared):
    exp_id = compared.result.experiment_id
    [parent] = parents(compared.client, exp_id)
    assert parent.info.run_id == compared.result.parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == f"compare-{STUDY}"
    assert "mlflow.parentRunId" not in parent.data.tags
    params = parent.data.params  # namespaced: `mlflow run` logs its own params here
    assert params["protocol.study"] == STUDY
    assert params["protocol.task"] == "fashion_mnist"
    assert params["protocol.variants"] == ",".join(VARIANTS)
    assert params["protocol.epochs"] == str(EPOCHS)
    assert params["protocol.batch_size"] == "32"
    assert params["protocol.optimizer"] == "adam"
    assert params["protocol.learning_rate"] == "0.001"
    assert params["protocol.seeds"] == "1"
    assert params["protocol.validation_size"] == str(TINY_VALIDATION)
    assert params["protocol.split.train"] == str(TINY_TRAIN - TINY_VALIDATION)
    assert params["protocol.split.validation"] == str(TINY_VALIDATION)
    assert params["protocol.split.test"] == str(TINY_TEST)
    assert params["protocol.data_source"].startswith("data dir: ")
    tags = parent.data.tags
    assert tags["bench.study"] == STUDY
    assert tags["bench.task"] == "fashion_mnist"
    assert tags["bench.unhealthy_runs"] == "0"
    import keras
    import tensorflow as tf

    assert tags["bench.version.tensorflow"] == tf.__version__
    assert tags["bench.version.keras"] == keras.__version__
    assert tags["bench.version.mlflow"] == mlflow.__version__
    assert tags["bench.version.numpy"] == np.__version__
    assert tags["bench.version.python"]
    assert tags["bench.device"].startswith(("CPU", "GPU"))
    # Nothing else is in the experiment: one parent and its children.
    runs = compared.client.search_runs([exp_id], run_view_type=ViewType.ALL)
    assert len(runs) == 1 + len(VARIANTS)


def test_one_child_per_variant_with_params_and_tags(compared):
    kids = children_of(compared.client, compared.parent)
    assert [r.data.params["variant"] for r in kids] == list(VARIANTS)
    for run in kids:
        variant = get_variant(run.data.params["variant"])
        assert run.info.status == "FINISHED"
        assert run.info.run_name == variant.name
        assert run.data.tags["mlflow.parentRunId"] == compared.result.parent_run_id
        assert run.data.tags["bench.kind"] == "train"
        assert run.data.tags["bench.variant"] == variant.name
        assert run.data.tags["bench.seed"] == "0"
        assert run.data.tags["bench.status"] == "ok"
        assert run.data.tags["bench.device"].startswith(("CPU", "GPU"))
        assert run.data.tags["mlflow.note.content"] == variant.description
        params = run.data.params
        expected = {
            "variant": variant.name,
            "variant.family": variant.family,
            "variant.group": variant.group,
            "task": "fashion_mnist",
            "study": STUDY,
            "seed": "0",
            "epochs": str(EPOCHS),
            "batch_size": "32",
            "optimizer": "adam",
            "learning_rate": "0.001",
            "dropout": str(variant.dropout_rate or 0.0),  # the rate it trains with, as a number
            "params": str(compared.row(variant.name)["params"]),
            "split.train": str(TINY_TRAIN - TINY_VALIDATION),
            "split.validation": str(TINY_VALIDATION),
            "split.test": str(TINY_TEST),
        }
        assert {k: params.get(k) for k in expected} == expected
    assert compared.child("vanilla-shallow").data.params["params"] == "101770"
    residual = compared.child("batchnorm-residual-deep").data.params
    assert residual["params"] == "1732618"
    assert residual["variant.residual"] == "0->2,2->4"


def test_metric_histories_have_one_step_per_epoch(compared):
    for variant, result in zip(VARIANTS, compared.result.results, strict=True):
        run_id = compared.child(variant).info.run_id
        assert result.run_id == run_id
        for key in HISTORY_KEYS:
            history = compared.client.get_metric_history(run_id, key)
            assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(EPOCHS)), (
                key
            )
            values = [m.value for m in sorted(history, key=lambda m: m.step)]
            assert values == pytest.approx(result.history[key], rel=1e-12), key


def test_test_metrics_equal_the_table(compared):
    for variant in VARIANTS:
        row = compared.row(variant)
        metrics = compared.child(variant).data.metrics
        assert row["status"] == "ok"
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert metrics["test_accuracy"] == pytest.approx(row["test_accuracy"], abs=1e-12)
        assert metrics["test_loss"] == pytest.approx(row["test_loss"], abs=1e-12)
        assert metrics["best_val_accuracy"] == pytest.approx(row["best_val_accuracy"], abs=1e-12)
        assert metrics["epochs_run"] == EPOCHS
        assert (
            metrics["best_epoch"] == row["best_epoch"] - 1
        )  # 0-based in MLflow, 1-based in the table
        # The parent's description (the run page's first paragraph) lists every run's scores.
        note = compared.parent.data.tags["mlflow.note.content"]
        scores = rf"{row['test_accuracy']:.4f} +\| +{row['test_loss']:.4f} "
        assert re.search(rf"^\| {re.escape(variant)} +\| +{scores}", note, re.MULTILINE), note
    # One metric on the parent: none per run (MLflow would draw each as a chart of its own).
    assert set(compared.parent.data.metrics) == {"best_test_accuracy"}
    assert compared.parent.data.metrics["best_test_accuracy"] == pytest.approx(
        compared.result.table["test_accuracy"].max(), abs=1e-12
    )


def test_child_artifacts(compared, tmp_path):
    for variant in VARIANTS:
        run_id = compared.child(variant).info.run_id
        paths = artifact_paths(compared.client, run_id)
        assert {
            "history.csv",
            "confusion_matrix.csv",
            "figures/learning_curves.png",
            "figures/confusion_matrix.png",
            "figures/weights_violin.png",
        } <= paths
        for png in (p for p in paths if p.endswith(".png")):
            assert download(compared.client, run_id, png, tmp_path / variant).read_bytes()[:8] == (
                b"\x89PNG\r\n\x1a\n"
            )
        cm = pd.read_csv(
            download(compared.client, run_id, "confusion_matrix.csv", tmp_path / variant),
            index_col=0,
        )
        assert list(cm.columns) == list(data.FASHION_CLASSES)
        assert list(cm.index) == list(data.FASHION_CLASSES)
        assert int(cm.to_numpy().sum()) == TINY_TEST
        assert np.trace(cm.to_numpy()) / TINY_TEST == pytest.approx(
            compared.row(variant)["test_accuracy"]
        )
        history = pd.read_csv(download(compared.client, run_id, "history.csv", tmp_path / variant))
        assert list(history.columns) == ["epoch", *HISTORY_KEYS]
        assert history["epoch"].tolist() == list(range(EPOCHS))
        logged = sorted(
            compared.client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step
        )
        assert history["val_accuracy"].tolist() == pytest.approx([m.value for m in logged])


def test_parent_artifacts(compared, tmp_path):
    run_id = compared.result.parent_run_id
    paths = artifact_paths(compared.client, run_id)
    assert {
        "comparison.csv",
        "comparison.md",
        "figures/overlay_shallow.png",
        "figures/overlay_deep.png",
        "figures/test_accuracy.png",
        "dataset/class_balance.csv",
        "dataset/class_balance.png",
    } <= paths
    table = pd.read_csv(download(compared.client, run_id, "comparison.csv", tmp_path))
    assert table["run"].tolist() == list(VARIANTS)
    assert table["status"].tolist() == ["ok", "ok"]
    assert table["test_accuracy"].tolist() == pytest.approx(
        compared.result.table["test_accuracy"].tolist()
    )
    assert table["params"].tolist() == [101_770, 1_732_618]
    markdown = download(compared.client, run_id, "comparison.md", tmp_path).read_text()
    assert all(v in markdown for v in VARIANTS)
    balance = pd.read_csv(
        download(compared.client, run_id, "dataset/class_balance.csv", tmp_path), index_col=0
    )
    assert list(balance.index) == list(data.FASHION_CLASSES)
    assert balance["train"].tolist() == [(TINY_TRAIN - TINY_VALIDATION) // 10] * 10
    assert balance["validation"].tolist() == [TINY_VALIDATION // 10] * 10
    assert balance["test"].tolist() == [TINY_TEST // 10] * 10


@pytest.mark.filterwarnings("ignore:The structure of `inputs` doesn't match:UserWarning")
@pytest.mark.parametrize("variant", VARIANTS)
def test_logged_model_serves_raw_uint8_images(compared, variant):
    child = compared.child(variant)
    model_uri = child.data.tags["bench.model_uri"]
    mlflow.set_tracking_uri(compared.store.uri)  # model URIs resolve against the shared store
    model = mlflow.pyfunc.load_model(model_uri)
    splits = data.load("fashion_mnist", validation_size=TINY_VALIDATION)
    raw = splits.raw_test_images()
    assert raw.dtype == np.uint8
    probs = np.asarray(model.predict(raw))
    assert probs.shape == (TINY_TEST, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    predicted = probs.argmax(axis=1)
    accuracy = float(np.mean(predicted == splits.y_test))
    assert accuracy == pytest.approx(child.data.metrics["test_accuracy"], abs=1e-6)
    # The served model makes exactly the predictions behind the logged confusion matrix.
    k = 10
    confusion = np.bincount(splits.y_test * k + predicted, minlength=k * k).reshape(k, k)
    logged = compared.client.download_artifacts(
        child.info.run_id, "confusion_matrix.csv", str(Path.cwd())
    )
    assert np.array_equal(confusion, pd.read_csv(logged, index_col=0).to_numpy())
    signature = model.metadata.get_input_schema().inputs[0]
    assert signature.type == np.dtype(np.uint8)


# --------------------------------------------------------------------------- runs that go wrong


def test_several_seeds_give_one_child_each(tmp_path, client):
    path = write_toy_study(tmp_path, "toy-seeds", variants=["vanilla-shallow"])
    result = run_comparison(Plan.from_study(load_study(path), seeds=2), log_models=False)
    [parent] = parents(client, result.experiment_id)
    assert parent.data.params["protocol.seeds"] == "2"
    kids = children_of(client, parent)
    assert [r.info.run_name for r in kids] == ["vanilla-shallow/s0", "vanilla-shallow/s1"]
    assert [r.data.params["seed"] for r in kids] == ["0", "1"]
    assert [r.data.tags["bench.seed"] for r in kids] == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in kids)
    assert all("bench.model_uri" not in r.data.tags for r in kids)  # log_models=False
    losses = [client.get_metric_history(r.info.run_id, "loss")[0].value for r in kids]
    assert losses[0] != losses[1]
    assert result.table["run"].tolist() == ["vanilla-shallow/s0", "vanilla-shallow/s1"]


def test_a_diverged_run_is_recorded_not_hidden(tmp_path, client):
    path = write_toy_study(
        tmp_path,
        "toy-diverge",
        variants=["vanilla-shallow"],
        optimizer="sgd",
        learning_rate=1e6,
        epochs=3,
    )
    result = run_comparison(Plan.from_study(load_study(path)), log_models=True)
    [parent] = parents(client, result.experiment_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["bench.unhealthy_runs"] == "1"
    assert "best_test_accuracy" not in parent.data.metrics
    [child] = children_of(client, parent)
    assert child.info.status == "FINISHED"
    assert child.data.tags["bench.status"] == "diverged"
    assert "loss became" in child.data.tags["bench.status_message"]
    assert "test_accuracy" not in child.data.metrics
    assert child.data.metrics["epochs_run"] < 3
    assert "bench.model_uri" not in child.data.tags  # a broken model is not served
    paths = artifact_paths(client, child.info.run_id)
    assert "history.csv" in paths
    assert "figures/weights_violin.png" not in paths
    assert result.table["status"].tolist() == ["diverged"]


@pytest.fixture
def toy_two(tmp_path) -> Plan:
    path = write_toy_study(tmp_path, "toy-fail", variants=["vanilla-shallow", "batchnorm-shallow"])
    return Plan.from_study(load_study(path))


def _train_failing_on(monkeypatch, call: int, exc: BaseException) -> list[str]:
    """Make the ``call``-th training of a population (1-based) raise ``exc``, as seen from
    bench.compare."""
    calls: list[str] = []
    real = compare.training.train_population

    def flaky(variant, *args, **kwargs):
        calls.append(variant.name)
        if len(calls) == call:
            raise exc
        return real(variant, *args, **kwargs)

    monkeypatch.setattr(compare.training, "train_population", flaky)
    return calls


def test_a_failing_run_ends_failed_never_running(monkeypatch, toy_two, client):
    calls = _train_failing_on(monkeypatch, 2, RuntimeError("injected failure in training"))
    with pytest.raises(RuntimeError, match="injected failure"):
        run_comparison(toy_two, log_models=False)
    assert calls == ["vanilla-shallow", "batchnorm-shallow"]
    assert mlflow.active_run() is None

    runs = all_runs(client)
    assert len(runs) == 3
    assert not [r for r in runs if r.info.status == "RUNNING"]
    [parent] = [r for r in runs if r.data.tags.get("bench.kind") == "comparison"]
    assert parent.info.status == "FAILED"
    assert "RuntimeError: injected failure in training" in parent.data.tags["bench.error"]
    by_variant = {
        r.data.params["variant"]: r for r in runs if r.data.tags.get("bench.kind") == "train"
    }
    assert by_variant["vanilla-shallow"].info.status == "FINISHED"
    assert "bench.error" not in by_variant["vanilla-shallow"].data.tags
    failed = by_variant["batchnorm-shallow"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "RuntimeError: injected failure in training" in failed.data.tags["bench.error"]


def test_an_interrupted_comparison_resumes_keeping_its_finished_runs(monkeypatch, tmp_path, client):
    """Run again with the same settings, an interrupted comparison goes on in the same parent
    run: finished runs are kept untouched (not retrained), unfinished ones deleted and
    trained again, and the outcome covers every run. A finished comparison is never
    reopened, and ``fresh`` starts a new one."""
    settings = Plan.from_study(
        load_study(
            write_toy_study(
                tmp_path, "toy-resume", variants=["vanilla-shallow", "batchnorm-shallow"]
            )
        ),
        seeds=2,
    )
    real = compare.training.train_population
    _train_failing_on(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_comparison(settings, log_models=False)
    [first] = all_runs_of_kind(client, "comparison")
    assert first.info.status == "KILLED"
    before = {r.info.run_name: r for r in children_of(client, first)}
    assert {n: r.info.status for n, r in before.items()} == {
        "vanilla-shallow/s0": "FINISHED",
        "vanilla-shallow/s1": "FINISHED",
        "batchnorm-shallow/s0": "KILLED",
        "batchnorm-shallow/s1": "KILLED",
    }

    calls = _train_failing_on(monkeypatch, 0, RuntimeError("never"))  # counts, never fails
    result = run_comparison(settings, log_models=False)
    assert calls == ["batchnorm-shallow"]  # only what had not finished
    assert result.parent_run_id == first.info.run_id and result.resumed == 2
    parent = client.get_run(first.info.run_id)
    assert parent.info.status == "FINISHED"
    after = {r.info.run_name: r for r in children_of(client, parent)}
    assert sorted(after) == sorted(before) and {r.info.status for r in after.values()} == {
        "FINISHED"
    }
    for name in ("vanilla-shallow/s0", "vanilla-shallow/s1"):  # the very same runs
        assert after[name].info.run_id == before[name].info.run_id
        assert after[name].info.end_time == before[name].info.end_time
    for name in (
        "batchnorm-shallow/s0",
        "batchnorm-shallow/s1",
    ):  # trained again, the old ones deleted
        assert after[name].info.run_id != before[name].info.run_id
        assert client.get_run(before[name].info.run_id).info.lifecycle_stage == "deleted"
    assert result.table["run"].tolist() == list(before)
    assert result.table["test_accuracy"].notna().all()
    stored = pd.read_csv(download(client, parent.info.run_id, "comparison.csv", tmp_path / "csv"))
    assert stored["run"].tolist() == list(before)
    for row in stored.itertuples():
        assert row.test_accuracy == pytest.approx(after[row.run].data.metrics["test_accuracy"])
    assert "report/report.md" in artifact_paths(client, parent.info.run_id, "report")

    # Finished: never reopened, a new repetition starts (interrupted at once here) ...
    monkeypatch.setattr(compare.training, "train_population", real)
    _train_failing_on(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_comparison(settings, log_models=False)
    [again] = [
        r for r in all_runs_of_kind(client, "comparison") if r.info.run_id != first.info.run_id
    ]
    assert again.info.status == "KILLED"
    # ... and --fresh starts another instead of resuming that one.
    _train_failing_on(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_comparison(settings, log_models=False, fresh=True)
    parents = all_runs_of_kind(client, "comparison")
    assert len(parents) == 3 and client.get_run(first.info.run_id).info.status == "FINISHED"


def all_runs_of_kind(client: MlflowClient, kind: str) -> list:
    return [r for r in all_runs(client) if r.data.tags.get("bench.kind") == kind]


def test_an_interrupt_ends_runs_killed(monkeypatch, toy_two, client):
    _train_failing_on(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_comparison(toy_two, log_models=False)
    assert mlflow.active_run() is None
    runs = all_runs(client)
    assert sorted(r.data.tags["bench.kind"] for r in runs) == ["comparison", "train"]
    for run in runs:
        assert run.info.status == "KILLED"
        assert "interrupted" in run.data.tags["bench.error"]


def test_mlflow_run_id_is_adopted_as_the_parent(monkeypatch, tmp_path, tracking_uri, client):
    """Under `mlflow run`, MLFLOW_RUN_ID names the run to log the comparison into."""
    exp_id = client.create_experiment("launched")
    launched = client.create_run(exp_id, run_name="launched-by-mlflow-run")
    monkeypatch.setenv("MLFLOW_RUN_ID", launched.info.run_id)
    path = write_toy_study(tmp_path, "toy-adopt", variants=["vanilla-shallow"])
    result = run_comparison(Plan.from_study(load_study(path)), log_models=False)
    assert result.parent_run_id == launched.info.run_id
    assert result.experiment_id == exp_id
    parent = client.get_run(launched.info.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["bench.kind"] == "comparison"
    assert parent.info.run_name == "compare-toy-adopt"
    [child] = children_of(client, parent)
    assert child.data.params["variant"] == "vanilla-shallow"
    assert child.info.status == "FINISHED"
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert client.get_experiment_by_name("toy-adopt") is None


def test_a_deleted_experiment_is_an_error(client, tracking_uri):
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(TrackingError, match="'gone' is deleted"):
        Tracker(tracking_uri, "gone")
    assert all_runs(client) == []


# --------------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        (
            "mysql+pymysql://user:secret@db.example:3306/mlflow",
            "mysql+pymysql://user:***@db.example:3306/mlflow",
        ),
        ("https://token:secret@mlflow.example/", "https://token:***@mlflow.example/"),
        ("sqlite:///tmp/mlflow.db", "sqlite:///tmp/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_redact_hides_passwords(uri, shown):
    assert redact(uri) == shown
    assert "secret" not in redact(uri)


def _not_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_text("this is a text file, not a database\n" * 20)
    return f"sqlite:///{path}"


def _under_a_file(tmp_path: Path) -> str:
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    return f"sqlite:///{afile}/mlflow.db"


@pytest.mark.parametrize(
    ("make_uri", "match"),
    [
        (lambda tmp: "foo://x", "malformed tracking URI 'foo://x'"),
        (lambda tmp: "mlflow.db", "malformed tracking URI"),
        (lambda tmp: "sqlite:///", "no database file named"),
        (lambda tmp: "sqlite://relative.db", "malformed SQLite tracking URI"),
        (lambda tmp: f"sqlite:///{tmp}/no-such-folder/mlflow.db", "does not exist"),
        (_under_a_file, "is a file, not a folder"),
        (_not_sqlite, "is not an SQLite database"),
        (lambda tmp: f"file://{tmp}/no/such/folder", "MLflow 3 no longer writes file stores"),
        (lambda tmp: f"http://127.0.0.1:{free_port()}", "is unreachable"),
        (lambda tmp: "http://:5000", "no host"),
    ],
    ids=[
        "unknown-scheme",
        "no-scheme",
        "sqlite-no-file",
        "sqlite-two-slashes",
        "missing-folder",
        "folder-is-a-file",
        "not-sqlite",
        "file-store",
        "unreachable-server",
        "http-no-host",
    ],
)
def test_check_tracking_uri_rejects(tmp_path, make_uri, match):
    uri = make_uri(tmp_path)
    with pytest.raises(TrackingError, match=match):
        check_tracking_uri(uri)
    with pytest.raises(TrackingError):
        Tracker(uri, "never-created")


def test_check_tracking_uri_rejects_an_unwritable_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    try:
        import os

        if os.access(folder, os.W_OK):
            pytest.skip("running as root: a 0o500 folder is still writable")
        with pytest.raises(TrackingError, match="not writable"):
            check_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    finally:
        folder.chmod(0o700)


def test_check_tracking_uri_accepts_good_stores(tmp_path):
    check_tracking_uri(f"sqlite:///{tmp_path}/new.db")  # a new file in an existing folder
    existing = tmp_path / "existing.db"
    sqlite3.connect(existing).close()
    check_tracking_uri(f"sqlite:///{existing}")  # an empty database: MLflow creates its schema
    check_tracking_uri("sqlite:///relative.db")  # relative to the cwd (tmp_path)
    assert not (tmp_path / "new.db").exists() and not (tmp_path / "relative.db").exists()


# --------------------------------------------------------------------------- registry (issue 27, O)


def _registered_in(tracker: Tracker, run_id: str, name: str = "toy-model") -> str:
    """A model version made from ``run_id`` with the alias 'default' on it (as --register does)."""
    client = tracker.client
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "default", version.version)
    return version.version


@pytest.mark.parametrize("status", ["KILLED", "FAILED"])
def test_a_run_that_does_not_finish_loses_its_registered_versions(tracking_uri, status):
    tracker = Tracker(tracking_uri, "registry")
    kept = tracker.start_run("kept", kind="train")
    _registered_in(tracker, kept)
    tracker.end_run(kept, "FINISHED")
    stopped = tracker.start_run("stopped", kind="train")
    _registered_in(tracker, stopped)  # registered, then the stop came before the run ended
    tracker.end_run(stopped, status, "interrupted (Ctrl-C or SIGTERM)")
    versions = tracker.client.search_model_versions("name = 'toy-model'")
    assert [v.run_id for v in versions] == [kept]
    assert (
        tracker.client.get_registered_model("toy-model").aliases == {}
    )  # the alias went with its version


def test_a_resumed_comparison_unregisters_the_runs_it_deletes(tracking_uri):
    from bench.store import resume, schema

    tracker = Tracker(tracking_uri, "registry")
    parent = tracker.start_run("cmp", kind=schema.KIND_COMPARISON)
    child = tracker.start_run("v/s0", kind=schema.KIND_TRAIN, parent_run_id=parent)
    _registered_in(tracker, child)
    tracker.client.set_terminated(child, "KILLED")  # as a second signal or kill -9 leaves it
    tracker.client.set_terminated(parent, "KILLED")
    prepared = resume.prepare(tracker, resume.Resumable(parent, "KILLED"))
    assert prepared.discarded == ["v/s0"]
    assert tracker.client.search_model_versions("name = 'toy-model'") == []


def test_a_run_closed_after_its_process_died_loses_its_versions(tracking_uri):
    tracker = Tracker(tracking_uri, "registry")
    run_id = tracker.start_run("orphan", kind="train")
    _registered_in(tracker, run_id)
    assert tracker.close_orphan(run_id, "its process died before the run ended", state=None)
    assert tracker.client.search_model_versions("name = 'toy-model'") == []
