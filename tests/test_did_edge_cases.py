"""Awkward inputs: each gets a clear error or a documented, recorded behaviour, never a silent NaN."""
import warnings

import numpy as np
import pandas as pd
import pytest

from analyses.did import aggte, att_gt
from analyses.did.bootstrap import analytic_se
from analyses.did.simulate import simulate_staggered_panel
from analyses.twfe import twfe_event_study, twfe_static

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


def test_perfect_separation_marks_cell_failed_and_aggte_leaves_it_out(panel):
    cohort = panel.first_treat
    data = panel.assign(separator=(cohort == 3).astype(float) + np.where(cohort == 3, 0.0, 0.01 * (panel.unit % 7)))
    with pytest.warns(UserWarning, match="overlap condition violated"):
        result = _fit(data, xformla="~ separator")
    failed = {(g, t) for g, t, _ in result.failed_cells}
    assert failed and all(g == 3 for g, _ in failed)
    assert result.table.loc[result.table.group == 3, "att"].isna().all()
    assert result.table.loc[result.table.group == 4, "att"].notna().all()
    assert set(result.failed_table.columns) == {"group", "time", "event_time", "reason"}
    assert result.failed_table.reason.str.contains("overlap condition violated").all()
    with pytest.raises(ValueError, match=r"ATT\(g,t\) is NaN for cells \(3,2\).*na_rm=False"):
        aggte(result, "simple", na_rm=False)
    with pytest.warns(UserWarning, match=r"left out cohort\(s\) \[3\]"):
        remaining = aggte(result, "simple")
    assert np.isfinite(remaining.overall_att) and np.isfinite(remaining.overall_se)
    assert remaining.dropped_cohorts.group.tolist() == [3]


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


# ----------------------------------------------------------------- issue 9: inputs from public bug reports

METHODS = ["dr", "ipw", "reg"]


@pytest.mark.parametrize("bad_code, rule", [(-1, "negative"), (3.5, "not a whole number")])
def test_invalid_treatment_timing_codes_are_rejected_naming_column_values_and_units(panel, bad_code, rule):
    """Issue 9.1: never-treated coded -1 (a common sentinel) must not turn the last cohort into the comparison group."""
    data = panel.assign(first_treat=panel.first_treat.replace(0, bad_code))
    n_units = data.loc[data.first_treat == bad_code, "unit"].nunique()
    pattern = rf"'first_treat'.*{rule}.*\[{bad_code}\].*{n_units} units"
    for unbalanced in (False, True):
        with pytest.raises(ValueError, match=pattern):
            _fit(data, allow_unbalanced_panel=unbalanced)
    for estimator in (twfe_static, twfe_event_study):
        with pytest.raises(ValueError, match=pattern):
            estimator(data, *COLS)


def test_infinite_timing_code_means_never_treated_as_in_r(panel):
    as_inf = panel.assign(first_treat=panel.first_treat.replace(0, np.inf))
    pd.testing.assert_frame_equal(_fit(as_inf).table, _fit(panel).table)


def _relevant(caught):
    """Warnings other than the expected 'dropped ... rows' one."""
    return [w for w in caught if "whose values are missing or not finite" not in str(w.message)]


@pytest.mark.parametrize("missing_share", [0.0, 0.1], ids=["balanced", "unbalanced"])
@pytest.mark.parametrize("est_method", METHODS)
def test_covariate_not_finite_after_the_formula_drops_rows_like_r(est_method, missing_share):
    """Issue 9.2: log(0) = -inf in one unit's covariate: R drops the unit's rows with a warning; so do we."""
    data = simulate_staggered_panel(240, 5, [3, 4], seed=3, missing_share=missing_share)
    data["pos"] = np.exp(data.x1)
    zero_unit = data.loc[data.first_treat == 3, "unit"].iloc[0]
    data.loc[data.unit == zero_unit, "pos"] = 0.0
    n_rows = int((data.unit == zero_unit).sum())
    unbalanced = missing_share > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _fit(data, xformla="~ np.log(pos)", est_method=est_method, allow_unbalanced_panel=unbalanced)
    dropped = [str(w.message) for w in caught if "not finite" in str(w.message)]
    assert len(dropped) == 1 and f"dropped {n_rows} rows (1 unit)" in dropped[0] and "np.log(pos)" in dropped[0]
    assert not _relevant(caught), [str(w.message) for w in _relevant(caught)]
    expected = _fit(data[data.unit != zero_unit], xformla="~ np.log(pos)", est_method=est_method,
                    allow_unbalanced_panel=unbalanced)
    np.testing.assert_allclose(result.att, expected.att, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(result.att))
    for agg_type in ["simple", "dynamic", "group", "calendar"]:
        assert np.isfinite(aggte(result, agg_type).overall_att)


@pytest.mark.parametrize("est_method", METHODS)
def test_non_finite_outcome_and_time_varying_covariate_rows_are_dropped(panel, est_method):
    data = panel.assign(z=np.sqrt(panel.period + panel.unit % 3))
    data.loc[data.index[3], "y"] = np.inf
    data.loc[data.index[12], "z"] = np.nan
    data.loc[data.index[21], "z"] = np.inf
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _fit(data, xformla="~ z", est_method=est_method, allow_unbalanced_panel=True)
    message = next(str(w.message) for w in caught if "not finite" in str(w.message))
    assert "dropped 3 rows (3 units)" in message and "'y': 1 row (1 unit)" in message and "'z': 2 rows" in message
    assert not _relevant(caught)
    expected = _fit(data.drop(index=data.index[[3, 12, 21]]), xformla="~ z", est_method=est_method,
                    allow_unbalanced_panel=True)
    np.testing.assert_allclose(result.att, expected.att, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="unbalanced panel: 3 of 240 units .*missing or non-finite"):
        _fit(data, xformla="~ z", est_method=est_method)


def test_twfe_drops_non_finite_rows_with_the_same_warning(panel):
    data = panel.assign(pos=np.exp(panel.x1 * panel.period))  # time-varying, so not absorbed by the unit effects
    data.loc[data.index[:5], "pos"] = 0.0
    data.loc[data.index[7], "y"] = -np.inf
    for estimator in (twfe_static, twfe_event_study):
        with pytest.warns(UserWarning, match=r"dropped 6 rows \(2 units\).*'np.log\(pos\)': 5 rows.*'y': 1 row"):
            result = estimator(data, *COLS, xformla="~ np.log(pos)")
        assert result.n_obs == len(data) - 6


def _biennial(annual):
    """The same panel on a biennial grid: period p -> 1998 + 2p (2000, 2002, ..., 2010), cohorts alike."""
    return annual.assign(period=1998 + 2 * annual.period,
                         first_treat=np.where(annual.first_treat > 0, 1998 + 2 * annual.first_treat, 0))


@pytest.mark.parametrize("est_method", METHODS)
def test_biennial_periods_give_the_annual_results_in_years(est_method):
    """Issue 9.4, CS path: relabelling periods 1..6 as 2000..2010 changes no estimate; event times are in years."""
    annual = simulate_staggered_panel(300, 6, [3, 4, 5], seed=12)
    biennial = _biennial(annual)
    a = _fit(annual, est_method=est_method, xformla="~ x1")
    b = _fit(biennial, est_method=est_method, xformla="~ x1")
    np.testing.assert_array_equal(b.group, 1998 + 2 * a.group)
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-12)
    assert b.W == pytest.approx(a.W, rel=1e-10)
    key_map = {"dynamic": lambda k: 2 * k, "group": lambda k: 1998 + 2 * k, "calendar": lambda k: 1998 + 2 * k}
    for agg_type, options_a, options_b in [("simple", {}, {}), ("group", {}, {}), ("calendar", {}, {}),
                                           ("dynamic", {}, {}), ("dynamic", {"balance_e": 1}, {"balance_e": 2}),
                                           ("dynamic", {"min_e": -2, "max_e": 1}, {"min_e": -4, "max_e": 2})]:
        agg_a, agg_b = aggte(a, agg_type, **options_a), aggte(b, agg_type, **options_b)
        assert agg_b.overall_att == pytest.approx(agg_a.overall_att, abs=1e-12)
        assert agg_b.overall_se == pytest.approx(agg_a.overall_se, rel=1e-10)
        if agg_a.table is not None:
            key = agg_a.table.columns[0]
            np.testing.assert_array_equal(agg_b.table[key], key_map[agg_type](agg_a.table[key]))
            np.testing.assert_allclose(agg_b.table.att, agg_a.table.att, rtol=0, atol=1e-12)


@pytest.fixture()
def result(panel):
    return _fit(panel)


@pytest.mark.parametrize("agg_type, option", [
    ("calendar", {"max_e": 0}), ("calendar", {"min_e": -1}), ("calendar", {"balance_e": 1}),
    ("simple", {"min_e": 1}), ("simple", {"balance_e": 0}), ("group", {"min_e": 1}), ("group", {"balance_e": 1}),
    ("simple", {"cband": True}),
])
def test_aggregation_options_without_effect_warn_and_are_not_recorded(result, agg_type, option):
    """Issue 9.5: an option that does not apply to the aggregation type is named in a warning, not recorded."""
    name = next(iter(option))
    with pytest.warns(UserWarning, match=rf"{name}.*no effect on type='{agg_type}'"):
        agg = aggte(result, agg_type, **option)
    plain = aggte(result, agg_type)
    assert agg.overall_att == plain.overall_att and agg.overall_se == plain.overall_se
    assert (agg.min_e, agg.max_e, agg.balance_e) == (-np.inf, np.inf, None)


def test_max_e_restricts_simple_and_group_as_in_r(result):
    """R applies max_e to simple and group (``t <= g + max_e``): recorded, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simple = aggte(result, "simple", max_e=0)
        group = aggte(result, "group", max_e=0)
        dynamic = aggte(result, "dynamic", min_e=-1, max_e=0, balance_e=0)
    on_impact = result.table.query("time == group")
    assert group.table.att.tolist() == pytest.approx(on_impact.att.tolist(), abs=1e-14)
    assert simple.max_e == 0 and group.max_e == 0 and simple.overall_att != aggte(result, "simple").overall_att
    assert (dynamic.min_e, dynamic.max_e, dynamic.balance_e) == (-1, 0, 0)


def _small_separated_cohort(panel):
    """Cohort 5 has six firms whose covariate separates them from everyone else: its cells cannot be estimated."""
    small = panel[panel.unit <= 6].assign(unit=lambda d: d.unit + 10_000, first_treat=5)
    data = pd.concat([panel, small], ignore_index=True)
    return data.assign(size=np.where(data.first_treat == 5, 10.0, 0.0) + 0.01 * (data.unit % 7))


@pytest.mark.parametrize("est_method", ["dr", "ipw"])
@pytest.mark.parametrize("agg_type", ["simple", "dynamic", "group", "calendar"])
def test_one_weak_cohort_is_left_out_and_listed_not_the_whole_aggregate(est_method, agg_type):
    """Issue 9.6: aggte aggregates the estimable cells and lists the cells and cohort it left out, with the reason."""
    data = _small_separated_cohort(simulate_staggered_panel(240, 6, [3, 4], seed=3))
    with pytest.warns(UserWarning, match="overlap condition violated"):
        result = _fit(data, xformla="~ size", est_method=est_method, bstrap=True, biters=199, random_state=1)
    assert set(result.failed_table.group) == {5}
    with pytest.warns(UserWarning, match=r"left out cohort\(s\) \[5\]"):
        agg = aggte(result, agg_type)
    assert agg.dropped_cohorts.to_dict("records") == [
        {"group": 5, "n_units": 6, "reason": result.failed_table.reason.iloc[0]}]
    assert set(agg.dropped_cells.group) == {5} and "reason" in agg.dropped_cells
    assert np.isfinite(agg.overall_att) and np.isfinite(agg.overall_se)
    assert agg.n_treated == int((result.unit_cohort > 0).sum()) - 6
    # the same numbers as estimating without the weak cohort (never-treated comparisons are unchanged)
    without = _fit(data[data.first_treat != 5], xformla="~ size", est_method=est_method)
    reference = aggte(without, agg_type, bstrap=False)
    reduced = aggte(result, agg_type, bstrap=False)
    assert reduced.overall_att == pytest.approx(reference.overall_att, abs=1e-12)
    assert reduced.overall_se == pytest.approx(reference.overall_se, rel=0.02)
    if reference.table is not None:
        np.testing.assert_allclose(reduced.table.att, reference.table.att, atol=1e-12)
        assert np.all(np.isfinite(agg.table.se)) and np.isfinite(agg.crit_val)


def test_cohort_without_a_pre_period_on_an_unbalanced_register_is_left_out(panel):
    """Issue 9.6: cohort 4 has no rows in period 3, its base period; only its cells are lost."""
    data = panel[~((panel.first_treat == 4) & (panel.period == 3))]
    with pytest.warns(UserWarning, match="could not be estimated"):
        result = _fit(data, allow_unbalanced_panel=True)
    failed = result.failed_table
    assert set(failed.group) == {4} and set(failed.time) == {3, 4, 5}
    assert np.all(np.isfinite(result.table.query("group == 3").att))
    for agg_type in ["simple", "group", "calendar"]:
        with pytest.warns(UserWarning, match=r"left out cohort\(s\) \[4\]"):
            agg = aggte(result, agg_type)
        assert np.isfinite(agg.overall_att) and agg.dropped_cohorts.group.tolist() == [4]
    with pytest.warns(UserWarning, match=r"left out 3 ATT\(g,t\) cell"):
        dynamic = aggte(result, "dynamic")
    assert set(dynamic.dropped_cells.group) == {4} and dynamic.dropped_cohorts.empty  # (4,2) is still estimated
    assert -2 in dynamic.table.event_time.tolist()
