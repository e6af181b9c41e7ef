"""Security: study files parsed safely, names that become paths kept inside their folder,
credentials kept out of what is recorded or printed. (The services the scale-out tests
start listen on 127.0.0.1 only: see test_distributed.)"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from bench.cli import cli
from bench.store.uri import sanitize_name
from bench.tuning import STORAGE_ENV
from tests.support import study_yaml


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_a_study_file_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    text = study_yaml("evil") + f'description: !!python/object/apply:os.system ["touch {marker}"]\n'
    path = tmp_path / "evil.yaml"
    path.write_text(text.replace("description: toy study evil for the tests\n", ""))
    result = CliRunner().invoke(cli, ["compare", "--study", str(path)])
    assert result.exit_code != 0
    [line] = _error_lines(result.output)
    assert "evil.yaml" in line
    assert not marker.exists()


def test_sanitize_name_never_leaves_the_folder():
    for name in ("../../etc/passwd", "..", "/abs/path", "a/../../b", "con\\..\\x", "...", "é t/é"):
        cleaned = sanitize_name(name)
        assert "/" not in cleaned and "\\" not in cleaned and ".." not in cleaned and cleaned
        assert (Path("/base") / cleaned).resolve().parent == Path("/base")


def test_hostile_experiment_name_stays_inside_the_store_and_the_report_folder(
    write_study, tracking_uri, tmp_path
):
    study = write_study("hostile", variants=["vanilla-shallow"])
    hostile = "../../escape/..//x"
    result = CliRunner().invoke(
        cli, ["compare", "--study", str(study), "--experiment", hostile, "--no-model"]
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(hostile)  # MLflow keeps the name as given ...
    artifacts = Path(url2pathname(urlsplit(exp.artifact_location).path)).resolve()
    assert artifacts.parent == (tmp_path / "mlartifacts").resolve()  # ... the folder is tamed
    assert not (tmp_path.parent / "escape").exists()

    out = tmp_path / "reports"
    result = CliRunner().invoke(cli, ["report", "--experiment", hostile, "--out", str(out)])
    assert result.exit_code == 0, result.output
    [folder] = out.iterdir()
    assert folder.is_dir() and (folder / "report.html").exists()
    assert ".." not in folder.name and "/" not in folder.name


def test_hostile_optuna_study_name_keeps_its_lock_file_beside_the_storage(
    tmp_path, write_study, monkeypatch
):
    study = write_study("lockname", variants=["vanilla-shallow"])
    journal = tmp_path / "store" / "optuna.journal"
    journal.parent.mkdir()
    monkeypatch.setenv(STORAGE_ENV, f"journal://{journal}")  # credentials belong in the environment
    result = CliRunner().invoke(
        cli,
        ["tune", "--study", str(study), "--trials", "1", "--study-name", "../../../lock-escape"],
    )
    assert result.exit_code == 0, result.output
    assert journal.exists()  # the storage came from the environment variable
    locks = list(journal.parent.glob(".*.lock"))
    assert [p.name for p in locks] == [".lock-escape.claim.lock"]
    assert not list(tmp_path.parent.glob("*lock-escape*"))
