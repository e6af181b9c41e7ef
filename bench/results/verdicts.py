"""Verdict tables and the sentences around them, as the terminal and the reports show them:
every pair, every tuning effect and every factor contrast with its effect, simultaneous
interval, verdict, minimum detectable difference and the seeds that would resolve the
margin (:mod:`bench.stats`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from bench import stats
from bench.store import schema
from bench.store.reader import StoredRun


def analysis(
    params: Mapping[str, str], runs: Sequence[StoredRun] = (), margin: float | None = None
) -> stats.Analysis:
    """The margin and factors a comparison logged (``protocol.*``), ``margin`` overriding the
    logged one. A comparison logged before they were: margin 0.005 and the factors derived
    from its runs' family and group."""
    logged = params.get(schema.PROTOCOL_PREFIX + schema.EQUIVALENCE_MARGIN)
    chosen = margin if margin is not None else float(logged) if logged else stats.DEFAULT_MARGIN
    posthoc = params.get(schema.PROTOCOL_PREFIX + schema.POSTHOC, "ttest")
    text = params.get(schema.PROTOCOL_PREFIX + schema.FACTORS)
    if text is not None:
        return stats.Analysis(chosen, stats.loads_factors(text), posthoc=posthoc)
    structure = {
        r.params.get(schema.VARIANT, r.name): (
            r.params.get(schema.VARIANT_FAMILY),
            r.params.get(schema.VARIANT_GROUP),
        )
        for r in runs
        if r.kind in schema.TRAINING_KINDS
    }
    complete = all(f is not None and g is not None for f, g in structure.values())
    derived = (
        stats.derive_factors((v, f, g) for v, (f, g) in structure.items())
        if structure and complete
        else None
    )
    return stats.Analysis(chosen, derived, posthoc=posthoc)


def method(analysis: stats.Analysis) -> list[str]:
    """How to read every verdict table of a report: the margin, the rules, the policy."""
    m, a = analysis.margin, analysis.alpha
    return [
        f"Smallest effect of interest (equivalence margin): ±{m:g} test accuracy ({100 * m:g} "
        "points). Every comparison is a mean paired difference over seeds (seeds as blocks) with "
        "a verdict: better / worse when the paired t-test separates the two at the family's "
        "Bonferroni level; otherwise equivalent when two one-sided tests (TOST) put the "
        f"difference inside ±{m:g} at that level; otherwise inconclusive (neither a difference nor "
        "its absence is shown). Identical scores (every difference exactly 0, e.g. tuned runs "
        "that repeat the default ones) are not tested. A constant non-zero difference has no "
        "spread: it gets the exact sign-flip permutation test (p = 2/2^n) and no interval.",
        "Adjustment: Bonferroni within each family (all pairs of a setting; the tuning effects; "
        "each factor's main effects; each pair of factors' interactions). With m tested "
        f"comparisons in a family, p is min(1, m·p), the interval is the 1 − {a:g}/m t-interval "
        f"and TOST runs at {a:g}/m, so an interval excludes 0 exactly when the adjusted p is below "
        f"{a:g}.",
        "MDD: the minimum detectable difference, i.e. the true difference the paired t-test at "
        "the family's level would detect with 80% power over the seeds used, at the observed SD "
        f"of the differences. 'seeds for ±{m:g}': how many seeds would give 80% power to detect a "
        "true difference equal to the margin at that SD and level (statsmodels' TTestPower).",
        "Runs that diverged, died or never finished are left out of every mean and test and "
        "counted ('excluded'): a pair is tested over the seeds where both runs are healthy; the "
        "ranking and the omnibus test over the seeds where every variant's run is.",
    ]


def tests_frame(frame: pd.DataFrame, keys: Mapping[str, str], margin: float) -> pd.DataFrame:
    """A verdict table as text: ``keys`` (column -> heading) first, then the tests."""
    effect = "delta_mean" if "delta_mean" in frame else "effect"
    rows = []
    for r in frame.to_dict("records"):
        rows.append(
            {
                **{heading: r[col] for col, heading in keys.items()},
                "seeds": str(r["seeds"]),
                "effect": _signed(r[effect]),
                "CI (Bonferroni)": _interval(r["ci_low"], r["ci_high"], r["test"]),
                "p (Bonferroni)": _p(r["p_adjusted"]),
                f"TOST p (±{margin:g})": _p(r["tost_p_adjusted"]),
                "verdict": r["verdict"],
                "MDD (80%)": _number(r["mdd"]),
                f"seeds for ±{margin:g}": _count(r["seeds_needed"]),
            }
        )
    return pd.DataFrame(rows)


def power_sentence(frame: pd.DataFrame, margin: float) -> str:
    """The power of a family's tests in one sentence ("" where none was a t-test)."""
    tested = frame[frame["test"] == stats.T_TEST] if len(frame) else frame
    if tested.empty:
        return ""
    mdd, needed = tested["mdd"].median(), tested["seeds_needed"]
    seeds = int(tested["seeds"].median())
    return (
        f"With {seeds} seeds the median minimum detectable difference (80% power) is "
        f"{_number(mdd)}; resolving ±{margin:g} would take {_count(needed.median())} seeds for the "
        f"median comparison and {_count(needed.max())} for the least precise."
    )


def verdict_counts(frame: pd.DataFrame) -> str:
    """ "3 better or worse, 2 equivalent, 10 inconclusive" over a verdict table."""
    counts = frame["verdict"].value_counts()
    parts = [(int(counts.get(stats.BETTER, 0) + counts.get(stats.WORSE, 0)), "better or worse")]
    parts += [
        (int(counts.get(v, 0)), v)
        for v in (stats.EQUIVALENT, stats.INCONCLUSIVE, stats.IDENTICAL, stats.UNTESTED)
    ]
    return ", ".join(f"{n} {what}" for n, what in parts if n)


def factorial_text(f: stats.Factorial, margin: float) -> list[str]:
    """What a setting's contrasts rest on, and their verdicts in a sentence."""
    levels = "; ".join(f"{name}: {', '.join(lv)}" for name, lv in f.factors.items())
    text = [
        f"Factors ({f.setting}): {levels}. Main effects are level B − level A averaged over the "
        "other factors' levels, per seed; interactions are a two-level factor's effect at one "
        f"level of the other factor minus at another. Over {f.seeds} seeds with a healthy run in "
        "every cell" + (f" ({f.dropped} dropped)" if f.dropped else "") + "."
    ]
    if not f.contrasts.empty:
        text.append(
            f"Contrasts: {verdict_counts(f.contrasts)}. "
            f"{power_sentence(f.contrasts, margin)}".strip()
        )
    return text + f.notes


def anova_frame(anova: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "term": anova["term"],
            "F": [_number(v, ".3g") for v in anova["F"]],
            "df": [
                f"{int(a)}, {int(b)}" for a, b in zip(anova["df_num"], anova["df_den"], strict=True)
            ],
            "p": [_p(v) for v in anova["p"]],
        }
    )


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not math.isnan(v)


def _signed(v: object) -> str:
    return f"{v:+.4f}" if _finite(v) else ""


def _number(v: object, fmt: str = ".4f") -> str:
    return "∞" if _finite(v) and math.isinf(v) else format(v, fmt) if _finite(v) else ""


def _count(v: object) -> str:
    return "∞" if _finite(v) and math.isinf(v) else f"{int(v)}" if _finite(v) else ""


def _p(v: object) -> str:
    return "" if not _finite(v) else f"{v:.3g}" if 0 < v < 1e-3 else f"{v:.4f}"


def _interval(low: object, high: object, test: str) -> str:
    if _finite(low):
        return f"[{low:+.4f}, {high:+.4f}]"
    return "not estimable (SD 0)" if test == stats.SIGN_FLIP else ""
