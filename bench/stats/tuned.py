"""Default vs tuned: what tuning did to each variant's test accuracy over paired seeds."""

from __future__ import annotations

import pandas as pd

from bench.stats.pairs import ALPHA, COLUMNS, DEFAULT_MARGIN, family_tests
from bench.stats.summary import healthy

TUNING_COLUMNS = ["variant", "seeds", "delta_mean", *COLUMNS[2:]]


def tuning_effect(
    table: pd.DataFrame, *, margin: float = DEFAULT_MARGIN, alpha: float = ALPHA
) -> pd.DataFrame | None:
    """Per variant: tuned minus default test accuracy over the seeds where both runs are
    healthy, its simultaneous interval, test, verdict and power; the variants are one
    family (Bonferroni over the tested ones). None without tuned runs."""
    if "tuned" not in set(table["setting"]):
        return None
    diffs = {}
    ok = table.assign(test_accuracy=table["test_accuracy"].where(healthy(table)))
    for variant, runs in ok.groupby("variant", sort=False):
        wide = runs.pivot_table(
            index="seed", columns="setting", values="test_accuracy", aggfunc="first", dropna=False
        )
        if "tuned" in wide and "default" in wide:
            diffs[variant] = (wide["tuned"] - wide["default"]).to_numpy(dtype=float)
    if not diffs:
        return None
    done = family_tests(diffs, margin=margin, alpha=alpha)
    rows = [{"variant": v, **r.row()} for v, r in done.items()]
    frame = pd.DataFrame(rows).rename(columns={"effect": "delta_mean"})
    return frame[TUNING_COLUMNS]
