"""Matplotlib figures (headless). Each function returns a Figure; the caller saves or logs it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

LAYER = 1  # import layer (docs/development.md#layers): imports only lower layers' units

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _epochs(values: Sequence[float]) -> np.ndarray:
    return np.arange(1, len(values) + 1)


def learning_curves(history: Mapping[str, Sequence[float]], title: str) -> Figure:
    """Accuracy and loss against epoch, train and validation (seed 000's per-model plot)."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, key, label in ((ax_acc, "accuracy", "accuracy"), (ax_loss, "loss", "loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key, [])
            if len(values):
                ax.plot(
                    _epochs(values),
                    values,
                    style,
                    marker="o",
                    ms=3,
                    label=("validation " if prefix else "train ") + label,
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    best = (
        int(np.nanargmax(history["val_accuracy"])) if len(history.get("val_accuracy", [])) else None
    )
    if best is not None:
        ax_acc.axvline(best + 1, color="grey", lw=0.8, ls=":")
        ax_acc.annotate(
            f"best val {history['val_accuracy'][best]:.4f}",
            (best + 1, history["val_accuracy"][best]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    fig.suptitle(title)
    return fig


def confusion_matrix(cm: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Counts with row-normalised shading; the diagonal is recall per class."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(class_names)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, label="fraction of true class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} (accuracy {acc:.4f})")
    return fig


def weight_violins(weights: Mapping[str, np.ndarray], title: str) -> Figure:
    """Distribution of each layer's trained kernel weights (seed 001's violin plots)."""
    names = list(weights)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) + 2), 4), layout="constrained")
    data = [np.asarray(weights[n]).ravel() for n in names]
    # Subsample big layers: the shape of the distribution is what matters, not every point.
    rng = np.random.default_rng(0)
    data = [d if d.size <= 20_000 else rng.choice(d, 20_000, replace=False) for d in data]
    ax.violinplot(data, showmedians=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title)
    return fig


def overlay(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str) -> Figure:
    """Train and validation accuracy of several runs on one plot (seed 000's overlays)."""
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, hist) in enumerate(histories.items()):
        c = colors[i % len(colors)]
        ax.plot(_epochs(hist["accuracy"]), hist["accuracy"], "-", color=c, label=f"{name} train")
        ax.plot(
            _epochs(hist["val_accuracy"]), hist["val_accuracy"], "--", color=c, label=f"{name} val"
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title)
    return fig


def test_accuracy_chart(table: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars of test accuracy per run, with the reference number where known."""
    table = table.sort_values("test_accuracy")
    labels = table["run"].tolist()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.5), layout="constrained")
    y = np.arange(len(labels))
    ax.barh(y, table["test_accuracy"].astype(float), color="tab:blue", label="bench")
    if "ref_test_accuracy" in table and table["ref_test_accuracy"].notna().any():
        ax.scatter(
            table["ref_test_accuracy"].astype(float),
            y,
            marker="D",
            color="tab:orange",
            zorder=3,
            label="reference (notebook)",
        )
    for yi, v in zip(y, table["test_accuracy"].astype(float), strict=True):
        if np.isfinite(v):
            ax.text(v, yi, f" {v:.4f}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    finite = table["test_accuracy"].astype(float)
    finite = finite[np.isfinite(finite)]
    lo = max(0.0, (finite.min() if len(finite) else 0.0) - 0.05)
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("test accuracy")
    ax.legend(loc="lower right")
    ax.set_title(title)
    return fig


def class_balance(
    counts: Mapping[str, Sequence[int]], class_names: Sequence[str], title: str
) -> Figure:
    """Per-class counts of each split, side by side."""
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    k = len(class_names)
    width = 0.8 / max(len(counts), 1)
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(np.arange(k) + i * width, values, width, label=split)
    ax.set_xticks(
        np.arange(k) + width * (len(counts) - 1) / 2, class_names, rotation=30, ha="right"
    )
    ax.set_ylabel("images")
    ax.legend()
    ax.set_title(title)
    return fig


def image_grid(
    images: np.ndarray,
    labels: Sequence[str],
    title: str,
    *,
    wrong: Sequence[bool] | None = None,
    rows: int = 5,
    cols: int = 5,
) -> Figure:
    """The first ``rows x cols`` images, each captioned, no axes (seed 003's 5x5 grids).

    ``wrong`` marks captions in red (a misclassified image in a "GT: ..., P: ..." grid).
    The images are tiled into one mosaic on one axes: 25 separate axes take ten times as
    long to lay out and save.
    """
    images = np.asarray(images)[: rows * cols]
    n = len(images)
    h, w = images.shape[1:3]
    pad_y, pad_x = h // 3, w // 9  # room for a two-line caption above each image
    mosaic = np.zeros((rows * (h + pad_y), cols * (w + pad_x)), dtype=np.uint8)
    width = 1.6 * cols  # inches; the height follows the mosaic's aspect, plus the title
    fig, ax = plt.subplots(figsize=(width, width * mosaic.shape[0] / mosaic.shape[1] + 0.5))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / fig.get_figheight())
    for i in range(n):
        r, c = divmod(i, cols)
        y0, x0 = r * (h + pad_y) + pad_y, c * (w + pad_x)
        mosaic[y0 : y0 + h, x0 : x0 + w] = images[i].reshape(h, w)
        red = wrong is not None and wrong[i]
        ax.text(
            x0 + w / 2,
            y0 - 1,
            labels[i],
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="tab:red" if red else "black",
        )
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title)
    return fig


def accuracy_vs_depth(table: pd.DataFrame, title: str) -> Figure:
    """Test accuracy against the number of hidden layers, one line per family (seed 001).

    ``table`` needs columns family, hidden_layers and test_accuracy; several seeds of a
    point are drawn as their mean with the individual runs as dots.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for family, rows in table.groupby("family", sort=False):
        means = rows.groupby("hidden_layers")["test_accuracy"].mean().sort_index()
        (line,) = ax.plot(means.index, means.values, marker="o", label=family)
        ax.scatter(
            rows["hidden_layers"], rows["test_accuracy"], color=line.get_color(), s=10, alpha=0.5
        )
        if "ref_test_accuracy" in rows and rows["ref_test_accuracy"].notna().any():
            refs = (
                rows.dropna(subset=["ref_test_accuracy"])
                .groupby("hidden_layers")["ref_test_accuracy"]
                .first()
            )
            ax.plot(
                refs.index,
                refs.values,
                ls=":",
                marker="D",
                ms=4,
                color=line.get_color(),
                label=f"{family} (notebook)",
            )
    ax.set_xlabel("hidden layers")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def batch_norm_parameters(frame: pd.DataFrame, title: str) -> Figure:
    """Per batch-norm layer, the distribution over channels of gamma, beta, moving mean and
    moving variance (seed 002 prints these; a figure shows them at a glance)."""
    quantities = ["gamma", "beta", "moving_mean", "moving_variance"]
    layers_ = list(dict.fromkeys(frame["layer"]))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8), layout="constrained")
    for ax, q in zip(axes, quantities, strict=True):
        data = [frame.loc[frame["layer"] == layer, q].dropna().to_numpy() for layer in layers_]
        positions = [i + 1 for i, d in enumerate(data) if len(d)]
        data = [d for d in data if len(d)]
        if data:
            ax.boxplot(data, positions=positions, widths=0.6)
            for pos, d in zip(positions, data, strict=True):
                jitter = np.random.default_rng(pos).uniform(-0.15, 0.15, len(d))
                ax.scatter(pos + jitter, d, s=6, alpha=0.5)
        ax.set_xticks(range(1, len(layers_) + 1), layers_, rotation=35, ha="right", fontsize=8)
        ax.set_title(q.replace("_", " "))
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    return fig


def learning_curve_bands(
    runs: Mapping[str, Sequence[Mapping[str, Sequence[float]]]], title: str
) -> Figure:
    """Mean ± std over seeds per variant: accuracy and loss, train (solid) and validation
    (dashed). Runs of different lengths (one stopped early) are averaged where present."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, histories) in enumerate(runs.items()):
        c = colors[i % len(colors)]
        for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
            for prefix, style in (("", "-"), ("val_", "--")):
                curves = [np.asarray(h.get(prefix + key, []), dtype=float) for h in histories]
                curves = [x for x in curves if len(x)]
                if not curves:
                    continue
                length = max(len(x) for x in curves)
                stack = np.full((len(curves), length), np.nan)
                for j, x in enumerate(curves):
                    stack[j, : len(x)] = x
                with np.errstate(invalid="ignore"):
                    mean = np.nanmean(stack, axis=0)
                    std = np.nanstd(stack, axis=0, ddof=1) if len(curves) > 1 else np.zeros(length)
                epochs = _epochs(mean)
                label = f"{name} {'val' if prefix else 'train'}" + (
                    f" (n={len(curves)})" if prefix else ""
                )
                ax.plot(epochs, mean, style, color=c, label=label)
                ax.fill_between(epochs, mean - std, mean + std, color=c, alpha=0.15, lw=0)
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{title} (mean ± std over seeds)")
    return fig


def ranking_diagram(
    mean_rank: pd.Series, pvalues: pd.DataFrame, significant: bool, title: str, alpha: float = 0.05
) -> Figure:
    """Mean rank over seeds, 1 = best, with bars joining variants that ``pvalues`` (the
    post-hoc tests, already adjusted) do not separate at ``alpha``; drawn by scikit-posthocs'
    ``critical_difference_diagram``, but the bars are those tests', not Nemenyi's critical
    difference. ``significant`` False joins every variant (an omnibus gate, where one is used)."""
    import scikit_posthocs as sp

    sig = (
        pvalues if significant else pd.DataFrame(1.0, index=pvalues.index, columns=pvalues.columns)
    )
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.35 * len(mean_rank)), layout="constrained")
    if len(mean_rank) >= 2:
        sp.critical_difference_diagram(mean_rank, sig, ax=ax, alpha=alpha)
    else:
        ax.text(0.5, 0.5, f"{mean_rank.index[0]}: the only variant", ha="center", va="center")
        ax.axis("off")
    ax.set_title(title, fontsize=10)
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
