"""The omnibus test of "every variant is equally good": Friedman's rank test over seeds
(SciPy's chi-square form) with Iman and Davenport's F correction, which is the one to read
at a handful of seeds (the chi-square approximation is conservative there; Demšar 2006,
JMLR 7, section 3.2.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Omnibus:
    seeds: int  # blocks (n)
    variants: int  # treatments (k)
    chi2: float  # Friedman's statistic (SciPy, tie-corrected)
    chi2_p: float
    f: float  # Iman-Davenport's F on (k - 1, (k - 1)(n - 1)) degrees of freedom
    p: float  # its p-value: the omnibus test's answer

    @property
    def df(self) -> tuple[int, int]:
        k, n = self.variants, self.seeds
        return k - 1, (k - 1) * (n - 1)


def iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    """F = (n - 1) chi2 / (n (k - 1) - chi2) and its p-value on (k - 1, (k - 1)(n - 1)) df.

    Written out because neither SciPy nor statsmodels offers it (SciPy's ``friedmanchisquare``
    stops at chi-square). Where every seed ranks the variants the same way, chi2 reaches
    n (k - 1): F is infinite and p is 0.
    """
    denominator = n * (k - 1) - chi2
    f = math.inf if denominator <= 0 else (n - 1) * chi2 / denominator
    return f, float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def friedman(scores: pd.DataFrame) -> Omnibus | None:
    """The omnibus test of a seeds x variants table (complete seeds only); None with fewer
    than 3 variants or 2 seeds (the single paired test is the omnibus then)."""
    n, k = scores.shape
    if k < 3 or n < 2:
        return None
    values = scores.to_numpy(dtype=float)
    if np.allclose(values, values[:, :1]):
        return Omnibus(n, k, 0.0, 1.0, 0.0, 1.0)  # every variant scored the same on every seed
    chi2, chi2_p = stats.friedmanchisquare(*values.T)
    f, p = iman_davenport(float(chi2), n, k)
    return Omnibus(n, k, float(chi2), float(chi2_p), f, p)
