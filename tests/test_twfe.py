"""TWFE comparison estimators: equal to OLS with dummies; biased where Callaway-Sant'Anna is not."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from analyses.did import aggte, att_gt
from analyses.did.simulate import simulate_staggered_panel
from analyses.twfe import two_way_demean, twfe_event_study, twfe_static


def _dummy_ols(formula, data):
    return smf.ols(formula, data).fit(cov_type="cluster", cov_kwds={"groups": data.unit})


@pytest.mark.parametrize("missing_share", [0.0, 0.15], ids=["balanced", "unbalanced"])
def test_static_matches_ols_with_dummies(missing_share):
    data = simulate_staggered_panel(40, 6, [3, 4, 5], seed=5, missing_share=missing_share)
    data["treated_now"] = ((data.first_treat > 0) & (data.period >= data.first_treat)).astype(float)
    ours = twfe_static(data, "y", "period", "unit", "first_treat", xformla="~ x1:period")
    ols = _dummy_ols("y ~ treated_now + x1:period + C(unit) + C(period)", data)
    assert ours.att == pytest.approx(ols.params["treated_now"], abs=1e-8)
    assert ours.se == pytest.approx(ols.bse["treated_now"], rel=1e-8)
    assert ours.n_obs == len(data)


@pytest.mark.parametrize("missing_share", [0.0, 0.15], ids=["balanced", "unbalanced"])
def test_event_study_matches_ols_with_dummies(missing_share):
    data = simulate_staggered_panel(40, 6, [3, 4, 5], seed=6, missing_share=missing_share)
    ours = twfe_event_study(data, "y", "period", "unit", "first_treat", min_e=-3, max_e=2)
    event = np.clip(np.where(data.first_treat > 0, data.period - data.first_treat, np.nan), -3, 2)
    names = {e: f"event_{e + 3}" for e in range(-3, 3) if e != -1}
    for e, name in names.items():
        data[name] = (event == e).astype(float)
    ols = _dummy_ols("y ~ " + " + ".join(names.values()) + " + C(unit) + C(period)", data)
    table = ours.table.set_index("event_time")
    assert table.loc[-1, "att"] == 0 and np.isnan(table.loc[-1, "se"])
    for e, name in names.items():
        assert table.loc[e, "att"] == pytest.approx(ols.params[name], abs=1e-8)
        assert table.loc[e, "se"] == pytest.approx(ols.bse[name], rel=1e-8)


def test_alternating_projections_equal_exact_demeaning_residuals():
    data = simulate_staggered_panel(30, 5, [3], seed=2, missing_share=0.2)
    unit = pd.factorize(data.unit, sort=True)[0]
    period = pd.factorize(data.period, sort=True)[0]
    demeaned = two_way_demean(data.y.to_numpy(), unit, period)
    dummies = smf.ols("y ~ C(unit) + C(period)", data).fit()
    np.testing.assert_allclose(demeaned, dummies.resid.to_numpy(), atol=1e-10)


def test_twfe_is_biased_under_heterogeneous_dynamic_effects_while_cs_is_not():
    data = simulate_staggered_panel(3000, 8, [2, 3, 4, 5, 6, 7], cohort_probs=[0.1] + [0.15] * 6,
                                    noise_sd=0.5, seed=1)
    truth = data.loc[data.true_effect != 0, "true_effect"].mean()  # = CS simple aggregate's estimand here
    twfe = twfe_static(data, "y", "period", "unit", "first_treat")
    cs = aggte(att_gt(data, "y", "period", "unit", "first_treat", bstrap=False), "simple")
    assert abs(cs.overall_att - truth) < 3 * cs.overall_se
    assert truth - twfe.att > 20 * twfe.se  # TWFE's negative weights on late effects drag it far below the truth
    assert twfe.ci_upper < truth


def test_reference_period_must_be_an_event_time_present():
    data = simulate_staggered_panel(20, 5, [3], seed=1)
    with pytest.raises(ValueError, match=r"ref_e=-5 is not an event time present.*\[-2, -1, 0, 1, 2\]"):
        twfe_event_study(data, "y", "period", "unit", "first_treat", ref_e=-5)
    assert "TWFE event study" in twfe_event_study(data, "y", "period", "unit", "first_treat").summary()


def test_event_study_on_biennial_periods_uses_the_event_times_present():
    """Issue 9.4: periods 2000, 2002, ..., 2010 give event times -8, -6, ..., 6; odd ones never occur."""
    annual = simulate_staggered_panel(60, 6, [3, 4, 5], seed=4)
    biennial = annual.assign(period=1998 + 2 * annual.period,
                             first_treat=np.where(annual.first_treat > 0, 1998 + 2 * annual.first_treat, 0))
    ours = twfe_event_study(biennial, "y", "period", "unit", "first_treat")
    assert ours.ref_e == -2  # the latest pre-period present
    assert ours.table.event_time.tolist() == [-8, -6, -4, -2, 0, 2, 4, 6]
    on_annual_grid = twfe_event_study(annual, "y", "period", "unit", "first_treat")
    assert on_annual_grid.ref_e == -1
    np.testing.assert_allclose(ours.table.att, on_annual_grid.table.att, atol=1e-10)
    np.testing.assert_allclose(ours.table.se, on_annual_grid.table.se, rtol=1e-10)
    windowed = twfe_event_study(biennial, "y", "period", "unit", "first_treat", min_e=-4, max_e=3)
    assert windowed.table.event_time.tolist() == [-4, -2, 0, 2, 3]  # 3 is the binned upper endpoint
    with pytest.raises(ValueError, match=r"ref_e=-1 is not an event time present"):
        twfe_event_study(biennial, "y", "period", "unit", "first_treat", ref_e=-1)
    static = twfe_static(biennial, "y", "period", "unit", "first_treat")
    assert static.att == pytest.approx(twfe_static(annual, "y", "period", "unit", "first_treat").att, abs=1e-10)
