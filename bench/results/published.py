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

import pandas as pd
import yaml

from bench import stats
from bench.errors import BenchError
from bench.results import table as tables
from bench.results import verdicts
from bench.results.artifacts import SeedStatistics
from bench.results.report import build
from bench.store import schema
from bench.store.reader import StoredComparison, StoreReader
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
    headline: str | None = None  # the comparison whose results the README's Results block shows
    readme: Path | None = None  # that README (``readme:`` relative to results/)


def load_manifest(results: Path) -> Manifest:
    path = Path(results) / MANIFEST
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("store"), str)
        or not isinstance(doc.get("reports"), list)
    ):
        raise BenchError(
            f"{path}: expected 'store: <folder>' and 'reports: [{{folder, run}}, ...]'"
        )
    entries = []
    for item in doc["reports"]:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("folder"), str)
            and isinstance(item.get("run"), str)
        ):
            raise BenchError(f"{path}: every report needs a folder and a run, got {item!r}")
        if Path(item["folder"]).is_absolute() or ".." in Path(item["folder"]).parts:
            raise BenchError(f"{path}: report folder {item['folder']!r} must lie inside {results}")
        entries.append(Entry(item["folder"], item["run"]))
    head = doc.get("headline")
    if head is not None and not (
        isinstance(head, dict)
        and isinstance(head.get("run"), str)
        and isinstance(head.get("readme"), str)
    ):
        raise BenchError(f"{path}: headline needs a run and a readme, got {head!r}")
    return Manifest(
        Path(results),
        Path(results) / doc["store"],
        tuple(entries),
        head["run"] if head else None,
        Path(results) / head["readme"] if head else None,
    )


def write_reports(
    tracking_uri: str | None,
    experiment: str | None,
    run_ids: Sequence[str],
    out: str | Path,
    kinds: tuple[str, ...],
    *,
    flat: bool = False,
    margin: float | None = None,
) -> Iterator[tuple[str, str, dict[str, Path]]]:
    """``bench report``: each parent run's report into ``out`` (a subfolder per run unless
    ``flat``); yields (the parent run's name, its id, the file of each kind) per report."""
    from bench.store.uri import check_writable_folder, sanitize_name

    out = Path(out)
    check_writable_folder(out, "--out folder")  # before the store is read: nothing half-written
    reader = StoreReader(tracking_uri)
    for run_id in reader.parents(experiment, run_ids):
        stored = reader.load(run_id)
        # Names come from the store (anyone who can log there): one safe folder name, inside --out.
        name = sanitize_name(f"{stored.experiment_name}-{stored.parent.name}-{run_id[:8]}")
        paths = build(stored, margin).write(out if flat else out / name, kinds)
        yield stored.parent.name, run_id, {k: paths[k] for k in kinds}


def rebuild(results: Path, out: Path | None = None, margin: float | None = None) -> list[Path]:
    """Every report of the manifest, from a working copy of the shipped store, written to
    ``out/<folder>`` (default: in place, under results/), and the README's Results block
    (in place only; ``out``: written to ``out/README-results.md``); returns what was written."""
    manifest = load_manifest(results)
    written = []
    with tempfile.TemporaryDirectory(prefix="bench-published-") as scratch:
        reader = StoreReader(open_copy(manifest.store, Path(scratch)))
        for entry in manifest.entries:
            folder = (Path(out) if out is not None else manifest.root) / entry.folder
            _clear(folder)
            written.append(
                build(reader.load(entry.run_id), margin).write(folder, ("markdown",))["markdown"]
            )
        if manifest.headline is not None:
            block = headline(reader.load(manifest.headline), margin)
            if out is not None:
                (Path(out) / "README-results.md").write_text(block, encoding="utf-8")
                written.append(Path(out) / "README-results.md")
            else:
                write_readme(manifest.readme, block)
                written.append(manifest.readme)
    return written


def readme_block(readme: Path) -> str:
    """The generated Results block as it stands in ``readme``."""
    text = Path(readme).read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise BenchError(f"{readme}: no generated results block ({BEGIN} ... {END})")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].removeprefix("\n")


def _clear(folder: Path) -> None:
    """A report's own files (not the reports in its subfolders): no stale figure survives."""
    import shutil

    (folder / "report.md").unlink(missing_ok=True)
    shutil.rmtree(folder / "report_files", ignore_errors=True)


# --------------------------------------------------------------------------- README's Results

BEGIN = (
    "<!-- results: generated by `bench report --published results` from results/runs; do not "
    "edit -->"
)
END = "<!-- results: end -->"


def headline(stored: StoredComparison, margin: float | None = None) -> str:
    """The README's Results block for one stored comparison: each variant's test accuracy
    (default, tuned), what tuning did, and every factor contrast sorted into established,
    equivalent within the margin and inconclusive, each sentence naming its test."""
    runs = [r for r in stored.children if r.kind in schema.TRAINING_KINDS]
    table = tables.stored_run_table(runs)
    analysis = verdicts.analysis(stored.parent.params, runs, margin)
    seed_stats = SeedStatistics(table, analysis)
    seeds = int(seed_stats.summary["seeds"].max())
    out = [
        f"Parent run `{stored.parent.run_id}` ({stored.experiment_name}), {seeds} seeds per "
        "variant and setting; test accuracy over each variant's healthy runs, mean [95% "
        f"t-interval]. Verdicts at the equivalence margin ±{analysis.margin:g} "
        f"({100 * analysis.margin:g} points): paired over seeds, Bonferroni within each family "
        "(docs/statistics.md).",
        "",
        _accuracy_table(seed_stats),
        "",
    ]
    for setting, f in seed_stats.factorials.items():
        out += [f"**Factor contrasts, {setting}** ({f.seeds} seeds as blocks):", ""]
        out += _sorted_claims(
            f.contrasts, analysis.margin, lambda r: f"{r['term']}: {r['contrast']}"
        )
        out.append("")
    if seed_stats.tuning_effect is not None:
        out += ["**Tuned − default, per variant** (one family):", ""]
        out += _sorted_claims(seed_stats.tuning_effect, analysis.margin, lambda r: r["variant"])
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _accuracy_table(seed_stats: SeedStatistics) -> str:
    s = seed_stats.summary
    settings = list(dict.fromkeys(s["setting"]))
    rows = []
    for variant in dict.fromkeys(s["variant"]):
        row = {"variant": variant}
        for setting in settings:
            [r] = s[(s["variant"] == variant) & (s["setting"] == setting)].to_dict("records") or [
                None
            ]
            row[f"{setting} (healthy/seeds)"] = (
                ""
                if r is None
                else (
                    f"{r['test_accuracy_mean']:.4f} [{r['test_accuracy_ci95_low']:.4f}, "
                    f"{r['test_accuracy_ci95_high']:.4f}] ({r['healthy']}/{r['seeds']})"
                )
            )
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


_GROUPS = (
    ("Established", (stats.BETTER, stats.WORSE)),
    ("Equivalent within the margin", (stats.EQUIVALENT,)),
    ("Inconclusive", (stats.INCONCLUSIVE,)),
    ("Not tested", (stats.IDENTICAL, stats.UNTESTED)),
)


def _sorted_claims(frame: pd.DataFrame, margin: float, name) -> list[str]:
    """One bullet per verdict group, each comparison with its numbers and its test."""
    effect = "delta_mean" if "delta_mean" in frame else "effect"
    m = int(frame["test"].ne("").sum()) if "test" in frame else len(frame)
    out = []
    for title, kinds in _GROUPS:
        rows = [r for r in frame.to_dict("records") if r["verdict"] in kinds]
        if not rows:
            continue
        items = []
        for r in rows:
            interval = (
                f" [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if r["ci_low"] == r["ci_low"] else ""
            )
            detail = f"{r['verdict']}, {r['test']} over {r['seeds']} seeds, Bonferroni over {m}"
            if r["verdict"] == stats.INCONCLUSIVE and r["seeds_needed"] == r["seeds_needed"]:
                detail += (
                    f"; MDD {r['mdd']:.4f}, ~{int(r['seeds_needed'])} seeds to resolve ±{margin:g}"
                )
            items.append(f"{name(r)} {r[effect]:+.4f}{interval} ({detail})")
        out.append(f"- {title}: " + "; ".join(items) + ".")
    return out


def write_readme(readme: Path, block: str) -> bool:
    """Replace the text between BEGIN and END in ``readme`` by ``block``; True if it changed."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise BenchError(f"{readme}: no generated results block ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{block}{END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text
