"""Time-varying covariates on the unbalanced-panel path are read in each cell's base period.

R ``did``'s repeated-cross-section path reads every row's own covariates; when a covariate
responds to treatment (prior exporting after a programme started), the post-period rows of
treated units carry post-treatment values and the estimate is biased. ``att_gt`` gives every
unit of a cell its covariates as observed in the cell's earlier (base) period, as the balanced
panel path does.
"""
import numpy as np
import pandas as pd
import pytest

from analyses.did import aggte, att_gt
from analyses.did.estimators import RC_ESTIMATORS
from analyses.did.simulate import heterogeneous_dynamic_effect, simulate_staggered_panel

METHODS = ["dr", "ipw", "reg"]
COLS = ("y", "period", "unit", "first_treat")
RESPONSE = 1.0  # how much the covariate rises once a unit is treated


def _responding_covariate_panel(n_units=3000, missing_share=0.15, seed=5):
    """Conditional parallel trends given ``x1``; ``z`` equals ``x1`` until treatment, then rises by RESPONSE."""
    data = simulate_staggered_panel(n_units, 6, [3, 4, 5], selection_on_x=0.8, covariate_trend=0.5,
                                    missing_share=missing_share, seed=seed)
    treated_now = (data.first_treat > 0) & (data.period >= data.first_treat)
    return data.assign(z=data.x1 + RESPONSE * treated_now)


def _post_cells(result):
    post = result.time >= result.group
    truth = heterogeneous_dynamic_effect(result.group[post], result.time[post] - result.group[post])
    return post, truth


def _own_row_att(data, g, t, est_method):
    """ATT(g,t) as R's repeated-cross-section path computes it: every row with its own covariates."""
    cell = data.loc[data.period.isin([g - 1, t]) & data.first_treat.isin([0, g])]
    design = np.column_stack([np.ones(len(cell)), cell.z.to_numpy()])
    att, _ = RC_ESTIMATORS[est_method](cell.y.to_numpy(), (cell.period == t).to_numpy(float),
                                       (cell.first_treat == g).to_numpy(float), design, np.ones(len(cell)))
    return att


@pytest.mark.parametrize("est_method", METHODS)
def test_covariate_that_responds_to_treatment_is_read_in_the_base_period(est_method):
    data = _responding_covariate_panel()
    result = att_gt(data, *COLS, xformla="~ z", est_method=est_method, bstrap=False, cband=False,
                    allow_unbalanced_panel=True)
    assert not result.panel.balanced
    post, truth = _post_cells(result)
    z = (result.att[post] - truth) / result.se[post]
    assert np.all(np.abs(z) < 3.5), z
    assert abs(z.mean()) < 1.5
    overall = aggte(result, "simple", bstrap=False)
    weights = np.array([np.sum(result.unit_cohort == g) for g in result.group[post]], float)
    true_simple = weights @ truth / weights.sum()
    assert abs(overall.overall_att - true_simple) < 3 * overall.overall_se

    # the same cells with each row's own covariates (R's repeated cross sections) are far off
    own = np.array([_own_row_att(data, g, t, est_method) for g, t in zip(result.group[post], result.time[post])])
    assert np.all(own < truth)
    assert abs(weights @ own / weights.sum() - true_simple) > 5 * overall.overall_se


def test_balanced_panel_is_unchanged_by_covariates_varying_over_time():
    """The panel path has always read the earlier period: a balanced subset gives the same cells either way."""
    data = _responding_covariate_panel(n_units=400, missing_share=0.0)
    panel = att_gt(data, *COLS, xformla="~ z", bstrap=False, cband=False)
    by_period = data.pivot(index="unit", columns="period", values="z")
    for g, t, att in zip(panel.group, panel.time, panel.att):
        earlier = g - 1 if t >= g else t - 1
        frozen = data.assign(z=by_period[earlier].reindex(data.unit).to_numpy())
        cell = att_gt(frozen, *COLS, xformla="~ z", bstrap=False, cband=False)
        assert cell.table.query("group == @g and time == @t").att.iloc[0] == pytest.approx(att, abs=1e-12)


@pytest.mark.parametrize("est_method", METHODS)
def test_unit_not_observed_in_the_base_period_leaves_the_covariate_adjusted_cell(est_method):
    """A treated unit first seen after its start has no pre-treatment covariates: it cannot enter the cell."""
    data = _responding_covariate_panel(n_units=600, missing_share=0.05, seed=8)
    late = data.loc[data.first_treat == 3, "unit"].unique()[:5]
    entered_late = data.loc[~data.unit.isin(late) | (data.period >= 4)].copy()
    entered_late.loc[entered_late.unit.isin(late), ["y", "z"]] += [50.0, 40.0]  # would dominate any cell it entered
    options = dict(xformla="~ z", est_method=est_method, bstrap=False, cband=False, allow_unbalanced_panel=True)
    with_late = att_gt(entered_late, *COLS, **options)
    without = att_gt(entered_late.loc[~entered_late.unit.isin(late)], *COLS, **options)
    cohort_3 = with_late.group == 3
    # the late units are still units of the panel (the influence function has a row for each) ...
    assert with_late.n_units == without.n_units + len(late)
    # ... but no cell of cohort 3 uses them: they have no row in its base periods (1 and 2)
    np.testing.assert_allclose(with_late.att[cohort_3], without.att[without.group == 3], rtol=0, atol=1e-10)
    assert any("not observed in the cell's base period" in note for note in with_late.notes)


def test_time_invariant_covariates_keep_every_row_as_r_does():
    """With covariates that do not vary within a unit, base-period values are known from any row (R's sample)."""
    data = simulate_staggered_panel(300, 5, [3, 4], selection_on_x=0.5, covariate_trend=0.2, missing_share=0.2,
                                    seed=2)
    options = dict(bstrap=False, cband=False, allow_unbalanced_panel=True)
    result = att_gt(data, *COLS, xformla="~ x1", **options)
    cell = result.table.query("group == 3 and time == 4").iloc[0]
    rows = data.loc[data.period.isin([2, 4]) & data.first_treat.isin([0, 3])]
    design = np.column_stack([np.ones(len(rows)), rows.x1.to_numpy()])
    expected, _ = RC_ESTIMATORS["dr"](rows.y.to_numpy(), (rows.period == 4).to_numpy(float),
                                      (rows.first_treat == 3).to_numpy(float), design, np.ones(len(rows)))
    assert cell.att == pytest.approx(expected, abs=1e-12)
    assert not any("base period" in note for note in result.notes)
    pd.testing.assert_series_equal(att_gt(data, *COLS, **options).table.att,
                                   att_gt(data, *COLS, xformla="~ 1", **options).table.att)
