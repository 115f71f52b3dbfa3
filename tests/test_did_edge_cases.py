"""Awkward inputs: each gets a clear error or a documented, recorded behaviour, never a silent NaN."""
import numpy as np
import pandas as pd
import pytest

from analyses.did import aggte, att_gt
from analyses.did.bootstrap import analytic_se
from analyses.did.simulate import simulate_staggered_panel

COLS = ("y", "period", "unit", "first_treat")


@pytest.fixture()
def panel():
    return simulate_staggered_panel(240, 5, [3, 4], seed=3)


def _fit(data, **kwargs):
    kwargs.setdefault("bstrap", False)
    return att_gt(data, *COLS, **kwargs)


def test_never_treated_coded_nan_or_after_sample_equals_zero(panel):
    reference = _fit(panel).table
    as_nan = panel.assign(first_treat=panel.first_treat.replace(0, np.nan))
    after_sample = panel.assign(first_treat=panel.first_treat.replace(0, 99))
    pd.testing.assert_frame_equal(_fit(as_nan).table, reference)
    pd.testing.assert_frame_equal(_fit(after_sample).table, reference)


def test_cohort_treated_in_first_period_is_dropped_with_warning(panel):
    early = panel[panel.unit <= 5].assign(unit=lambda d: d.unit + 10_000, first_treat=1)
    with pytest.warns(UserWarning, match="dropped 5 units already treated in the first period"):
        result = _fit(pd.concat([panel, early]))
    assert result.dropped_first_period_units == 5
    assert any("first period" in note for note in result.notes)
    pd.testing.assert_frame_equal(result.table, _fit(panel).table)


def test_cohort_with_one_unit_is_estimated_with_small_group_warning(panel):
    lone_id = panel.loc[panel.first_treat == 0, "unit"].iloc[0]
    data = panel.assign(first_treat=np.where(panel.unit == lone_id, 2, panel.first_treat))
    with pytest.warns(UserWarning, match=r"small groups \(fewer than 5 units\): \[2\]"):
        result = _fit(data)
    cell = result.table.query("group == 2 and time == 3").iloc[0]
    wide = data.pivot(index="unit", columns="period", values="y")
    cohort = data.groupby("unit").first_treat.first()
    change = wide[3] - wide[1]
    expected = change[lone_id] - change[cohort == 0].mean()
    assert cell.att == pytest.approx(expected, abs=1e-12)
    assert np.isfinite(cell.se) and cell.se > 0


@pytest.mark.parametrize("control_group", ["nevertreated", "notyettreated"])
def test_no_never_treated_units_uses_last_cohort_like_r(panel, control_group):
    treated_only = panel[panel.first_treat > 0]  # cohorts 3 and 4 only
    with pytest.warns(UserWarning, match="no never-treated units"):
        result = _fit(treated_only, control_group=control_group)
    # R: periods from the last cohort's start (4) on are dropped; cohort 4 becomes the comparison group
    assert set(result.table.group) == {3} and result.table.time.max() == 3
    recoded = treated_only[treated_only.period < 4].assign(
        first_treat=lambda d: d.first_treat.where(d.first_treat != 4, 0))
    expected = _fit(recoded, control_group=control_group).table
    np.testing.assert_allclose(result.table.att, expected.att, atol=1e-13)


def test_covariate_constant_within_a_cell_is_dropped_there(panel):
    # x3 is zero for everybody in period 1 and varies afterwards; cells whose earlier period is 1 cannot use it
    data = panel.assign(x3=np.where(panel.period == 1, 0.0, np.sin(panel.unit * 1.7) * panel.period))
    with pytest.warns(UserWarning, match=r"\['x3'\] are constant within some \(g,t\) cells"):
        result = _fit(data, xformla="~ x1 + x3")
    without = _fit(data, xformla="~ x1").table
    earlier_period_is_1 = result.table.time == 2  # cells comparing periods 1 and 2 take covariates from period 1
    np.testing.assert_allclose(result.table.att[earlier_period_is_1], without.att[earlier_period_is_1], atol=1e-12)
    assert not np.allclose(result.table.att[~earlier_period_is_1], without.att[~earlier_period_is_1])
    assert np.all(np.isfinite(result.table.att))


def test_perfect_separation_marks_cell_failed_and_aggte_refuses_without_na_rm(panel):
    cohort = panel.first_treat
    data = panel.assign(separator=(cohort == 3).astype(float) + np.where(cohort == 3, 0.0, 0.01 * (panel.unit % 7)))
    with pytest.warns(UserWarning, match="overlap condition violated"):
        result = _fit(data, xformla="~ separator")
    failed = {(g, t) for g, t, _ in result.failed_cells}
    assert failed and all(g == 3 for g, _ in failed)
    assert result.table.loc[result.table.group == 3, "att"].isna().all()
    assert result.table.loc[result.table.group == 4, "att"].notna().all()
    with pytest.raises(ValueError, match=r"ATT\(g,t\) is NaN for cells \(3,2\).*na_rm=True"):
        aggte(result, "simple")
    remaining = aggte(result, "simple", na_rm=True)
    assert np.isfinite(remaining.overall_att) and np.isfinite(remaining.overall_se)


def test_all_zero_outcome_is_a_clear_error(panel):
    with pytest.raises(ValueError, match="outcome 'y' is constant"):
        _fit(panel.assign(y=0.0))


def test_unbalanced_panel_requires_opt_in(panel):
    unbalanced = panel.drop(index=panel.index[[0, 7, 8]])  # units 1 and 2 lose a period
    with pytest.raises(ValueError, match=r"unbalanced panel: 2 of 240 units .*allow_unbalanced_panel=True"):
        _fit(unbalanced)
    result = _fit(unbalanced, allow_unbalanced_panel=True)
    assert not result.panel.balanced and np.all(np.isfinite(result.table.att))


def test_input_errors_name_the_problem(panel):
    with pytest.raises(ValueError, match=r"column\(s\) \['sales'\] not found"):
        att_gt(panel, "sales", "period", "unit", "first_treat")
    with pytest.raises(ValueError, match=r"duplicate \(unit, period\) rows; first: unit=1, period=1"):
        _fit(pd.concat([panel, panel.head(1)]))
    with pytest.raises(ValueError, match="'first_treat' must be constant within each unit"):
        _fit(panel.assign(first_treat=np.where(panel.index == 0, 4, panel.first_treat)))
    with pytest.raises(ValueError, match="est_method must be one of"):
        _fit(panel, est_method="ols")
    with pytest.raises(ValueError, match="xformla must be a formula string"):
        _fit(panel, xformla="x1")


def test_clustered_standard_errors_use_cluster_sums(panel):
    data = panel.assign(region=panel.unit % 12)
    clustered = _fit(data, clustervars=["unit", "region"])
    plain = _fit(data)
    np.testing.assert_allclose(clustered.table.att, plain.table.att)
    n = clustered.n_units
    sums = pd.DataFrame(clustered.inf_func).groupby(np.sort(data.unit.unique()) % 12).sum().to_numpy()
    np.testing.assert_allclose(clustered.table.se, np.sqrt((sums**2).sum(axis=0)) / n)
    with pytest.raises(ValueError, match="at most one cluster variable"):
        _fit(data.assign(sector=1), clustervars=["region", "sector"])


def test_clustered_bootstrap_uses_cluster_sums_like_r_did_2_5(panel):
    """R did >= 2.3.1.906 (so 2.5) and csdid draw one multiplier per cluster on cluster SUMS of the influence
    function; older R used cluster means, which differ when cluster sizes differ (here one cluster of 60 firms)."""
    data = panel.assign(region=np.where(panel.unit <= 60, 0, panel.unit // 2))
    boot = _fit(data, clustervars="region", bstrap=True, biters=4000, cband=False, random_state=5)
    analytic = _fit(data, clustervars="region")
    np.testing.assert_allclose(boot.se, analytic.se, rtol=0.08)
    codes = boot.panel.cluster_codes
    cluster_means = pd.DataFrame(boot.inf_func).groupby(codes).mean().to_numpy()
    cluster_mean_se = np.sqrt((cluster_means**2).sum(axis=0)) / len(cluster_means)
    assert np.mean(cluster_mean_se / analytic.se) > 1.1  # the older convention would be detectably different


def test_aggregated_standard_errors_at_or_below_r_threshold_are_nan(panel):
    """R ``aggte`` reports a standard error <= sqrt(machine eps) * 10 as NA; near-deterministic outcomes reach it."""
    noise = np.random.default_rng(0).normal(size=len(panel))
    data = panel.assign(y=0.01 * panel.unit + 0.3 * panel.period + 1e-6 * noise)
    result = _fit(data)
    dynamic = aggte(result, "dynamic", cband=False)
    raw_se = analytic_se(dynamic.inf_func)
    threshold = np.sqrt(np.finfo(float).eps) * 10
    assert (raw_se > threshold).any() and (raw_se <= threshold).any()  # the rows straddle the threshold
    np.testing.assert_array_equal(np.isnan(dynamic.table.se), raw_se <= threshold)
    np.testing.assert_allclose(dynamic.table.se[raw_se > threshold], raw_se[raw_se > threshold])
    simple = aggte(result, "simple")
    assert 0 < analytic_se(simple.overall_inf_func)[0] <= threshold
    assert np.isnan(simple.overall_se) and np.isnan(simple.overall_pvalue) and np.isnan(simple.overall_ci_upper)


def test_anticipation_cells_use_last_unaffected_base_and_stay_out_of_pretest():
    """Deliberate difference from R did (see analyses.did): with anticipation a, cells g-a <= t < g are
    differenced from period g-a-1 (R: from t-1 under a varying base) and the pre-test uses only t < g-a
    (R: t < g), as in csdid."""
    data = simulate_staggered_panel(300, 6, [4, 5], seed=8)
    result = _fit(data, anticipation=2)
    wide = data.pivot(index="unit", columns="period", values="y")
    cohort = data.groupby("unit").first_treat.first()
    change = wide[4] - wide[2]
    expected = change[cohort == 5].mean() - change[cohort == 0].mean()
    assert result.table.query("group == 5 and time == 4").att.iloc[0] == pytest.approx(expected, abs=1e-12)
    assert result.W_df == 1  # only (5,2); R would also test (4,2), (4,3), (5,3) and (5,4)
