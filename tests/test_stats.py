"""bench.stats: means and intervals over seeds, the paired ranking and its gate."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sst

from bench import stats


def _table(
    means: dict[str, float],
    seeds: int = 5,
    noise: float = 0.003,
    setting: str = "default",
    seed: int = 0,
):
    rng = np.random.default_rng(seed)
    rows = []
    for variant, mu in means.items():
        for s in range(seeds):
            rows.append(
                {
                    "run": f"{variant}/s{s}",
                    "variant": variant,
                    "setting": setting,
                    "seed": s,
                    "params": 100,
                    "status": "ok",
                    "test_accuracy": mu + rng.normal(0, noise),
                    "test_loss": 1 - mu + rng.normal(0, noise),
                    "best_val_accuracy": mu,
                    "train_seconds": 1.0,
                    "ref_test_accuracy": 0.88 if variant == "a" else None,
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
    table = pd.concat(
        [_table({"a": 0.88, "b": 0.80}), _table({"a": 0.89}, setting="tuned", seed=1)]
    )
    summary = stats.aggregate(table)
    assert list(zip(summary["variant"], summary["setting"], strict=True)) == [
        ("a", "default"),
        ("b", "default"),
        ("a", "tuned"),
    ]
    row = summary.iloc[0]
    runs = table[(table["variant"] == "a") & (table["setting"] == "default")]
    assert row["test_accuracy_mean"] == pytest.approx(runs["test_accuracy"].mean())
    assert (
        row["test_accuracy_ci95_low"] < row["test_accuracy_mean"] < row["test_accuracy_ci95_high"]
    )
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
    assert marks["d"].startswith("inconclusive vs best (MDD ")  # 0.05 points apart: neither shown
    assert ["a", "d"] in ranking.groups()
    assert ranking.pvalues.loc["a", "c"] == ranking.pvalues.loc["c", "a"] < 0.05


def test_equal_variants_are_never_called_different():
    ranking = stats.rank(_table({"a": 0.88, "b": 0.88, "c": 0.88}, noise=0.004))
    assert not ranking.omnibus_rejects
    assert all(not ranking.significant(x, y) for x in "abc" for y in "abc")
    assert ranking.groups() == [ranking.order]  # one group: all alike


def test_bonferroni_correction_is_applied():
    table = _table({"a": 0.88, "b": 0.877, "c": 0.874})
    ranking = stats.rank(table)
    wide = stats.score_matrix(table)
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        raw = sst.ttest_rel(wide[x], wide[y]).pvalue
        assert ranking.pvalues.loc[x, y] == pytest.approx(min(1.0, 3 * raw))
        assert ranking.pair(x, y)["p_adjusted"] == pytest.approx(min(1.0, 3 * raw))


def test_the_ranking_test_is_chosen_by_name_from_a_registry():
    """A test registered under a name is what rank() uses for the groups; the name is what a
    study selects and a comparison logs, so a report rebuilds with the same test."""
    table = _table({"a": 0.88, "b": 0.877, "c": 0.874}, seeds=8)
    assert {"ttest", "wilcoxon"} <= set(stats.POSTHOC_TESTS)
    wilcoxon = stats.rank(table, posthoc="wilcoxon")
    wide = stats.score_matrix(table)
    raw = sst.wilcoxon(wide["a"], wide["c"], zero_method="zsplit").pvalue
    assert wilcoxon.pvalues.loc["a", "c"] == pytest.approx(min(1.0, 3 * raw))
    assert stats.posthoc_label("wilcoxon") == "Wilcoxon signed-rank"

    @stats.register_posthoc("never", "a test that never separates")
    def _never(pairs, scores):
        return pd.DataFrame(1.0, index=scores.columns, columns=scores.columns)

    try:
        never = stats.rank(table, posthoc="never")
        assert (never.pvalues.to_numpy() == 1.0).all() and never.groups() == [never.order]
        assert list(never.pairs["verdict"]) == list(
            stats.rank(table).pairs["verdict"]
        )  # verdicts stay paired t
    finally:
        del stats.POSTHOC_TESTS["never"]
    with pytest.raises(ValueError, match="unknown post-hoc test"):
        stats.rank(table, posthoc="never")


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


def test_a_diverged_run_is_left_out_and_counted():
    table = _table({"a": 0.88, "b": 0.80, "c": 0.70}, seeds=4)
    table.loc[(table["variant"] == "a") & (table["seed"] == 0), ["test_accuracy", "status"]] = [
        None,
        "diverged",
    ]
    table.loc[(table["variant"] == "b") & (table["seed"] == 1), "status"] = (
        "dead"  # scored, but not healthy
    )
    ranking = stats.rank(table)
    assert list(ranking.scores.index) == [2, 3]  # the ranking: seeds where every run is healthy
    assert (
        ranking.pair("a", "b")["seeds"] == 2 and ranking.pair("a", "c")["seeds"] == 3
    )  # pairs: both healthy
    assert ranking.pair("b", "c")["seeds"] == 3
    assert any("1 diverged" in n and "1 dead" in n for n in ranking.notes)
    summary = stats.aggregate(table).set_index("variant")
    assert summary.loc["a", "healthy"] == 3 and summary.loc["a", "unhealthy"] == 1
    assert summary.loc["a", "excluded"] == "1 diverged" and summary.loc["c", "excluded"] == ""
    ok = table[(table["variant"] == "b") & (table["seed"] != 1)]["test_accuracy"]
    assert summary.loc["b", "test_accuracy_mean"] == pytest.approx(
        ok.mean()
    )  # the dead run's score is not in it


def test_tuning_effect_is_paired_by_seed():
    default = _table({"a": 0.85, "b": 0.88}, seeds=4)
    tuned = default.copy()
    tuned["setting"] = "tuned"
    tuned.loc[tuned["variant"] == "a", "test_accuracy"] += 0.02 + np.array(
        [0.001, -0.001, 0.002, 0.0]
    )
    effect = stats.tuning_effect(pd.concat([default, tuned]))
    a = effect.set_index("variant").loc["a"]
    assert a["delta_mean"] == pytest.approx(0.0205)
    assert a["verdict"] == "better"
    b = effect.set_index("variant").loc["b"]
    assert math.isnan(b["p"]) and b["verdict"] == "identical scores"  # identical: no test
    assert stats.tuning_effect(default) is None


# --------------------------------------------------------------------------- one paired comparison


def test_all_equal_values_claim_no_interval():
    mean, std, low, high = stats.mean_ci([0.9, 0.9, 0.9])
    assert mean == 0.9 and std == 0.0 and math.isnan(low) and math.isnan(high)


DIFF = np.array([0.004, 0.001, 0.006, 0.002, 0.003, 0.0035])  # a - b over six seeds


def test_the_interval_and_p_value_are_bonferroni_at_the_familys_level():
    n, m = len(DIFF), 4
    result = stats.paired_test(DIFF, margin=0.005, family=m)
    se = DIFF.std(ddof=1) / math.sqrt(n)
    t = DIFF.mean() / se
    assert result.p == pytest.approx(2 * sst.t.sf(abs(t), n - 1))
    assert result.p_adjusted == pytest.approx(min(1.0, m * result.p))
    half = sst.t.ppf(1 - 0.05 / m / 2, n - 1) * se  # the 1 - alpha/m interval
    assert (result.ci_low, result.ci_high) == pytest.approx(
        (DIFF.mean() - half, DIFF.mean() + half)
    )
    assert result.verdict == "better" and result.ci_low > 0


def test_tost_is_statsmodels_paired_tost_and_the_hand_computed_one():
    from statsmodels.stats.weightstats import ttost_paired

    b = np.array([0.880, 0.882, 0.879, 0.884, 0.881, 0.883])
    a = b + np.array([0.001, -0.002, 0.003, 0.0, 0.002, -0.001])
    result = stats.paired_test(a - b, margin=0.005)
    theirs = ttost_paired(a, b, -0.005, 0.005)[0]
    d = a - b
    se = d.std(ddof=1) / math.sqrt(len(d))
    by_hand = max(
        sst.t.sf((d.mean() + 0.005) / se, len(d) - 1),
        sst.t.cdf((d.mean() - 0.005) / se, len(d) - 1),
    )
    assert result.tost_p_adjusted == pytest.approx(theirs) == pytest.approx(by_hand)
    assert result.tost_p_adjusted < 0.05 and result.p_adjusted >= 0.05
    assert result.verdict == "equivalent"
    assert (
        stats.paired_test(a - b, margin=0.0005).verdict == "inconclusive"
    )  # a margin too tight to show


def test_minimum_detectable_difference_and_seeds_needed_match_power_tables():
    # Five seeds at Bonferroni over 15 pairs: 3.5 SD of the differences (issue 23's figure);
    # one seed pair at 5%: Cohen's d = 0.5 needs 34 pairs for 80% power (33.4, rounded up).
    assert stats.detectable_difference(1.0, 5, 0.05 / 15) == pytest.approx(3.5058, abs=1e-3)
    assert stats.detectable_difference(0.002, 5, 0.05) == pytest.approx(0.002 * 1.6820, rel=1e-3)
    assert stats.seeds_needed(0.01, 0.005, 0.05) == 34
    assert stats.seeds_needed(1e-5, 0.005, 0.05 / 15) == 2  # a margin of 500 SD: the minimum
    # Two seeds at a Bonferroni level: statsmodels' solver fails there; the answer still has 80%
    # power.
    from statsmodels.stats.power import TTestPower

    mdd = stats.detectable_difference(1.0, 2, 0.05 / 15)
    assert TTestPower().power(mdd, 2, 0.05 / 15) == pytest.approx(0.8, abs=1e-3)
    assert math.isnan(stats.detectable_difference(0.0, 5, 0.05))  # no spread, no power model


def test_a_constant_difference_gets_the_exact_sign_flip_test_not_p_zero():
    five = stats.paired_test([0.01] * 5)
    assert five.test == "sign-flip (SD 0)" and five.p == pytest.approx(2 / 2**5)
    assert math.isnan(five.ci_low) and math.isnan(five.ci_high) and math.isnan(five.mdd)
    assert five.verdict == "inconclusive"  # 0.0625: five seeds cannot resolve it
    six = stats.paired_test([0.01] * 6)
    assert six.p == pytest.approx(2 / 2**6) and six.verdict == "better"
    within = stats.paired_test([0.002] * 6, margin=0.005, family=3)  # p = 3 * 2/64 > 0.05
    assert (
        within.tost_p_adjusted == pytest.approx(3 / 2**6) and within.verdict == "equivalent"
    )  # TOST: 3/64


def test_identical_runs_are_not_tested():
    same = stats.paired_test([0.0, 0.0, 0.0])
    assert same.verdict == "identical scores" and same.effect == 0.0 and math.isnan(same.p)
    assert stats.paired_test([0.01]).verdict == "untested"
    tested = stats.family_tests(
        {"x": [0.0, 0.0], "y": [0.01, 0.02, 0.015], "z": [0.01, -0.01, 0.0]}
    )
    assert tested["y"].p_adjusted == pytest.approx(
        min(1.0, 2 * tested["y"].p)
    )  # x is not in the family


def test_every_path_handles_a_constant_difference_the_same_way():
    default = _table({"a": 0.85, "b": 0.88}, seeds=5, noise=0.0)
    tuned = default.assign(setting="tuned")
    tuned.loc[tuned["variant"] == "a", "test_accuracy"] += 0.01
    tuned.loc[tuned["variant"] == "b", "test_accuracy"] += np.array([0.01, 0.0, 0.02, 0.01, 0.005])
    effect = stats.tuning_effect(pd.concat([default, tuned])).set_index("variant")
    ranked = stats.rank(default).pair("b", "a")  # 0.03 on every seed
    assert effect.loc["a", "p"] == ranked["p"] == pytest.approx(2 / 2**5)
    assert effect.loc["a", "test"] == ranked["test"] == "sign-flip (SD 0)"
    assert math.isnan(effect.loc["a", "ci_low"]) and math.isnan(ranked["ci_low"])


@pytest.mark.parametrize("seed", range(40))
def test_an_interval_excludes_zero_exactly_when_the_adjusted_p_is_below_alpha(seed):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(2, 6)), int(rng.integers(2, 9))
    means = {f"v{i}": 0.88 + rng.normal(0, 0.004) for i in range(k)}
    table = _table(means, seeds=n, noise=float(rng.uniform(0.0005, 0.006)), seed=seed)
    tuned = table.assign(
        setting="tuned", test_accuracy=table["test_accuracy"] + rng.normal(0.002, 0.003, len(table))
    )
    factorial = stats.factorial(
        _factorial_table(n, float(rng.uniform(0.001, 0.01)), seed), "default", FACTORS
    )
    frames = [
        stats.rank(table).pairs,
        stats.tuning_effect(pd.concat([table, tuned])),
        factorial.contrasts,
    ]
    for frame in frames:
        tested = frame[frame["test"] == "paired t"]
        excludes = (tested["ci_low"] > 0) | (tested["ci_high"] < 0)
        assert (excludes == (tested["p_adjusted"] < 0.05)).all()
        assert ((tested["verdict"].isin(["better", "worse"])) == excludes).all()


# --------------------------------------------------------------------------- the omnibus test


def test_iman_davenport_reproduces_demsar_2006():
    # Demšar (2006), section 3.2.2: 4 classifiers on 14 data sets, chi2_F = 9.28 -> F_F = 3.69
    # on (3, 39) degrees of freedom, above the 5% critical value 2.85.
    f, p = stats.iman_davenport(9.28, n=14, k=4)
    assert f == pytest.approx(3.69, abs=0.005)
    assert sst.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.01) and p < 0.05
    assert stats.iman_davenport(14 * 3, n=14, k=4) == (math.inf, 0.0)  # every block ranks alike


def test_the_omnibus_is_friedman_with_the_f_correction():
    ranking = stats.rank(_table({"a": 0.88, "b": 0.878, "c": 0.879}, seeds=4, noise=0.004))
    o = ranking.omnibus
    chi2, p = sst.friedmanchisquare(*ranking.scores.to_numpy().T)
    assert (o.chi2, o.chi2_p) == pytest.approx((chi2, p)) and ranking.friedman_p == pytest.approx(p)
    assert (o.f, o.p) == pytest.approx(stats.iman_davenport(chi2, 4, 3)) and o.df == (2, 6)
    assert ranking.omnibus_rejects == (o.p < 0.05)


# --------------------------------------------------------------------------- factor contrasts

FACTORS = {
    "family": {
        "vanilla": ["vanilla-shallow", "vanilla-deep"],
        "dropout": ["dropout-shallow", "dropout-deep"],
        "batchnorm": ["batchnorm-shallow", "batchnorm-deep"],
    },
    "depth": {
        "shallow": ["vanilla-shallow", "dropout-shallow", "batchnorm-shallow"],
        "deep": ["vanilla-deep", "dropout-deep", "batchnorm-deep"],
    },
}


def _factorial_table(seeds: int, noise: float, seed: int = 0) -> pd.DataFrame:
    """3 families x 2 depths; deep is 0.01 better, the families are alike; a per-seed offset
    shared by all."""
    means = {
        f"{fam}-{depth}": 0.88 + (0.01 if depth == "deep" else 0.0)
        for fam in FACTORS["family"]
        for depth in FACTORS["depth"]
    }
    table = _table(means, seeds=seeds, noise=noise, seed=seed)
    return table.assign(test_accuracy=table["test_accuracy"] + 0.005 * np.sin(table["seed"]))


def test_contrasts_find_the_injected_main_effect_with_enough_seeds():
    f = stats.factorial(
        _factorial_table(seeds=20, noise=0.001, seed=1), "default", FACTORS, margin=0.005
    )
    rows = f.contrasts.set_index("contrast")
    assert rows.loc["deep - shallow", "effect"] == pytest.approx(0.01, abs=0.001)
    assert rows.loc["deep - shallow", "verdict"] == "better"
    family = f.contrasts[f.contrasts["term"] == "family"]
    assert list(family["contrast"]) == [
        "dropout - vanilla",
        "batchnorm - vanilla",
        "batchnorm - dropout",
    ]
    assert (family["verdict"] == "equivalent").all()
    interaction = f.contrasts[f.contrasts["term"] == "depth × family"]
    assert list(interaction["contrast"]) == [
        "(deep - shallow) at dropout - at vanilla",
        "(deep - shallow) at batchnorm - at vanilla",
        "(deep - shallow) at batchnorm - at dropout",
    ]
    assert (interaction["verdict"] == "equivalent").all()
    # Bonferroni within the family term: 3 contrasts
    assert (family["p_adjusted"] == np.minimum(1.0, 3 * family["p"])).all()
    anova = f.anova.set_index("term")
    assert list(anova.index) == ["family", "depth", "family × depth"]
    assert anova.loc["depth", "p"] < 0.001 and anova.loc["family", "p"] > 0.01
    assert (anova.loc["depth", "df_num"], anova.loc["depth", "df_den"]) == (1, 19)
    assert f.seeds == 20 and f.dropped == 0


def test_contrasts_with_three_noisy_seeds_are_inconclusive():
    f = stats.factorial(
        _factorial_table(seeds=3, noise=0.01, seed=3), "default", FACTORS, margin=0.005
    )
    assert (f.contrasts["verdict"] == "inconclusive").all()
    assert (f.contrasts["mdd"] > 0.01).all() and (f.contrasts["seeds_needed"] > 3).all()


def test_a_seed_missing_a_cell_is_dropped_from_the_contrasts():
    table = _factorial_table(seeds=5, noise=0.001)
    table.loc[
        (table["variant"] == "dropout-deep") & (table["seed"] == 2), ["status", "test_accuracy"]
    ] = ["diverged", None]
    f = stats.factorial(table, "default", FACTORS)
    assert (f.seeds, f.dropped) == (4, 1) and (f.contrasts["seeds"] == 4).all()
    assert any("1 seed(s) left out" in n for n in f.notes)


def test_factors_derive_from_family_and_group_only_for_a_complete_crossed_design():
    rows = [
        (f"{fam}-{g}", fam, g)
        for fam in ("vanilla", "dropout", "batchnorm")
        for g in ("shallow", "deep")
    ]
    derived = stats.derive_factors(rows)
    assert list(derived) == ["family", "group"]
    assert derived["group"] == {
        "shallow": ["vanilla-shallow", "dropout-shallow", "batchnorm-shallow"],
        "deep": ["vanilla-deep", "dropout-deep", "batchnorm-deep"],
    }
    assert stats.derive_factors(rows[:-1]) is None  # batchnorm-deep missing
    assert stats.derive_factors([r for r in rows if r[2] == "shallow"]) is None  # one level
    assert stats.loads_factors(stats.dumps_factors(derived)) == derived
    assert stats.loads_factors("{}") is None


@pytest.mark.parametrize(
    ("factors", "message"),
    [
        ({"depth": {"shallow": ["a"]}}, "needs 2 or more levels"),
        ({"depth": {"shallow": ["a", "b"], "deep": ["b"]}}, "b in more than one level"),
        (
            {"depth": {"shallow": ["a"], "deep": ["zzz"]}},
            "not in the study: zzz; known: a, b, c, d",
        ),
        (
            {
                "depth": {"shallow": ["a", "b"], "deep": ["c", "d"]},
                "family": {"x": ["a", "c"], "y": ["b"]},
            },
            "sorts other variants",
        ),
        (
            {
                "depth": {"shallow": ["a", "b"], "deep": ["c"]},
                "family": {"x": ["a", "c"], "y": ["b"]},
            },
            "not crossed: no variant is 'deep' and 'y'",
        ),
    ],
)
def test_declared_factors_must_partition_the_variants_into_a_crossed_design(factors, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        stats.check_factors(factors, ["a", "b", "c", "d"])
