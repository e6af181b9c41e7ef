"""Seed statistics: "which variant is better, by how much, and how sure are we".

Pure pandas / SciPy / scikit-posthocs on the per-run comparison table (one row per
variant, setting and seed); no MLflow, so a report rebuilt from the store and the table a
comparison just produced go through exactly the same code.

* :func:`aggregate`: per variant and setting, mean / std / 95% t-interval of test
  accuracy and loss over seeds, with the mean best validation accuracy, training time and
  the notebook's number.
* :func:`rank`: the variants ranked on test accuracy with seeds as paired blocks: a
  Friedman test across all variants, then paired t-tests between every pair with Holm's
  correction (Demšar 2006's recipe for comparing several methods over paired blocks).
  Pairs are only called different when the Friedman test rejects "all equal" first.

Why paired t-tests and not Wilcoxon post hoc: with n seeds, the Wilcoxon signed-rank test
cannot return a two-sided p below 2 / 2**n, so with 3-5 seeds (the usual budget) it can
never reach 5%. ``posthoc="wilcoxon"`` is there for studies with many seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats

ALPHA = 0.05
POSTHOC = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank"}  # name -> what reports call it

SUMMARY_COLUMNS = [
    "variant",
    "setting",
    "seeds",
    "healthy",
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


def mean_ci(values: np.ndarray | pd.Series, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample standard deviation and the two-sided t confidence interval.

    One value has no spread: std and the interval are NaN (not zero, which would claim
    certainty that a single run cannot give).
    """
    x = np.asarray(pd.Series(values).dropna(), dtype=float)
    if len(x) == 0:
        return (math.nan,) * 4  # type: ignore[return-value]
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(np.std(x, ddof=1))
    if std == 0.0:
        return mean, 0.0, mean, mean
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=stats.sem(x))
    return mean, std, float(low), float(high)


def aggregate(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, setting) in the table's order, statistics over its seeds."""
    rows = []
    for (variant, setting), runs in table.groupby(["variant", "setting"], sort=False):
        acc = mean_ci(runs["test_accuracy"])
        loss = mean_ci(runs["test_loss"])
        ref = runs["ref_test_accuracy"].dropna()
        ref_acc = float(ref.iloc[0]) if len(ref) else None
        rows.append(
            {
                "variant": variant,
                "setting": setting,
                "seeds": len(runs),
                "healthy": int((runs["status"] == "ok").sum()),
                "params": int(runs["params"].iloc[0]),
                "test_accuracy_mean": acc[0],
                "test_accuracy_std": acc[1],
                "test_accuracy_ci95_low": acc[2],
                "test_accuracy_ci95_high": acc[3],
                "test_loss_mean": loss[0],
                "test_loss_std": loss[1],
                "test_loss_ci95_low": loss[2],
                "test_loss_ci95_high": loss[3],
                "best_val_accuracy_mean": float(runs["best_val_accuracy"].astype(float).mean()),
                "train_seconds_mean": float(runs["train_seconds"].astype(float).mean()),
                "ref_test_accuracy": ref_acc,
                "delta_vs_ref": None if ref_acc is None or math.isnan(acc[0]) else acc[0] - ref_acc,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- ranking


@dataclass
class Ranking:
    """The outcome of :func:`rank` for one setting."""

    setting: str
    scores: pd.DataFrame  # seeds x variants, test accuracy (diverged runs count as 0)
    mean_rank: pd.Series  # 1 = best, averaged over seeds
    friedman_p: float | None  # None: fewer than 3 variants (a single paired test instead)
    pvalues: pd.DataFrame  # variants x variants, Holm-adjusted post-hoc p-values
    posthoc: str = "ttest"
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)

    @property
    def testable(self) -> bool:
        return len(self.scores) >= 2 and self.scores.shape[1] >= 2

    @property
    def omnibus_rejects(self) -> bool:
        """Whether "every variant is equally good" is rejected (the gate for pairwise claims)."""
        if not self.testable:
            return False
        if self.friedman_p is None:  # two variants: the one paired test is the omnibus
            return bool((self.pvalues.to_numpy()[~np.eye(len(self.pvalues), dtype=bool)] < self.alpha).any())
        return self.friedman_p < self.alpha

    def significant(self, a: str, b: str) -> bool:
        return self.omnibus_rejects and bool(self.pvalues.loc[a, b] < self.alpha)

    @property
    def order(self) -> list[str]:
        return list(self.mean_rank.sort_values(kind="stable").index)

    @property
    def best(self) -> str:
        return self.order[0]

    def marks(self) -> dict[str, str]:
        """Per variant, how it stands against the top-ranked one, e.g. "worse than best (p=0.012)"."""
        if not self.order:
            return {}
        best = self.best
        out = {}
        for v in self.order:
            if v == best:
                out[v] = "best" if self.testable else "best (untested)"
            elif not self.testable:
                out[v] = "untested (one seed)"
            elif self.significant(v, best):
                out[v] = f"worse than best (p={self.pvalues.loc[v, best]:.3g})"
            else:
                out[v] = "not significantly different from best"
        return out

    def groups(self) -> list[list[str]]:
        """Maximal runs of consecutively ranked variants with no significant difference
        inside (the bars of a critical-difference diagram)."""
        order = self.order
        found: list[list[str]] = []
        for i in range(len(order)):
            j = i
            while j + 1 < len(order) and not any(self.significant(order[k], order[j + 1]) for k in range(i, j + 1)):
                j += 1
            group = order[i : j + 1]
            if len(group) > 1 and not any(set(group) <= set(g) for g in found):
                found.append(group)
        return found

    def table(self) -> pd.DataFrame:
        """Rank order, mean rank, mean accuracy and the mark against the best."""
        marks = self.marks()
        return pd.DataFrame(
            {
                "rank": range(1, len(self.order) + 1),
                "variant": self.order,
                "mean_rank": [self.mean_rank[v] for v in self.order],
                "test_accuracy_mean": [float(self.scores[v].mean()) for v in self.order],
                "vs_best": [marks[v] for v in self.order],
            }
        )


#: Statuses of runs that did not end (MLflow's FAILED, KILLED, RUNNING, as reports show them).
UNFINISHED = ("failed", "killed", "running")


def score_matrix(table: pd.DataFrame, setting: str = "default") -> pd.DataFrame:
    """Seeds x variants of test accuracy for one setting; only seeds every variant ran.

    A diverged run has no test score; it counts as accuracy 0 (the recipe failed on that
    seed), so a variant cannot climb the ranking by diverging. A run that never finished
    (failed, killed, still running: the process, not the recipe, stopped) is missing data:
    that seed is left out, and a variant with no finished run is not ranked.
    """
    rows = table[(table["setting"] == setting) & ~table["status"].isin(UNFINISHED)]
    scores = rows.pivot_table(index="seed", columns="variant", values="test_accuracy", aggfunc="first", dropna=False)
    ran = rows.pivot_table(index="seed", columns="variant", values="status", aggfunc="first")
    order = list(dict.fromkeys(rows["variant"]))
    scores = scores.reindex(columns=order)
    ran = ran.reindex(columns=order)
    complete = ran.notna().all(axis=1)
    return scores[complete].astype(float).fillna(0.0)


def rank(table: pd.DataFrame, setting: str = "default", *, posthoc: str = "ttest", alpha: float = ALPHA) -> Ranking:
    """Rank one setting's variants on test accuracy, seeds as paired blocks."""
    if posthoc not in POSTHOC:
        raise ValueError(f"unknown post-hoc test {posthoc!r}; known: {', '.join(POSTHOC)}")
    scores = score_matrix(table, setting)
    variants = list(scores.columns)
    # Rank 1 = the highest accuracy within a seed; ties share the average rank.
    mean_rank = scores.rank(axis=1, ascending=False, method="average").mean(axis=0) if len(scores) else pd.Series(
        1.0, index=variants
    )
    pvalues = pd.DataFrame(1.0, index=variants, columns=variants)
    notes: list[str] = []
    friedman_p: float | None = None
    n, k = scores.shape
    if n < 2:
        notes.append("one seed per variant: no test is possible; run with --seeds 3 or more")
    elif k >= 2:
        if k >= 3:
            friedman_p = _friedman(scores)
        pvalues = _posthoc(scores, posthoc)
        if posthoc == "wilcoxon" and n < 6:
            notes.append(
                f"with {n} seeds the Wilcoxon signed-rank test cannot reach p < {2 / 2**n:.3g}; "
                "use the paired t-test (the default) or more seeds"
            )
    if friedman_p is not None and friedman_p < alpha and not (pvalues.to_numpy() < alpha).any():
        notes.append(
            f"The Friedman test rejects 'all equal', but with {n} seeds no pair survives Holm's "
            f"correction over {k * (k - 1) // 2} comparisons: more seeds are needed to say which differ"
        )
    if (table.loc[table["setting"] == setting, "status"] == "diverged").any():
        notes.append("diverged runs have no test score and count as accuracy 0 in the ranking")
    return Ranking(setting, scores, mean_rank, friedman_p, pvalues, posthoc, alpha, notes)


def _friedman(scores: pd.DataFrame) -> float:
    columns = [scores[c].to_numpy() for c in scores.columns]
    if np.allclose(scores.to_numpy(), scores.to_numpy()[:, :1]):
        return 1.0  # every variant scored identically on every seed
    return float(stats.friedmanchisquare(*columns).pvalue)


def _posthoc(scores: pd.DataFrame, method: str) -> pd.DataFrame:
    """Holm-adjusted pairwise p-values between paired columns (scikit-posthocs)."""
    long = scores.reset_index(names="seed").melt(id_vars="seed", var_name="variant", value_name="accuracy")
    long = long.sort_values(["variant", "seed"], kind="stable")  # pairs line up by seed
    if method == "wilcoxon":
        p = sp.posthoc_wilcoxon(long, val_col="accuracy", group_col="variant", p_adjust="holm", zero_method="zsplit")
    else:
        p = _paired_ttests(scores)
    p = p.reindex(index=scores.columns, columns=scores.columns).fillna(1.0).astype(float)
    for name in scores.columns:
        p.loc[name, name] = 1.0
    return p


def _paired_ttests(scores: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests between every pair of variants, Holm-corrected.

    scikit-posthocs' ``posthoc_ttest`` is unpaired; the pairing by seed is the point here,
    so the tests are SciPy's ``ttest_rel`` and the correction is statsmodels' Holm.
    """
    from statsmodels.stats.multitest import multipletests

    names = list(scores.columns)
    pairs, raw = [], []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = scores[names[i]].to_numpy(), scores[names[j]].to_numpy()
            diff = a - b
            if np.allclose(diff, diff[0]):  # a constant difference: t is infinite or undefined
                p = 1.0 if np.isclose(diff[0], 0.0) else 0.0
            else:
                p = float(stats.ttest_rel(a, b).pvalue)
            pairs.append((names[i], names[j]))
            raw.append(p)
    out = pd.DataFrame(1.0, index=names, columns=names)
    if raw:
        adjusted = multipletests(raw, method="holm")[1]
        for (a, b), p in zip(pairs, adjusted, strict=True):
            out.loc[a, b] = out.loc[b, a] = float(p)
    return out


# --------------------------------------------------------------------------- default vs tuned


def tuning_effect(table: pd.DataFrame) -> pd.DataFrame | None:
    """Per variant: tuned minus default test accuracy over paired seeds, its 95% interval
    and a paired t-test (Holm-corrected across variants). None without tuned runs."""
    if "tuned" not in set(table["setting"]):
        return None
    from statsmodels.stats.multitest import multipletests

    rows = []
    for variant, runs in table.groupby("variant", sort=False):
        wide = runs.pivot_table(index="seed", columns="setting", values="test_accuracy", aggfunc="first")
        if "tuned" not in wide or "default" not in wide:
            continue
        wide = wide.dropna()
        diff = (wide["tuned"] - wide["default"]).to_numpy()
        mean, std, low, high = mean_ci(diff)
        if len(diff) >= 2 and not np.allclose(diff, diff[0]):
            p = float(stats.ttest_rel(wide["tuned"], wide["default"]).pvalue)
        else:
            p = math.nan
        rows.append({"variant": variant, "seeds": len(diff), "delta_mean": mean, "delta_ci95_low": low,
                     "delta_ci95_high": high, "p": p})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return None
    testable = frame["p"].notna()
    frame["p_holm"] = math.nan
    if testable.any():
        frame.loc[testable, "p_holm"] = multipletests(frame.loc[testable, "p"], method="holm")[1]
    frame["significant"] = frame["p_holm"] < ALPHA
    return frame
