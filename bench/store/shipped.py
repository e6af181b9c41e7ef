"""A store that travels: the SQLite MLflow store and Optuna journal shipped in results/.

An SQLite MLflow store records where its artifacts are as absolute ``file://`` paths (the
experiments' artifact locations, every run's artifact URI, logged models and registry
versions), so a store copied to another machine or another clone finds its tables but not
its figures. :func:`open_copy` copies the database (and the journal) into a scratch folder
and points every artifact path of the copy at the shipped ``mlartifacts/`` folder wherever
it now is; the shipped files are read, never written. ``mlflow ui`` and ``bench report``
then browse the copy:

    python -m bench.store.shipped results/runs          # prints the URI and the `mlflow ui` line

Written against SQLite directly because MLflow has no API to move an experiment's artifact
root (mlflow-export-import re-creates runs with new ids, which would break every run id
that results/ cites).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

DATABASE = "mlflow.db"
JOURNAL = "optuna.journal"
ARTIFACTS = "mlartifacts"

#: (table, column) pairs that hold artifact paths in MLflow 3's schema.
_PATH_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def recorded_root(db: Path) -> str | None:
    """The folder the store's ``mlartifacts/`` was in when its runs were recorded."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        for (location,) in con.execute("SELECT artifact_location FROM experiments"):
            found = re.match(rf"^(?:file://)?(/.*)/{ARTIFACTS}/", location or "")
            if found:
                return found.group(1)
    return None


def relocate(db: Path, root: Path) -> int:
    """Point every artifact path of ``db`` that lies under its recorded root at ``root``;
    returns the number of values changed."""
    old = recorded_root(db)
    if old is None:
        return 0
    new = str(root.resolve())
    changed = 0
    with sqlite3.connect(db) as con:
        tables = {
            name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table, column in _PATH_COLUMNS:
            if table not in tables:
                continue
            for prefix in (f"file://{old}/{ARTIFACTS}/", f"{old}/{ARTIFACTS}/"):
                target = prefix.replace(old, new, 1)
                cur = con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE "
                    f"substr({column}, 1, ?) = ?",
                    (target, len(prefix) + 1, len(prefix), prefix),
                )
                changed += cur.rowcount
    return changed


def open_copy(shipped: Path, scratch: Path | None = None) -> str:
    """A working copy of the shipped store in ``scratch`` (a new temporary folder when
    None), its artifact paths pointing at ``shipped/mlartifacts``; returns its tracking URI.
    The journal is copied beside it (Optuna writes a lock next to a journal it opens)."""
    shipped = Path(shipped)
    db = shipped / DATABASE
    if not db.is_file():
        raise FileNotFoundError(f"no {DATABASE} in {shipped}")
    scratch = (
        Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="bench-shipped-"))
    )
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, scratch / DATABASE)
    if (shipped / JOURNAL).is_file():
        shutil.copyfile(shipped / JOURNAL, scratch / JOURNAL)
    relocate(scratch / DATABASE, shipped)
    return f"sqlite:///{(scratch / DATABASE).resolve()}"


def snapshot(live: Path, shipped: Path) -> None:
    """A consistent copy of a store that runs may be writing to: the database through
    SQLite's online backup (without the system metrics), the journal up to its last
    complete record, the artifacts added since the last snapshot (files are written once
    and never changed)."""
    live, shipped = Path(live), Path(shipped)
    shipped.mkdir(parents=True, exist_ok=True)
    with (
        sqlite3.connect(f"file:{live / DATABASE}?mode=ro", uri=True) as src,
        sqlite3.connect(shipped / (DATABASE + ".tmp")) as dst,
    ):
        src.backup(dst)
        # System metrics (CPU, memory, disk every few seconds) are half the rows and no
        # result rests on them: the shipped store leaves them out.
        for table in ("metrics", "latest_metrics"):
            dst.execute(f"DELETE FROM {table} WHERE key LIKE 'system/%'")
    with sqlite3.connect(shipped / (DATABASE + ".tmp")) as dst:
        dst.execute("VACUUM")
    (shipped / (DATABASE + ".tmp")).replace(shipped / DATABASE)
    if (live / JOURNAL).is_file():
        data = (live / JOURNAL).read_bytes()
        (shipped / JOURNAL).write_bytes(data[: data.rfind(b"\n") + 1])
    if (live / ARTIFACTS).is_dir():
        # A parent run's logged report/ is derived (bench report rebuilds it from the store) and
        # embeds every figure again: not shipped.
        shutil.copytree(
            live / ARTIFACTS,
            shipped / ARTIFACTS,
            dirs_exist_ok=True,
            ignore=lambda folder, names: ["report"] if Path(folder).name == "artifacts" else [],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Open a shipped store (results/runs) where it now is."
    )
    parser.add_argument(
        "shipped", type=Path, help="folder with mlflow.db, optuna.journal and mlartifacts/"
    )
    parser.add_argument(
        "--to", type=Path, default=None, help="where the working copy goes [default: a temp folder]"
    )
    parser.add_argument(
        "--snapshot-of",
        type=Path,
        default=None,
        metavar="LIVE",
        help="first make SHIPPED a consistent snapshot of the store in LIVE (runs may be writing)",
    )
    args = parser.parse_args(argv)
    try:
        if args.snapshot_of is not None:
            snapshot(args.snapshot_of, args.shipped)
        uri = open_copy(args.shipped, args.to)
    except (OSError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"tracking URI: {uri}")
    print(f"browse:       mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
    print(f"report:       MLFLOW_TRACKING_URI={uri} bench report --run-id <id>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
