"""TWFE comparison estimators: equal to R ``fixest::feols`` (via pyfixest); biased where Callaway-Sant'Anna is not."""
from pathlib import Path

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
import statsmodels.formula.api as smf

from analyses.did import aggte, att_gt, load_mpdta
from analyses.did.simulate import simulate_staggered_panel
from analyses.twfe import two_way_demean, twfe_event_study, twfe_static

REFERENCE = Path(__file__).parent / "reference"


def _fixest(formula, data, cluster="unit"):
    """``fixest::feols(formula, cluster = ~cluster)`` with fixest's default small-sample corrections.

    The demeaning tolerance is tightened from pyfixest's 1e-8 so that unbalanced panels compare to 1e-8.
    """
    return pf.feols(formula, data=data, vcov={"CRV1": cluster}, fixef_tol=1e-13)


def _ehec_2014():
    """The R HonestDiD README's TWFE sample: years before 2016, states expanding in 2015 dropped."""
    data = pd.read_csv(REFERENCE / "ehec.csv")
    data = data[(data.year < 2016) & (data.yexp2 != 2015)].copy()
    data["D"] = (data.yexp2 == 2014).astype(int)
    return data


@pytest.mark.parametrize("missing_share", [0.0, 0.15], ids=["balanced", "unbalanced"])
def test_static_matches_fixest(missing_share):
    data = simulate_staggered_panel(40, 6, [3, 4, 5], seed=5, missing_share=missing_share)
    data["treated_now"] = ((data.first_treat > 0) & (data.period >= data.first_treat)).astype(float)
    data["x1_period"] = data.x1 * data.period
    ours = twfe_static(data, "y", "period", "unit", "first_treat", xformla="~ x1:period")
    fixest = _fixest("y ~ treated_now + x1_period | unit + period", data)
    assert ours.att == pytest.approx(fixest.coef()["treated_now"], abs=1e-8)
    assert ours.se == pytest.approx(fixest.se()["treated_now"], rel=1e-8)
    assert ours.n_obs == len(data)


@pytest.mark.parametrize("missing_share", [0.0, 0.15], ids=["balanced", "unbalanced"])
def test_event_study_matches_fixest(missing_share):
    data = simulate_staggered_panel(40, 6, [3, 4, 5], seed=6, missing_share=missing_share)
    ours = twfe_event_study(data, "y", "period", "unit", "first_treat", min_e=-3, max_e=2)
    event = np.clip(np.where(data.first_treat > 0, data.period - data.first_treat, np.nan), -3, 2)
    names = {e: f"event_{e + 3}" for e in range(-3, 3) if e != -1}
    for e, name in names.items():
        data[name] = (event == e).astype(float)
    fixest = _fixest("y ~ " + " + ".join(names.values()) + " | unit + period", data)
    table = ours.table.set_index("event_time")
    assert table.loc[-1, "att"] == 0 and np.isnan(table.loc[-1, "se"])
    for e, name in names.items():
        assert table.loc[e, "att"] == pytest.approx(fixest.coef()[name], abs=1e-8)
        assert table.loc[e, "se"] == pytest.approx(fixest.se()[name], rel=1e-8)
    np.testing.assert_allclose(ours.covariance, fixest._vcov, rtol=1e-8, atol=1e-14)


def test_event_study_covariance_matches_fixest_on_the_honestdid_panel():
    """The R HonestDiD README's ``feols(dins ~ i(year, D, ref = 2013) | stfips + year, cluster = "stfips")``."""
    data = _ehec_2014()
    ours = twfe_event_study(data, "dins", "year", "stfips", "yexp2")
    fixest = _fixest("dins ~ i(year, D, ref=2013) | stfips + year", data, cluster="stfips")
    readme_betahat = [-0.005285, -0.011297, -0.002676, -0.001419, 0.000340, 0.046447, 0.069206]
    estimated = ours.table.loc[ours.table.event_time != -1, "att"].to_numpy()
    np.testing.assert_allclose(estimated, readme_betahat, atol=5e-7)
    np.testing.assert_allclose(estimated, fixest.coef().to_numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.covariance, fixest._vcov, rtol=1e-8, atol=1e-14)


def test_mpdta_event_study_and_static_match_fixest():
    data = load_mpdta().rename(columns={"first.treat": "first_treat"})
    data["treated_now"] = ((data.first_treat > 0) & (data.year >= data.first_treat)).astype(float)
    event = np.where(data.first_treat > 0, data.year - data.first_treat, np.nan)
    names = {e: f"event_m{-e}" if e < 0 else f"event_{e}" for e in range(-4, 4) if e != -1}
    for e, name in names.items():
        data[name] = (event == e).astype(float)
    ours = twfe_event_study(data, "lemp", "year", "countyreal", "first_treat")
    fixest = _fixest("lemp ~ " + " + ".join(names.values()) + " | countyreal + year", data, cluster="countyreal")
    np.testing.assert_allclose(ours.table.loc[ours.table.event_time != -1, "att"], fixest.coef(), atol=1e-10)
    np.testing.assert_allclose(ours.covariance, fixest._vcov, rtol=1e-8, atol=1e-14)
    static = twfe_static(data, "lemp", "year", "countyreal", "first_treat")
    fixest_static = _fixest("lemp ~ treated_now | countyreal + year", data, cluster="countyreal")
    assert static.att == pytest.approx(fixest_static.coef()["treated_now"], abs=1e-10)
    assert static.se == pytest.approx(fixest_static.se()["treated_now"], rel=1e-8)


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
