"""results/: the reports and the README's Results block are what the shipped runs give.

The runs behind every published number ship in results/shipped (an MLflow store without
model weights or system metrics, its artifacts, the Optuna journal). These tests rebuild
every report listed in results/manifest.yaml from a relocated copy of that store and
compare it byte for byte with the committed one (figures aside), and check that a shipped
store opens wherever the repository now is.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.results import published
from bench.store import shipped
from bench.store.reader import StoreReader

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"


def test_every_published_report_and_the_readme_block_are_rebuilt_exactly_from_the_shipped_runs(
    tmp_path,
):
    manifest = published.load_manifest(RESULTS)
    assert manifest.entries, "results/manifest.yaml lists no report"
    assert (manifest.store / shipped.DATABASE).is_file()
    shipped_db = (manifest.store / shipped.DATABASE).read_bytes()
    published.rebuild(RESULTS, out=tmp_path)
    for entry in manifest.entries:
        committed = (RESULTS / entry.folder / "report.md").read_text(encoding="utf-8")
        rebuilt = (tmp_path / entry.folder / "report.md").read_text(encoding="utf-8")
        assert rebuilt == committed, (
            f"results/{entry.folder}/report.md is not what run {entry.run_id} gives"
        )
        assert sorted(
            p.name for p in (tmp_path / entry.folder / "report_files").iterdir()
        ) == sorted(p.name for p in (RESULTS / entry.folder / "report_files").iterdir())
    if manifest.headline is not None:
        assert published.readme_block(manifest.readme) == (
            tmp_path / "README-results.md"
        ).read_text(encoding="utf-8")
    assert (manifest.store / shipped.DATABASE).read_bytes() == shipped_db  # read, never written


def _toy_store(root: Path, write_study) -> tuple[str, str]:
    """A one-run comparison recorded in ``root/mlflow.db`` with its artifacts beside it."""
    study = write_study(variants=["vanilla-shallow"], epochs=1)
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--study",
            str(study),
            "--no-model",
            "--tracking-uri",
            f"sqlite:///{root / 'mlflow.db'}",
        ],
    )
    assert result.exit_code == 0, result.output
    parent = next(
        line.split()[-1] for line in result.output.splitlines() if line.startswith("parent run:")
    )
    return f"sqlite:///{root / 'mlflow.db'}", parent


def test_a_snapshot_opens_where_it_now_is_without_system_metrics_or_a_torn_journal_record(
    tmp_path, write_study
):
    live = tmp_path / "live"
    live.mkdir()
    uri, parent = _toy_store(live, write_study)
    (live / shipped.JOURNAL).write_bytes(
        b'{"op": 0}\n{"op": 1}\n{"op": 2, "unfin'
    )  # a record being written
    shipped.snapshot(live, tmp_path / "shipped")
    moved = tmp_path / "elsewhere" / "shipped"
    moved.parent.mkdir()
    shutil.move(tmp_path / "shipped", moved)
    shutil.rmtree(live)  # nothing of the original is left to find

    assert (moved / shipped.JOURNAL).read_bytes() == b'{"op": 0}\n{"op": 1}\n'
    with sqlite3.connect(moved / shipped.DATABASE) as con:
        assert con.execute("SELECT count(*) FROM metrics WHERE key LIKE 'system/%'").fetchone() == (
            0,
        )
        assert (
            con.execute("SELECT count(*) FROM metrics WHERE key = 'val_accuracy'").fetchone()[0]
            >= 1
        )
    before = (moved / shipped.DATABASE).read_bytes()
    copy_uri = shipped.open_copy(moved, tmp_path / "work")
    assert (moved / shipped.DATABASE).read_bytes() == before
    stored = StoreReader(copy_uri).load(parent)
    [run] = stored.children
    path = stored.artifacts(run.run_id, "figures/confusion_matrix.png", tmp_path / "dl")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert str(moved) in StoreReader(copy_uri).client.get_run(run.run_id).info.artifact_uri


def test_a_manifest_that_points_outside_results_is_refused(tmp_path):
    (tmp_path / "manifest.yaml").write_text(
        "store: shipped\nreports:\n  - {folder: ../x, run: abc}\n"
    )
    with pytest.raises(published.BenchError, match="inside"):
        published.load_manifest(tmp_path)
    (tmp_path / "manifest.yaml").write_text("store: shipped\nreports: nope\n")
    with pytest.raises(published.BenchError, match="expected"):
        published.load_manifest(tmp_path)
