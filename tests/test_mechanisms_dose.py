"""Dose-response DiD (``analyses.mechanisms.dose.cont_did``) against R contdid / moderndid 0.4.1 and a planted truth."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses.mechanisms.dose import PARALLEL_TRENDS_WARNING, cont_did

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def sim():
    return pd.read_csv(REFERENCE / "contdid_sim.csv")


@pytest.fixture(scope="module")
def fitted(sim):
    return cont_did(sim, "Y", "time_period", "id", "G", "D", degree=3, num_knots=0,
                    control_group="notyettreated", biters=499, random_state=7)


def test_overall_att_and_acrt_match_contdid(fitted):
    overall = fitted.overall.set_index("parameter").estimate
    assert overall["ATT"] == pytest.approx(0.357757, abs=1e-4)
    assert overall["ACRT"] == pytest.approx(0.307120, abs=1e-4)


def test_dose_curves_match_reference_at_its_doses(fitted):
    reference = pd.read_csv(REFERENCE / "contdid_sim_ref_curve.csv")
    grid = fitted.dose.dose.to_numpy()
    rows = [int(np.argmin(np.abs(grid - d))) for d in reference.dose]
    assert np.abs(grid[rows] - reference.dose).max() < 1e-9  # the same 50-point grid
    np.testing.assert_allclose(fitted.dose.att_d.to_numpy()[rows], reference.att_d, atol=1e-3)
    np.testing.assert_allclose(fitted.dose.acrt_d.to_numpy()[rows], reference.acrt_d, atol=1e-3)


def test_event_study_of_level_effect_matches_contdid(fitted):
    level = fitted.event_study.query("target == 'level'")
    by_e = dict(zip(level.event_time.dropna().astype(int), level.estimate))
    expected = {-2: -0.0336, -1: -0.0491, 0: 0.3467, 1: 0.3156, 2: 0.3828}
    for e, value in expected.items():
        assert by_e[e] == pytest.approx(value, abs=1e-4)
    assert level.loc[level.event_time.isna(), "estimate"].item() == pytest.approx(0.3484, abs=1e-4)


def test_bands_are_uniform_and_cover_pointwise(fitted):
    dose = fitted.dose
    assert fitted.att_d_crit_val > 1.96 and fitted.acrt_d_crit_val > 1.96
    assert (dose.att_d_ci_upper - dose.att_d_ci_lower > 2 * 1.959 * dose.att_d_se).all()
    assert fitted.overall.se.gt(0).all()
    assert "stronger parallel-trends" in fitted.warning and fitted.warning == PARALLEL_TRENDS_WARNING


def _planted(n=3000, slope=2.0, seed=3):
    """Staggered panel, ATT(d) = slope * d (ACRT = slope), dose chosen independently of gains."""
    rng = np.random.default_rng(seed)
    periods = np.arange(2015, 2021)
    cohort = rng.choice([0, 2017, 2018, 2019], size=n, p=[0.4, 0.2, 0.2, 0.2])
    dose = np.where(cohort > 0, rng.uniform(0.5, 3.0, n), 0.0)
    unit_fe = rng.normal(size=n)
    rows = []
    for t in periods:
        treated = (cohort > 0) & (t >= cohort)
        y = unit_fe + 0.3 * (t - 2015) + slope * dose * treated + rng.normal(scale=1.0, size=n)
        rows.append(pd.DataFrame({"firm": np.arange(n), "year": t, "g": cohort, "d": dose, "y": y}))
    return pd.concat(rows, ignore_index=True)


def test_planted_linear_dose_slope_recovered_within_interval():
    result = cont_did(_planted(), "y", "year", "firm", "g", "d", degree=1, control_group="nevertreated",
                      biters=499, random_state=1)
    acrt = result.overall.set_index("parameter").loc["ACRT"]
    assert acrt.ci_lower <= 2.0 <= acrt.ci_upper
    assert abs(acrt.estimate - 2.0) / acrt.se < 3
    curve = result.dose
    assert ((curve.att_d_ci_lower <= 2.0 * curve.dose) & (2.0 * curve.dose <= curve.att_d_ci_upper)).all()
    pre = result.event_study.query("target == 'level' and event_time < 0")
    assert (pre.ci_lower <= 0).all() and (pre.ci_upper >= 0).all()


def test_dose_varying_within_unit_is_refused(sim):
    bad = sim.copy()
    bad.loc[bad.index[1], "D"] = 0.5
    with pytest.raises(ValueError, match="constant within each unit.*id=1"):
        cont_did(bad, "Y", "time_period", "id", "G", "D", biters=20)


def test_treated_units_without_dose_are_dropped_with_warning(sim):
    bad = sim.copy()
    bad.loc[bad.id == 1, "D"] = 0.0
    with pytest.warns(UserWarning, match="1 units with a treatment date but dose 0"):
        result = cont_did(bad, "Y", "time_period", "id", "G", "D", biters=20, random_state=1)
    assert result.n_treated == 495 + 468 + 524 - 1  # cohorts 2, 3, 4 less the dropped unit
