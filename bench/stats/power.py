"""Power of the paired t-test: the smallest difference a comparison could have detected,
and the seeds that would resolve the study's margin (statsmodels' ``TTestPower``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import numpy as np
from scipy.optimize import brentq
from statsmodels.stats.power import TTestPower
from statsmodels.tools import sm_exceptions  # noqa: F401 - imported first: it sets its warnings to "always"

POWER = 0.8
MAX_SEEDS = 100_000  # beyond this "seeds needed" is reported as infinite
#: ``solve_power``'s answer is used only where the power it claims checks out: at 2-3 seeds
#: and a Bonferroni level the non-central t behind the power is not computable for some
#: effects (statsmodels returns NaN, or the end of its bracket). There the answer is found
#: on a grid of effects (or seed counts) where the power can be evaluated.
_TOLERANCE = 1e-3
_EFFECT_GRID = np.geomspace(1e-3, 1e4, 241)
_SEED_SCAN = range(2, 1_001)


def _power(effect_size: float, nobs: float, alpha: float) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(TTestPower().power(effect_size, nobs, alpha, alternative="two-sided"))


def _solve(**kwargs: float | None) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # convergence chatter; the answer is checked by the caller
        try:
            value = TTestPower().solve_power(power=POWER, alternative="two-sided", **kwargs)
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return math.nan
    value = float(np.asarray(value).ravel()[0]) if value is not None else math.nan
    return value


def _first_reaching(
    power_at: Callable[[float], float], grid: Iterable[float], refine: bool
) -> float:
    """The first grid point where the power reaches 80% (refined between it and the last
    computable point below, when ``refine``); infinite when none does."""
    below = None
    for x in grid:
        p = power_at(x)
        if not math.isfinite(p):
            continue
        if p >= POWER:
            if not refine or below is None:
                return float(x)
            try:
                return float(brentq(lambda v: power_at(v) - POWER, below, x))
            except ValueError:
                return float(x)
        below = x
    return math.inf


def detectable_difference(sd: float, n: int, alpha: float) -> float:
    """The minimum detectable difference (MDD): the true mean paired difference that the
    two-sided paired t-test at level ``alpha`` detects with 80% power over ``n`` seeds, at
    the observed SD of the differences (``solve_power``'s standardised effect times the SD).
    NaN without a spread to scale by."""
    if not (n >= 2 and sd > 0 and math.isfinite(sd)):
        return math.nan
    dz = _solve(effect_size=None, nobs=n, alpha=alpha)
    if not (math.isfinite(dz) and abs(_power(dz, n, alpha) - POWER) <= _TOLERANCE):
        dz = _first_reaching(lambda e: _power(e, n, alpha), _EFFECT_GRID, refine=True)
    return dz * sd


def seeds_needed(sd: float, margin: float, alpha: float) -> float:
    """How many seeds would resolve the margin: the fewest with which the paired t-test at
    level ``alpha`` has 80% power to detect a true difference equal to ``margin``, at the
    observed SD of the differences (at least 2). NaN without a spread; infinite beyond
    MAX_SEEDS."""
    if not (sd > 0 and math.isfinite(sd)):
        return math.nan
    effect = margin / sd
    n = _solve(effect_size=effect, nobs=None, alpha=alpha)
    if math.isfinite(n) and abs(_power(effect, n, alpha) - POWER) <= _TOLERANCE:
        return float(max(2, math.ceil(n - 1e-9))) if n <= MAX_SEEDS else math.inf
    return _first_reaching(lambda k: _power(effect, k, alpha), _SEED_SCAN, refine=False)
