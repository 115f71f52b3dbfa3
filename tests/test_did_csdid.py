"""analyses.did against the independent Python port ``csdid`` on random panels with covariates."""
import contextlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analyses.did import aggte, att_gt
from analyses.did.simulate import simulate_staggered_panel

csdid_att_gt = pytest.importorskip("csdid.att_gt", reason="csdid (test-only dependency) is not installed")

CASES = [  # (missing_share, control_group, est_method, base_period[, weights and anticipation])
    (0.0, "nevertreated", "dr", "varying"),
    (0.0, "nevertreated", "dr", "universal", {"weightsname": "w", "anticipation": 1}),
    (0.0, "notyettreated", "ipw", "varying", {"weightsname": "w"}),
    (0.0, "notyettreated", "ipw", "universal"),
    (0.0, "notyettreated", "reg", "varying"),
    (0.1, "nevertreated", "dr", "varying"),
    (0.1, "notyettreated", "dr", "universal"),
    (0.1, "nevertreated", "ipw", "varying"),
    (0.1, "notyettreated", "reg", "varying"),
]


def _ids(case):
    missing, control, method, base, *extra = case
    return "-".join([("unbalanced" if missing else "balanced"), control, method, base, *map(str, extra)])


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_identical_to_csdid(case):
    missing, control_group, est_method, base_period, *extra = case
    options = extra[0] if extra else {}
    data = simulate_staggered_panel(250, 6, [3, 4, 5], selection_on_x=0.5, covariate_trend=0.2,
                                    missing_share=missing, seed=11)
    data["w"] = 0.5 + (data.unit % 5) / 4  # sampling weights, constant within firm
    ours = att_gt(data, "y", "period", "unit", "first_treat", xformla="~ x1 + C(x2)", control_group=control_group,
                  est_method=est_method, base_period=base_period, bstrap=False, cband=False,
                  allow_unbalanced_panel=bool(missing), **options)
    assert ours.panel.balanced == (missing == 0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        theirs = csdid_att_gt.ATTgt(yname="y", gname="first_treat", idname="unit", tname="period",
                                    xformla="y ~ x1 + C(x2)", data=data, control_group=control_group,
                                    allow_unbalanced_panel=bool(missing), weights_name=options.get("weightsname"),
                                    anticipation=options.get("anticipation", 0))
        theirs.fit(est_method=est_method, base_period=base_period, bstrap=False)
    np.testing.assert_array_equal(ours.group, np.asarray(theirs.results["group"], float))
    np.testing.assert_array_equal(ours.time, np.asarray(theirs.results["year"], float))
    np.testing.assert_allclose(ours.att, np.asarray(theirs.results["att"], float), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.se, np.asarray(theirs.results["se"], float), rtol=1e-9)
    assert ours.W == pytest.approx(theirs.MP["W"], rel=1e-9)
    for agg_type in ["simple", "group", "dynamic", "calendar"]:
        agg = aggte(ours, agg_type, cband=False)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            reference = theirs.aggte(typec=agg_type, cband=False).atte
        assert agg.overall_att == pytest.approx(reference["overall_att"], abs=1e-10)
        assert agg.overall_se == pytest.approx(reference["overall_se"], rel=1e-9)
        if agg.table is not None:
            np.testing.assert_array_equal(agg.table.iloc[:, 0], np.asarray(reference["egt"]))
            np.testing.assert_allclose(agg.table.att, np.asarray(reference["att_egt"], float), atol=1e-10)
            np.testing.assert_allclose(agg.table.se, np.asarray(reference["se_egt"], float).ravel(), rtol=1e-9)


def district_panel(seed=4):
    """Issue 9: 45 never-treated and 30 cohort-4 units spread over districts A-C, 30 cohort-3 units all in A.

    ``x + dB + dC`` nearly separates cohort 3 from the comparison units outside A: their propensity
    scores go to zero (no weight) while no score approaches one, so overlap holds.
    """
    rng = np.random.default_rng(seed)
    cohorts = np.r_[np.zeros(45), np.full(30, 4), np.full(30, 3)].astype(int)
    district = np.r_[np.repeat(list("ABC"), 15), np.repeat(list("ABC"), 10), np.repeat(["A"], 30)]
    n, n_periods = len(cohorts), 5
    x, unit_effect = rng.normal(size=n), rng.normal(size=n)
    period = np.tile(np.arange(1, n_periods + 1), n)
    g = np.repeat(cohorts, n_periods)
    effect = np.where((g > 0) & (period >= g), 1.0 + 0.5 * (period - g), 0.0)
    y = np.repeat(unit_effect + x, n_periods) + 0.3 * period + effect + rng.normal(size=n * n_periods)
    frame = pd.DataFrame({"unit": np.repeat(np.arange(1, n + 1), n_periods), "period": period, "y": y,
                          "first_treat": g, "x": np.repeat(x, n_periods)})
    for name in "BC":
        frame["d" + name] = np.repeat((district == name).astype(float), n_periods)
    return frame


def _limit_att(data, g, t, base, est_method):
    """The cell's value as the scores of comparison units outside district A go to zero, computed by hand:
    propensity logit on district A only; DR outcome regression on all comparison units."""
    wide = data.pivot(index="unit", columns="period", values="y")
    units = data.drop_duplicates("unit").set_index("unit")
    change = (wide[t] - wide[base]).to_numpy()
    treated = (units.first_treat == g).to_numpy()
    control = (units.first_treat == 0).to_numpy()
    design = np.column_stack([np.ones(len(units)), units[["x", "dB", "dC"]].to_numpy()])
    in_a = (units.dB + units.dC == 0).to_numpy()
    cell_a = in_a & (treated | control)
    logit = sm.Logit(treated[cell_a].astype(float), design[cell_a][:, :2]).fit(disp=0)
    odds = np.exp(design[control & in_a][:, :2] @ logit.params)
    residual = change.copy()
    if est_method == "dr":
        coef = np.linalg.lstsq(design[control], change[control], rcond=None)[0]
        residual = change - design @ coef
    return residual[treated].mean() - odds @ residual[control & in_a] / odds.sum()


@pytest.mark.parametrize("allow_unbalanced_panel", [False, True], ids=["panel", "unbalanced-path"])
@pytest.mark.parametrize("est_method", ["dr", "ipw"])
def test_near_separated_propensity_score_stops_like_glm_and_matches_csdid(est_method, allow_unbalanced_panel):
    """Issue 9.3: R's glm stops at its deviance tolerance; the cohort-3 cells are finite and equal the limit."""
    data = district_panel()
    if allow_unbalanced_panel:  # one missing row sends the data through the repeated-cross-section estimators
        data = data.drop(index=data.index[(data.unit == 1) & (data.period == 5)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = att_gt(data, "y", "period", "unit", "first_treat", xformla="~ x + dB + dC", est_method=est_method,
                      bstrap=False, cband=False, allow_unbalanced_panel=allow_unbalanced_panel)
    messages = [str(w.message) for w in caught]
    assert not any(issubclass(w.category, RuntimeWarning) for w in caught)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        theirs = csdid_att_gt.ATTgt(yname="y", gname="first_treat", idname="unit", tname="period",
                                    xformla="y ~ x + dB + dC", data=data,
                                    allow_unbalanced_panel=allow_unbalanced_panel)
        theirs.fit(est_method=est_method, bstrap=False)
    np.testing.assert_allclose(ours.att, np.asarray(theirs.results["att"], float), rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.se, np.asarray(theirs.results["se"], float), rtol=1e-6)
    if allow_unbalanced_panel and est_method == "dr":
        # the repeated-cross-section DR estimator also regresses the treated outcomes on x + dB + dC, and the
        # treated (all in district A) do not vary in dB, dC: R did and csdid report NA, and so do we
        assert set(ours.failed_table.group) == {3}
        assert ours.failed_table.reason.str.contains("do not vary among these units").all()
        return
    assert not any("singular" in m or "could not be estimated" in m for m in messages), messages
    assert any("propensity score numerically 0" in m for m in messages)
    assert np.all(np.isfinite(ours.att)) and np.all(np.isfinite(ours.se)) and not ours.failed_cells
    if not allow_unbalanced_panel:
        for g, t, base in [(3, 2, 1), (3, 3, 2), (3, 5, 2)]:
            cell = ours.table.query("group == @g and time == @t").att.iloc[0]
            assert cell == pytest.approx(_limit_att(data, g, t, base, est_method), abs=1e-8)
    for agg_type in ["simple", "group", "dynamic", "calendar"]:
        assert np.isfinite(aggte(ours, agg_type).overall_att)
