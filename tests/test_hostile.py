"""Hostile input, second pass: every refusal is one ``error:`` line and nothing written.

Each case runs against a copy of a real workspace (an MLflow store holding a comparison, an
Optuna journal holding a tuned study named ``base``) and asserts, besides the error line:
no traceback, a non-zero exit, no password in anything printed, and every file of the
workspace, the MLflow store and the Optuna journal included, byte-for-byte unchanged, with
no file added or removed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mlflow.tracking import MlflowClient

from bench.cli import cli
from bench.data import FILES
from tests.services import free_port
from tests.support import make_task_arrays, study_yaml, write_task

SECRET = "pw123secret"
STUDY = "toy-hostile"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


# --------------------------------------------------------------------------- the workspace


@dataclass
class Seeded:
    """What the module's seeded workspace holds."""

    folder: Path
    parent_run_id: str
    child_run_id: str


@pytest.fixture(scope="module")
def seeded(module_store) -> Seeded:
    """A comparison (vanilla-shallow, one epoch) in an MLflow store and a two-trial Optuna
    study ``base`` of vanilla-shallow in the journal beside it."""
    folder = module_store.workdir
    study = folder / f"{STUDY}.yaml"
    study.write_text(study_yaml(STUDY, variants=["vanilla-shallow", "dropout-shallow"]))
    uri = module_store.uri
    for args in (
        [
            "compare",
            "--study",
            str(study),
            "--variants",
            "vanilla-shallow",
            "--tracking-uri",
            uri,
            "--no-model",
        ],
        [
            "tune",
            "--study",
            str(study),
            "--variants",
            "vanilla-shallow",
            "--trials",
            "2",
            "--epochs",
            "1",
            "--study-name",
            "base",
            "--tracking-uri",
            uri,
        ],
    ):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(STUDY)
    [parent] = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'comparison'")
    [child] = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'train'")
    assert (folder / "optuna.journal").exists()
    return Seeded(folder, parent.info.run_id, child.info.run_id)


@dataclass
class Workspace:
    """One case's copy of the seeded workspace (the test's cwd; the default store is in it)."""

    root: Path
    study: str
    seeded: Seeded

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"

    def path(self, name: str) -> Path:
        """Where a case's input file goes (its folder made)."""
        path = self.root / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def file(self, name: str, content: bytes | str = b"") -> Path:
        path = self.path(name)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def study_file(self, text: str, name: str = "hostile.yaml") -> str:
        return str(self.file(name, text))


@pytest.fixture
def workspace(seeded: Seeded, tmp_path: Path) -> Workspace:
    for name in ("mlflow.db", "optuna.journal"):
        shutil.copy2(seeded.folder / name, tmp_path / name)
    shutil.copy2(seeded.folder / f"{STUDY}.yaml", tmp_path / f"{STUDY}.yaml")
    return Workspace(tmp_path, str(tmp_path / f"{STUDY}.yaml"), seeded)


def _snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------- inputs


def _optuna_sqlite(w: Workspace) -> Path:
    import optuna

    path = w.path("optuna.db")
    optuna.create_study(study_name="someone-elses", storage=f"sqlite:///{path}")
    return path


def _foreign_sqlite(w: Workspace) -> Path:
    path = w.path("notes.db")
    with sqlite3.connect(path) as con:
        con.execute("create table notes (id integer primary key, text varchar)")
        con.execute("insert into notes (text) values ('my notes')")
    return path


def _old_mlflow(w: Workspace) -> Path:
    path = w.path("old-mlflow.db")
    shutil.copy2(w.root / "mlflow.db", path)
    with sqlite3.connect(path) as con:
        con.execute(
            "update alembic_version set version_num = '0584bdc529eb'"
        )  # an MLflow 2.x revision
    return path


def _corrupt_mlflow(w: Workspace) -> Path:
    """A copy of the store with one of its pages overwritten (what a disk error leaves)."""
    path = w.path("corrupt-mlflow.db")
    data = bytearray((w.root / "mlflow.db").read_bytes())
    with sqlite3.connect(w.root / "mlflow.db") as con:
        page = con.execute("pragma page_size").fetchone()[0]
        root = con.execute("select rootpage from sqlite_master where name = 'runs'").fetchone()[0]
    start = (root - 1) * page
    data[start : start + page] = bytes([0xA5]) * page
    path.write_bytes(bytes(data))
    return path


def _flipped_gz(w: Workspace) -> str:
    """Fashion-MNIST files whose training images' deflate stream has flipped bits."""
    folder = w.root / "inputs" / "gz-data" / "fashion-mnist"
    write_task(folder, make_task_arrays("fashion_mnist", seed=3, n_train=600, n_test=100), gz=True)
    images = folder / f"{FILES['x_train']}.gz"
    data = bytearray(images.read_bytes())
    for i in range(40, len(data) - 20, 97):
        data[i] ^= 0xFF
    images.write_bytes(bytes(data))
    gzip_ok = True
    try:
        gzip.decompress(bytes(data))
    except Exception:  # noqa: BLE001 - the point: it does not decompress
        gzip_ok = False
    assert not gzip_ok
    return str(folder.parent)


def _journal(w: Workspace, damage: str) -> None:
    journal = w.root / "optuna.journal"
    data = journal.read_bytes()
    if damage == "garbage":
        journal.write_bytes(data + b"garbage{\n")
    else:  # the last record cut off mid-write
        journal.write_bytes(
            data[: data.rstrip(b"\n").rfind(b"\n") + 1]
            + data.rstrip(b"\n").rsplit(b"\n", 1)[-1][:25]
        )


def _nested(depth: int) -> str:
    return (
        study_yaml("nested", variants=["vanilla-shallow"])
        + "notes: "
        + "[" * depth
        + "]" * depth
        + "\n"
    )


def _fresh_store_with_a_blocked_artifact_folder(w: Workspace) -> str:
    folder = w.root / "inputs" / "fresh"
    folder.mkdir(parents=True)
    (folder / "mlartifacts").write_text("a file where the artifact folder would go")
    return f"sqlite:///{folder}/mlflow.db"


def _fifo(path: Path) -> Path:
    """A named pipe where a file should be: opening it would block until a writer came."""
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def _dev_null(w: Workspace, name: str) -> Path:
    """``name`` a symbolic link to /dev/null (every write swallowed, every read empty)."""
    path = w.root / name
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(os.devnull)
    return path


def _artifacts_under_a_file(w: Workspace, experiment: str) -> None:
    """``experiment``'s recorded artifact location lies below a file (a moved or damaged store)."""
    blocker = w.file("blocker", "a file where a folder should be")
    with contextlib.closing(sqlite3.connect(w.root / "mlflow.db")) as con, con:
        changed = con.execute(
            "update experiments set artifact_location = ? where name = ?",
            ((blocker / "artifacts").as_uri(), experiment),
        ).rowcount
    assert changed == 1


def _tune(w: Workspace, *extra: str) -> list[str]:
    return [
        "tune",
        "--study",
        w.study,
        "--variants",
        "vanilla-shallow",
        "--trials",
        "3",
        "--epochs",
        "1",
        *extra,
    ]


def _compare(w: Workspace, *extra: str) -> list[str]:
    return ["compare", "--study", w.study, "--variants", "vanilla-shallow", "--epochs", "1", *extra]


def _report(w: Workspace, *extra: str) -> list[str]:
    return ["report", "--out", str(w.root / "inputs" / "reports"), *extra]


# id -> (arguments built from the workspace, text the one error line must contain)
CASES: dict[str, tuple[Callable[[Workspace], list[str]], str]] = {
    # 1. passwords in error texts; bench report checks its store first
    "report-server-with-password-unreachable": (
        lambda w: _report(
            w,
            "--experiment",
            STUDY,
            "--tracking-uri",
            f"http://user:{SECRET}@127.0.0.1:{free_port()}",
        ),
        "is unreachable",
    ),
    "report-database-with-password-unreachable": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"postgresql://u:{SECRET}@127.0.0.1:1/db"
        ),
        "is unreachable",
    ),
    "report-malformed-uri": (
        lambda w: _report(w, "--experiment", STUDY, "--tracking-uri", "foo://bar"),
        "malformed tracking URI",
    ),
    "report-missing-store": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{w.root}/inputs-none.db"
        ),
        "no MLflow store",
    ),
    "password-as-query-parameter": (
        lambda w: _compare(
            w, "--tracking-uri", f"postgresql://127.0.0.1:1/db?user=u&password={SECRET}"
        ),
        "is unreachable",
    ),
    "tune-storage-with-password-unreachable": (
        lambda w: _tune(w, "--storage", f"postgresql://u:{SECRET}@127.0.0.1:1/optuna"),
        "unreachable",
    ),
    "malformed-port-with-password": (
        lambda w: _compare(w, "--tracking-uri", f"postgresql://u:{SECRET}@127.0.0.1:abc/db"),
        "malformed tracking URI",
    ),
    "malformed-ipv6-with-password": (
        lambda w: _compare(w, "--tracking-uri", f"http://u:{SECRET}@[::1:5000/"),
        "malformed tracking URI",
    ),
    # 3. a study name reused for another variant or task
    "tune-study-of-another-variant": (
        lambda w: [
            "tune",
            "--study",
            w.study,
            "--variants",
            "dropout-shallow",
            "--study-name",
            "base",
            "--trials",
            "3",
            "--epochs",
            "1",
        ],
        "tunes variant 'vanilla-shallow', not 'dropout-shallow'",
    ),
    "tune-study-of-another-task": (
        lambda w: _tune(w, "--study-name", "base", "--task", "mnist"),
        "tunes task 'fashion_mnist', not 'mnist'",
    ),
    "compare-tuned-from-a-study-of-another-variant": (
        lambda w: [
            "compare",
            "--study",
            w.study,
            "--variants",
            "dropout-shallow",
            "--tuned",
            "--study-name",
            "base",
        ],
        "tunes variant 'vanilla-shallow'",
    ),
    # 4. stores that are not what they seem
    "optuna-database-as-tracking-store": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_optuna_sqlite(w)}"),
        "it is an Optuna storage",
    ),
    "foreign-database-as-tracking-store": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_foreign_sqlite(w)}"),
        "another application's database",
    ),
    "foreign-database-as-tracking-store-for-tune": (
        lambda w: _tune(w, "--tracking-uri", f"sqlite:///{_foreign_sqlite(w)}"),
        "is not an MLflow store",
    ),
    "older-mlflow-schema": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_old_mlflow(w)}"),
        "mlflow db upgrade",
    ),
    "report-on-older-mlflow-schema": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{_old_mlflow(w)}"
        ),
        "another MLflow version",
    ),
    "corrupt-runs-page": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_corrupt_mlflow(w)}"),
        "damaged",
    ),
    "report-on-corrupt-store": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{_corrupt_mlflow(w)}"
        ),
        "damaged",
    ),
    "file-store": (
        lambda w: _compare(w, "--tracking-uri", f"file://{w.root}/inputs-runs"),
        "no longer writes file stores",
    ),
    "in-memory-store": (
        lambda w: _compare(w, "--tracking-uri", "sqlite:///:memory:"),
        "in-memory store",
    ),
    "tracking-store-is-a-folder": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{w.file('x/keep').parent}"),
        "is a folder",
    ),
    "tune-storage-is-the-mlflow-store": (
        lambda w: _tune(w, "--storage", f"sqlite:///{w.root}/mlflow.db"),
        "is the MLflow store",
    ),
    "tune-storage-is-a-foreign-database": (
        lambda w: _tune(w, "--storage", f"sqlite:///{_foreign_sqlite(w)}"),
        "another application's database",
    ),
    "tune-storage-in-memory": (
        lambda w: _tune(w, "--storage", "sqlite:///:memory:"),
        "name a database file",
    ),
    "report-on-an-empty-file": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{w.file('empty.db')}"
        ),
        "holds no MLflow runs",
    ),
    "report-on-an-optuna-database": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{_optuna_sqlite(w)}"
        ),
        "Optuna storage",
    ),
    # 5. damaged inputs
    "gz-with-flipped-bits": (
        lambda w: _compare(w, "--data-dir", _flipped_gz(w)),
        "truncated or corrupt",
    ),
    "journal-with-a-garbage-last-line": (
        lambda w: (_journal(w, "garbage"), _tune(w, "--study-name", "base"))[1],
        "is damaged at line",
    ),
    "journal-cut-off-mid-record": (
        lambda w: (_journal(w, "cut"), _tune(w, "--study-name", "base"))[1],
        "is damaged at line",
    ),
    "compare-tuned-with-a-damaged-journal": (
        lambda w: (
            _journal(w, "garbage"),
            [
                "compare",
                "--study",
                w.study,
                "--variants",
                "vanilla-shallow",
                "--tuned",
                "--study-name",
                "base",
            ],
        )[1],
        "is damaged at line",
    ),
    "study-nested-300-deep": (
        lambda w: ["compare", "--study", w.study_file(_nested(300))],
        "nested more than",
    ),
    "study-block-nested-300-deep": (
        lambda w: [
            "compare",
            "--study",
            w.study_file("".join(" " * i + f"k{i}:\n" for i in range(300))),
        ],
        "nested more than",
    ),
    "study-duplicate-key": (
        lambda w: [
            "compare",
            "--study",
            w.study_file(study_yaml("dup", variants=["vanilla-shallow"]) + "name: dup2\n"),
        ],
        "duplicate key 'name'",
    ),
    "study-learning-rate-inf": (
        lambda w: [
            "compare",
            "--study",
            w.study_file(
                study_yaml("inf", variants=["vanilla-shallow"]).replace(
                    "epochs: 1", "epochs: 1\n  learning_rate: .inf"
                )
            ),
        ],
        "protocol.learning_rate",
    ),
    "study-search-space-to-inf": (
        lambda w: [
            "tune",
            "--study",
            w.study_file(
                study_yaml("space", variants=["vanilla-shallow"])
                + "search_space:\n  learning_rate: {low: 1.0e-5, high: .inf, log: true}\n"
            ),
        ],
        "search_space.learning_rate.high",
    ),
    "seed-beyond-32-bits": (
        lambda w: ["train", "vanilla-shallow", "--study", w.study, "--seed", "4294967296"],
        "--seed",
    ),
    "tune-seed-at-the-32-bit-limit": (lambda w: _tune(w, "--seed", "4294967295"), "--seed"),
    "batch-size-2-to-the-63": (lambda w: _compare(w, "--batch-size", str(2**63)), "--batch-size"),
    "learning-rate-inf": (lambda w: _compare(w, "--learning-rate", "inf"), "not a finite number"),
    "learning-rate-1e400": (
        lambda w: _compare(w, "--learning-rate", "1e400"),
        "not a finite number",
    ),
    "learning-rate-nan": (lambda w: _compare(w, "--learning-rate", "nan"), "--learning-rate"),
    "epochs-ten-million": (lambda w: _compare(w, "--epochs", "10000000"), "--epochs"),
    "seeds-a-million": (lambda w: _compare(w, "--seeds", "1000000"), "--seeds"),
    "trials-beyond-a-million": (lambda w: _tune(w, "--trials", "99999999999"), "--trials"),
    "workers-a-hundred-thousand": (lambda w: _tune(w, "--workers", "100000"), "--workers"),
    "population-ten-thousand": (lambda w: _tune(w, "--population", "10000"), "--population"),
    "tune-timeout-inf": (lambda w: _tune(w, "--timeout", "inf"), "not a finite number"),
    # 6. refused input that used to write first
    "experiment-name-300-characters": (
        lambda w: _compare(w, "--experiment", "x" * 300),
        "at most 200",
    ),
    "tune-experiment-name-300-characters": (
        lambda w: _tune(w, "--experiment", "x" * 300),
        "at most 200",
    ),
    "experiment-name-with-a-newline": (
        lambda w: _compare(w, "--experiment", "a\nb"),
        "control characters",
    ),
    "study-name-300-characters": (lambda w: _tune(w, "--study-name", "s" * 300), "at most 200"),
    "fresh-store-with-a-blocked-artifact-folder": (
        lambda w: _compare(w, "--tracking-uri", _fresh_store_with_a_blocked_artifact_folder(w)),
        "is a file, not a folder",
    ),
    # 8. third pass (issue 27). A: a query string is not part of the path; SQLAlchemy's parser
    # decides what file a sqlite:/// URI opens, and every store check runs on that file.
    "query-string-on-a-foreign-database": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_foreign_sqlite(w)}?timeout=5"),
        "another application's database",
    ),
    "query-argument-sqlite-ignores": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_foreign_sqlite(w)}?cache=shared"),
        "'cache' are not accepted",
    ),
    "mode-ro-without-uri-true": (
        lambda w: _compare(w, "--tracking-uri", f"{w.uri}?mode=ro"),
        "'mode' are not accepted",
    ),
    "read-only-store": (
        lambda w: _compare(
            w, "--tracking-uri", f"sqlite:///file:{w.root}/mlflow.db?mode=ro&uri=true"
        ),
        "read-only",
    ),
    "in-memory-through-uri-mode": (
        lambda w: _compare(w, "--tracking-uri", "sqlite:///file:mem.db?mode=memory&uri=true"),
        "in-memory store",
    ),
    "tune-storage-is-the-mlflow-store-with-a-query": (
        lambda w: _tune(w, "--storage", f"{w.uri}?timeout=5"),
        "is the MLflow store",
    ),
    "tune-storage-with-an-ignored-query-argument": (
        lambda w: _tune(w, "--storage", f"{w.uri}?x=1"),
        "'x' are not accepted",
    ),
    "report-on-an-optuna-database-with-a-query": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{_optuna_sqlite(w)}?timeout=5"
        ),
        "Optuna storage",
    ),
    # B: ~ in a SQLite URI is a folder named ~, as MLflow opens it.
    "tilde-in-a-sqlite-uri": (
        lambda w: _compare(w, "--tracking-uri", "sqlite:///~/hostile-mlflow.db"),
        "SQLite takes ~ literally",
    ),
    "tune-tilde-in-a-sqlite-storage": (
        lambda w: _tune(w, "--storage", "sqlite:///~/hostile-optuna.db"),
        f"{os.sep}~ does not exist",
    ),
    # P: a named pipe where a store or journal should be (open() would block, signals unheard).
    "tracking-store-is-a-fifo": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_fifo(w.path('fifo.db'))}"),
        "is a named pipe (FIFO)",
    ),
    "rollback-journal-is-a-fifo": (
        lambda w: (_fifo(w.root / "mlflow.db-journal"), _compare(w, "--tracking-uri", w.uri))[1],
        "is a named pipe (FIFO)",
    ),
    "tune-journal-is-a-fifo": (
        lambda w: (_fifo(w.root / "optuna.journal"), _tune(w))[1],
        "is a named pipe (FIFO)",
    ),
    "tune-sqlite-storage-is-a-fifo": (
        lambda w: _tune(w, "--storage", f"sqlite:///{_fifo(w.path('optuna.db'))}"),
        "is a named pipe (FIFO)",
    ),
    "report-on-a-fifo": (
        lambda w: _report(
            w, "--experiment", STUDY, "--tracking-uri", f"sqlite:///{_fifo(w.path('fifo.db'))}"
        ),
        "is a named pipe (FIFO)",
    ),
    # Q: a journal that is a link to /dev/null, refused before the MLflow store is touched.
    "tune-journal-links-to-dev-null": (
        lambda w: (_dev_null(w, "optuna.journal"), _tune(w))[1],
        "is a character device",
    ),
    "compare-tuned-journal-links-to-dev-null": (
        lambda w: (
            _dev_null(w, "optuna.journal"),
            [
                "compare",
                "--study",
                w.study,
                "--variants",
                "vanilla-shallow",
                "--tuned",
                "--study-name",
                "base",
            ],
        )[1],
        "is a character device",
    ),
    "tracking-store-links-to-dev-null": (
        lambda w: _compare(w, "--tracking-uri", f"sqlite:///{_dev_null(w, 'null.db')}"),
        "is a character device",
    ),
    # F: an existing experiment's artifact location, checked before anything is written.
    "existing-experiment-artifacts-below-a-file": (
        lambda w: (_artifacts_under_a_file(w, STUDY), _compare(w))[1],
        "is a file, not a folder",
    ),
    "existing-tuning-experiment-artifacts-below-a-file": (
        lambda w: (_artifacts_under_a_file(w, f"{STUDY}-tuning"), _tune(w))[1],
        "is a file, not a folder",
    ),
    # M: a tuning study resumed only under the settings its trials were trained with.
    "tune-resume-with-other-epochs": (
        lambda w: [
            "tune",
            "--study",
            w.study,
            "--variants",
            "vanilla-shallow",
            "--trials",
            "3",
            "--epochs",
            "2",
            "--study-name",
            "base",
        ],
        "epochs 1 -> 2",
    ),
    "tune-resume-with-a-data-limit": (
        lambda w: _tune(w, "--study-name", "base", "--limit", "1200"),
        "limit none -> 1200",
    ),
    "tune-resume-with-another-validation-size": (
        lambda w: _tune(w, "--study-name", "base", "--validation-size", "500"),
        "validation_size",
    ),
    "tune-resume-with-another-pruner": (
        lambda w: _tune(w, "--study-name", "base", "--pruner", "none"),
        "pruner successive-halving -> none",
    ),
    "tune-resume-with-another-search-space": (
        lambda w: [
            "tune",
            "--study",
            w.study_file(
                study_yaml(STUDY, variants=["vanilla-shallow"])
                + "search_space:\n  learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}\n"
            ),
            "--variants",
            "vanilla-shallow",
            "--trials",
            "3",
            "--epochs",
            "1",
            "--study-name",
            "base",
        ],
        "search_space differs",
    ),
    # N: --limit too small for the split names --limit, not the validation size alone.
    "limit-one": (lambda w: _compare(w, "--limit", "1"), "--limit 1 keeps 1 training image(s)"),
    "limit-below-the-validation-size": (
        lambda w: _compare(w, "--limit", "50", "--validation-size", "60"),
        "lower --validation-size or raise --limit",
    ),
    # 7. reports that misstate
    "report-on-a-child-run": (
        lambda w: _report(w, "--run-id", w.seeded.child_run_id),
        "is a train run, not a comparison or tuning study; report on its parent",
    ),
    "report-out-below-a-file": (
        lambda w: [
            "report",
            "--experiment",
            STUDY,
            "--out",
            str(w.file("afile.txt", "x")) + "/reports",
        ],
        "is a file, not a folder",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_error_line_and_nothing_written(case, workspace, seeded):
    make_args, expected = CASES[case]
    args = make_args(workspace)
    before = _snapshot(workspace.root, seeded.folder)
    result = invoke(*args)

    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert expected in lines[0], lines[0]
    assert SECRET not in result.output
    assert (
        _snapshot(workspace.root, seeded.folder) == before
    )  # store, journal, every file: unchanged


def test_there_are_at_least_forty_new_cases():
    assert len(CASES) >= 40


# ------------------------------------------------------------------------ the roots of the classes


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"postgresql://u:{SECRET}@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
        (
            f"API request to http://user:{SECRET}@127.0.0.1:1/api/2.0/mlflow/runs/get failed",
            "API request to http://user:***@127.0.0.1:1/api/2.0/mlflow/runs/get failed",
        ),
        (
            f"postgresql://u:{SECRET}@127.0.0.1:abc/db",
            "postgresql://u:***@127.0.0.1:abc/db",
        ),  # unparsable port
        (
            f"mysql+pymysql://u:p@{SECRET}@h/db",
            "mysql+pymysql://u:***@h/db",
        ),  # an '@' inside the password
        (
            f"postgresql://h/db?user=u&password={SECRET}&sslmode=require",
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        (
            f"redis://:{SECRET}@127.0.0.1:6379/0 and http://a:{SECRET}@b",
            "redis://:***@127.0.0.1:6379/0 and http://a:***@b",
        ),
        ("sqlite:///home/me/mlflow.db", "sqlite:///home/me/mlflow.db"),
        ("http://user@host:5000/", "http://user@host:5000/"),
    ],
)
def test_redact_masks_passwords_anywhere_in_a_text(text, shown):
    from bench.store.uri import redact

    assert redact(text) == shown


def test_a_failed_run_is_reported_as_failed_and_never_as_the_best(workspace, seeded):
    client = MlflowClient(workspace.uri)
    client.set_terminated(seeded.child_run_id, "FAILED")  # its bench.status tag still says "ok"
    out = workspace.root / "reports"
    result = invoke("report", "--run-id", seeded.parent_run_id, "--out", str(out))
    assert result.exit_code == 0, result.output
    [markdown] = out.rglob("report.md")
    text = markdown.read_text()
    cells = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("| vanilla-shallow")
    ]
    summary, every_run = cells[0], cells[-1]
    assert summary[1] == "0/1"  # no finished seed
    assert "best" not in " ".join(summary)  # neither ranked nor "best"
    assert (
        "failed" in every_run and "ok" not in every_run
    )  # MLflow's status, not the stale bench.status tag
    assert "Ranking (default)" not in text  # nothing finished: nothing to rank


def test_the_claim_lock_of_an_sqlite_storage_lies_beside_it(tmp_path):
    from bench.tuning.storage import connect

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    opened = connect(f"sqlite:///{folder}/optuna.db")
    lock = opened.claim_lock("a/../study")
    assert lock.path.parent == folder.resolve()
    assert lock.path.name.endswith(".claim.lock") and "/" not in lock.path.name
