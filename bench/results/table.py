"""The run table: one row per training run, built one way from a live result or a stored run.

``bench compare`` builds it from the :class:`~bench.training.TrainResult` values it just
trained, ``bench report`` from the runs an MLflow store holds; both go through
:func:`table_row`, so the two tables agree column for column. The over-seeds table and the
ranking sentence shown in the terminal and in reports are made here too.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from bench import stats
from bench.results import verdicts
from bench.store import schema
from bench.store.reader import StoredRun
from bench.studies import Reference
from bench.training import TrainResult

TABLE_COLUMNS = [
    "run",
    "variant",
    "setting",
    "seed",
    "params",
    "status",
    "epochs",
    "best_epoch",
    "best_val_accuracy",
    "final_val_accuracy",
    "test_accuracy",
    "test_loss",
    "train_seconds",
    "ref_test_accuracy",
    "ref_test_loss",
    "delta_test_accuracy",
    "delta_test_loss",
    "ref_params",
    "params_match",
]


def delta(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours - theirs


def table_row(
    *,
    run: str,
    variant: str,
    setting: str,
    seed: int,
    params: int,
    status: str,
    epochs: int,
    best_epoch: int | None,
    metrics: Mapping[str, float | None],
    ref_test_accuracy: float | None,
    ref_test_loss: float | None,
    ref_params: int | None,
) -> dict[str, object]:
    """One row of the run table (``best_epoch`` 0-based here, 1-based in the row)."""
    acc, loss = metrics.get(schema.TEST_ACCURACY), metrics.get(schema.TEST_LOSS)
    seconds = metrics.get(schema.TRAIN_SECONDS)
    return {
        "run": run,
        "variant": variant,
        "setting": setting,
        "seed": seed,
        "params": params,
        "status": status,
        "epochs": epochs,
        "best_epoch": None if best_epoch is None else best_epoch + 1,
        "best_val_accuracy": metrics.get(schema.BEST_VAL_ACCURACY),
        "final_val_accuracy": metrics.get(schema.FINAL_VAL_ACCURACY),
        "test_accuracy": acc,
        "test_loss": loss,
        "train_seconds": round(float("nan") if seconds is None else seconds, 1),
        "ref_test_accuracy": ref_test_accuracy,
        "ref_test_loss": ref_test_loss,
        "delta_test_accuracy": delta(acc, ref_test_accuracy),
        "delta_test_loss": delta(loss, ref_test_loss),
        "ref_params": ref_params,
        "params_match": None if ref_params is None else params == ref_params,
    }


def result_metrics(result: TrainResult) -> dict[str, float | None]:
    """A training result's once-per-run metrics, under the names they are logged with."""
    return {
        schema.TEST_LOSS: result.test_loss,
        schema.TEST_ACCURACY: result.test_accuracy,
        schema.BEST_VAL_ACCURACY: result.best_val_accuracy,
        schema.BEST_EPOCH: result.best_epoch,
        schema.FINAL_VAL_ACCURACY: result.final_val_accuracy,
        schema.TRAIN_SECONDS: result.train_seconds,
        schema.EPOCHS_RUN: result.epochs_run,
    }


def row_from_result(
    result: TrainResult, run: str, setting: str, reference: Reference | None
) -> dict[str, object]:
    return table_row(
        run=run,
        variant=result.variant,
        setting=setting,
        seed=result.hparams.seed,
        params=result.params,
        status=result.status,
        epochs=result.epochs_run,
        best_epoch=result.best_epoch,
        metrics=result_metrics(result),
        ref_test_accuracy=reference.test_accuracy if reference else None,
        ref_test_loss=reference.test_loss if reference else None,
        ref_params=reference.params if reference else None,
    )


def row_from_stored(run: StoredRun) -> dict[str, object]:
    """A stored run's row. A run that did not end FINISHED shows MLflow's status (failed,
    killed, running), whatever its ``bench.status`` tag said while it trained, and no scores:
    it never counts as a result, nor as the best."""
    m, p = run.metrics, run.params
    ref = run.tags if schema.REF_TEST_ACCURACY in run.tags else p  # params in stores before 2026-12
    finished = run.status == "FINISHED"
    if not finished:
        m = {k: v for k, v in m.items() if k not in (schema.TEST_ACCURACY, schema.TEST_LOSS)}
    default_setting = (
        schema.SETTING_TUNED if run.kind == schema.KIND_TUNED else schema.SETTING_DEFAULT
    )
    return table_row(
        run=run.name,
        variant=p.get(schema.VARIANT, run.name),
        setting=p.get(schema.SETTING, default_setting),
        seed=int(p.get(schema.SEED, 0)),
        params=int(p.get(schema.PARAMS, 0)),
        status=run.tags.get(schema.STATUS, "ok") if finished else run.status.lower(),
        epochs=int(m.get(schema.EPOCHS_RUN, 0)),
        best_epoch=None if schema.BEST_EPOCH not in m else int(m[schema.BEST_EPOCH]),
        metrics=m,
        ref_test_accuracy=_float(ref.get(schema.REF_TEST_ACCURACY)),
        ref_test_loss=_float(ref.get(schema.REF_TEST_LOSS)),
        ref_params=int(ref[schema.REF_PARAMS]) if schema.REF_PARAMS in ref else None,
    )


def reference_tags(reference: Reference | None) -> dict[str, str]:
    """The notebook's numbers as a training run's tags (``ref.*``: context, not
    hyperparameters), so a report rebuilt from the store alone shows them too
    (:func:`row_from_stored` reads them back)."""
    if reference is None:
        return {}
    values = {
        schema.REF_TEST_ACCURACY: reference.test_accuracy,
        schema.REF_TEST_LOSS: reference.test_loss,
        schema.REF_PARAMS: reference.params,
    }
    return {k: str(v) for k, v in values.items() if v is not None}


def run_table(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=TABLE_COLUMNS)


def stored_run_table(children: Sequence[StoredRun]) -> pd.DataFrame:
    """The run table of a stored comparison's training runs."""
    return run_table([row_from_stored(r) for r in children if r.kind in schema.TRAINING_KINDS])


def _float(value: str | None) -> float | None:
    return None if value in (None, "", "None") else float(value)


# --------------------------------------------------------------------------- over seeds


def tuned_vs_default(
    table: pd.DataFrame, tuned: Mapping[str, Mapping[str, object]] | None = None
) -> pd.DataFrame | None:
    """Per variant: mean test accuracy with default and with tuned hyperparameters."""
    if schema.SETTING_TUNED not in set(table["setting"]):
        return None
    means = table.pivot_table(
        index="variant", columns="setting", values="test_accuracy", aggfunc="mean"
    )
    frame = pd.DataFrame(
        {
            "variant": means.index,
            "default test acc": means.get(schema.SETTING_DEFAULT),
            "tuned test acc": means.get(schema.SETTING_TUNED),
        }
    ).reset_index(drop=True)
    frame["Δ tuned - default"] = frame["tuned test acc"] - frame["default test acc"]
    frame["tuned hyperparameters"] = [
        ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (tuned or {}).get(name, {}).items()
        )
        for name in frame["variant"]
    ]
    order = list(dict.fromkeys(table["variant"]))
    return frame.set_index("variant").loc[order].reset_index()


def tuned_hyperparameters(runs: Sequence[StoredRun]) -> pd.DataFrame | None:
    """Per tuned variant: every tunable hyperparameter that tuning changed, default and
    tuned, read from the runs' params (None without tuned runs)."""
    first: dict[tuple[str, str], Mapping[str, str]] = {}
    for run in runs:
        if run.kind in schema.TRAINING_KINDS:
            first.setdefault(
                (run.params.get(schema.VARIANT, run.name), run.params.get(schema.SETTING, "")),
                run.params,
            )
    rows = []
    for (variant, setting), tuned in first.items():
        if setting != schema.SETTING_TUNED:
            continue
        default = first.get((variant, schema.SETTING_DEFAULT), {})
        row: dict[str, object] = {"variant": variant}
        for key in schema.TUNABLE:
            if key in tuned and tuned[key] != "default":
                row[f"{key} default"] = _param(_variant_value(default, key))
                row[f"{key} tuned"] = _param(tuned[key])
        row["from"] = tuned.get(schema.TUNED_FROM, "")
        rows.append(row)
    if not rows:
        return None
    frame = pd.DataFrame(rows).fillna("")
    if not frame["from"].astype(bool).any():
        frame = frame.drop(columns=["from"])
    same = [
        k
        for k in schema.TUNABLE
        if f"{k} tuned" in frame and frame[f"{k} tuned"].eq(frame[f"{k} default"]).all()
    ]
    return frame.drop(
        columns=[f"{k} {s}" for k in same for s in ("default", "tuned")]
    )  # left as they were


def _variant_value(params: Mapping[str, str], key: str) -> str:
    """A run's hyperparameter; a dropout rate left to the variant read from its layer
    summary (``D0.5``) when every dropout layer has the same rate."""
    value = params.get(key, "")
    if key == schema.DROPOUT and value == "default":
        rates = set(re.findall(r"\bD([0-9.]+)", params.get(schema.VARIANT_SUMMARY, "")))
        if len(rates) == 1:
            return rates.pop()
    return value


def _param(value: str) -> str:
    """A hyperparameter as a reader wants it: 3 significant digits; "default" as the
    variant's own."""
    if value == "default":
        return "variant's"
    try:
        return f"{float(value):.3g}" if "." in value or "e" in value else value
    except ValueError:
        return value


def summary_frame(summary: pd.DataFrame, rankings: Mapping[str, stats.Ranking]) -> pd.DataFrame:
    """The over-seeds table with formatted cells (terminal and reports). Means and intervals
    are over the healthy runs; the runs left out are named in "excluded"."""
    rows = []
    for r in summary.itertuples():
        ranking = rankings.get(r.setting)
        mark = ranking.marks().get(r.variant, "") if ranking else ""
        mean_rank = ranking.mean_rank.get(r.variant) if ranking else None
        rows.append(
            {
                "variant": schema.display_key(r.variant, r.setting),
                "seeds": f"{r.healthy}/{r.seeds}" if r.healthy != r.seeds else str(r.seeds),
                "excluded": r.excluded,
                "params": f"{r.params:,}",
                "test acc mean ± std": _pm(r.test_accuracy_mean, r.test_accuracy_std),
                "95% CI": _ci(r.test_accuracy_ci95_low, r.test_accuracy_ci95_high),
                "test loss mean ± std": _pm(r.test_loss_mean, r.test_loss_std),
                "best val acc": _num(r.best_val_accuracy_mean),
                "ref acc": _num(r.ref_test_accuracy),
                "Δ vs ref": ""
                if r.delta_vs_ref is None or r.delta_vs_ref != r.delta_vs_ref
                else f"{r.delta_vs_ref:+.4f}",
                "mean rank": "" if mean_rank is None else f"{mean_rank:.2f}",
                "vs best (paired t, Bonferroni, 5%)": mark,
                "seconds": f"{r.train_seconds_mean:.1f}",
            }
        )
    frame = pd.DataFrame(rows)
    if frame["ref acc"].eq("").all():
        frame = frame.drop(columns=["ref acc", "Δ vs ref"])
    if frame["excluded"].eq("").all():
        frame = frame.drop(columns=["excluded"])
    return frame


def ranking_sentence(ranking: stats.Ranking) -> str:
    """One paragraph: the omnibus test, the pairs' verdicts and power, and the groups of
    variants that no pairwise test separates. Never "no difference": a pair the tests do not
    separate is equivalent (within the margin) or inconclusive, and says which."""
    if not ranking.testable and ranking.pairs["test"].eq("").all():
        return f"ranking ({ranking.setting}): " + "; ".join(ranking.notes or ["not testable"])
    n = len(ranking.scores)
    o = ranking.omnibus
    if o is not None:
        head = (
            f"Friedman test over {n} seeds: chi² = {o.chi2:.3g}, p = {o.chi2_p:.3g}; "
            f"Iman-Davenport F({o.df[0]}, {o.df[1]}) = {o.f:.3g}, p = {o.p:.3g}"
        )
    elif len(ranking.order) == 2:
        head = f"paired t-test over {int(ranking.pairs['seeds'].iloc[0])} seeds"
    else:
        head = f"no omnibus test ({n} seeds where every variant's run is healthy)"
    omnibus = (
        "the variants differ at 5%"
        if ranking.omnibus_rejects
        else "'all equal' is not rejected at 5%, which does not show that they are equal"
    )
    pairs = (
        f"Pairs (paired t, Bonferroni over {int(ranking.pairs['test'].ne('').sum())}, margin "
        f"±{ranking.margin:g}): {verdicts.verdict_counts(ranking.pairs)}."
    )
    groups = ranking.groups()
    joined = "; ".join("[" + ", ".join(g) + "]" for g in groups) if groups else "none"
    text = (
        f"ranking ({ranking.setting}): {head} ({omnibus}). {pairs} "
        f"{verdicts.power_sentence(ranking.pairs, ranking.margin)} "
        f"Not separated by the {stats.posthoc_label(ranking.posthoc)}s: {joined}."
    )
    return " ".join([" ".join(text.split()), *ranking.notes])


def rankings(
    table: pd.DataFrame, analysis: stats.Analysis | None = None
) -> dict[str, stats.Ranking]:
    """The ranking of every setting in the table (default, tuned), in the table's order."""
    a = analysis or stats.Analysis()
    ranked = {
        setting: stats.rank(table, setting, margin=a.margin, alpha=a.alpha, posthoc=a.posthoc)
        for setting in dict.fromkeys(table["setting"])
    }
    return {
        setting: r for setting, r in ranked.items() if r.order
    }  # a setting with no finished run is not ranked


def factorials(table: pd.DataFrame, analysis: stats.Analysis | None) -> dict[str, stats.Factorial]:
    """The factor contrasts of every setting, where the comparison has factors."""
    if analysis is None or not analysis.factors:
        return {}
    return {
        setting: stats.factorial(
            table, setting, analysis.factors, margin=analysis.margin, alpha=analysis.alpha
        )
        for setting in dict.fromkeys(table["setting"])
    }


def grouped_histories(
    table: pd.DataFrame,
    histories: Mapping[str, Mapping[str, list[float]]],
    groups: Mapping[str, str],
) -> dict[str, dict[str, list[Mapping[str, list[float]]]]]:
    """Learning curves per figure group, then per variant/setting: one history per seed."""
    out: dict[str, dict[str, list[Mapping[str, list[float]]]]] = {}
    for row in table.itertuples():
        key = schema.display_key(row.variant, row.setting)
        out.setdefault(groups[row.run], {}).setdefault(key, []).append(histories[row.run])
    return out


def md_text(text: object) -> str:
    """Text from a store or a study file (names, notes, descriptions: anyone who can log
    there wrote it) made inert in Markdown: HTML is shown, not run (``<script>``, ``<img
    onerror>``), a link cannot be formed (``[x](javascript:...)``), a ``|`` does not split a
    table cell, and a line break does not end one."""
    out = md_paragraph(str(text))
    for raw, safe in (("|", "\\|"), ("\r", " "), ("\n", " ")):
        out = out.replace(raw, safe)
    return out


def md_paragraph(text: str) -> str:
    """A paragraph bench wrote around such text: HTML escaped and no link formed (``](``),
    except inside `code spans`, which Markdown already shows as they are."""
    parts = text.split("`")
    for i in range(
        0, len(parts), 2 if len(parts) % 2 else 1
    ):  # an unmatched backtick: escape it all
        parts[i] = html.escape(parts[i], quote=False).replace("](", "]\\(")
    return "`".join(parts)


def md_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Every text cell (and column name) of ``table`` through :func:`md_text`."""
    safe = table.map(lambda v: md_text(v) if isinstance(v, str) else v)
    return safe.rename(columns=lambda c: md_text(c))


def to_markdown(table: pd.DataFrame) -> str:
    buf = io.StringIO()
    md_cells(table).to_markdown(buf, index=False, floatfmt=".4f")
    return buf.getvalue() + "\n"


def comparison_markdown(
    table: pd.DataFrame, title: str, notes: Sequence[str] = (), source: str = ""
) -> str:
    """The comparison table as Markdown, under the study's notes on its protocol."""
    parts = [f"# {md_text(title)}", ""]
    if source:
        parts += [f"Reference numbers: {md_text(source)}.", ""]
    if notes:
        parts += ["## Notes on the protocol", "", *[f"- {md_text(n)}" for n in notes], ""]
    parts += [to_markdown(table), ""]
    return "\n".join(parts)


def _num(v: float | None) -> str:
    return "" if v is None or v != v else f"{v:.4f}"


def _pm(mean: float, std: float) -> str:
    if mean != mean:
        return ""
    return f"{mean:.4f}" if std != std else f"{mean:.4f} ± {std:.4f}"


def _ci(low: float, high: float) -> str:
    return "" if low != low else f"[{low:.4f}, {high:.4f}]"
