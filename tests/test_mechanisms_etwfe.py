"""Extended TWFE (``analyses.mechanisms.etwfe``) against R ``etwfe`` (OLS) and ``pyfixest.fepois`` (Poisson)."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses.mechanisms.etwfe import emfx, etwfe

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def mpdta():
    data = pd.read_csv(REFERENCE / "mpdta.csv").rename(columns={"first.treat": "first_treat"})
    data["emp"] = np.exp(data.lemp)
    return data


def _printed_reference():
    text = (REFERENCE / "etwfe_mpdta_expected.md").read_text()
    cells = {(int(g), int(t)): (float(b), float(se))
             for g, t, b, se in re.findall(r"(\d{4}):(\d{4}) (-?[\d.]+) \(([\d.]+)\)", text)}
    events = {int(e): (float(b), float(se)) for e, b, se in re.findall(r"e = (\d): (-?[\d.]+) \(([\d.]+)\)", text)}
    return cells, events


def test_ols_matches_r_etwfe_coefficients_and_clustered_se(mpdta):
    cells, _ = _printed_reference()
    assert len(cells) == 7
    fit = etwfe(mpdta, "lemp", "year", "first_treat", "countyreal", xvar=["lpop"])
    got = {(int(r.group), int(r.time)): (r.estimate, r.se) for r in fit.cells.itertuples()}
    assert set(got) == set(cells)
    for key, (b, se) in cells.items():
        assert got[key][0] == pytest.approx(b, abs=5e-7)  # printed to 6 decimals
        assert got[key][1] == pytest.approx(se, abs=5e-7)


def test_ols_emfx_event_matches_r(mpdta):
    _, events = _printed_reference()
    fit = etwfe(mpdta, "lemp", "year", "first_treat", "countyreal", xvar=["lpop"])
    table = emfx(fit, "event").set_index("event_time")
    for e, (b, se) in events.items():
        assert table.loc[e, "estimate"] == pytest.approx(b, abs=1e-4)
        assert table.loc[e, "se"] == pytest.approx(se, abs=1e-4)
    simple = emfx(fit, "simple")
    assert len(simple) == 1 and simple.n_obs.item() == fit.row_treated.sum()


def _pyfixest_fit(fit, data, yname):
    pf = pytest.importorskip("pyfixest")
    regressors = [c for c in fit.design.columns if c.startswith(("cell:", "slope:"))]
    frame = data.loc[fit.design.index].copy()
    renamed = {c: f"v{i}" for i, c in enumerate(regressors)}
    for column, name in renamed.items():
        frame[name] = fit.design[column].to_numpy()
    model = pf.fepois(f"{yname} ~ {' + '.join(renamed.values())} | g + year", data=frame,
                      vcov={"CRV1": "firm"}, iwls_tol=1e-12, fixef_tol=1e-12)
    return regressors, model


def _compare_with_pyfixest(fit, data, yname, k_pyfixest=None):
    regressors, model = _pyfixest_fit(fit, data, yname)
    np.testing.assert_allclose(fit.coef[regressors].to_numpy(), model.coef().to_numpy(), atol=1e-6, rtol=0)
    se = np.sqrt(np.diag(fit.vcov.loc[regressors, regressors]))
    if k_pyfixest is not None:  # pyfixest counts explicit slope columns after dropping a collinear one
        se = se * np.sqrt((fit.n_obs - fit.ssc_k) / (fit.n_obs - k_pyfixest))
    np.testing.assert_allclose(se, model.se().to_numpy(), atol=1e-6, rtol=0)


def test_poisson_matches_pyfixest_on_mpdta(mpdta):
    data = mpdta.rename(columns={"first_treat": "g", "countyreal": "firm"})
    fit = etwfe(data, "emp", "year", "g", "firm", family="poisson")
    assert len(fit.cells) == 7
    _compare_with_pyfixest(fit, data, "emp")


def test_poisson_with_controls_matches_pyfixest_scores_and_bread(mpdta):
    data = mpdta.rename(columns={"first_treat": "g", "countyreal": "firm"})
    fit = etwfe(data, "emp", "year", "g", "firm", xvar=["lpop"], family="poisson")
    # the same model with the varying slopes as explicit regressors: pyfixest's K is the rank (one fewer)
    _compare_with_pyfixest(fit, data, "emp", k_pyfixest=fit.ssc_k - 1)


def zero_inflated_panel(n=800, years=range(2012, 2020), effect=0.3, seed=11):
    """Export values with many zeros; treatment multiplies the mean by exp(effect)."""
    rng = np.random.default_rng(seed)
    cohort = rng.choice([0, 2015, 2016, 2017], size=n, p=[0.4, 0.2, 0.2, 0.2])
    scale = rng.lognormal(3, 1, n)
    rows = []
    for t in years:
        treated = (cohort > 0) & (t >= cohort)
        mean = scale * np.exp(0.05 * (t - 2012) + effect * treated)
        exports = rng.random(n) < 0.45
        rows.append(pd.DataFrame({"firm": np.arange(n), "year": t, "g": cohort,
                                  "value": np.where(exports, rng.gamma(2.0, mean / (2.0 * 0.45)), 0.0)}))
    return pd.concat(rows, ignore_index=True)


def test_poisson_matches_pyfixest_on_panel_with_zeros():
    data = zero_inflated_panel()
    assert (data.value == 0).mean() > 0.5
    for cgroup in ("never", "notyet"):
        fit = etwfe(data, "value", "year", "g", "firm", family="poisson", cgroup=cgroup)
        _compare_with_pyfixest(fit, data, "value")


def test_poisson_proportional_effect_recovers_planted_ratio():
    data = zero_inflated_panel(n=3000, seed=5)
    fit = etwfe(data, "value", "year", "g", "firm", family="poisson", cgroup="never")
    simple = emfx(fit, "simple").iloc[0]
    truth = np.expm1(0.3)
    assert simple.proportional_ci_lower <= truth <= simple.proportional_ci_upper
    event = emfx(fit, "event")
    assert set(event.event_time) == {0, 1, 2, 3, 4}
    pre = fit.cells[fit.cells.time < fit.cells.group]  # cgroup='never': placebo cells before treatment
    assert len(pre) and (np.abs(pre.estimate / pre.se) < 4).all()


def test_single_cell_proportional_effect_is_exp_b_minus_one(mpdta):
    data = mpdta.rename(columns={"first_treat": "g", "countyreal": "firm"})
    fit = etwfe(data, "emp", "year", "g", "firm", family="poisson")
    by_cohort = emfx(fit, "group").set_index("group")
    cell = fit.cells.query("group == 2007").iloc[0]  # cohort 2007 has one post cell
    assert by_cohort.loc[2007, "proportional"] == pytest.approx(np.expm1(cell.estimate), abs=1e-12)
    lower = np.expm1(cell.estimate - 1.959963984540054 * cell.se)
    assert by_cohort.loc[2007, "proportional_ci_lower"] == pytest.approx(lower, abs=1e-9)


def test_bad_input_is_named(mpdta):
    bad = mpdta.copy()
    bad.loc[3, "emp"] = -1.0
    with pytest.raises(ValueError, match="'emp' must be >= 0; row 3"):
        etwfe(bad, "emp", "year", "first_treat", "countyreal", family="poisson")
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] not found"):
        etwfe(mpdta, "lemp", "year", "first_treat", "countyreal", xvar=["nope"])


def test_all_zero_cell_is_dropped_with_warning():
    data = zero_inflated_panel(n=300, seed=2)
    data.loc[(data.g == 2017) & (data.year == 2019), "value"] = 0.0
    with pytest.warns(UserWarning, match=r"outcome 0 in every row.*\(2017,2019\)"):
        fit = etwfe(data, "value", "year", "g", "firm", family="poisson")
    assert not ((fit.cells.group == 2017) & (fit.cells.time == 2019)).any()
    assert len(fit.cells) == 5 + 4 + 3 - 1
