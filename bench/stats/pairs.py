"""One paired comparison, the way every path makes it (variant pairs, tuned vs default,
factor contrasts): the mean paired difference over seeds, its simultaneous interval, the
test, the equivalence test at the study's margin, the verdict and the power.

The family's Bonferroni level ``alpha / m`` is used for the p-value (``m * p``), the
interval (``1 - alpha / m``) and the two one-sided tests alike, so an interval excludes 0
exactly when the adjusted p-value is below ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

from bench.stats.power import detectable_difference, seeds_needed

ALPHA = 0.05
DEFAULT_MARGIN = 0.005  # half a point of accuracy: the smallest effect of interest by default

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
IDENTICAL = (
    "identical scores"  # every difference exactly 0 (e.g. the same runs logged twice): not tested
)
UNTESTED = "untested"  # fewer than 2 paired seeds
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, IDENTICAL, UNTESTED)

T_TEST, SIGN_FLIP = "paired t", "sign-flip (SD 0)"
#: Differences that vary by less than this are constant (accuracies are multiples of 1/N
#: test images, far coarser); a t-test of them would divide by a rounding error.
ZERO_SD = 1e-12

#: The columns every verdict table has, after its own key columns.
COLUMNS = [
    "seeds",
    "effect",
    "ci_low",
    "ci_high",
    "p",
    "p_adjusted",
    "tost_p_adjusted",
    "verdict",
    "mdd",
    "seeds_needed",
    "test",
]


@dataclass(frozen=True)
class PairTest:
    """The outcome of :func:`paired_test` (effect = mean of the differences, a - b)."""

    seeds: int
    effect: float
    sd: float
    ci_low: float  # the 1 - alpha/m t-interval; NaN where not estimable (SD 0)
    ci_high: float
    p: float  # two-sided, unadjusted
    p_adjusted: float  # Bonferroni: min(1, m p)
    tost_p_adjusted: float  # equivalence within +-margin, Bonferroni-adjusted
    verdict: str
    mdd: float  # the minimum detectable difference at 80% power
    seeds_needed: float  # seeds for 80% power to detect a difference equal to the margin
    test: str

    def row(self) -> dict[str, object]:
        out = asdict(self)
        del out["sd"]
        return out


def is_tested(diff: Sequence[float] | np.ndarray) -> bool:
    """Whether :func:`paired_test` tests these differences (they count in the family)."""
    d = _clean(diff)
    return len(d) >= 2 and not np.all(d == 0)


def paired_test(
    diff: Sequence[float] | np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
    family: int = 1,
) -> PairTest:
    """Test one vector of paired differences (one per seed; NaN = a seed not paired).

    * every difference exactly 0: "identical scores", nothing tested;
    * fewer than 2 seeds: "untested";
    * SD 0 (a constant non-zero difference): the exact sign-flip permutation test (SciPy's
      ``permutation_test``; p = 2 / 2**n), the interval not estimable (NaN);
    * otherwise the paired t-test, its t-interval and statsmodels' two one-sided tests.

    Verdict: "better"/"worse" (a - b above/below 0) when the adjusted p < alpha, else
    "equivalent" when the adjusted TOST p < alpha, else "inconclusive".
    """
    d = _clean(diff)
    n = len(d)
    if n and np.all(d == 0):
        return _untested(n, 0.0, IDENTICAL)
    if n < 2:
        return _untested(n, float(d.mean()) if n else math.nan, UNTESTED)
    level = alpha / max(family, 1)
    if np.ptp(d) <= ZERO_SD:
        p, tost_p, low, high, sd, test = *_sign_flip(d, margin), math.nan, math.nan, 0.0, SIGN_FLIP
    else:
        p, tost_p, low, high, sd, test = *_t_test(d, margin, level), T_TEST
    p_adj, tost_adj = min(1.0, p * family), min(1.0, tost_p * family)
    effect = float(d.mean())
    return PairTest(
        seeds=n,
        effect=effect,
        sd=sd,
        ci_low=low,
        ci_high=high,
        p=p,
        p_adjusted=p_adj,
        tost_p_adjusted=tost_adj,
        verdict=verdict(effect, p_adj, tost_adj, alpha),
        mdd=detectable_difference(sd, n, level),
        seeds_needed=seeds_needed(sd, margin, level),
        test=test,
    )


def verdict(effect: float, p_adjusted: float, tost_p_adjusted: float, alpha: float = ALPHA) -> str:
    """A difference the test establishes is better or worse, however small (its interval
    says by how much); otherwise the margin decides between equivalent and inconclusive."""
    if p_adjusted < alpha:
        return BETTER if effect > 0 else WORSE
    if tost_p_adjusted < alpha:
        return EQUIVALENT
    return INCONCLUSIVE


def family_tests(
    diffs: Mapping[object, Sequence[float] | np.ndarray],
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
) -> dict[object, PairTest]:
    """Every comparison of one family, Bonferroni over the ones that are tested (identical
    runs and single seeds are not hypotheses)."""
    m = sum(is_tested(d) for d in diffs.values())
    return {
        key: paired_test(d, margin=margin, alpha=alpha, family=max(m, 1))
        for key, d in diffs.items()
    }


def _clean(diff: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(diff, dtype=float).ravel()
    return d[~np.isnan(d)]


def _untested(n: int, effect: float, what: str) -> PairTest:
    nan = math.nan
    return PairTest(n, effect, nan, nan, nan, nan, nan, nan, what, nan, nan, "")


def _t_test(d: np.ndarray, margin: float, level: float) -> tuple[float, float, float, float, float]:
    """p, TOST p (unadjusted), the 1 - level interval and the SD of the differences."""
    result = stats.ttest_1samp(d, 0.0)
    ci = result.confidence_interval(confidence_level=1 - level)
    tost_p = float(DescrStatsW(d).ttost_mean(-margin, margin)[0])
    return float(result.pvalue), tost_p, float(ci.low), float(ci.high), float(np.std(d, ddof=1))


def _sign_flip(d: np.ndarray, margin: float) -> tuple[float, float]:
    """Exact sign-flip permutation p-values for differences with no spread: two-sided
    against 0, and the larger of the two one-sided ones against -margin and +margin
    (equivalence). SciPy's ``permutation_test`` flips the signs of one sample's values; the
    t-test cannot be used (its statistic divides by an SD of 0)."""

    def p(values: np.ndarray, alternative: str) -> float:
        result = stats.permutation_test(
            (values,),
            np.mean,
            permutation_type="samples",
            n_resamples=np.inf,
            alternative=alternative,
            vectorized=True,
        )
        return float(result.pvalue)

    tost = max(p(d + margin, "greater"), p(d - margin, "less"))
    return p(d, "two-sided"), tost
