"""The variants of one setting ranked on test accuracy, seeds as paired blocks: mean ranks,
the omnibus test, and a verdict for every pair."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scikit_posthocs as sp

from bench.stats.omnibus import Omnibus, friedman
from bench.stats.pairs import (
    ALPHA,
    BETTER,
    COLUMNS,
    DEFAULT_MARGIN,
    EQUIVALENT,
    IDENTICAL,
    UNTESTED,
    WORSE,
    family_tests,
)
from bench.stats.summary import excluded, healthy


@dataclass(frozen=True)
class Posthoc:
    """A registered pairwise test for the ranking's groups: what reports call it and the
    function giving the Bonferroni-adjusted p-value matrix (from the pair table and the
    seeds x variants scores)."""

    label: str
    pvalues: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]


#: The pairwise tests a study may select (``statistics: {posthoc: <name>}``); the name is
#: logged with the comparison so ``bench report`` rebuilds with the same test.
POSTHOC_TESTS: dict[str, Posthoc] = {}


def posthoc_label(name: str) -> str:
    return POSTHOC_TESTS[name].label


def register_posthoc(name: str, label: str):
    def add(fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]):
        POSTHOC_TESTS[name] = Posthoc(label, fn)
        return fn

    return add


PAIR_COLUMNS = ["a", "b", *COLUMNS]


@dataclass
class Ranking:
    """The outcome of :func:`rank` for one setting."""

    setting: str
    scores: (
        pd.DataFrame
    )  # seeds x variants, test accuracy; only seeds where every variant's run is healthy
    mean_rank: pd.Series  # 1 = best, averaged over those seeds
    friedman_p: float | None  # Friedman's chi-square p; None: fewer than 3 variants
    pvalues: pd.DataFrame  # variants x variants, Bonferroni-adjusted post-hoc p-values
    posthoc: str = "ttest"
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)
    pairs: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=PAIR_COLUMNS)
    )  # a - b, a ranked above b
    omnibus: Omnibus | None = None  # Friedman with Iman-Davenport's F; None: fewer than 3 variants
    margin: float = DEFAULT_MARGIN

    @property
    def testable(self) -> bool:
        return len(self.scores) >= 2 and self.scores.shape[1] >= 2

    @property
    def omnibus_rejects(self) -> bool:
        """Whether "every variant is equally good" is rejected: Iman-Davenport's F test, or
        with two variants their one paired test. Reported beside the pairs, not as a gate:
        the Bonferroni adjustment controls the family-wise error on its own."""
        if not self.testable:
            return False
        if self.omnibus is None:
            return bool(
                (self.pvalues.to_numpy()[~np.eye(len(self.pvalues), dtype=bool)] < self.alpha).any()
            )
        return self.omnibus.p < self.alpha

    def significant(self, a: str, b: str) -> bool:
        return bool(self.pvalues.loc[a, b] < self.alpha)

    @property
    def order(self) -> list[str]:
        return list(self.mean_rank.sort_values(kind="stable").index)

    @property
    def best(self) -> str:
        return self.order[0]

    def pair(self, a: str, b: str) -> dict[str, object]:
        """The verdict row of a - b (either way round)."""
        for row in self.pairs.to_dict("records"):
            if (row["a"], row["b"]) == (a, b):
                return row
            if (row["a"], row["b"]) == (b, a):
                return flipped(row)
        raise KeyError(f"no pair {a!r}, {b!r} in ranking {self.setting!r}")

    def marks(self) -> dict[str, str]:
        """Per variant, its verdict against the top-ranked one, e.g. "worse than best (p=0.012)"."""
        if not self.order:
            return {}
        best = self.best
        out = {best: "best" if self.testable else "best (untested)"}
        for v in self.order[1:]:
            out[v] = mark(self.pair(v, best), self.margin)
        return out

    def groups(self) -> list[list[str]]:
        """Maximal runs of consecutively ranked variants that no post-hoc test inside
        separates (the bars of the ranking figure)."""
        order = self.order
        found: list[list[str]] = []
        for i in range(len(order)):
            j = i
            while j + 1 < len(order) and not any(
                self.significant(order[k], order[j + 1]) for k in range(i, j + 1)
            ):
                j += 1
            group = order[i : j + 1]
            if len(group) > 1 and not any(set(group) <= set(g) for g in found):
                found.append(group)
        return found

    def table(self) -> pd.DataFrame:
        """Rank order, mean rank, mean accuracy (over the ranked seeds) and the verdict
        against the best."""
        marks = self.marks()
        return pd.DataFrame(
            {
                "rank": range(1, len(self.order) + 1),
                "variant": self.order,
                "mean_rank": [self.mean_rank[v] for v in self.order],
                "test_accuracy_mean": [
                    float(self.scores[v].mean()) if len(self.scores) else math.nan
                    for v in self.order
                ],
                "vs_best": [marks[v] for v in self.order],
            }
        )


def flipped(row: dict[str, object]) -> dict[str, object]:
    """A verdict row read the other way round: b - a."""
    swap = {BETTER: WORSE, WORSE: BETTER}
    return {
        **row,
        "a": row["b"],
        "b": row["a"],
        "effect": -row["effect"],
        "ci_low": -row["ci_high"],
        "ci_high": -row["ci_low"],
        "verdict": swap.get(row["verdict"], row["verdict"]),
    }


def mark(row: dict[str, object], margin: float) -> str:
    """A verdict row of ``variant - best`` as the ranking's "vs best" column says it."""
    v = row["verdict"]
    if v == UNTESTED:
        return "untested (one seed)" if row["seeds"] <= 1 else "untested (no paired seeds)"
    if v == IDENTICAL:
        return "identical scores to best"
    if v in (BETTER, WORSE):
        return f"{v} than best (p={row['p_adjusted']:.3g})"
    if v == EQUIVALENT:
        return f"equivalent to best (±{margin:g})"
    mdd = row["mdd"]
    return "inconclusive vs best" + (f" (MDD {mdd:.4f})" if np.isfinite(mdd) else "")


def healthy_matrix(table: pd.DataFrame, setting: str = "default") -> pd.DataFrame:
    """Seeds x variants of test accuracy for one setting; NaN where the run is not healthy
    (diverged, dead, unfinished, missing). A variant with no healthy run is left out."""
    rows = table[table["setting"] == setting]
    ok = rows[healthy(rows)]
    wide = ok.pivot_table(index="seed", columns="variant", values="test_accuracy", aggfunc="first")
    order = [v for v in dict.fromkeys(rows["variant"]) if v in wide.columns]
    return wide.reindex(index=sorted(set(rows["seed"])), columns=order).astype(float)


def score_matrix(table: pd.DataFrame, setting: str = "default") -> pd.DataFrame:
    """Seeds x variants of test accuracy for one setting; only the seeds where every
    variant's run is healthy. A run that diverged, died or never finished has no score
    that counts: its seed leaves the ranking (and is counted in the summary), so a variant
    can neither climb nor fall by failing."""
    return healthy_matrix(table, setting).dropna()


def pair_table(
    matrix: pd.DataFrame, order: list[str], *, margin: float, alpha: float = ALPHA
) -> pd.DataFrame:
    """Every pair a - b (a ranked above b) over the seeds where both runs are healthy: one
    family, Bonferroni over its tested pairs."""
    keys = [(order[i], order[j]) for i in range(len(order)) for j in range(i + 1, len(order))]
    done = family_tests(
        {k: (matrix[k[0]] - matrix[k[1]]).to_numpy() for k in keys}, margin=margin, alpha=alpha
    )
    return pd.DataFrame(
        [{"a": a, "b": b, **done[(a, b)].row()} for a, b in keys], columns=PAIR_COLUMNS
    )


def rank(
    table: pd.DataFrame,
    setting: str = "default",
    *,
    posthoc: str = "ttest",
    alpha: float = ALPHA,
    margin: float = DEFAULT_MARGIN,
) -> Ranking:
    """Rank one setting's variants on test accuracy, seeds as paired blocks."""
    if posthoc not in POSTHOC_TESTS:
        raise ValueError(f"unknown post-hoc test {posthoc!r}; known: {', '.join(POSTHOC_TESTS)}")
    matrix = healthy_matrix(table, setting)
    scores = matrix.dropna()
    variants = list(scores.columns)
    # Rank 1 = the highest accuracy within a seed; ties share the average rank.
    mean_rank = (
        scores.rank(axis=1, ascending=False, method="average").mean(axis=0)
        if len(scores)
        else pd.Series(1.0, index=variants)
    )
    order = list(mean_rank.sort_values(kind="stable").index)
    pairs = pair_table(matrix, order, margin=margin, alpha=alpha)
    pvalues = (
        _t_pvalues(pairs, scores)
        if len(scores) < 2
        else POSTHOC_TESTS[posthoc].pvalues(pairs, scores)
    )
    omnibus = friedman(scores)
    ranking = Ranking(
        setting,
        scores,
        mean_rank,
        None if omnibus is None else omnibus.chi2_p,
        pvalues,
        posthoc,
        alpha,
        [],
        pairs,
        omnibus,
        margin,
    )
    return replace(ranking, notes=_notes(ranking, table, matrix))


@register_posthoc("ttest", "paired t-test")
def _t_pvalues(pairs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The verdicts' own paired t-tests (the pair table's Bonferroni p-values)."""
    variants = list(scores.columns)
    out = pd.DataFrame(1.0, index=variants, columns=variants)
    for row in pairs.itertuples():
        p = (
            row.p_adjusted if row.p_adjusted == row.p_adjusted else 1.0
        )  # untested or identical: nothing separates
        out.loc[row.a, row.b] = out.loc[row.b, row.a] = float(p)
    return out


@register_posthoc("wilcoxon", "Wilcoxon signed-rank")
def _wilcoxon(pairs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Bonferroni-adjusted Wilcoxon signed-rank p-values between paired columns
    (scikit-posthocs)."""
    long = scores.reset_index(names="seed").melt(
        id_vars="seed", var_name="variant", value_name="accuracy"
    )
    long = long.sort_values(["variant", "seed"], kind="stable")  # pairs line up by seed
    p = sp.posthoc_wilcoxon(
        long, val_col="accuracy", group_col="variant", p_adjust="bonferroni", zero_method="zsplit"
    )
    p = p.reindex(index=scores.columns, columns=scores.columns).fillna(1.0).astype(float)
    for name in scores.columns:
        p.loc[name, name] = 1.0
    return p


def _notes(r: Ranking, table: pd.DataFrame, matrix: pd.DataFrame) -> list[str]:
    n, k = r.scores.shape
    notes: list[str] = []
    if n < 2:
        notes.append(
            "one seed per variant: no test is possible; run with --seeds 3 or more"
            if len(matrix) < 2
            else "fewer than 2 seeds where every variant's run is healthy: no ranking test "
            f"({len(matrix)} seeds)"
        )
    if r.posthoc == "wilcoxon" and 2 <= n < 6:
        notes.append(
            f"with {n} seeds the Wilcoxon signed-rank test cannot reach p < {2 / 2**n:.3g}; "
            "use the paired t-test (the default) or more seeds"
        )
    if r.omnibus_rejects and k > 2 and not r.pairs["verdict"].isin([BETTER, WORSE]).any():
        notes.append(
            f"The omnibus test rejects 'all equal', but with {n} seeds no pair is separated at the "
            f"Bonferroni level over {len(r.pairs)} pairs: more seeds are needed to say which differ"
        )
    rows = table[table["setting"] == r.setting]
    left_out = excluded(rows)
    if left_out:
        notes.append(
            f"Runs left out of every mean and test: {left_out}. Each pair is tested over the seeds "
            f"where both runs are healthy; the ranking and the omnibus test use the {n} of "
            f"{len(matrix)} seeds where every variant's run is."
        )
    return notes
