"""Seed statistics: "which variant is better, by how much, how sure are we, and would more
seeds tell".

Pure pandas / SciPy / statsmodels / scikit-posthocs on the per-run comparison table (one
row per variant, setting and seed); no MLflow, so a report rebuilt from the store and the
table a comparison just produced go through exactly the same code.

* :func:`aggregate` (``summary``): per variant and setting, mean / std / 95% t-interval of
  the healthy runs' test accuracy and loss; runs that diverged, died or never finished
  are left out of every mean and test and counted (``unhealthy``, ``excluded``).
* :func:`rank` (``ranking``): mean ranks over the seeds where every variant is healthy,
  Friedman's test with Iman and Davenport's F (``omnibus``), and a verdict for every pair
  of variants over the seeds where both are healthy.
* :func:`paired_test` (``pairs``): the one function every comparison goes through (pairs,
  tuned vs default, factor contrasts). Verdicts: *better* / *worse* when the test separates
  the two; else *equivalent* when two one-sided tests put the difference inside ± the
  study's margin (statsmodels' TOST); else *inconclusive*; *identical scores* when every
  difference is exactly 0 (not tested); *untested* below 2 paired seeds. A constant
  non-zero difference (SD 0) gets the exact sign-flip permutation test (p = 2 / 2**n) and
  no interval. Each verdict carries the minimum detectable difference (80% power, at the
  observed SD) and the seeds that would give 80% power to detect a difference equal to the
  margin (``power``).
* :func:`factorial` (``contrasts``): for studies with factors (declared, or the variants'
  family x group when that is a complete crossed design), each factor's main effects and
  the two-way interactions with seeds as blocks, beside statsmodels' repeated-measures
  ANOVA.
* :func:`tuning_effect` (``tuned``): tuned minus default per variant.

**Adjustment policy: Bonferroni within each family, for p-values and intervals alike.**
A family is all pairs of one setting, or the tuning effects, or one factor's main
effects, or one pair of factors' interactions. With m tested comparisons in a family, the
p-value is min(1, m p), the interval is the 1 - alpha/m t-interval and the equivalence test
runs at alpha/m, so an interval excludes 0 exactly when the adjusted p-value is below
alpha. The omnibus test is reported beside the pairs, not as a gate: Bonferroni controls
the family-wise error on its own, and a gate would let an interval exclude 0 beside a
verdict that says otherwise.

Why paired t-tests and not Wilcoxon post hoc: with n seeds, the Wilcoxon signed-rank test
cannot return a two-sided p below 2 / 2**n, so with 3-5 seeds (the usual budget) it can
never reach 5%. ``posthoc="wilcoxon"`` is there for studies with many seeds (it changes
the ranking's groups; the verdicts stay paired t).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.stats.contrasts import ANOVA_COLUMNS, CONTRAST_COLUMNS, Factorial, factorial
from bench.stats.factors import Factors, check_factors, derive_factors, restrict
from bench.stats.factors import dumps as dumps_factors
from bench.stats.factors import loads as loads_factors
from bench.stats.omnibus import Omnibus, friedman, iman_davenport
from bench.stats.pairs import (
    ALPHA,
    BETTER,
    DEFAULT_MARGIN,
    EQUIVALENT,
    IDENTICAL,
    INCONCLUSIVE,
    SIGN_FLIP,
    T_TEST,
    UNTESTED,
    VERDICTS,
    WORSE,
    PairTest,
    family_tests,
    paired_test,
)
from bench.stats.power import POWER, detectable_difference, seeds_needed
from bench.stats.ranking import (
    POSTHOC_TESTS,
    Ranking,
    healthy_matrix,
    posthoc_label,
    rank,
    register_posthoc,
    score_matrix,
)
from bench.stats.summary import HEALTHY, SUMMARY_COLUMNS, UNFINISHED, aggregate, mean_ci
from bench.stats.tuned import TUNING_COLUMNS, tuning_effect

LAYER = 1  # import layer (docs/development.md#layers): imports only lower layers' units


@dataclass(frozen=True)
class Analysis:
    """What a comparison's statistics need beyond its runs: the smallest effect of interest
    (accuracy units) and the factors, if any."""

    margin: float = DEFAULT_MARGIN
    factors: Factors | None = None
    alpha: float = ALPHA
    posthoc: str = "ttest"  # the ranking's pairwise test, a name in POSTHOC_TESTS


__all__ = [
    "ALPHA",
    "ANOVA_COLUMNS",
    "BETTER",
    "CONTRAST_COLUMNS",
    "DEFAULT_MARGIN",
    "EQUIVALENT",
    "HEALTHY",
    "IDENTICAL",
    "INCONCLUSIVE",
    "POSTHOC_TESTS",
    "POWER",
    "SIGN_FLIP",
    "SUMMARY_COLUMNS",
    "T_TEST",
    "TUNING_COLUMNS",
    "UNFINISHED",
    "UNTESTED",
    "VERDICTS",
    "WORSE",
    "Analysis",
    "Factorial",
    "Factors",
    "Omnibus",
    "PairTest",
    "Ranking",
    "aggregate",
    "check_factors",
    "derive_factors",
    "detectable_difference",
    "dumps_factors",
    "loads_factors",
    "factorial",
    "family_tests",
    "friedman",
    "healthy_matrix",
    "iman_davenport",
    "mean_ci",
    "paired_test",
    "posthoc_label",
    "register_posthoc",
    "rank",
    "restrict",
    "score_matrix",
    "seeds_needed",
    "tuning_effect",
]
