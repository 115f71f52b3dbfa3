"""Subgroup effects with a test of difference from joint influence functions; multiple-testing adjustments."""
import numpy as np
import pandas as pd
import pytest

from analyses.evaluation import EvaluationPlan
from analyses.mechanisms.inference import JointInfluence, holm, romano_wolf
from analyses.mechanisms.subgroups import subgroup_effects, subgroup_labels

PLAN = EvaluationPlan(covariates=(), min_cohort_size=10, headline_horizon=2)


def staggered(n=1200, effect_in=0.3, effect_out=1.0, seed=0, years=range(2014, 2021)):
    """Cluster members gain ``effect_in`` a year after support, others ``effect_out``; shared never-treated firms."""
    rng = np.random.default_rng(seed)
    cohort = rng.choice([0, 2016, 2017, 2018], size=n, p=[0.4, 0.2, 0.2, 0.2])
    cluster = (rng.random(n) < 0.5).astype(int)
    employees = rng.integers(1, 120, n)
    level = rng.normal(size=n)
    rows = []
    for t in years:
        treated = (cohort > 0) & (t >= cohort)
        gain = np.where(cluster == 1, effect_in, effect_out) * treated
        y = level + 0.2 * (t - 2014) + gain + rng.normal(size=n)
        rows.append(pd.DataFrame({"firm_id": np.arange(n), "year": t, "cohort": cohort, "in_cluster": cluster,
                                  "employees": employees, "exporter": (level > 0).astype(int), "y": y}))
    return pd.concat(rows, ignore_index=True)


def test_labels_are_taken_before_support():
    data = staggered(n=200)
    firm = data.loc[data.cohort > 0, "firm_id"].iloc[0]
    mine = data.firm_id == firm
    data.loc[mine, "employees"] = np.where(data.loc[mine, "year"] >= data.loc[mine, "cohort"], 500, 5)
    labels = subgroup_labels(data)
    assert set(labels.index) == set(data.loc[data.cohort > 0, "firm_id"])
    assert labels.loc[firm, "size_class"] == "micro"  # the year before support, not after
    assert set(labels.size_class) <= {"micro", "small", "medium"}


def test_planted_difference_is_detected():
    table, test, joint = subgroup_effects(staggered(), "y", "in_cluster", PLAN)
    by = table.set_index("subgroup")
    assert by.loc["in_cluster=0", "ci_lower"] <= 1.0 <= by.loc["in_cluster=0", "ci_upper"]
    assert by.loc["in_cluster=1", "ci_lower"] <= 0.3 <= by.loc["in_cluster=1", "ci_upper"]
    assert test["p_value"] < 0.01 and test["ci_lower"] <= 0.7 <= test["ci_upper"]
    # cluster membership never changes: each subgroup has its own comparison firms, so no covariance
    assert joint.covariance()[0, 1] == pytest.approx(0.0, abs=1e-15)
    assert test["se"] == pytest.approx(np.sqrt(by.std_error.pow(2).sum()), rel=1e-9)


def test_shared_comparison_group_is_accounted_for():
    """Size class is measured before support: every class is compared with all comparison firms."""
    table, test, joint = subgroup_effects(staggered(), "y", "size_class", PLAN)
    assert (table.n_control == table.n_control.iloc[0]).all()
    cov = joint.covariance()
    assert (cov[np.triu_indices(len(cov), 1)] > 0).all()  # shared comparisons: positively correlated
    assert test["df"] == len(table) - 1


def test_small_subgroup_is_reported_not_estimated():
    data = staggered(n=300)
    table, _, _ = subgroup_effects(data, "y", "size_class", PLAN, min_firms=1000)
    assert table.reason.str.startswith("fewer than 1000 treated firms").all()
    assert table.estimate.isna().all()


@pytest.mark.slow
def test_no_difference_rejects_near_alpha():
    rejections = [subgroup_effects(staggered(n=500, effect_in=0.5, effect_out=0.5, seed=s), "y", "in_cluster",
                                   PLAN)[1]["p_value"] < 0.05 for s in range(200)]
    rate = np.mean(rejections)
    assert 0.02 <= rate <= 0.09, rate


def test_holm_matches_definition():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    np.testing.assert_allclose(holm(p)[[4, 0, 2, 1]], [0.02, 0.03, 0.06, 0.06])
    assert np.isnan(holm(p)[3])


def test_romano_wolf_is_between_raw_and_bonferroni_and_monotone():
    rng = np.random.default_rng(0)
    cov = np.array([[1, 0.8, 0.8], [0.8, 1, 0.8], [0.8, 0.8, 1]])
    draws = rng.multivariate_normal(np.zeros(3), cov, size=20000)
    t = np.array([2.5, 2.0, 0.5])
    adjusted = romano_wolf(t, draws)
    raw = 2 * (1 - __import__("scipy.stats").stats.norm.cdf(t))
    assert (adjusted >= raw - 0.01).all() and (adjusted <= np.minimum(1, 3 * raw) + 0.01).all()
    assert adjusted[0] <= adjusted[1] <= adjusted[2]
    # the largest statistic's p-value is P(max |t*| >= 2.5) over all three
    assert adjusted[0] == pytest.approx((np.abs(draws).max(axis=1) >= 2.5).mean())


def test_romano_wolf_p_values_are_never_below_one_over_draws_plus_one():
    """No draw reaches a huge statistic: the p-value is floored at 1/(B+1), never exactly 0."""
    draws = np.random.default_rng(1).normal(size=(199, 3))
    adjusted = romano_wolf(np.array([40.0, 30.0, 0.1]), draws)
    assert adjusted[0] == adjusted[1] == pytest.approx(1 / 200)
    assert adjusted[2] > 0.5


def test_joint_influence_rescales_to_the_union():
    joint = JointInfluence()
    joint.add("a", 1.0, np.array([1.0, -1.0]), np.array([10, 11]))
    joint.add("b", 2.0, np.array([2.0, -2.0, 0.0]), np.array([11, 12, 13]))
    cov = joint.covariance()
    assert cov[0, 0] == pytest.approx(2 / 4)  # var of a on its own sample: sum IF^2 / n^2
    assert cov[0, 1] == pytest.approx((-1 / 2) * (2 / 3))
    with pytest.raises(ValueError, match="influence function has"):
        joint.add("c", 0.0, np.zeros(2), np.arange(3))


@pytest.mark.parametrize("unbalanced, control_group", [(False, "nevertreated"), (True, "notyettreated")])
def test_headline_from_the_event_window_cells_only_is_unchanged(unbalanced, control_group):
    """cs_headline estimates only the cells the headline reads (att_gt's event_window): same numbers, fewer cells."""
    from analyses.did import aggte, att_gt
    from analyses.did.datasets import load_mpdta

    data = load_mpdta()
    if unbalanced:
        data = data.sample(frac=0.9, random_state=3).sort_index()
    runs = {}
    for window in (None, (0, 1)):
        result = att_gt(data, "lemp", "year", "countyreal", "first.treat", xformla="~lpop", control_group=control_group,
                        bstrap=False, cband=False, allow_unbalanced_panel=unbalanced, event_window=window)
        agg = aggte(result, type="dynamic", balance_e=1, min_e=0, max_e=1, bstrap=False, cband=False)
        runs[window] = (len(result.att), agg.overall_att, agg.overall_se, agg.overall_inf_func)
    (cells, att, se, inf), (fewer, att_w, se_w, inf_w) = runs[None], runs[(0, 1)]
    assert fewer < cells
    assert att_w == pytest.approx(att, abs=1e-12) and se_w == pytest.approx(se, abs=1e-12)
    np.testing.assert_allclose(inf_w, inf, atol=1e-12)


def test_propensity_fit_is_reused_for_the_same_cell_under_another_outcome():
    """att_gt on two outcomes with the same rows fits each cell's propensity logit once; the ATTs are unchanged."""
    from analyses.did import att_gt, estimators
    from analyses.did.datasets import load_mpdta

    data = load_mpdta().assign(lemp2=lambda d: 2 * d["lemp"])
    estimators._PSCORE_CACHE.clear()
    fits = []
    original = estimators._fit_pscore
    try:
        estimators._fit_pscore = lambda *args: fits.append(1) or original(*args)
        first = att_gt(data, "lemp", "year", "countyreal", "first.treat", xformla="~lpop", bstrap=False, cband=False)
        cells = len(fits)
        second = att_gt(data, "lemp2", "year", "countyreal", "first.treat", xformla="~lpop", bstrap=False, cband=False)
    finally:
        estimators._fit_pscore = original
    # a balanced panel with a time-invariant covariate: one fit per cohort serves all its cells, and nothing is
    # refitted for the second outcome
    assert cells == len(np.unique(first.group)) and len(fits) == cells
    np.testing.assert_allclose(second.att, 2 * first.att, rtol=1e-12)
    prob, _, _ = estimators._pscore(np.r_[np.ones(5), np.zeros(45)], np.ones((50, 1)), np.ones(50))
    with pytest.raises(ValueError):
        prob[0] = 0.5  # cached arrays are read-only
