"""Planned contrasts for a factorial study, seeds as blocks: each factor's main effects and
the two-way interactions as paired differences over seeds (every one through
:func:`bench.stats.pairs.paired_test`, Bonferroni within each factor's family), beside
statsmodels' repeated-measures ANOVA (``AnovaRM``, seed as subject)."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from statsmodels.stats.anova import AnovaRM

from bench.stats.factors import Factors, cells
from bench.stats.pairs import ALPHA, COLUMNS, DEFAULT_MARGIN, ZERO_SD, family_tests
from bench.stats.ranking import healthy_matrix

CONTRAST_COLUMNS = ["term", "contrast", *COLUMNS]
ANOVA_COLUMNS = ["term", "F", "df_num", "df_den", "p"]


@dataclass(frozen=True)
class Factorial:
    """The contrasts of one setting."""

    setting: str
    factors: dict[str, list[str]]  # factor -> its levels, in order
    seeds: int  # seeds with a healthy run in every cell: the blocks used
    dropped: int  # seeds left out for a cell without a healthy run
    contrasts: pd.DataFrame  # CONTRAST_COLUMNS
    anova: pd.DataFrame | None  # ANOVA_COLUMNS; None where it cannot be computed
    notes: list[str] = field(default_factory=list)


def factorial(
    table: pd.DataFrame,
    setting: str,
    factors: Factors,
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = ALPHA,
) -> Factorial:
    """Main effects (for each pair of a factor's levels: level B - level A, averaged over the
    other factors' levels, per seed) and interactions (a 2-level factor's effect at one level
    of another factor minus at another) with effect, interval, verdict and MDD."""
    frame, dropped = cell_scores(healthy_matrix(table, setting), factors)
    levels = {name: list(lv) for name, lv in factors.items()}
    rows, notes = [], []
    for i, name in enumerate(levels):
        rows += _family(name, _main_effects(frame, i, levels[name]), margin, alpha)
    for i, j in itertools.combinations(range(len(levels)), 2):
        found = _interactions(frame, levels, i, j)
        if found is None:
            notes.append(
                f"{' × '.join(list(levels)[k] for k in (i, j))}: neither factor has 2 levels; "
                "the interaction is tested by the ANOVA only"
            )
            continue
        rows += _family(found[0], found[1], margin, alpha)
    if dropped:
        notes.append(f"{dropped} seed(s) left out: a cell had no healthy run on them")
    anova = repeated_measures(frame, levels)
    if anova is None and len(frame) >= 2:
        notes.append(
            "the repeated-measures ANOVA cannot be computed (no variation between the cells' "
            "scores)"
        )
    return Factorial(
        setting,
        levels,
        len(frame),
        dropped,
        pd.DataFrame(rows, columns=CONTRAST_COLUMNS),
        anova,
        notes,
    )


def cell_scores(matrix: pd.DataFrame, factors: Factors) -> tuple[pd.DataFrame, int]:
    """Seeds x cells (columns: one level per factor, a MultiIndex named by the factors): the
    mean test accuracy of each cell's variants; only seeds where every one of them ran
    healthily (how many others were dropped is the second value)."""
    found = cells(factors)
    columns = pd.MultiIndex.from_tuples(list(found), names=list(factors))
    frame = pd.DataFrame(np.nan, index=matrix.index, columns=columns)
    for k, members in enumerate(found.values()):
        if all(v in matrix.columns for v in members):
            frame.iloc[:, k] = matrix[members].mean(axis=1, skipna=False).to_numpy()
    complete = frame.dropna()
    return complete, len(frame) - len(complete)


def _marginal(frame: pd.DataFrame, where: dict[int, str]) -> pd.Series:
    """Per seed, the mean over the cells whose levels match ``where`` (factor index -> level)."""
    chosen = [
        k for k, c in enumerate(frame.columns) if all(c[i] == level for i, level in where.items())
    ]
    return frame.iloc[:, chosen].mean(axis=1)


def _main_effects(frame: pd.DataFrame, i: int, levels: list[str]) -> dict[str, pd.Series]:
    return {
        f"{b} - {a}": _marginal(frame, {i: b}) - _marginal(frame, {i: a})
        for a, b in itertools.combinations(levels, 2)
    }


def _interactions(
    frame: pd.DataFrame, levels: dict[str, list[str]], i: int, j: int
) -> tuple[str, dict[str, pd.Series]] | None:
    """The two-level factor's effect (of i and j; i where both have 2 levels) at each pair of
    the other's levels, subtracted; None where neither has 2 levels."""
    names = list(levels)
    if len(levels[names[i]]) != 2:
        if len(levels[names[j]]) != 2:
            return None
        i, j = j, i
    f0, f1 = levels[names[i]]

    def effect_at(level: str) -> pd.Series:
        return _marginal(frame, {i: f1, j: level}) - _marginal(frame, {i: f0, j: level})

    found = {
        f"({f1} - {f0}) at {gb} - at {ga}": effect_at(gb) - effect_at(ga)
        for ga, gb in itertools.combinations(levels[names[j]], 2)
    }
    return f"{names[i]} × {names[j]}", found


def _family(
    term: str, diffs: dict[str, pd.Series], margin: float, alpha: float
) -> list[dict[str, object]]:
    done = family_tests({k: v.to_numpy() for k, v in diffs.items()}, margin=margin, alpha=alpha)
    return [{"term": term, "contrast": label, **result.row()} for label, result in done.items()]


def repeated_measures(frame: pd.DataFrame, levels: dict[str, list[str]]) -> pd.DataFrame | None:
    """statsmodels' ``AnovaRM`` over the cells' scores, seed as subject: an F-test per factor
    and per interaction. None with fewer than 2 seeds or where every score is the same."""
    values = frame.to_numpy(dtype=float)
    if len(frame) < 2 or np.ptp(values) <= ZERO_SD:
        return None
    alias = {name: f"f{k}" for k, name in enumerate(levels)}  # AnovaRM's formula needs plain names
    long = pd.DataFrame(
        [
            {
                "seed": seed,
                **{alias[n]: level for n, level in zip(levels, cell, strict=True)},
                "score": value,
            }
            for seed, row in zip(frame.index, values, strict=True)
            for cell, value in zip(frame.columns, row, strict=True)
        ]
    )
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            table = AnovaRM(long, "score", "seed", within=list(alias.values())).fit().anova_table
        except (ValueError, np.linalg.LinAlgError):
            return None
    back = {a: n for n, a in alias.items()}
    terms = [" × ".join(back[p] for p in str(t).split(":")) for t in table.index]
    f = table["F Value"].where(
        table["F Value"] >= 0
    )  # negative F: rounding of a zero sum of squares
    return pd.DataFrame(
        {
            "term": terms,
            "F": f.to_numpy(),
            "df_num": table["Num DF"].to_numpy(),
            "df_den": table["Den DF"].to_numpy(),
            "p": table["Pr > F"].where(f.notna()).to_numpy(),
        },
        columns=ANOVA_COLUMNS,
    )
