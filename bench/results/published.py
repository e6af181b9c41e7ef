"""results/: the published reports, rebuilt from the runs shipped beside them.

``results/manifest.yaml`` names the shipped store (a folder under results/ holding
``mlflow.db``, ``optuna.journal`` and ``mlartifacts/``) and, for every published report,
the folder it lives in and the parent run it is built from::

    store: runs
    reports:
      - {folder: core-fashion-mnist, run: 0123abcd...}

:func:`rebuild` opens a working copy of the store (:mod:`bench.store.shipped`) and writes
every report exactly as ``bench report --run-id <run> --format markdown --flat`` would, so
the committed reports can be checked against the runs (tests/test_published.py) and
regenerated after a change to the statistics (``bench report --published results``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.errors import BenchError
from bench.results.report import build
from bench.store.reader import StoreReader
from bench.store.shipped import open_copy

MANIFEST = "manifest.yaml"


@dataclass(frozen=True)
class Entry:
    folder: str  # under results/
    run_id: str  # the parent run (comparison or tuning study) the report is built from


@dataclass(frozen=True)
class Manifest:
    root: Path  # results/
    store: Path  # the shipped store's folder
    entries: tuple[Entry, ...]


def load_manifest(results: Path) -> Manifest:
    path = Path(results) / MANIFEST
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("store"), str) or not isinstance(doc.get("reports"), list):
        raise BenchError(f"{path}: expected 'store: <folder>' and 'reports: [{{folder, run}}, ...]'")
    entries = []
    for item in doc["reports"]:
        if not (isinstance(item, dict) and isinstance(item.get("folder"), str) and isinstance(item.get("run"), str)):
            raise BenchError(f"{path}: every report needs a folder and a run, got {item!r}")
        if Path(item["folder"]).is_absolute() or ".." in Path(item["folder"]).parts:
            raise BenchError(f"{path}: report folder {item['folder']!r} must lie inside {results}")
        entries.append(Entry(item["folder"], item["run"]))
    return Manifest(Path(results), Path(results) / doc["store"], tuple(entries))


def write_reports(
    tracking_uri: str | None, experiment: str | None, run_ids: Sequence[str], out: str | Path,
    kinds: tuple[str, ...], *, flat: bool = False, margin: float | None = None,
) -> Iterator[str]:
    """``bench report``: each parent run's report into ``out`` (a subfolder per run unless
    ``flat``); yields one line per report written."""
    from bench.store.uri import check_writable_folder, sanitize_name

    out = Path(out)
    check_writable_folder(out, "--out folder")  # before the store is read: nothing half-written
    reader = StoreReader(tracking_uri)
    for run_id in reader.parents(experiment, run_ids):
        stored = reader.load(run_id)
        # Names come from the store (anyone who can log there): one safe folder name, inside --out.
        name = sanitize_name(f"{stored.experiment_name}-{stored.parent.name}-{run_id[:8]}")
        paths = build(stored, margin).write(out if flat else out / name, kinds)
        yield f"{stored.parent.name} ({run_id}): " + "  ".join(str(paths[k]) for k in kinds)


def rebuild(results: Path, out: Path | None = None, margin: float | None = None) -> list[Path]:
    """Every report of the manifest, from a working copy of the shipped store, written to
    ``out/<folder>`` (default: in place, under results/); returns the report.md paths."""
    manifest = load_manifest(results)
    out = Path(out) if out is not None else manifest.root
    written = []
    with tempfile.TemporaryDirectory(prefix="bench-published-") as scratch:
        reader = StoreReader(open_copy(manifest.store, Path(scratch)))
        for entry in manifest.entries:
            _clear(out / entry.folder)
            paths = build(reader.load(entry.run_id), margin).write(out / entry.folder, ("markdown",))
            written.append(paths["markdown"])
    return written


def _clear(folder: Path) -> None:
    """A report's own files (not the reports in its subfolders): no stale figure survives."""
    import shutil

    (folder / "report.md").unlink(missing_ok=True)
    shutil.rmtree(folder / "report_files", ignore_errors=True)
