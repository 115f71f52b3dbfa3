"""Subgroup effects with a test of difference from joint influence functions; multiple-testing adjustments."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from analyses.evaluation import EvaluationPlan
from analyses.mechanisms.inference import JointInfluence, holm, romano_wolf
from analyses.mechanisms.subgroups import cs_headline, matched_headline, subgroup_effects, subgroup_labels

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
    # with a year of anticipation the firm may respond the year before support: labelled the year before that
    data.loc[mine & (data.year == data.cohort - 1), "employees"] = 30
    assert subgroup_labels(data).loc[firm, "size_class"] == "small"
    assert subgroup_labels(data, anticipation=1).loc[firm, "size_class"] == "micro"


def test_planted_difference_is_detected():
    table, test, joint = subgroup_effects(staggered(), "y", "in_cluster", PLAN)
    by = table.set_index("subgroup")
    assert by.loc["in_cluster=0", "ci_lower"] <= 1.0 <= by.loc["in_cluster=0", "ci_upper"]
    assert by.loc["in_cluster=1", "ci_lower"] <= 0.3 <= by.loc["in_cluster=1", "ci_upper"]
    assert test["p_value"] < 0.01 and test["ci_lower"] <= 0.7 <= test["ci_upper"]
    # cluster membership never changes: each subgroup has its own comparison firms, so no covariance
    assert joint.covariance()[0, 1] == pytest.approx(0.0, abs=1e-15)
    assert test["se"] == pytest.approx(np.sqrt(by.std_error.pow(2).sum()), rel=1e-9)


def test_comparison_firms_that_change_class_are_shared_and_accounted_for():
    """Size class changes over time: each cohort is compared with firms of its class in its base year, so a firm
    that grows serves two classes, and the test of difference takes the covariance this creates into account."""
    data = staggered()
    growth = np.random.default_rng(5).normal(0, 0.4, data.firm_id.nunique())
    data["employees"] = data["employees"] * np.exp(data.firm_id.map(dict(enumerate(growth))) * (data.year - 2014))
    table, test, joint = subgroup_effects(data, "y", "size_class", PLAN)
    assert (table.reason == "").all()
    used = joint.matrix() != 0
    assert (used.sum(axis=1) >= 2).any()  # comparison firms serving two classes
    cov = joint.covariance()
    assert (cov[np.triu_indices(len(cov), 1)] != 0).any()
    assert test["df"] == len(table) - 1
    contrast = np.array([[1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])
    diff = contrast @ table.estimate.to_numpy()
    assert test["wald"] == pytest.approx(diff @ np.linalg.solve(contrast @ cov @ contrast.T, diff), rel=1e-9)


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


def exporting(n=1500, seed=1, years=range(2012, 2021), effect=0.0):
    """Exporting as a persistent, mean-reverting state; firms that exported the year before start support more
    often. ``exporter`` is the outcome and a covariate, so ``exported_before`` is a label of a time-varying
    measure. Every default covariate of the plan is present (``analyses.panel.TIME_VARYING_COVARIATES``)."""
    rng = np.random.default_rng(seed)
    years = np.asarray(list(years))
    propensity = rng.normal(size=n)
    state = (rng.random(n) < 0.3).astype(int)
    size = rng.normal(2.5, 1.0, n)
    cohort = np.zeros(n, dtype=int)
    rows, history = [], []
    for t in years:
        p = 1 / (1 + np.exp(-(-1.0 + 0.8 * propensity + 2.5 * state - 1.2 * (1 - state))))
        untreated = (rng.random(n) < p).astype(int)
        history.append(untreated)
        starts = (cohort == 0) & (t >= years[2]) & (t <= years[-2]) & (rng.random(n) < 0.03 + 0.05 * state)
        cohort[starts] = t
        state = np.where((cohort > 0) & (t >= cohort) & (rng.random(n) < effect), 1, untreated)
        log_employees = size + 0.05 * (t - years[0]) + rng.normal(0, 0.3, n)
        rows.append(pd.DataFrame({
            "firm_id": np.arange(n), "year": t, "exporter": state, "log_employees": log_employees,
            "employees": np.exp(log_employees), "log_turnover": log_employees + rng.normal(0, 0.2, n),
            "firm_age": t - 1990, "years_exported_3y": np.sum(history[-3:], axis=0), "in_cluster": (size > 3).astype(int),
        }))
    data = pd.concat(rows, ignore_index=True)
    data["cohort"] = data["firm_id"].map(dict(enumerate(cohort)))
    return data


def test_exported_before_is_estimable_under_the_default_plan():
    """Prior exporting labels the subgroup and is a covariate read at the base period: each cohort is compared
    with firms of the same status in its base year, so neither subgroup runs into a constant covariate."""
    plan = EvaluationPlan(min_cohort_size=10, headline_horizon=2)
    table, test, joint = subgroup_effects(exporting(), "exporter", "exported_before", plan)
    assert list(table.subgroup) == ["exported_before=0", "exported_before=1"]
    assert (table.reason == "").all(), table.reason.tolist()
    assert table.estimate.notna().all() and (table.std_error > 0).all()
    assert np.isfinite(test["p_value"])


def _matched_did_by_hand(data, value, horizon):
    """Per cohort g and event time e: mean change y(g+e) - y(g-1) of g's firms exporting (or not) in g-1 minus that
    of never-supported firms with the same status in g-1; cohort-size weights per e; the mean over e = 0..H."""
    wide = data.pivot(index="firm_id", columns="year", values="exporter")
    cohort = data.groupby("firm_id")["cohort"].first()
    last = wide.columns.max()
    per_e = []
    for e in range(horizon + 1):
        effects, sizes = [], []
        for g in sorted(c for c in cohort.unique() if c > 0 and last - c >= horizon):
            mine = (cohort == g) & (wide[g - 1] == value)
            matched = (cohort == 0) & (wide[g - 1] == value)
            change = wide[g + e] - wide[g - 1]
            effects.append(change[mine].mean() - change[matched].mean())
            sizes.append(mine.sum())
        per_e.append(np.average(effects, weights=sizes))
    return np.mean(per_e)


def test_matched_estimate_is_the_difference_in_differences_within_the_base_year_status():
    data = exporting(n=800, seed=2)
    plan = EvaluationPlan(covariates=(), min_cohort_size=5, headline_horizon=2)
    table, _, _ = subgroup_effects(data, "exporter", "exported_before", plan)
    for value in (0, 1):
        row = table.set_index("subgroup").loc[f"exported_before={value}"]
        assert row.estimate == pytest.approx(_matched_did_by_hand(data, value, 2), abs=1e-12)


@pytest.mark.parametrize("control_group", ["nevertreated", "notyettreated"])
def test_matching_at_the_base_year_equals_exact_matching_for_a_fixed_label(control_group):
    """A label that never changes is the same in every base year: the per-cohort matched headline is the exact
    matching path's, estimate, standard error and influence function."""
    data = staggered(n=900)  # cohorts 2016-2018, data to 2020: the 2018 cohort is not observed H = 3 years
    plan = EvaluationPlan(covariates=("employees",), min_cohort_size=5, headline_horizon=3,
                          control_group=control_group)
    labels = data["in_cluster"].astype(str)
    for value in ("0", "1"):
        mine = data.loc[labels.eq(value)]
        exact = cs_headline(mine, "y", "firm_id", plan)
        matched = matched_headline(data, "y", "firm_id", plan, labels, value)
        assert matched.estimate == pytest.approx(exact.estimate, abs=1e-10)
        assert matched.std_error == pytest.approx(exact.std_error, abs=1e-10)
        np.testing.assert_array_equal(matched.unit_ids, exact.unit_ids)
        np.testing.assert_allclose(matched.inf_func, exact.inf_func, atol=1e-10)
        assert (matched.n_treated, matched.n_control) == (exact.n_treated, exact.n_control)


@pytest.mark.slow
def test_subgroups_of_pre_programme_labels_are_unbiased_on_the_demo():
    """On the demo's world without any effect every subgroup estimate is within 3 standard errors of zero (before
    matching in the base year, ``exported_before`` was not estimable, and without ``exporter`` among the
    covariates it was off by z = +7..+10 / -7..-12); on the observed world the ``exported_before`` intervals cover
    their truths (jointly: six intervals)."""
    from analyses.demo_data import demo_worlds, generate_demo_data
    from analyses.mechanisms.families import RUNNERS
    from analyses.panel import build_firm_year_panel

    plan = EvaluationPlan(bootstrap_iterations=0)
    untreated = build_firm_year_panel(**demo_worlds(n_firms=10_000)["untreated"]).panel
    result = RUNNERS["subgroups"](untreated, plan)
    rows = result.rows.loc[result.rows.aggregation == "dynamic_balanced"].assign(
        z=lambda d: d.estimate / d.std_error)
    print("\nuntreated world (truth 0)\n", rows[["treatment", "subgroup", "estimate", "std_error", "z"]].to_string())
    assert result.not_estimable.empty, result.not_estimable.to_string()
    assert len(rows) == 3 * 7  # three services x (2 + 3 + 2) subgroups
    assert (rows.z.abs() < 3).all()

    data = generate_demo_data(n_firms=10_000)
    observed = build_firm_year_panel(data.firms, data.financials, data.participation, data.exports).panel
    result = RUNNERS["subgroups"](observed, plan)
    truths = data.true_effects
    truths = truths.loc[(truths.aggregation == "dynamic_balanced") & truths.event_time.isna()
                        & truths.subgroup.fillna("").str.startswith("exported_before")]
    rows = result.rows.loc[result.rows.subgroup.str.startswith("exported_before=")].merge(
        truths[["treatment", "outcome", "subgroup", "true_effect"]], on=["treatment", "outcome", "subgroup"])
    rows["z"] = (rows.estimate - rows.true_effect) / rows.std_error
    print("observed world\n", rows[["treatment", "subgroup", "estimate", "true_effect", "std_error", "z"]].to_string())
    assert len(rows) == 3 * 2
    # all six at once: Bonferroni's 95 % (|z| < 2.64). Measured: grant exported_before=1 at z = -1.99, its error
    # (-0.021) that of the same firms in the world without effect (z = -1.31 there; common random numbers)
    assert (rows.z.abs() < norm.ppf(1 - 0.05 / (2 * len(rows)))).all()


def test_a_cohort_without_matched_comparisons_is_left_out_with_its_reason():
    """No comparison firm has the label in 2015, the base year of the 2016 cohort: that cohort cannot be estimated;
    the headline rests on the others, and the cohort is named as left out."""
    from analyses.did import aggte
    from analyses.mechanisms.subgroups import matched_att_gt

    data = staggered(n=900)
    plan = EvaluationPlan(covariates=(), min_cohort_size=5, headline_horizon=2)
    labels = pd.Series("1", index=data.index).mask(data.cohort.eq(0) & data.year.eq(2015), "0")
    result = matched_att_gt(data, "y", "firm_id", plan, labels, "1")
    assert {g for g, _, _ in result.failed_cells} == {2016}
    with pytest.warns(UserWarning, match="left out cohort"):
        agg = aggte(result, type="dynamic", balance_e=2, min_e=0, max_e=2, bstrap=False, cband=False)
    assert list(agg.dropped_cohorts.group) == [2016]
    assert agg.dropped_cohorts.reason.iloc[0] == "no comparison firm labelled '1' in 2015, the cohort's base year"
    assert np.isfinite(agg.overall_att) and agg.n_treated == int(data.loc[data.cohort.isin([2017, 2018]), "firm_id"].nunique())
