"""``bench report``: a self-contained HTML report (and a Markdown twin) built only from
what an MLflow store holds, so it can be rebuilt from any tracking server.

The per-run table is rebuilt from the child runs' params, metrics and tags; the statistics
go through :mod:`bench.stats`, the figures through :mod:`bench.figures`, exactly as when the
comparison ran. The document itself, its HTML (images embedded as data URIs) and Markdown,
is :mod:`bench.results.document`.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench import figures, stats
from bench.results import table as tables
from bench.results import verdicts
from bench.results.artifacts import SeedStatistics, ranking_figure
from bench.results.document import Report, Section, rounded
from bench.store import schema
from bench.store.reader import StoredComparison, StoredRun, StoreReader
from bench.store.tracker import Tracker
from bench.store.uri import first_line

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- building


def build(stored: StoredComparison, margin: float | None = None) -> Report:
    """The report of one parent run: a comparison or a tuning study. ``margin``: the
    equivalence margin to judge by instead of the one the comparison logged."""
    parent = stored.parent
    images: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if parent.kind == schema.KIND_STUDY:
            sections = _study_sections(stored, images, scratch)
        else:
            sections = _comparison_sections(stored, images, scratch, margin)
    sections.append(_environment(parent))
    started = dt.datetime.fromtimestamp(parent.start_time / 1000, tz=dt.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    subtitle = (
        f"Experiment {stored.experiment_name!r}, parent run {parent.name} ({parent.run_id}), "
        f"started {started}. Built from the MLflow store alone: `bench report --run-id <id>` "
        "rebuilds it from any tracking server."
    )
    return Report(f"bench report: {parent.name}", subtitle, sections, images)


def _comparison_sections(
    stored: StoredComparison, images: dict[str, bytes], scratch: Path, margin: float | None = None
) -> list[Section]:
    parent = stored.parent
    runs = [r for r in stored.children if r.kind in schema.TRAINING_KINDS]
    table = tables.stored_run_table(runs)
    sections = [_protocol(parent, schema.PROTOCOL_PREFIX, runs)]
    notes = _notes(parent)
    if notes:
        sections.append(Section("Notes on the protocol", text=notes))
    if table.empty:
        sections.append(Section("Results", text=["No training run of this comparison finished."]))
        return sections
    analysis = verdicts.analysis(parent.params, runs, margin)
    seed_stats = SeedStatistics(table, analysis)
    results = Section(
        "Results over seeds",
        text=[
            "Test accuracy and loss per variant over its healthy runs: mean ± sample standard "
            "deviation over seeds and the 95% t-interval of the mean ('seeds': healthy/all where "
            "runs were left out, named in 'excluded'). 'vs best' is each variant's verdict "
            "against the top-ranked one (see 'How the verdicts are made'). 'ref acc' is the "
            "notebook's single reported run."
        ],
    )
    results.tables.append(("", tables.summary_frame(seed_stats.summary, seed_stats.rankings)))
    every = (
        table.drop(columns=["setting"])
        if set(table["setting"]) == {schema.SETTING_DEFAULT}
        else table
    )
    tuning = _tuning_section(seed_stats, runs, analysis.margin)
    return [
        *sections,
        results,
        Section("How the verdicts are made", text=verdicts.method(analysis)),
        _ranking_section(seed_stats.rankings, images),
        *[_factorial_section(f, analysis.margin) for f in seed_stats.factorials.values()],
        *([tuning] if tuning else []),
        Section("Every run", tables=[("", rounded(every))]),
        _curves_section(table, runs, images),
        _confusion_section(stored, table, runs, images, scratch),
    ]


def _ranking_section(rankings: dict[str, stats.Ranking], images: dict[str, bytes]) -> Section:
    section = Section("Ranking")
    for setting, r in rankings.items():
        section.text.append(tables.ranking_sentence(r))
        section.tables.append((f"Ranking ({setting})", rounded(r.table())))
        if not r.pairs.empty:
            shown = verdicts.tests_frame(r.pairs, {"a": "A", "b": "B"}, r.margin)
            section.tables.append(
                (f"Every pair ({setting}): A − B over the seeds where both runs are healthy", shown)
            )
        if r.testable and len(r.pvalues) > 2:
            pairs = r.pvalues.loc[r.order, r.order].astype(float)
            pairs = pairs.mask(np.eye(len(pairs), dtype=bool)).rename_axis("variant").reset_index()
            section.tables.append(
                (
                    f"Every pair ({setting}): {stats.posthoc_label(r.posthoc)} p-values, "
                    "Bonferroni-adjusted over all pairs",
                    rounded(pairs),
                )
            )
        name = f"ranking_{setting}.png"
        images[name] = _png(ranking_figure(r, f"mean rank on test accuracy ({setting}; 1 = best)"))
        section.images.append(
            (
                f"Mean ranks ({setting}); bars join variants whose "
                f"{stats.posthoc_label(r.posthoc)}s (Bonferroni) do not separate them",
                name,
            )
        )
    return section


def _factorial_section(f: stats.Factorial, margin: float) -> Section:
    """Main effects and interactions of one setting, beside the repeated-measures ANOVA."""
    section = Section(f"Factorial contrasts ({f.setting})", text=verdicts.factorial_text(f, margin))
    if not f.contrasts.empty:
        shown = verdicts.tests_frame(f.contrasts, {"term": "term", "contrast": "contrast"}, margin)
        section.tables.append(
            (f"Planned contrasts ({f.setting}): Bonferroni within each term", shown)
        )
    if f.anova is not None:
        section.tables.append(
            (
                f"Repeated-measures ANOVA ({f.setting}), seed as subject (statsmodels AnovaRM)",
                verdicts.anova_frame(f.anova),
            )
        )
    return section


def _tuning_section(
    seed_stats: SeedStatistics, runs: list[StoredRun], margin: float
) -> Section | None:
    """Default vs tuned: the hyperparameters tuning chose and what they did on test."""
    effect, rankings = seed_stats.tuning_effect, seed_stats.rankings
    if effect is None:
        return None
    section = Section(
        "Default vs tuned",
        text=[
            "The hyperparameters `bench tune` chose on the validation split (hyperparameters not "
            "listed were left as they were), then tuned minus default test accuracy per variant "
            "over the seeds where both runs are healthy, one family (Bonferroni across variants). "
            "Where tuning kept the default setting the two are the same runs ('identical scores') "
            "and there is nothing to test.",
            f"Verdicts: {verdicts.verdict_counts(effect)}. "
            f"{verdicts.power_sentence(effect, margin)}".strip(),
        ],
    )
    chosen = tables.tuned_hyperparameters(runs)
    if chosen is not None:
        section.tables.append(("Tuned hyperparameters", chosen))
    section.tables.append(
        (
            "Effect of tuning on test accuracy",
            verdicts.tests_frame(effect, {"variant": "variant"}, margin),
        )
    )
    tuned, default = rankings.get(schema.SETTING_TUNED), rankings.get(schema.SETTING_DEFAULT)
    if tuned is not None and default is not None:
        section.text.append(
            "Tuning "
            + ("did not change" if tuned.order == default.order else "changed")
            + " the order of the "
            "mean ranks: default "
            + " > ".join(default.order)
            + "; tuned "
            + " > ".join(tuned.order)
            + "."
        )
    return section


def _curves_section(
    table: pd.DataFrame, runs: list[StoredRun], images: dict[str, bytes]
) -> Section:
    section = Section(
        "Learning curves", text=["Mean ± std over seeds; train solid, validation dashed."]
    )
    histories = {r.name: r.histories for r in runs}
    groups = {r.name: r.params.get(schema.VARIANT_GROUP, "all") for r in runs}
    for group, members in tables.grouped_histories(table, histories, groups).items():
        name = f"curves_{_slug(group)}.png"
        images[name] = _png(figures.learning_curve_bands(members, f"{group} variants"))
        section.images.append((f"{group} variants", name))
    return section


def _confusion_section(
    stored: StoredComparison,
    table: pd.DataFrame,
    runs: list[StoredRun],
    images: dict[str, bytes],
    scratch: Path,
) -> Section:
    section = Section(
        "Confusion matrices", text=["The best run (highest test accuracy) of each variant."]
    )
    best = (
        table.dropna(subset=["test_accuracy"])
        .sort_values("test_accuracy", ascending=False)
        .drop_duplicates(["variant", "setting"])
    )
    by_name = {r.name: r for r in runs}
    for row in best.itertuples():
        run = by_name[row.run]
        path = stored.artifacts(run.run_id, schema.CONFUSION_FIGURE, scratch / run.run_id)
        if path is None:
            continue
        name = f"confusion_{_slug(row.run)}.png"
        images[name] = path.read_bytes()
        section.images.append((f"{row.run}: test accuracy {row.test_accuracy:.4f}", name))
    return section


def _study_sections(
    stored: StoredComparison, images: dict[str, bytes], scratch: Path
) -> list[Section]:
    parent = stored.parent
    trials = [r for r in stored.children if r.kind == schema.KIND_TRIAL]
    section = Section("Trials", text=_study_text(stored, trials))
    frame = pd.DataFrame(
        [
            {
                "trial": r.name,
                "state": r.tags.get(schema.OPTUNA_STATE, r.status.lower()),
                "val_accuracy (last)": r.metrics.get(schema.VAL_ACCURACY),
                "epochs": len(r.histories.get(schema.VAL_ACCURACY, [])) or None,
                **{k: r.params[k] for k in schema.TUNABLE if k in r.params},
            }
            for r in trials
        ]
    )
    if not frame.empty:
        top = frame.sort_values("val_accuracy (last)", ascending=False, na_position="last")
        section.tables.append(("Trials, best first", rounded(top)))
    for fig_name in schema.OPTUNA_FIGURES:
        path = stored.artifacts(parent.run_id, schema.optuna_figure(fig_name), scratch / "study")
        if path is not None:
            images[f"{fig_name}.png"] = path.read_bytes()
            section.images.append((fig_name.replace("_", " "), f"{fig_name}.png"))
    selection = _selection_section(stored)
    return [
        _protocol(parent, schema.TUNING_PREFIX, stored.children),
        section,
        *([selection] if selection else []),
    ]


def _selection_section(stored: StoredComparison) -> Section | None:
    """The re-evaluation after the tuning repeats (:mod:`bench.tuning.selection`): each
    candidate's validation accuracy per selection seed, their mean, and which won."""
    runs = [r for r in stored.children if r.kind == schema.KIND_SELECTION]
    if not runs:
        return None
    rows: dict[str, dict[str, object]] = {}
    for r in sorted(runs, key=lambda r: int(r.params.get(schema.SEED, 0))):
        row = rows.setdefault(
            r.params.get(schema.CANDIDATE, r.name),
            {
                "candidate": r.params.get(schema.CANDIDATE, r.name),
                **{k: r.params[k] for k in schema.TUNABLE if k in r.params},
                "values": [],
            },
        )
        row["values"].append(r.metrics.get(schema.OBJECTIVE))
    frame = pd.DataFrame(
        [
            {
                **{k: v for k, v in row.items() if k != "values"},
                "seeds": len(row["values"]),
                "val_accuracy (mean over seeds)": float(np.mean(row["values"])),
                "per seed": ", ".join(f"{v:.4f}" for v in row["values"]),
            }
            for row in rows.values()
        ]
    )
    frame = frame.sort_values("val_accuracy (mean over seeds)", ascending=False, kind="stable")
    chosen = stored.parent.tags.get(schema.TUNING_RECORD_PREFIX + "selected", "")
    text = [
        "After the tuning repeats, the best distinct trials of all repeats and the default "
        f"setting were each trained again on {int(frame['seeds'].max())} training seeds that no "
        "trial used and scored on the validation split (never the test split); the highest mean "
        "is the tuned setting" + (f": {chosen}." if chosen else "."),
    ]
    record = {
        k.removeprefix(schema.TUNING_RECORD_PREFIX): v
        for k, v in stored.parent.tags.items()
        if k.startswith(schema.TUNING_RECORD_PREFIX)
    }
    if record.get("repeat_winners"):
        text.append(
            "Each repeat's best trial (validation accuracy, one seed): "
            f"{record['repeat_winners']}; spread {record.get('repeat_winner_spread', '-')}, "
            f"{record.get('distinct_winners', '-')} distinct winners. Tuning cost over all repeats "
            f"and the selection: {record.get('trials_complete', '-')} complete and "
            f"{record.get('trials_pruned', '-')} pruned trials, {record.get('epochs', '-')} "
            f"epochs, {record.get('cpu_seconds', '-')} CPU seconds."
        )
    return Section(
        "Selection over the repeats",
        text=text,
        tables=[("Candidates, best first", rounded(frame))],
    )


def _study_text(stored: StoredComparison, trials: list[StoredRun]) -> list[str]:
    parent = stored.parent
    m = parent.metrics
    counts = sorted(
        (k.removeprefix(schema.TRIALS_PREFIX), v)
        for k, v in m.items()
        if k.startswith(schema.TRIALS_PREFIX)
    )
    text = [f"{len(trials)} trials: " + ", ".join(f"{int(v)} {k}" for k, v in counts) + "."]
    if schema.BEST_VAL_ACCURACY in m:
        best = {
            k.removeprefix(schema.BEST_PREFIX): v
            for k, v in parent.tags.items()
            if k.startswith(schema.BEST_PREFIX)
        }
        text.append(
            f"Best trial {int(m.get(schema.BEST_TRIAL_METRIC, -1))}: validation accuracy "
            f"{m[schema.BEST_VAL_ACCURACY]:.4f} with "
            + ", ".join(f"{k}={v}" for k, v in best.items())
            + "."
        )
    for r in stored.children:
        if r.kind == schema.KIND_TUNED and schema.TEST_ACCURACY in r.metrics:
            text.append(
                f"Retrained with the tuned setting ({r.name}): test accuracy "
                f"{r.metrics[schema.TEST_ACCURACY]:.4f}."
            )
    return text


def _protocol(parent: StoredRun, prefix: str, children: list[StoredRun] | None = None) -> Section:
    rows = [
        (k.removeprefix(prefix), v)
        for k, v in sorted(parent.params.items())
        if k.startswith(prefix)
    ]
    frame = pd.DataFrame(rows, columns=["setting", "value"])
    section = Section("Protocol", tables=[("", frame)])
    data = _datasets(children or [])
    if data is not None:
        section.tables.append(
            (
                "Data the runs used (MLflow datasets: the content's digest, whatever path it "
                "was read from)",
                data,
            )
        )
    return section


def _datasets(runs: list[StoredRun]) -> pd.DataFrame | None:
    """Every distinct dataset the runs logged, with how many runs used it."""
    seen: dict[tuple[str, str, str], int] = {}
    for r in runs:
        for d in r.datasets:
            seen[d] = seen.get(d, 0) + 1
    if not seen:
        return None
    return pd.DataFrame(
        [{"split": c, "dataset": n, "digest": g, "runs": str(k)} for (n, g, c), k in seen.items()]
    )


def _notes(parent: StoredRun) -> list[str]:
    text = parent.tags.get(schema.MLFLOW_NOTE, "")
    if "Notes:" not in text:
        return []
    return [line[2:] for line in text.split("Notes:", 1)[1].splitlines() if line.startswith("- ")]


def _environment(parent: StoredRun) -> Section:
    rows = [
        (k.removeprefix(schema.TAG_PREFIX), v)
        for k, v in sorted(parent.tags.items())
        if k.startswith(schema.ENVIRONMENT_PREFIXES)
    ]
    return Section("Environment", tables=[("", pd.DataFrame(rows, columns=["what", "value"]))])


# --------------------------------------------------------------------------- logging it


def log_report(tracker: Tracker, run_id: str) -> None:
    """Build the run's report from the store (as ``bench report`` would) and log it under
    ``report/``. A report that fails to build is a warning, not a lost comparison."""
    try:
        built = build(StoreReader(tracker.uri, tracker.client).load(run_id))
        with tempfile.TemporaryDirectory() as tmp:
            built.write(Path(tmp))
            tracker.log_artifacts(run_id, tmp, schema.REPORT_FOLDER)
    except OSError:
        raise  # a full disk or an unwritable artifact folder fails the run, not just the report
    except Exception as exc:  # noqa: BLE001 - everything else is already logged
        log.warning("the report could not be built: %s", exc)
        tracker.set_tags(run_id, {schema.REPORT_ERROR: first_line(exc)[:500]})


# --------------------------------------------------------------------------- helpers


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    finally:
        figures.close(fig)
    return buf.getvalue()


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
