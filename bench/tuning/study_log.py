"""What a study logs on its parent MLflow run: its settings as params, the counts and best
trial, Optuna's figures, a CSV of every trial, and the selection over repeats; and the saved
view of its trials that ``bench tune``'s link opens."""

from __future__ import annotations

import json
import logging

import optuna
from optuna.trial import FrozenTrial

import bench.tuning.selection as selection
from bench import data
from bench.store import schema, views
from bench.store.tracker import Tracker
from bench.store.uri import redact
from bench.tuning.target import Target

log = logging.getLogger(__name__)


def save_view(tracker: Tracker, s: Target, parent_id: str) -> None:
    """The saved view ``bench tune``'s printed link opens: the study's trials, their validation
    accuracy and loss curves side by side, one color and label per learning rate where the
    study tunes it."""
    tuned = s.study.search_space.entries()
    view = views.runs_view(
        f"study-{s.study_name} ({parent_id[:8]})",
        views.children_filter(parent_id, schema.KIND_TRIAL),
        [(views.BY_PARAM, schema.LEARNING_RATE)] if schema.LEARNING_RATE in tuned else [],
        best_first=schema.VAL_ACCURACY,
        columns=(schema.VAL_ACCURACY, schema.OBJECTIVE),
    )
    tracker.save_view(parent_id, view)


def study_params(s: Target, splits: data.Splits) -> dict[str, object]:
    """The parent run's params, namespaced ``tuning.*`` so they never collide with the raw
    entry-point params ``mlflow run`` logs on the same run."""
    params = {
        schema.OPTUNA_STUDY: s.study_name,
        schema.OPTUNA_STORAGE: redact(s.storage),
        schema.VARIANT: s.variant,
        schema.TASK: s.task,
        schema.TRIALS: s.trials,
        schema.EPOCHS: s.epochs,
        schema.SAMPLER: "TPESampler (seed + trial number, constant liar)",
        schema.SAMPLER_SEED: s.seed,
        schema.PRUNER: s.pruner,
        schema.PRUNER_MIN_EPOCHS: s.min_epochs,
        schema.OBJECTIVE_DEFINITION: (
            "val_accuracy (best epoch, whose weights the model keeps)"
            if s.base.restore_best
            else "val_accuracy (last epoch)"
        ),
        schema.SEARCH_SPACE: s.study.search_space.model_dump_json(exclude_none=True),
        **{f"{schema.BASE_PREFIX}{k}": v for k, v in s.base.as_params().items()},
        **schema.split_params(splits.sizes),
    }
    return {f"{schema.TUNING_PREFIX}{k}": v for k, v in params.items()}


def log_study(
    tracker: Tracker,
    run_id: str,
    study: optuna.Study,
    final: dict[str, int],
    best: FrozenTrial | None,
    tuned_acc: float | None,
) -> None:
    """Counts, best trial, Optuna's own figures and a CSV of all trials on the parent run."""

    import optuna.visualization.matplotlib as ovm

    metrics: dict[str, float] = {
        f"{schema.TRIALS_PREFIX}{k}": float(v) for k, v in final.items() if k != "running"
    }
    if best is not None:
        metrics[schema.BEST_VAL_ACCURACY] = float(best.value)
        metrics[schema.BEST_TRIAL_METRIC] = float(best.number)
        tracker.set_tags(run_id, {f"{schema.BEST_PREFIX}{k}": v for k, v in best.params.items()})
    if tuned_acc is not None:
        metrics[schema.TUNED_TEST_ACCURACY] = tuned_acc
    tracker.log_metrics(run_id, metrics)
    frame = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "user_attrs", "duration")
    )
    tracker.log_text(run_id, frame.to_csv(index=False), "trials.csv")
    importances = _importances(study)  # fANOVA takes seconds: once for both figures
    for name in schema.OPTUNA_FIGURES:
        ax = _plot(ovm, name, study, importances)
        if ax is None:
            continue
        first = ax.flat[0] if hasattr(ax, "flat") else ax
        fig = first.figure
        fig.set_size_inches(9, 5.5)
        fig.tight_layout()
        tracker.log_figure(run_id, fig, schema.optuna_figure(name))
    tracker.log_text(run_id, interactive_figures(study, importances), schema.OPTUNA_HTML)


class _Computed(optuna.importance.BaseImportanceEvaluator):
    """Importances computed once, handed to each figure that shows them."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values

    def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
        return self.values


def _importances(study: optuna.Study) -> _Computed | None:
    """The study's parameter importances (fANOVA, seconds), once; None where Optuna has too
    few complete trials or a single parameter to rank."""
    try:
        return _Computed(optuna.importance.get_param_importances(study))
    except Exception:  # noqa: BLE001 - Optuna raises several kinds for "not enough"
        return None


def _plot(module, name: str, study: optuna.Study, importances: _Computed | None):
    """Optuna's figure ``name`` from ``module`` (matplotlib or plotly); None where Optuna cannot
    draw it (too few complete trials, one parameter to rank)."""
    import warnings

    if name == "param_importances" and importances is None:
        return None
    kwargs = {"evaluator": importances} if name == "param_importances" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(module, f"plot_{name}")(study, **kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. too few complete trials
            log.info("figure %s skipped: %s", name, exc)
            return None


def interactive_figures(study: optuna.Study, importances: _Computed | None) -> str:
    """Optuna's interactive (plotly) figures of ``study`` as one self-contained HTML page:
    history, importances, parallel coordinate, contour, slice, EDF, intermediate values.
    MLflow's artifact viewer shows it (in a sandboxed frame: plotly.js is inlined, once)."""
    import optuna.visualization as ov

    parts: list[str] = []
    for name in schema.OPTUNA_HTML_FIGURES:
        fig = _plot(ov, name, study, importances)
        if fig is not None:
            parts.append(fig.to_html(include_plotlyjs=not parts, full_html=False))
    title = f"Optuna study {study.study_name}"
    body = "".join(parts) or "<p>no finished trials to plot</p>"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h2>{title}</h2>{body}</body></html>"
    )


def log_selection(tracker: Tracker, run_id: str, record: dict[str, object]) -> None:
    """The selection on repeat 0's parent run: a table of candidates and the summary as params."""
    import pandas as pd

    rows = [
        {
            "candidate": c["source"],
            "default": c["default"],
            "trial_val_accuracy": c["tuning_value"],
            "mean_val_accuracy": c["mean"],
            "seeds": len(c["values"]),
            "selected": i == record["chosen"],
            **c["params"],
        }
        for i, c in enumerate(record["candidates"])
    ]
    tracker.log_text(run_id, pd.DataFrame(rows).to_csv(index=False), "selection.csv")
    tracker.log_text(run_id, json.dumps(record, indent=1, sort_keys=True), "selection.json")
    tracker.set_tags(
        run_id,
        {f"{schema.TUNING_RECORD_PREFIX}{k}": v for k, v in selection.summary(record).items()},
    )
