"""What lands in a run besides its params: test scores, figures, tables and the model.

Each public function is what one kind of run logs: a training run (:func:`log_training`),
a comparison (:func:`log_comparison`, with :func:`log_seed_statistics` and
:func:`log_dataset`). The :class:`~bench.store.tracker.Tracker` only writes; the choice of
what to write is made here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench import figures, stats
from bench.data import Splits, class_balance, summary
from bench.models import get_variant
from bench.results import table as tables
from bench.store import models as store_models
from bench.store import schema
from bench.store.datasets import SplitData, digest
from bench.store.tracker import Tracker
from bench.store.uri import sanitize_name
from bench.training import HISTORY_KEYS, STATUS_DIVERGED, TrainResult

Histories = Mapping[str, Mapping[str, list[float]]]


# --------------------------------------------------------------------------- a training run


@dataclass(frozen=True)
class ModelNaming:
    """What a training run's model is called: its LoggedModel ``name`` (variant, and setting
    where tuned) and, where it is registered, the registered model and the alias to point
    at the new version."""

    name: str
    registered: str | None = None
    alias: str | None = None


def log_training(
    tracker: Tracker,
    run_id: str,
    result: TrainResult,
    *,
    splits: Splits,
    log_model: bool = True,
    naming: ModelNaming | None = None,
) -> str | None:
    """Test scores, status, figures, tables and the model of one finished training run. The
    model is logged first, so the test scores are logged against it and the test dataset."""
    tracker.set_tags(
        run_id,
        {
            schema.STATUS: result.status,
            schema.DEVICE: result.device,
            **({schema.STATUS_MESSAGE: result.message} if result.message else {}),
        },
    )
    scores = tables.result_metrics(result)
    tested = {k: scores.pop(k) for k in (schema.TEST_LOSS, schema.TEST_ACCURACY)}
    tracker.log_metrics(run_id, scores)
    history = pd.DataFrame({k: result.history[k] for k in HISTORY_KEYS})
    history.index.name = "epoch"
    tracker.log_text(run_id, history.to_csv(), "history.csv")
    title = f"{result.variant} (seed {result.hparams.seed})"
    if result.epochs_run:
        tracker.log_figure(
            run_id, figures.learning_curves(result.history, title), "figures/learning_curves.png"
        )
    if result.confusion is not None:
        _log_confusion(tracker, run_id, result.confusion, list(splits.class_names), title)
    if result.test_predictions is not None and splits.pixels:  # tabular examples are not pictures
        _log_predictions(tracker, run_id, result.test_predictions, splits, title)
    model = result.keras_model()
    uri = model_id = None
    if model is not None and result.status != STATUS_DIVERGED:
        from bench.models.build import weight_tensors

        tracker.log_figure(
            run_id,
            figures.weight_violins(weight_tensors(model), title),
            "figures/weights_violin.png",
        )
        _log_batch_norm(tracker, run_id, model, title)
        if log_model:
            uri, model_id = _log_kept_model(
                tracker, run_id, result, model, splits, naming or ModelNaming(result.variant)
            )
    tracker.log_metrics(run_id, tested, dataset=split_datasets(splits)[-1], model_id=model_id)
    return uri


def _log_kept_model(
    tracker: Tracker, run_id: str, result: TrainResult, model, splits: Splits, naming: ModelNaming
) -> tuple[str, str]:
    """The model as a LoggedModel whose metrics are the kept epoch's (the last, or the
    restored best) and, logged after this, its test scores; registered where named."""
    from bench.models.build import logged_params

    description = model_description(result, splits)
    uri, model_id = log_serving_model(
        tracker,
        run_id,
        model,
        splits,
        name=naming.name,
        params=logged_params(result.hparams, get_variant(result.variant)),
        description=description,
    )
    kept = result.best_epoch if result.hparams.restore_best else result.epochs_run - 1
    store_models.link_metrics(
        tracker, run_id, model_id, kept, [k for k in HISTORY_KEYS if k != schema.EPOCH_SECONDS]
    )
    if naming.registered:
        scores = {
            k: f"{v:.4f}"
            for k, v in (
                (schema.TEST_ACCURACY, result.test_accuracy),
                (schema.TEST_LOSS, result.test_loss),
            )
            if v is not None
        }
        store_models.register_model(
            tracker,
            uri,
            naming.registered,
            naming.alias,
            {schema.SEED_TAG: str(result.hparams.seed), schema.RUN_ID_TAG: run_id, **scores},
            description,
        )
    return uri, model_id


def model_description(result: TrainResult, splits: Splits) -> str:
    """What a logged or registered model is, in one paragraph: variant, task, hyperparameters,
    which epoch's weights, test scores."""
    from bench.models.build import logged_params

    hp = result.hparams
    shown = ", ".join(
        f"{k}={v}"
        for k, v in logged_params(hp, get_variant(result.variant)).items()
        if k != schema.RESTORE_BEST
    )
    kept = (
        f"the best validation epoch's weights (epoch {result.best_epoch + 1} of "
        f"{result.epochs_run})"
        if hp.restore_best and result.best_epoch is not None
        else f"the weights after epoch {result.epochs_run}"
    )
    test = (
        f"; test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f}"
        if result.test_accuracy is not None and result.test_loss is not None
        else ""
    )
    return (
        f"{result.variant} trained on {splits.task} "
        f"({splits.sizes.get('train', len(splits.x_train))} examples) with {shown}; {kept}{test}. "
        f"Input: raw examples as the data holds them (preprocessing {splits.preprocessing} is "
        "built in)."
    )


def split_datasets(splits: Splits) -> list[SplitData]:
    """The train, validation and test splits as MLflow datasets (digests computed once per
    set of splits)."""
    key = id(splits)
    if key not in _DATASETS:
        while len(_DATASETS) >= 2:
            del _DATASETS[next(iter(_DATASETS))]
        source = splits.source.split(": ", 1)[-1] if ": " in splits.source else splits.source
        parts = (
            ("train", splits.x_train, splits.y_train),
            ("validation", splits.x_val, splits.y_val),
            ("test", splits.x_test, splits.y_test),
        )
        _DATASETS[key] = (
            splits,
            [
                SplitData(
                    name=f"{splits.task}-{split}",
                    digest=digest(x, y),
                    source=source or splits.task,
                    context=schema.DATA_CONTEXTS[split],
                    rows=len(x),
                    features_shape=tuple(x.shape[1:]),
                )
                for split, x, y in parts
            ],
        )
    return _DATASETS[key][1]


_DATASETS: dict[
    int, tuple[Splits, list[SplitData]]
] = {}  # the splits are held: their id stays theirs


def _log_confusion(
    tracker: Tracker, run_id: str, confusion: np.ndarray, class_names: list[str], title: str
) -> None:
    cm = pd.DataFrame(confusion, index=class_names, columns=class_names)
    cm.index.name = "true \\ predicted"
    tracker.log_text(run_id, cm.to_csv(), "confusion_matrix.csv")
    tracker.log_figure(
        run_id, figures.confusion_matrix(confusion, class_names, title), schema.CONFUSION_FIGURE
    )


def _log_predictions(
    tracker: Tracker, run_id: str, predicted: np.ndarray, splits: Splits, title: str, n: int = 25
) -> None:
    """The first 25 test images captioned "GT: true, P: predicted" (seed 003), mistakes in red."""
    names = splits.class_names
    truth = splits.y_test[:n]
    guess = predicted[:n]
    labels = [f"GT: {names[t]}\nP: {names[p]}" for t, p in zip(truth, guess, strict=True)]
    fig = figures.image_grid(
        splits.raw(splits.x_test[:n]),
        labels,
        f"{title}: first {len(truth)} test images",
        wrong=list(truth != guess),
    )
    tracker.log_figure(run_id, fig, "figures/test_predictions.png")


def _log_batch_norm(tracker: Tracker, run_id: str, model, title: str) -> None:
    """Each batch-norm layer's gamma, beta, moving mean and variance per channel (seed 002)."""
    from bench.models.build import batch_norm_parameters

    found = batch_norm_parameters(model)
    if not found:
        return
    frame = pd.concat(
        [
            pd.DataFrame({"layer": name, "channel": np.arange(len(v["moving_mean"])), **v})
            for name, v in found.items()
        ],
        ignore_index=True,
    )
    tracker.log_text(run_id, frame.to_csv(index=False), "batch_norm/parameters.csv")
    means = frame.groupby("layer", sort=False)[
        ["gamma", "beta", "moving_mean", "moving_variance"]
    ].mean()
    means.insert(0, "channels", frame.groupby("layer", sort=False).size())
    tracker.log_text(run_id, tables.to_markdown(means.reset_index()), "batch_norm/summary.md")
    tracker.log_figure(
        run_id,
        figures.batch_norm_parameters(frame, f"{title}: batch-norm parameters per channel"),
        "batch_norm/parameters.png",
    )


def log_serving_model(
    tracker: Tracker,
    run_id: str,
    model,
    splits: Splits,
    *,
    name: str,
    params: Mapping[str, object],
    description: str = "",
) -> tuple[str, str]:
    """Log the model as an MLflow Keras model that takes raw uint8 images (its URI and id),
    with two test images as its input example."""
    from importlib import metadata

    from bench.models.build import serving_model

    serving = serving_model(model, scale=splits.scale, offset=splits.offset)
    pins = [f"{lib}=={metadata.version(lib)}" for lib in ("tensorflow", "keras")]
    return store_models.log_keras_model(
        tracker,
        run_id,
        serving,
        name=name,
        params=params,
        input_name="raw_image",
        input_dtype=np.uint8,
        pip_requirements=pins,
        input_example=splits.raw_test_images()[:2],
        description=description,
    )


# --------------------------------------------------------------------------- a comparison


def log_comparison(
    tracker: Tracker,
    run_id: str,
    table: pd.DataFrame,
    histories: Histories,
    groups: Mapping[str, str],
    *,
    title: str,
    splits: Splits | None = None,
    notes: Sequence[str] = (),
    reference_source: str = "",
    seed_statistics: SeedStatistics | None = None,
) -> None:
    """The comparison table (CSV, Markdown with the study's notes), overlays per group,
    the accuracy chart, accuracy against depth, and the dataset summary."""
    tracker.log_text(run_id, table.to_csv(index=False), "comparison.csv")
    tracker.log_text(
        run_id, tables.comparison_markdown(table, title, notes, reference_source), "comparison.md"
    )
    if notes:
        tracker.log_text(
            run_id, "\n".join(f"- {tables.md_text(n)}" for n in notes) + "\n", "notes.md"
        )
    for group in sorted(set(groups.values())):
        members = {
            run: h for run, h in histories.items() if groups[run] == group and h[schema.ACCURACY]
        }
        if members:
            fig = figures.overlay(
                members, f"{title}: {group} variants, train (solid) vs validation (dashed)"
            )
            tracker.log_figure(run_id, fig, f"figures/overlay_{sanitize_name(group)}.png")
    if table["test_accuracy"].notna().any():
        tracker.log_figure(
            run_id,
            figures.test_accuracy_chart(table, f"{title}: test accuracy"),
            "figures/test_accuracy.png",
        )
    depth = _depth_table(table)
    if depth is not None:
        tracker.log_figure(
            run_id,
            figures.accuracy_vs_depth(depth, f"{title}: test accuracy vs hidden layers"),
            "figures/accuracy_vs_depth.png",
        )
    if splits is not None:
        log_dataset(tracker, run_id, splits, title)
    if seed_statistics is not None:
        log_seed_statistics(tracker, run_id, table, seed_statistics, histories, groups, title=title)


class SeedStatistics:
    """A comparison's statistics over seeds: the summary, rankings and factor contrasts per
    setting, the tuning effect. ``analysis`` (margin, factors) None: read from the parent
    run's protocol params when logged (:func:`log_seed_statistics`), as the report reads them."""

    def __init__(self, table: pd.DataFrame, analysis: stats.Analysis | None = None) -> None:
        self.analysis = analysis
        a = analysis or stats.Analysis()
        self.summary = stats.aggregate(table)
        self.rankings = tables.rankings(table, a)
        self.tuning_effect = stats.tuning_effect(table, margin=a.margin, alpha=a.alpha)
        self.factorials = tables.factorials(table, a)


def log_seed_statistics(
    tracker: Tracker,
    run_id: str,
    table: pd.DataFrame,
    seed_stats: SeedStatistics,
    histories: Histories,
    groups: Mapping[str, str],
    *,
    title: str,
) -> None:
    """Over-seeds statistics: the summary table (also as MLflow's table), rankings with every
    pair's verdict, factor contrasts, the tuning effect, bands."""
    summary_table = seed_stats.summary
    tracker.log_text(run_id, summary_table.to_csv(index=False), "summary.csv")
    tracker.log_text(run_id, tables.to_markdown(summary_table), "summary.md")
    tracker.log_table(run_id, summary_table, schema.SUMMARY_TABLE)
    for setting, ranking in seed_stats.rankings.items():
        _log_ranking(tracker, run_id, setting, ranking, seed_stats.factorials.get(setting), title)
    if seed_stats.tuning_effect is not None:
        tracker.log_text(run_id, seed_stats.tuning_effect.to_csv(index=False), "tuning_effect.csv")
    if int(summary_table["seeds"].max()) > 1:
        grouped = tables.grouped_histories(table, histories, groups)
        for group in sorted(grouped):
            fig = figures.learning_curve_bands(grouped[group], f"{title}: {group} variants")
            tracker.log_figure(run_id, fig, f"figures/curves_{sanitize_name(group)}.png")


def _log_ranking(
    tracker: Tracker,
    run_id: str,
    setting: str,
    ranking: stats.Ranking,
    factorial: stats.Factorial | None,
    title: str,
) -> None:
    """One setting's ranking, p-values, verdicts (``pairs.csv``), contrasts and figure."""
    suffix = "" if setting == schema.SETTING_DEFAULT else f"_{sanitize_name(setting)}"
    tracker.log_text(run_id, ranking.table().to_csv(index=False), f"ranking{suffix}.csv")
    tracker.log_table(
        run_id, ranking.table(), schema.RANKING_TABLE.replace(".json", f"{suffix}.json")
    )
    tracker.log_text(run_id, ranking.pvalues.to_csv(), f"ranking{suffix}_pvalues.csv")
    tracker.log_text(run_id, ranking.pairs.to_csv(index=False), f"pairs{suffix}.csv")
    if ranking.omnibus is not None:
        tracker.log_metrics(
            run_id,
            {
                f"{schema.FRIEDMAN_P}{suffix}": ranking.omnibus.chi2_p,
                f"{schema.IMAN_DAVENPORT_P}{suffix}": ranking.omnibus.p,
            },
        )
    if factorial is not None:
        tracker.log_text(run_id, factorial.contrasts.to_csv(index=False), f"contrasts{suffix}.csv")
        if factorial.anova is not None:
            tracker.log_text(run_id, factorial.anova.to_csv(index=False), f"anova{suffix}.csv")
    title_r = f"{title}: mean rank on test accuracy over {len(ranking.scores)} seeds ({setting})"
    tracker.log_figure(run_id, ranking_figure(ranking, title_r), f"figures/ranking{suffix}.png")


def results_markdown(table: pd.DataFrame, seed_stats: SeedStatistics) -> str:
    """A comparison's results for its run's description: per variant over seeds (mean ± std,
    95% CI, mean rank, verdict against the best) and each ranking's sentence; with one seed,
    every run's scores."""
    if int(seed_stats.summary["seeds"].max()) > 1:
        frame = tables.summary_frame(seed_stats.summary, seed_stats.rankings)
        shown = ["variant", "seeds", "test acc mean ± std", "95% CI", "mean rank"]
        shown = [c for c in [*shown, "vs best (paired t, Bonferroni, 5%)"] if c in frame.columns]
        sentences = [tables.ranking_sentence(r) for r in seed_stats.rankings.values()]
        parts = [tables.to_markdown(frame[shown]).strip(), *map(tables.md_paragraph, sentences)]
    else:
        scores = [schema.TEST_ACCURACY, schema.TEST_LOSS, schema.BEST_VAL_ACCURACY]
        parts = [tables.to_markdown(table[["run", *scores]]).strip()]
    pointer = (
        "Every run: comparison.csv; per variant: summary.csv; every pair's verdict: pairs.csv; "
        "all of it: report/."
    )
    return "\n\n".join(["Results:", *parts, pointer])


def ranking_figure(ranking: stats.Ranking, title: str):
    """Mean ranks over seeds, with bars joining the variants whose paired tests (Bonferroni)
    do not separate them (comparison runs and reports alike). Not a Nemenyi
    critical-difference diagram, though scikit-posthocs draws it with that function."""
    return figures.ranking_diagram(ranking.mean_rank, ranking.pvalues, True, title)


def log_dataset(tracker: Tracker, run_id: str, splits: Splits, title: str) -> None:
    """The data a comparison ran on: summary, class balance per split (seed 000 checked
    it) and the first 25 development and test images with their class names (seed 003)."""
    names = list(splits.class_names)
    balance = class_balance(splits)
    frame = pd.DataFrame(balance, index=names)
    frame.index.name = "class"
    tracker.log_text(run_id, frame.to_csv(), "dataset/class_balance.csv")
    tracker.log_figure(
        run_id,
        figures.class_balance(balance, names, f"{title}: class balance"),
        "dataset/class_balance.png",
    )
    lines = [f"# Dataset: {splits.task}", ""]
    for key, value in summary(splits, balance).items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", "## Images per class", "", tables.to_markdown(frame.reset_index())]
    tracker.log_text(run_id, "\n".join(lines) + "\n", "dataset/summary.md")
    if not splits.pixels:
        return  # tabular examples are not pictures
    dev_x = splits.x_train[:25]  # the development set starts with the training split
    dev = figures.image_grid(
        splits.raw(dev_x),
        [names[y] for y in splits.y_train[:25]],
        f"{splits.task}: first 25 development images",
    )
    tracker.log_figure(run_id, dev, "dataset/samples_development.png")
    test = figures.image_grid(
        splits.raw_test_images()[:25],
        [names[y] for y in splits.y_test[:25]],
        f"{splits.task}: first 25 test images",
    )
    tracker.log_figure(run_id, test, "dataset/samples_test.png")


def _depth_table(table: pd.DataFrame) -> pd.DataFrame | None:
    """Rows for the accuracy-vs-depth figure, when some family was run at two depths or more."""
    rows = table.dropna(subset=["test_accuracy"])
    if rows.empty:
        return None
    rows = rows.assign(
        family=[get_variant(v).family for v in rows["variant"]],
        hidden_layers=[get_variant(v).hidden_layers for v in rows["variant"]],
    )
    if rows.groupby("family")["hidden_layers"].nunique().max() < 2:
        return None
    return rows
