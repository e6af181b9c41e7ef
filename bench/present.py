"""What the terminal shows: tables and summaries as text. The CLI prints what these return.

Library code reports progress through the ``bench.progress`` logger; this module turns
finished outcomes (a comparison, tuning studies, the variant list) into text.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence

import pandas as pd

from bench import stats
from bench.results.table import ranking_sentence, summary_frame
from bench.store.uri import browse_hint, browse_url, is_server, redact, ui_command

LAYER = 10  # import layer (docs/development.md#layers): imports only lower layers' units

WIDTH = 100

_SHOWN = {  # run-table column -> terminal heading, in the order shown
    "run": "run",
    "params": "params",
    "status": "status",
    "epochs": "epochs",
    "best_val_accuracy": "best val acc",
    "test_accuracy": "test acc",
    "test_loss": "test loss",
    "ref_test_accuracy": "ref acc",
    "delta_test_accuracy": "Δ vs ref",
    "ref_test_loss": "ref loss",
    "params_match": "params = ref",
    "train_seconds": "seconds",
}
_FORMATS = {"params": "{:,.0f}", "seconds": "{:.1f}", "epochs": "{:.0f}", "Δ vs ref": "{:+.4f}"}


def run_table(table: pd.DataFrame) -> str:
    """The run table as the terminal shows it (fewer columns than the CSV)."""
    shown = table[list(_SHOWN)].rename(columns=_SHOWN)
    if shown["ref acc"].isna().all():
        shown = shown.drop(columns=["ref acc", "Δ vs ref"])
    if shown["ref loss"].isna().all():
        shown = shown.drop(columns=["ref loss"])
    if shown["params = ref"].isna().all():
        shown = shown.drop(columns=["params = ref"])
    else:
        shown["params = ref"] = [
            "" if v is None or v != v else ("yes" if v else "NO") for v in shown["params = ref"]
        ]
    for col in shown.columns:
        if col in ("run", "status", "params = ref"):
            continue
        fmt = _FORMATS.get(col, "{:.4f}")
        shown[col] = [fmt.format(v) if v is not None and v == v else "" for v in shown[col]]
    return shown.to_markdown(
        index=False,
        disable_numparse=True,
        colalign=("left",) + ("right",) * (len(shown.columns) - 1),
    )


def summary_table(summary: pd.DataFrame, rankings: dict[str, stats.Ranking]) -> str:
    """The over-seeds table: mean ± std, 95% CI, rank and mark."""
    return summary_frame(summary, rankings).to_markdown(index=False, disable_numparse=True)


def comparison(outcome) -> str:
    """Everything ``bench compare`` and ``bench train`` print when they finish (the verdicts
    judged by the study's margin, as the comparison computed them)."""
    out = [""]
    if outcome.summary is not None and int(outcome.summary["seeds"].max()) > 1:
        ranked = outcome.rankings
        out.append(summary_table(outcome.summary, ranked))
        out.append("")
        out += [textwrap.fill(ranking_sentence(r), width=WIDTH) for r in ranked.values()]
        out.append(
            "(every run: comparison.csv; every pair's verdict: report/report.md in the parent run)"
        )
    else:
        out.append(run_table(outcome.table))
    out.append("")
    if outcome.side_by_side is not None:
        shown = outcome.side_by_side.copy()
        for col in ("default test acc", "tuned test acc"):
            shown[col] = shown[col].map("{:.4f}".format)
        shown["Δ tuned - default"] = shown["Δ tuned - default"].map("{:+.4f}".format)
        out += [shown.to_markdown(index=False, disable_numparse=True), ""]
    if outcome.notes:
        out.append("notes on the protocol (also in the parent run's notes.md):")
        out += [
            textwrap.fill(n, width=WIDTH, initial_indent="  - ", subsequent_indent="    ")
            for n in outcome.notes
        ]
        out.append("")
    out += [
        f"experiment: {outcome.experiment_name} (id {outcome.experiment_id})",
        f"parent run: {outcome.parent_run_id}"
        + (
            f" (resumed: {outcome.resumed} finished run(s) kept, not retrained)"
            if outcome.resumed
            else ""
        ),
        f"store:      {redact(outcome.tracking_uri)}",
        f"browse:     "
        f"{browse_hint(outcome.tracking_uri, outcome.experiment_id, view=outcome.parent_run_id)}",
    ]
    return "\n".join(out)


def unhealthy_runs(outcome) -> list[str]:
    """One warning line per run that diverged or died."""
    return [
        f"warning: {r.variant} (seed {r.hparams.seed}) {r.status}: {r.message}"
        for r in outcome.failed
    ]


def tuning(results: Sequence) -> str:
    """The table ``bench tune`` prints: one row per study, and where to browse."""
    out = [
        "",
        "| variant | study | complete | pruned | failed | best val acc | best params | tuned test "
        "acc |",
        "|:--|:--|--:|--:|--:|--:|:--|--:|",
    ]
    for r in results:
        c = r.counts
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.best_params.items()
        )
        if r.best_is_default:
            params += " (= default)"
        best = "" if r.best_value is None else f"{r.best_value:.4f}"
        tuned = "" if r.tuned_test_accuracy is None else f"{r.tuned_test_accuracy:.4f}"
        out.append(
            f"| {r.target.variant} | {r.target.study_name} | {c['complete']} | {c['pruned']} | "
            f"{c['failed']} | {best} | {params} | {tuned} |"
        )
    first = results[0].target
    dash = redact(first.storage).removeprefix("journal://")
    masked = (
        "   (password masked: put it back, or drop it and set PGPASSWORD)" if "***@" in dash else ""
    )
    out += [
        "",
        f"optuna storage: {redact(first.storage)}",
        f"browse trials:  optuna-dashboard '{dash}'{masked}",
        *_study_links(results),
    ]
    return "\n".join(out)


def _studies(results: Sequence) -> list:
    """One result per study (a study's parent run), in order."""
    return list({r.parent_run_id: r for r in results}.values())


def _study_links(results: Sequence) -> list[str]:
    """Where to see each study's trials side by side: its saved view (one line for one
    study; for several, the ``mlflow ui`` command, then one page per study)."""
    uri = results[0].target.tracking_uri
    studies = _studies(results)
    if len(studies) == 1:
        [r] = studies
        return [f"browse runs:    {browse_hint(uri, r.experiment_id, view=r.parent_run_id)}"]
    head = "one page per study:" if is_server(uri) else f"{ui_command(uri)}   then open, per study:"
    return [f"browse runs:    {head}"] + [
        f"  {r.target.study_name}: {browse_url(uri, r.experiment_id, view=r.parent_run_id)}"
        for r in studies
    ]


def variant_list(names: Sequence[str]) -> str:
    """``bench list``: name, family, group, parameters, where it was declared and its layers
    in aligned columns (the parameters counted from each variant's block program for a
    28 x 28 input and 10 classes, which the header says: no model is built)."""
    from bench.models import get_variant, origin_of, parameter_count

    rows = [("variant", "family", "group", "params (28x28, 10 classes)", "from", "layers")]
    for name in names:
        v = get_variant(name)
        rows.append(
            (name, v.family, v.group, f"{parameter_count(v):,}", origin_of(name), v.summary())
        )
    return _columns(rows, right=(3,))


def task_list() -> str:
    """``bench list --tasks``: each task's name, classes, input shape and where it was declared."""
    from bench.data import TASKS

    rows = [("task", "classes", "input", "from")]
    for task in TASKS.values():
        shape = " x ".join(map(str, task.input_shape)) if task.input_shape else "from the data"
        rows.append((task.name, str(task.num_classes or "from the labels"), shape, task.origin))
    return _columns(rows)


def _columns(rows: Sequence[tuple[str, ...]], right: tuple[int, ...] = ()) -> str:
    """Rows as aligned columns (the last one unpadded), columns in ``right`` right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(
            [
                *(
                    f"{c:>{w}}" if i in right else f"{c:<{w}}"
                    for i, (c, w) in enumerate(zip(r[:-1], widths, strict=True))
                ),
                r[-1],
            ]
        )
        for r in rows
    )


def study_list() -> str:
    """``bench list --studies``: each study file's name, task, variants and description; an
    invalid one says why."""
    from bench.errors import BenchError
    from bench.studies import list_studies, load_study

    paths = list_studies()
    width = max((len(p.stem) for p in paths), default=0) + 1
    lines = []
    for path in paths:
        try:
            s = load_study(path)
        except BenchError as exc:
            lines.append(f"{path.stem:<{width}} INVALID: {exc}")
            continue
        count = f"{len(s.variant_names)} variant{'s' if len(s.variant_names) != 1 else ''}"
        lines.append(f"{path.stem:<{width}} {s.task:<14} {count:<11} {s.description.strip()[:70]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- --json


def as_json(document: dict[str, object]) -> str:
    """One JSON document, as ``--json`` prints it on stdout."""
    return json.dumps(document, indent=2, default=str)


def _records(frame: pd.DataFrame | None) -> list[dict[str, object]]:
    """A table's rows as JSON objects (missing values: null)."""
    return [] if frame is None else json.loads(frame.to_json(orient="records"))


def _where(uri: str, experiment_id: str, view: str | None = None) -> dict[str, object]:
    return {
        "experiment_id": experiment_id,
        "tracking_uri": redact(uri),
        "url": browse_url(uri, experiment_id, view=view),
        "browse": browse_hint(uri, experiment_id, view=view),
    }


def comparison_document(outcome, command: str) -> dict[str, object]:
    """What ``bench compare --json`` / ``train --json`` prints: where the runs are, every run's
    row with its run id, and over seeds the summary per variant and setting."""
    runs = _records(outcome.table)
    for row in runs:
        row["run_id"] = outcome.run_ids.get(row["run"])
    return {
        "command": command,
        "experiment_name": outcome.experiment_name,
        **_where(outcome.tracking_uri, outcome.experiment_id, outcome.parent_run_id),
        "parent_run_id": outcome.parent_run_id,
        "resumed_runs": outcome.resumed,
        "runs": runs,
        "summary": _records(outcome.summary),
        "tuned_vs_default": _records(outcome.side_by_side),
        "notes": list(outcome.notes),
        "unhealthy": [
            {"variant": r.variant, "seed": r.hparams.seed, "status": r.status, "message": r.message}
            for r in outcome.failed
        ],
    }


def tuning_document(results: Sequence) -> dict[str, object]:
    """What ``bench tune --json`` prints: one entry per Optuna study, each with the page of
    its trials (``url``); the top-level ``url`` is that page for one study, else the
    experiment's."""
    first = results[0].target
    studies = _studies(results)
    view = studies[0].parent_run_id if len(studies) == 1 else None
    return {
        "command": "tune",
        **_where(first.tracking_uri, results[0].experiment_id, view),
        "optuna_storage": redact(first.storage),
        "studies": [
            {
                "variant": r.target.variant,
                "study_name": r.target.study_name,
                "repeat": r.target.repeat,
                "trials": r.counts,
                "best_value": r.best_value,
                "best_params": r.best_params,
                "best_is_default": r.best_is_default,
                "parent_run_id": r.parent_run_id,
                "tuned_run_id": r.tuned_run_id,
                "tuned_test_accuracy": r.tuned_test_accuracy,
                "selection": r.selection,
                "url": browse_url(first.tracking_uri, r.experiment_id, view=r.parent_run_id),
            }
            for r in results
        ],
    }


def list_document(names: Sequence[str], *, studies: bool, tasks: bool) -> dict[str, object]:
    """What ``bench list --json`` prints: the variants (or the studies, or the tasks)."""
    if tasks:
        from bench.data import TASKS

        return {
            "tasks": [
                {
                    "name": t.name,
                    "classes": t.num_classes,
                    "input_shape": t.input_shape,
                    "from": t.origin,
                }
                for t in TASKS.values()
            ]
        }
    if studies:
        from bench.errors import BenchError
        from bench.studies import list_studies, load_study

        out = []
        for path in list_studies():
            try:
                s = load_study(path)
            except BenchError as exc:
                out.append({"name": path.stem, "path": str(path), "error": str(exc)})
                continue
            out.append(
                {
                    "name": path.stem,
                    "path": str(path),
                    "task": s.task,
                    "variants": list(s.variant_names),
                    "description": s.description.strip(),
                }
            )
        return {"studies": out}
    from bench.models import get_variant, origin_of, parameter_count

    return {
        "variants": [
            {
                "name": n,
                "family": get_variant(n).family,
                "group": get_variant(n).group,
                "params_28x28_10_classes": parameter_count(get_variant(n)),
                "from": origin_of(n),
                "layers": get_variant(n).summary(),
            }
            for n in names
        ]
    }
