"""Per variant and setting: what its healthy runs scored over seeds, and how many runs are
left out (diverged, dead, or never finished) and why."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

HEALTHY = "ok"  # the only status whose scores enter means and tests
#: Statuses of runs that did not end (MLflow's FAILED, KILLED, RUNNING, as reports show them).
UNFINISHED = ("failed", "killed", "running")

SUMMARY_COLUMNS = [
    "variant",
    "setting",
    "seeds",
    "healthy",
    "unhealthy",
    "excluded",
    "params",
    "test_accuracy_mean",
    "test_accuracy_std",
    "test_accuracy_ci95_low",
    "test_accuracy_ci95_high",
    "test_loss_mean",
    "test_loss_std",
    "test_loss_ci95_low",
    "test_loss_ci95_high",
    "best_val_accuracy_mean",
    "train_seconds_mean",
    "ref_test_accuracy",
    "delta_vs_ref",
]


def mean_ci(
    values: np.ndarray | pd.Series, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the two-sided t confidence interval.

    One value has no spread: std and the interval are NaN. Values that are all the same
    have std 0 and no interval either (NaN): a zero-width interval would claim a certainty
    that a handful of runs cannot give.
    """
    x = np.asarray(pd.Series(values).dropna(), dtype=float)
    if len(x) == 0:
        return (math.nan,) * 4  # type: ignore[return-value]
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(np.std(x, ddof=1))
    if std == 0.0:
        return mean, 0.0, math.nan, math.nan
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=stats.sem(x))
    return mean, std, float(low), float(high)


def healthy(table: pd.DataFrame) -> pd.Series:
    """Which runs count: those that ended "ok" with a test score."""
    return (table["status"] == HEALTHY) & table["test_accuracy"].notna()


def excluded(runs: pd.DataFrame) -> str:
    """The runs left out, by status: "1 diverged, 1 failed" ("" when none)."""
    left_out = runs.loc[~healthy(runs), "status"].fillna("")
    left_out = left_out.where(~left_out.isin(["", HEALTHY]), "without a test score")
    counts = left_out.value_counts(sort=False)
    return ", ".join(f"{int(c)} {s}" for s, c in counts.items())


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, setting) in the table's order, statistics over its healthy
    seeds; the runs left out are counted (``unhealthy``) and named by status (``excluded``)."""
    rows = []
    for (variant, setting), runs in table.groupby(["variant", "setting"], sort=False):
        ok = runs[healthy(runs)]
        acc = mean_ci(ok["test_accuracy"])
        loss = mean_ci(ok["test_loss"])
        ref = runs["ref_test_accuracy"].dropna()
        ref_acc = float(ref.iloc[0]) if len(ref) else None
        rows.append(
            {
                "variant": variant,
                "setting": setting,
                "seeds": len(runs),
                "healthy": len(ok),
                "unhealthy": len(runs) - len(ok),
                "excluded": excluded(runs),
                "params": int(runs["params"].iloc[0]),
                **_stats("test_accuracy", acc),
                **_stats("test_loss", loss),
                "best_val_accuracy_mean": float(ok["best_val_accuracy"].astype(float).mean()),
                "train_seconds_mean": float(ok["train_seconds"].astype(float).mean()),
                "ref_test_accuracy": ref_acc,
                "delta_vs_ref": None if ref_acc is None or math.isnan(acc[0]) else acc[0] - ref_acc,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _stats(metric: str, values: tuple[float, float, float, float]) -> dict[str, float]:
    return dict(
        zip(
            [f"{metric}_{s}" for s in ("mean", "std", "ci95_low", "ci95_high")], values, strict=True
        )
    )
