"""bench.stats: means and intervals over seeds, the paired ranking and its gate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from bench import stats


def _table(means: dict[str, float], seeds: int = 5, noise: float = 0.003, setting: str = "default", seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for variant, mu in means.items():
        for s in range(seeds):
            rows.append(
                {
                    "run": f"{variant}/s{s}", "variant": variant, "setting": setting, "seed": s,
                    "params": 100, "status": "ok", "test_accuracy": mu + rng.normal(0, noise),
                    "test_loss": 1 - mu + rng.normal(0, noise), "best_val_accuracy": mu,
                    "train_seconds": 1.0, "ref_test_accuracy": 0.88 if variant == "a" else None,
                }
            )
    return pd.DataFrame(rows)


def test_mean_ci_is_the_t_interval():
    x = np.array([0.88, 0.885, 0.879, 0.883])
    mean, std, low, high = stats.mean_ci(x)
    assert mean == pytest.approx(x.mean())
    assert std == pytest.approx(x.std(ddof=1))
    half = sst.t.ppf(0.975, 3) * x.std(ddof=1) / math.sqrt(4)
    assert (low, high) == pytest.approx((x.mean() - half, x.mean() + half))


def test_one_seed_claims_no_spread():
    mean, std, low, high = stats.mean_ci([0.9])
    assert mean == 0.9 and math.isnan(std) and math.isnan(low) and math.isnan(high)


def test_aggregate_one_row_per_variant_and_setting():
    table = pd.concat([_table({"a": 0.88, "b": 0.80}), _table({"a": 0.89}, setting="tuned", seed=1)])
    summary = stats.aggregate(table)
    assert list(zip(summary["variant"], summary["setting"], strict=True)) == [
        ("a", "default"), ("b", "default"), ("a", "tuned")
    ]
    row = summary.iloc[0]
    runs = table[(table["variant"] == "a") & (table["setting"] == "default")]
    assert row["test_accuracy_mean"] == pytest.approx(runs["test_accuracy"].mean())
    assert row["test_accuracy_ci95_low"] < row["test_accuracy_mean"] < row["test_accuracy_ci95_high"]
    assert row["delta_vs_ref"] == pytest.approx(row["test_accuracy_mean"] - 0.88)
    assert pd.isna(summary.iloc[1]["delta_vs_ref"])  # no reference, no difference


def test_a_clearly_worse_variant_is_significantly_worse():
    ranking = stats.rank(_table({"a": 0.88, "b": 0.87, "c": 0.80, "d": 0.8795}))
    assert ranking.friedman_p < 0.05 and ranking.omnibus_rejects
    assert ranking.best == "a"
    assert ranking.order[-1] == "c"
    marks = ranking.marks()
    assert marks["a"] == "best"
    assert marks["c"].startswith("worse than best")
    assert marks["d"] == "not significantly different from best"  # 0.05 points apart
    assert ["a", "d"] in ranking.groups()
    assert ranking.pvalues.loc["a", "c"] == ranking.pvalues.loc["c", "a"] < 0.05


def test_equal_variants_are_never_called_different():
    ranking = stats.rank(_table({"a": 0.88, "b": 0.88, "c": 0.88}, noise=0.004))
    assert not ranking.omnibus_rejects
    assert all(not ranking.significant(x, y) for x in "abc" for y in "abc")
    assert ranking.groups() == [ranking.order]  # one group: all alike


def test_holm_correction_is_applied():
    table = _table({"a": 0.88, "b": 0.877, "c": 0.874})
    ranking = stats.rank(table)
    wide = stats.score_matrix(table)
    raw = [sst.ttest_rel(wide[x], wide[y]).pvalue for x, y in (("a", "b"), ("a", "c"), ("b", "c"))]
    smallest = min(raw)
    assert min(ranking.pvalues.loc["a", "b"], ranking.pvalues.loc["a", "c"], ranking.pvalues.loc["b", "c"]) == (
        pytest.approx(min(1.0, 3 * smallest))
    )


def test_one_seed_cannot_be_ranked_with_confidence():
    ranking = stats.rank(_table({"a": 0.88, "b": 0.80}, seeds=1))
    assert not ranking.testable and not ranking.omnibus_rejects
    assert ranking.marks()["b"] == "untested (one seed)"
    assert "one seed" in ranking.notes[0]


def test_wilcoxon_with_few_seeds_warns_it_cannot_reach_5_percent():
    ranking = stats.rank(_table({"a": 0.88, "b": 0.80, "c": 0.70}, seeds=3), posthoc="wilcoxon")
    assert (ranking.pvalues.to_numpy() >= 0.25 - 1e-9).all()
    assert "cannot reach p < 0.25" in ranking.notes[0]
    with pytest.raises(ValueError, match="unknown post-hoc test"):
        stats.rank(_table({"a": 0.9}), posthoc="magic")


def test_a_diverged_run_ranks_last_on_its_seed():
    table = _table({"a": 0.88, "b": 0.80, "c": 0.70}, seeds=4)
    table.loc[(table["variant"] == "a") & (table["seed"] == 0), ["test_accuracy", "status"]] = [None, "diverged"]
    ranking = stats.rank(table)
    assert ranking.scores.loc[0, "a"] == 0.0
    assert any("diverged" in n for n in ranking.notes)


def test_tuning_effect_is_paired_by_seed():
    default = _table({"a": 0.85, "b": 0.88}, seeds=4)
    tuned = default.copy()
    tuned["setting"] = "tuned"
    tuned.loc[tuned["variant"] == "a", "test_accuracy"] += 0.02 + np.array([0.001, -0.001, 0.002, 0.0])
    effect = stats.tuning_effect(pd.concat([default, tuned]))
    a = effect.set_index("variant").loc["a"]
    assert a["delta_mean"] == pytest.approx(0.0205)
    assert a["significant"]
    assert math.isnan(effect.set_index("variant").loc["b", "p"])  # identical: no test
    assert stats.tuning_effect(default) is None
