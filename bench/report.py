"""``bench report``: a self-contained HTML report (and a Markdown twin) built only from
what an MLflow store holds, so it can be rebuilt from any tracking server.

The per-run table is rebuilt from the child runs' params, metrics and tags; the statistics
go through :mod:`bench.stats`, the figures through :mod:`bench.figures`, exactly as when the
comparison ran. Images are embedded in the HTML as data URIs (one file to mail or archive)
and written beside the Markdown.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import figures, stats
from bench.compare import TABLE_COLUMNS, delta, format_ranking, summary_frame
from bench.tracking import StoredComparison, StoredRun

log = logging.getLogger(__name__)

TRAIN_KINDS = ("train", "tuned")


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, frame)
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    images: dict[str, bytes]  # file name -> PNG bytes

    def markdown(self) -> str:
        out = [f"# {self.title}", "", self.subtitle, ""]
        for s in self.sections:
            out += [f"## {s.title}", ""]
            for p in s.text:
                out += [p, ""]
            for caption, frame in s.tables:
                if caption:
                    out += [f"**{caption}**", ""]
                out += [_rounded(frame).to_markdown(index=False, disable_numparse=True), ""]
            for caption, name in s.images:
                out += [f"![{caption}](report_files/{name})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>", f"<p class='sub'>{html.escape(self.subtitle)}</p>"]
        toc = "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>" for i, s in enumerate(self.sections))
        body.append(f"<nav><ol>{toc}</ol></nav>")
        for i, s in enumerate(self.sections):
            body.append(f"<section id='s{i}'><h2>{html.escape(s.title)}</h2>")
            body += [f"<p>{html.escape(p)}</p>" for p in s.text]
            for caption, frame in s.tables:
                cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
                table = _rounded(frame).to_html(index=False, na_rep="", border=0, classes="data", escape=True)
                body.append("<div class='scroll'>" + table.replace("<thead>", f"{cap}<thead>", 1) + "</div>")
            for caption, name in s.images:
                data = base64.b64encode(self.images[name]).decode("ascii")
                body.append(
                    f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
            body.append("</section>")
        return _HTML.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        files = out / "report_files"
        files.mkdir(exist_ok=True)
        for name, png in self.images.items():
            (files / name).write_bytes(png)
        paths = {"html": out / "report.html", "markdown": out / "report.md"}
        paths["html"].write_text(self.html(), encoding="utf-8")
        paths["markdown"].write_text(self.markdown(), encoding="utf-8")
        return paths


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} .sub {{ color: #666; margin-top: 0; }}
table.data {{ border-collapse: collapse; margin: 0.8em 0 1.5em; font-size: 12.5px; }}
table.data th, table.data td {{ padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
table.data th {{ background: #f3f3f3; }} table.data td {{ white-space: nowrap; }}
table.data td:first-child, table.data td:nth-child(2) {{ text-align: left; }} .scroll {{ overflow-x: auto; }}
caption {{ text-align: left; font-weight: 600; padding: 4px 0; }}
figure {{ margin: 1em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 12px; }} nav ol {{ columns: 2; }}
</style></head><body>
{body}
</body></html>
"""


# --------------------------------------------------------------------------- building


def build(stored: StoredComparison) -> Report:
    """The report of one parent run: a comparison or a tuning study."""
    parent = stored.parent
    images: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if parent.kind == "study":
            sections = _study_sections(stored, images, scratch)
        else:
            sections = _comparison_sections(stored, images, scratch)
    sections.append(_environment(parent))
    started = dt.datetime.fromtimestamp(parent.start_time / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"Experiment {stored.experiment_name!r}, parent run {parent.name} ({parent.run_id}), started {started}. "
        "Built from the MLflow store alone: `bench report --run-id <id>` rebuilds it from any tracking server."
    )
    return Report(f"bench report: {parent.name}", subtitle, sections, images)


def run_table(children: list[StoredRun]) -> pd.DataFrame:
    """The per-run comparison table, rebuilt from the training runs' params and metrics."""
    rows = []
    for r in children:
        if r.kind not in TRAIN_KINDS:
            continue
        m, p = r.metrics, r.params
        ref_acc, ref_loss = _float(p.get("ref.test_accuracy")), _float(p.get("ref.test_loss"))
        ref_params = int(p["ref.params"]) if "ref.params" in p else None
        params = int(p.get("params", 0))
        acc, loss = m.get("test_accuracy"), m.get("test_loss")
        rows.append(
            {
                "run": r.name,
                "variant": p.get("variant", r.name),
                "setting": p.get("setting", "tuned" if r.kind == "tuned" else "default"),
                "seed": int(p.get("seed", 0)),
                "params": params,
                "status": r.tags.get("bench.status", r.status.lower()),
                "epochs": int(m.get("epochs_run", 0)),
                "best_epoch": None if "best_epoch" not in m else int(m["best_epoch"]) + 1,
                "best_val_accuracy": m.get("best_val_accuracy"),
                "final_val_accuracy": m.get("final_val_accuracy"),
                "test_accuracy": acc,
                "test_loss": loss,
                "train_seconds": round(m.get("train_seconds", float("nan")), 1),
                "ref_test_accuracy": ref_acc,
                "ref_test_loss": ref_loss,
                "delta_test_accuracy": delta(acc, ref_acc),
                "delta_test_loss": delta(loss, ref_loss),
                "ref_params": ref_params,
                "params_match": None if ref_params is None else params == ref_params,
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _comparison_sections(stored: StoredComparison, images: dict[str, bytes], scratch: Path) -> list[Section]:
    parent = stored.parent
    runs = [r for r in stored.children if r.kind in TRAIN_KINDS]
    table = run_table(runs)
    sections = [_protocol(parent, "protocol.")]
    notes = _notes(parent)
    if notes:
        sections.append(Section("Notes on the protocol", text=notes))
    if table.empty:
        sections.append(Section("Results", text=["No training run of this comparison finished."]))
        return sections
    summary = stats.aggregate(table)
    rankings = {setting: stats.rank(table, setting) for setting in dict.fromkeys(table["setting"])}
    results = Section("Results over seeds", text=[
        "Test accuracy and loss per variant: mean ± sample standard deviation over seeds and the 95% "
        "t-interval of the mean. 'vs best' compares each variant with the top-ranked one: paired t-tests "
        "over seeds, Holm-corrected, claimed only when the Friedman test rejects 'all variants are equal'. "
        "'ref acc' is the notebook's single reported run."
    ])
    results.tables.append(("", summary_frame(summary, rankings)))
    sections.append(results)

    ranking = Section("Ranking")
    for setting, r in rankings.items():
        ranking.text.append(format_ranking(r))
        ranking.tables.append((f"Ranking ({setting})", _rounded(r.table())))
        name = f"ranking_{setting}.png"
        images[name] = _png(figures.ranking_diagram(
            r.mean_rank, r.pvalues, r.omnibus_rejects, f"mean rank on test accuracy ({setting}; 1 = best)"
        ))
        ranking.images.append((f"Critical-difference diagram ({setting}): bars join variants not significantly different", name))
    effect = stats.tuning_effect(table)
    if effect is not None:
        ranking.text.append(
            "Default vs tuned: tuned minus default test accuracy per variant over paired seeds "
            "(paired t-test, Holm-corrected across variants)."
        )
        ranking.tables.append(("Effect of tuning", _rounded(effect)))
        if "tuned" in rankings and "default" in rankings:
            same = rankings["tuned"].order == rankings["default"].order
            ranking.text.append(
                "Tuning " + ("did not change" if same else "changed") + " the ranking: default "
                + " > ".join(rankings["default"].order) + "; tuned " + " > ".join(rankings["tuned"].order) + "."
            )
    sections.append(ranking)

    every = Section("Every run", tables=[("", _rounded(table.drop(columns=["setting"]) if set(table["setting"]) == {"default"} else table))])
    sections.append(every)

    curves = Section("Learning curves", text=["Mean ± std over seeds; train solid, validation dashed."])
    by_group: dict[str, dict[str, list]] = {}
    for r, row in zip(runs, table.itertuples(), strict=True):
        key = row.variant if row.setting == "default" else f"{row.variant}/{row.setting}"
        by_group.setdefault(r.params.get("variant.group", "all"), {}).setdefault(key, []).append(r.histories)
    for group, members in by_group.items():
        name = f"curves_{_slug(group)}.png"
        images[name] = _png(figures.learning_curve_bands(members, f"{group} variants"))
        curves.images.append((f"{group} variants", name))
    sections.append(curves)

    confusion = Section("Confusion matrices", text=["The best run (highest test accuracy) of each variant."])
    best = table.dropna(subset=["test_accuracy"]).sort_values("test_accuracy", ascending=False).drop_duplicates(
        ["variant", "setting"]
    )
    by_name = {r.name: r for r in runs}
    for row in best.itertuples():
        run = by_name[row.run]
        path = stored.artifacts(run.run_id, "figures/confusion_matrix.png", scratch / run.run_id)
        if path is None:
            continue
        name = f"confusion_{_slug(row.run)}.png"
        images[name] = path.read_bytes()
        confusion.images.append((f"{row.run}: test accuracy {row.test_accuracy:.4f}", name))
    sections.append(confusion)
    return sections


def _study_sections(stored: StoredComparison, images: dict[str, bytes], scratch: Path) -> list[Section]:
    parent = stored.parent
    sections = [_protocol(parent, "tuning.")]
    trials = [r for r in stored.children if r.kind == "trial"]
    frame = pd.DataFrame(
        [
            {
                "trial": r.name,
                "state": r.tags.get("optuna.state", r.status.lower()),
                "val_accuracy (last)": r.metrics.get("val_accuracy"),
                "epochs": len(r.histories.get("val_accuracy", [])) or None,
                **{k: r.params[k] for k in ("learning_rate", "dropout", "batch_size", "optimizer") if k in r.params},
            }
            for r in trials
        ]
    )
    m = parent.metrics
    text = [
        f"{len(trials)} trials: "
        + ", ".join(f"{int(v)} {k.removeprefix('trials.')}" for k, v in sorted(m.items()) if k.startswith("trials."))
        + "."
    ]
    if "best_val_accuracy" in m:
        best = {k.removeprefix("best."): v for k, v in parent.tags.items() if k.startswith("best.")}
        text.append(
            f"Best trial {int(m.get('best_trial', -1))}: validation accuracy {m['best_val_accuracy']:.4f} with "
            + ", ".join(f"{k}={v}" for k, v in best.items()) + "."
        )
    tuned = [r for r in stored.children if r.kind == "tuned"]
    for r in tuned:
        if "test_accuracy" in r.metrics:
            text.append(f"Retrained with the best hyperparameters ({r.name}): test accuracy {r.metrics['test_accuracy']:.4f}.")
    section = Section("Trials", text=text)
    if not frame.empty:
        top = frame.sort_values("val_accuracy (last)", ascending=False, na_position="last")
        section.tables.append(("Trials, best first", _rounded(top)))
    for fig_name in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        path = stored.artifacts(parent.run_id, f"figures/{fig_name}.png", scratch / "study")
        if path is not None:
            images[f"{fig_name}.png"] = path.read_bytes()
            section.images.append((fig_name.replace("_", " "), f"{fig_name}.png"))
    sections.append(section)
    return sections


def _protocol(parent: StoredRun, prefix: str) -> Section:
    rows = [(k.removeprefix(prefix), v) for k, v in sorted(parent.params.items()) if k.startswith(prefix)]
    frame = pd.DataFrame(rows, columns=["setting", "value"])
    return Section("Protocol", tables=[("", frame)])


def _notes(parent: StoredRun) -> list[str]:
    text = parent.tags.get("mlflow.note.content", "")
    if "Notes:" not in text:
        return []
    return [line[2:] for line in text.split("Notes:", 1)[1].splitlines() if line.startswith("- ")]


def _environment(parent: StoredRun) -> Section:
    keep = ("bench.version.", "bench.host.", "bench.device", "bench.git_commit")
    rows = [(k.removeprefix("bench."), v) for k, v in sorted(parent.tags.items()) if k.startswith(keep)]
    return Section("Environment", tables=[("", pd.DataFrame(rows, columns=["what", "value"]))])


# --------------------------------------------------------------------------- helpers


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    finally:
        figures.close(fig)
    return buf.getvalue()


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text: floats to 4 decimals (small p-values in 3 significant digits)."""

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, float):
            return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"
        return str(v)

    return frame.map(cell)


def _float(value: str | None) -> float | None:
    return None if value in (None, "", "None") else float(value)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
