"""The ``bench`` command: what a user sees, and what it leaves in the MLflow store."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from bench.cli import cli
from bench.data import FILES
from bench.models import CORE_VARIANTS, get_variant
from tests.support import make_task_arrays, study_yaml, write_task

SEED_000_PARAMS = {
    "vanilla-shallow": "101,770",
    "vanilla-deep": "1,720,330",
    "dropout-shallow": "101,770",
    "dropout-deep": "1,720,330",
    "batchnorm-shallow": "102,282",
    "batchnorm-residual-deep": "1,732,618",
}


def invoke(*args: str) -> Result:
    # click 8.2+ has no mix_stderr: result.output is stdout and stderr interleaved, as a
    # user sees them; result.stdout / result.stderr hold each stream alone.
    return CliRunner().invoke(cli, list(args))


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def all_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    if not experiments:
        return []
    return client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=1000
    )


def store_is_empty(uri: str) -> bool:
    """No runs in the store (a store that was never created is empty too)."""
    path = Path(uri.removeprefix("sqlite:///"))
    return not path.exists() or all_runs(uri) == []


@pytest.fixture
def toy(write_study) -> Path:
    return write_study("toy-cli", variants=["vanilla-shallow", "batchnorm-shallow"])


# --------------------------------------------------------------------------- listing


def test_list_shows_the_core_variants_with_parameter_counts():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for name in CORE_VARIANTS:
        v = get_variant(name)
        pattern = rf"^{re.escape(name)}\s+{v.family}\s+{v.group}\s+{SEED_000_PARAMS[name]}\s+\S"
        assert re.search(pattern, result.stdout, re.MULTILINE), (
            f"{name} row missing:\n{result.stdout}"
        )
    assert result.stdout.splitlines()[0].split()[:4] == ["variant", "family", "group", "params"]


def test_list_with_a_glob():
    result = invoke("list", "*-deep")
    assert result.exit_code == 0, result.output
    assert "vanilla-deep" in result.stdout and "batchnorm-residual-deep" in result.stdout
    assert "shallow" not in result.stdout


def test_list_studies():
    result = invoke("list", "--studies")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert {"default", "seed-000"} <= set(rows)
    for name in ("default", "seed-000"):
        assert "fashion_mnist" in rows[name]
        assert "6 variants" in rows[name]
        assert "INVALID" not in rows[name]
    assert re.search(r"^best-mlp-mnist +mnist +1 variant +\S", rows["best-mlp-mnist"])  # singular
    # the longest name still leaves the columns aligned
    assert (
        len({line.index(" fashion_mnist ") for line in rows.values() if " fashion_mnist " in line})
        == 1
    )


def test_list_studies_flags_an_invalid_study_in_the_working_folder(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "broken.yaml").write_text(
        "name: broken\ntask: fashion_mnist\nvariants: [nope]\n"
    )
    result = invoke("list", "--studies")
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if line.startswith("broken")]
    assert "INVALID" in row and "nope" in row


def test_version_and_help():
    version = invoke("--version")
    assert version.exit_code == 0
    assert "0.1.0" in version.output
    bare = invoke()
    assert bare.exit_code == 0
    for command in ("compare", "train", "list"):
        assert command in bare.output
    assert invoke("compare", "--help").exit_code == 0


# --------------------------------------------------------------------------- compare and train


def test_compare_prints_the_table_and_records_the_runs(toy, tracking_uri, client):
    result = invoke(
        "compare",
        "--study",
        str(toy),
        "--variants",
        "vanilla-shallow,batchnorm-shallow",
        "--epochs",
        "1",
        "--no-model",
    )
    assert result.exit_code == 0, result.output
    assert not error_lines(result) and "Traceback" not in result.output
    out = result.stdout
    match = re.search(r"^parent run: ([0-9a-f]{32})$", out, re.MULTILINE)
    assert match, out
    parent = client.get_run(match.group(1))
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["bench.kind"] == "comparison"
    assert f"mlflow ui --backend-store-uri {tracking_uri}" in out
    assert "experiment: toy-cli" in out
    assert "epoch 1/1" in result.stderr  # progress goes to stderr, results to stdout

    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == ["batchnorm-shallow", "vanilla-shallow"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["epochs"] == "1"
        # The table row shows what the store holds.
        acc = f"{child.data.metrics['test_accuracy']:.4f}"
        [row] = [line for line in out.splitlines() if line.startswith(f"| {child.info.run_name} ")]
        assert acc in row
        assert "bench.model_uri" not in child.data.tags  # --no-model


def test_json_output_is_one_document_that_names_what_the_store_holds(
    toy, tracking_uri, client, tmp_path
):
    """--json: stdout is one JSON document (nothing else); -q: no progress on stderr."""
    result = invoke(
        "compare",
        "--study",
        str(toy),
        "--variants",
        "vanilla-shallow",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--no-model",
        "--json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "epoch 1/1" not in result.stderr and "done in" not in result.stderr  # --quiet
    parent = client.get_run(doc["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.info.experiment_id == doc["experiment_id"]
    assert doc["command"] == "compare" and doc["experiment_name"] == "toy-cli"
    assert doc["url"].endswith(
        f"#/experiments/{doc['experiment_id']}?workflowType=machine_learning"
    ) or (f"#/experiments/{doc['experiment_id']}" in doc["url"])
    assert [r["run"] for r in doc["runs"]] == ["vanilla-shallow/s0", "vanilla-shallow/s1"]
    for row in doc["runs"]:
        run = client.get_run(row["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == doc["parent_run_id"]
        assert run.data.metrics["test_accuracy"] == pytest.approx(row["test_accuracy"])
    [summary] = doc["summary"]
    assert summary["variant"] == "vanilla-shallow" and summary["seeds"] == 2

    listed = json.loads(invoke("list", "*-shallow", "--json").stdout)
    assert [v["name"] for v in listed["variants"]] == [
        "vanilla-shallow",
        "dropout-shallow",
        "batchnorm-shallow",
    ]
    assert listed["variants"][0]["params_28x28_10_classes"] == 101770
    reported = invoke(
        "report", "--run-id", doc["parent_run_id"], "--out", str(tmp_path / "r"), "--json"
    )
    assert reported.exit_code == 0, reported.output
    [written] = json.loads(reported.stdout)["reports"]
    assert written["run_id"] == doc["parent_run_id"]
    assert all(Path(p).is_file() for p in written["files"].values()) and set(written["files"]) == {
        "html",
        "markdown",
    }


def test_train_one_variant_with_a_seed(toy, client):
    result = invoke("train", "vanilla-shallow", "--study", str(toy), "--epochs", "1", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert not error_lines(result)
    parent_id = re.search(r"^parent run: ([0-9a-f]{32})$", result.stdout, re.MULTILINE).group(1)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    [child] = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert child.info.run_name == "vanilla-shallow"
    assert child.info.status == "FINISHED"
    assert child.data.params["seed"] == "3"
    assert child.data.params["variant"] == "vanilla-shallow"
    assert child.data.tags["bench.seed"] == "3"
    assert child.data.tags["bench.model_uri"].startswith(
        ("models:/", "runs:/")
    )  # logged by default


def test_same_seed_twice_records_identical_curves_and_scores(toy, client):
    """Reproducibility on CPU, read back from MLflow: every per-epoch metric and the test
    scores of two runs with one seed are equal; another seed differs."""

    def recorded(seed: str) -> tuple[dict[str, list[float]], dict[str, float]]:
        result = invoke(
            "train",
            "dropout-shallow",
            "--study",
            str(toy),
            "--epochs",
            "3",
            "--seed",
            seed,
            "--no-model",
        )
        assert result.exit_code == 0, result.output
        parent_id = re.search(r"^parent run: ([0-9a-f]{32})$", result.stdout, re.MULTILINE).group(1)
        [child] = client.search_runs(
            [client.get_run(parent_id).info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{parent_id}'",
        )
        curves = {
            key: [
                m.value
                for m in sorted(
                    client.get_metric_history(child.info.run_id, key), key=lambda m: m.step
                )
            ]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        }
        assert all(len(v) == 3 for v in curves.values())
        return curves, {k: child.data.metrics[k] for k in ("test_loss", "test_accuracy")}

    first, again, other = recorded("5"), recorded("5"), recorded("6")
    assert first == again
    assert first[0]["loss"] != other[0]["loss"]


# --------------------------------------------------------------------------- bad input


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _study_file(tmp: Path, text: str, name: str = "bad-study.yaml") -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _regular_file(tmp: Path) -> Path:
    path = tmp / "afile.txt"
    path.write_text("x")
    return path


def _not_sqlite(tmp: Path) -> Path:
    path = tmp / "notes.db"
    path.write_text("not a database\n" * 10)
    return path


def _broken_data(tmp: Path, damage: str) -> str:
    """A data folder with a small Fashion-MNIST whose files are damaged as ``damage`` says."""
    arrays = make_task_arrays("fashion_mnist", seed=7, n_train=600, n_test=100)
    if damage == "wrong-image-size":
        arrays["x_train"] = np.zeros((600, 32, 32), dtype=np.uint8)
    if damage == "labels-out-of-range":
        arrays["y_train"] = arrays["y_train"].copy()
        arrays["y_train"][5] = 12
    if damage == "fewer-labels-than-images":
        arrays["y_train"] = arrays["y_train"][:-10]
    folder = tmp / "broken-data" / "fashion-mnist"
    write_task(folder, arrays, gz=False)
    images = folder / FILES["x_train"]
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[: 16 + 28 * 28 * 10 + 5])
    if damage == "bad-magic":
        images.write_bytes(b"\x00\x00\x09\x99" + images.read_bytes()[4:])
    if damage == "missing-file":
        (folder / FILES["y_test"]).unlink()
    return str(folder.parent)


def _data_case(damage: str, expected: str):
    return (
        lambda tmp, s: ["compare", "--study", s, "--data-dir", _broken_data(tmp, damage)],
        expected,
    )


GOOD = study_yaml("toy-bad-input", variants=["vanilla-shallow"])

# id -> (arguments, built from tmp_path and the toy study path; text the error line must contain)
BAD_INPUT = {
    "unknown-variant": (
        lambda tmp, s: ["compare", "--study", s, "--variants", "vanila-deep"],
        "unknown variant 'vanila-deep' (did you mean vanilla-deep",
    ),
    "unknown-variant-glob": (
        lambda tmp, s: ["compare", "--study", s, "--variants", "resnet-*"],
        "matches no variant",
    ),
    "train-unknown-variant": (
        lambda tmp, s: ["train", "vanila-shallow", "--study", s],
        "did you mean vanilla-shallow",
    ),
    "unknown-task": (
        lambda tmp, s: ["compare", "--study", s, "--task", "cifar10"],
        "unknown task 'cifar10'",
    ),
    "epochs-0": (lambda tmp, s: ["compare", "--study", s, "--epochs", "0"], "--epochs"),
    "epochs-negative": (
        lambda tmp, s: ["compare", "--study", s, "--epochs", "-1"],
        "-1 is not >= 1",
    ),
    "epochs-not-a-number": (
        lambda tmp, s: ["compare", "--study", s, "--epochs", "ten"],
        "'ten' is not an integer",
    ),
    "batch-size-0": (lambda tmp, s: ["compare", "--study", s, "--batch-size", "0"], "--batch-size"),
    "seeds-0": (lambda tmp, s: ["compare", "--study", s, "--seeds", "0"], "--seeds"),
    "learning-rate-0": (
        lambda tmp, s: ["compare", "--study", s, "--learning-rate", "0"],
        "--learning-rate",
    ),
    "train-negative-seed": (
        lambda tmp, s: ["train", "vanilla-shallow", "--study", s, "--seed", "-2"],
        "--seed",
    ),
    "unknown-option": (lambda tmp, s: ["compare", "--study", s, "--epoch", "1"], "--epoch"),
    "missing-data-dir": (
        lambda tmp, s: ["compare", "--study", s, "--data-dir", str(tmp / "nope")],
        "does not exist",
    ),
    "data-dir-without-the-task": (
        lambda tmp, s: ["compare", "--study", s, "--data-dir", str(tmp)],
        "no data for task 'fashion_mnist'",
    ),
    "validation-too-large": (
        lambda tmp, s: ["compare", "--study", s, "--validation-size", "999999"],
        "validation size 999999",
    ),
    "data-truncated-idx": _data_case("truncated", "truncated or corrupt"),
    "data-bad-magic": _data_case("bad-magic", "bad magic number 0x00000999 for an image file"),
    "data-wrong-image-size": _data_case("wrong-image-size", "images are 32x32, expected 28x28"),
    "data-labels-out-of-range": _data_case("labels-out-of-range", "label 12 out of range 0-9"),
    "data-fewer-labels-than-images": _data_case(
        "fewer-labels-than-images", "600 train images but 590 labels"
    ),
    "data-missing-file": _data_case("missing-file", "no data for task 'fashion_mnist'"),
    "storage-without-tuned": (
        lambda tmp, s: ["compare", "--study", s, "--storage", f"journal:///{tmp}/o.journal"],
        "--storage and --study-name only apply with --tuned",
    ),
    "malformed-study-yaml": (
        lambda tmp, s: ["compare", "--study", _study_file(tmp, "name: [oops\n")],
        "bad-study.yaml",
    ),
    "study-unknown-key": (
        lambda tmp, s: ["compare", "--study", _study_file(tmp, GOOD + "epochz: 3\n")],
        "epochz",
    ),
    "study-wrong-type": (
        lambda tmp, s: [
            "compare",
            "--study",
            _study_file(tmp, GOOD.replace("epochs: 1", 'epochs: "ten"')),
        ],
        "protocol.epochs",
    ),
    "study-learning-rate-0": (
        lambda tmp, s: [
            "compare",
            "--study",
            _study_file(tmp, GOOD.replace("epochs: 1", "epochs: 1\n  learning_rate: 0")),
        ],
        "protocol.learning_rate: Input should be greater than 0",
    ),
    "unreachable-database-store": (
        lambda tmp, s: [
            "compare",
            "--study",
            s,
            "--tracking-uri",
            "postgresql://u:secret@127.0.0.1:1/db",
        ],
        "tracking store postgresql://u:***@127.0.0.1:1/db is unreachable",
    ),
    "study-file-missing": (
        lambda tmp, s: ["compare", "--study", str(tmp / "missing.yaml")],
        "missing.yaml does not exist",
    ),
    "study-name-unknown": (
        lambda tmp, s: ["compare", "--study", "no-such-study"],
        "no study named 'no-such-study'",
    ),
    "malformed-tracking-uri": (
        lambda tmp, s: ["compare", "--study", s, "--tracking-uri", "foo://bar"],
        "malformed tracking URI 'foo://bar'",
    ),
    "unwritable-tracking-uri": (
        lambda tmp, s: [
            "compare",
            "--study",
            s,
            "--tracking-uri",
            f"sqlite:///{_regular_file(tmp)}/mlflow.db",
        ],
        "is a file, not a folder",
    ),
    "not-an-sqlite-store": (
        lambda tmp, s: ["compare", "--study", s, "--tracking-uri", f"sqlite:///{_not_sqlite(tmp)}"],
        "is not an SQLite database",
    ),
    "unreachable-tracking-server": (
        lambda tmp, s: [
            "compare",
            "--study",
            s,
            "--tracking-uri",
            f"http://127.0.0.1:{_free_port()}",
        ],
        "is unreachable",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line_and_no_runs(case, tmp_path, write_study, tracking_uri):
    make_args, expected = BAD_INPUT[case]
    study = write_study("toy-bad-input", variants=["vanilla-shallow"])
    result = invoke(*make_args(tmp_path, str(study)))

    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert expected in lines[0], lines[0]
    assert lines[0] in result.stderr  # errors go to stderr
    assert store_is_empty(tracking_uri)
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlartifacts").exists()


def test_limit_alone_scales_the_validation_split_and_says_so(client):
    """A quick run needs only ``--limit``: the study's 10,000 validation images do not fit in
    600, so a sixth of the limit is held out, printed and recorded (issue 26, quick runs)."""
    result = invoke(
        "compare", "--variants", "vanilla-shallow", "--limit", "600", "--epochs", "1", "--no-model"
    )
    assert result.exit_code == 0, result.output
    assert "[train 500, validation 100, test 300]" in result.output
    [run] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`bench.kind` = 'train'"
    )
    assert run.data.params["split.validation"] == "100" and run.data.params["split.train"] == "500"


def test_mlflow_experiment_name_is_honoured_and_the_option_wins(client, monkeypatch):
    """Precedence: --experiment, then $MLFLOW_EXPERIMENT_NAME, then the study's name."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-the-variable")
    args = [
        "compare",
        "--variants",
        "vanilla-shallow",
        "--limit",
        "600",
        "--epochs",
        "1",
        "--no-model",
    ]
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--experiment", "from-the-option").exit_code == 0
    names = {e.name for e in client.search_experiments()}
    assert {"from-the-variable", "from-the-option"} <= names
    for name in ("from-the-variable", "from-the-option"):
        exp = client.get_experiment_by_name(name)
        assert client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'train'")
