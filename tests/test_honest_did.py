"""HonestDiD sensitivity (Rambachan & Roth 2023) against R HonestDiD's README and moderndid 0.4.1
(tests/reference/honestdid_ehec_expected.md)."""
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from analyses.did import aggte, att_gt
from analyses.honest_did import (
    breakdown_value,
    event_study_from_aggte,
    event_study_from_twfe,
    honest_did,
    original_ci,
    sensitivity_analysis,
)
from analyses.twfe import twfe_event_study

REFERENCE = Path(__file__).parent / "reference"
EXPECTED = pd.read_csv(REFERENCE / "honestdid_ehec_ref.csv")


@pytest.fixture(scope="module")
def twfe_study():
    data = pd.read_csv(REFERENCE / "ehec.csv")
    data = data[(data.year < 2016) & (data.yexp2 != 2015)]
    return event_study_from_twfe(twfe_event_study(data, "dins", "year", "stfips", "yexp2"))


@pytest.fixture(scope="module")
def cs_study():
    data = pd.read_csv(REFERENCE / "ehec.csv")
    data["yexp2"] = data.yexp2.fillna(3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small cohorts in the teaching panel
        result = att_gt(data, "dins", "year", "stfips", "yexp2", control_group="notyettreated",
                        base_period="universal", bstrap=False)
        return event_study_from_aggte(aggte(result, "dynamic", min_e=-5, max_e=5, bstrap=False, cband=False))


def _run(study, example):
    expected = EXPECTED[EXPECTED.example == example]
    args = (study.betahat, study.sigma, study.num_pre_periods, study.num_post_periods)
    rm = honest_did(*args, method="C-LF", Mbarvec=expected.query("method == 'C-LF'").M.tolist())
    sd = honest_did(*args, method="FLCI", Mvec=expected.query("method == 'FLCI'").M.tolist())
    return pd.concat([rm, sd], ignore_index=True), expected.reset_index(drop=True)


def test_twfe_example_matches_the_r_honestdid_readme(twfe_study):
    assert (twfe_study.num_pre_periods, twfe_study.num_post_periods) == (5, 2)
    ours, expected = _run(twfe_study, "twfe_2014_e0")
    assert ours.restriction.tolist() == ["relative_magnitude"] * 4 + ["smoothness"] * 6
    np.testing.assert_allclose(ours.M, expected.M)
    np.testing.assert_allclose(ours.lower, expected.lb, atol=1e-3)
    np.testing.assert_allclose(ours.upper, expected.ub, atol=1e-3)
    # the README prints 3 significant digits: FLCI agrees to its rounding
    flci = ours.method == "FLCI"
    np.testing.assert_allclose(ours.lower[flci], expected.lb[flci], atol=1.5e-4)
    np.testing.assert_allclose(ours.upper[flci], expected.ub[flci], atol=5e-4)


def test_twfe_example_on_r_grid_reproduces_the_grid_points(twfe_study):
    """R's default grid for this call is [-20, 20] standard errors around 0 with 1,000 points."""
    expected = EXPECTED.query("example == 'twfe_2014_e0' and method == 'C-LF'")
    sd_theta = np.sqrt(twfe_study.sigma[5, 5])
    ours = honest_did(twfe_study.betahat, twfe_study.sigma, 5, 2, method="C-LF", Mbarvec=expected.M.tolist(),
                      grid_lb=-20 * sd_theta, grid_ub=20 * sd_theta)
    np.testing.assert_allclose(ours.lower, expected.lb, atol=1e-4)
    np.testing.assert_allclose(ours.upper, expected.ub, atol=1e-4)


def test_callaway_santanna_example_matches_moderndid(cs_study):
    assert cs_study.event_times.tolist() == [-5, -4, -3, -2, 0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(cs_study.betahat, [-0.012499, -0.006663, -0.003793, -0.004942, 0.045275, 0.065073,
                                                  0.075921, 0.072558, 0.073805, 0.080320], atol=5e-7)
    np.testing.assert_allclose(original_ci(cs_study.betahat, cs_study.sigma, 4, 6), [0.033479, 0.057072], atol=5e-7)
    ours, expected = _run(cs_study, "cs_nyt_universal_e0")
    np.testing.assert_allclose(ours.lower, expected.lb, atol=1e-3)
    np.testing.assert_allclose(ours.upper, expected.ub, atol=1e-3)
    flci = ours.method == "FLCI"
    np.testing.assert_allclose(ours.lower[flci], expected.lb[flci], atol=1e-6)
    np.testing.assert_allclose(ours.upper[flci], expected.ub[flci], atol=1e-6)


def _identified_set_rm(betahat, num_pre, l_vec, mbar):
    """Bounds on l'tau over Delta^RM(Mbar) when beta is known (union of LPs over the largest pre-difference)."""
    num_post = len(l_vec)
    n = num_pre + num_post
    path = np.zeros((n + 1, n))  # delta over all periods (reference at position num_pre) from the free deltas
    path[np.arange(n + 1) != num_pre] = np.eye(n)
    first_diff = path[1:] - path[:-1]
    lows, highs = [], []
    for s in range(num_pre):
        for sign in (1, -1):
            bound = sign * first_diff[s]
            A = [first_diff[t] - mbar * bound for t in range(num_pre, n)] + \
                [-first_diff[t] - mbar * bound for t in range(num_pre, n)] + \
                [first_diff[t] - bound for t in range(num_pre)] + [-first_diff[t] - bound for t in range(num_pre)]
            equality = np.hstack([np.eye(num_pre), np.zeros((num_pre, num_post))])
            objective = np.concatenate([np.zeros(num_pre), l_vec])
            for direction, store in ((1, lows), (-1, highs)):
                res = linprog(direction * objective, A_ub=np.array(A), b_ub=np.zeros(len(A)), A_eq=equality,
                              b_eq=betahat[:num_pre], bounds=[(None, None)] * n, method="highs")
                if res.status == 0:
                    store.append(l_vec @ betahat[num_pre:] - direction * res.fun)
    return min(highs), max(lows)  # tau = beta - delta: the max bias gives the lower end


@pytest.mark.parametrize("mbar", [0.5, 1.0, 2.0])
def test_relative_magnitude_sets_cover_the_identified_set_for_the_average(cs_study, mbar):
    l_vec = np.full(6, 1 / 6)
    lower_id, upper_id = _identified_set_rm(cs_study.betahat, 4, l_vec, mbar)
    row = honest_did(cs_study.betahat, cs_study.sigma, 4, 6, method="C-LF", Mbarvec=[mbar], l_vec=l_vec).iloc[0]
    assert row.lower < lower_id < upper_id < row.upper


def test_breakdown_values_separate_holding_from_failing(twfe_study):
    args = (twfe_study.betahat, twfe_study.sigma, 5, 2)
    rm = breakdown_value(*args, method="C-LF")
    assert 1.5 <= rm < 2.0  # the README: Mbar = 1.5 excludes 0, Mbar = 2 does not
    at, beyond = honest_did(*args, method="C-LF", Mbarvec=[rm, rm + 0.02]).itertuples()
    assert at.lower > 0 and beyond.lower <= 0
    sd = breakdown_value(*args, method="FLCI")
    assert 0.02 <= sd < 0.03
    tolerance = 0.01 * np.sqrt(twfe_study.sigma[5, 5])  # breakdown_value's default for M
    at, beyond = honest_did(*args, method="FLCI", Mvec=[sd, sd + 2 * tolerance]).itertuples()
    assert at.lower > 0 and beyond.lower <= 0


def test_sensitivity_analysis_reports_both_targets_and_restrictions(cs_study):
    table = sensitivity_analysis(cs_study, Mbarvec=[0, 1], Mvec=[0, 0.01])
    assert table.columns.tolist() == ["target", "restriction", "M", "lower", "upper", "method", "breakdown"]
    assert set(table.target) == {"on_impact", "average"}
    original = table.query("target == 'average' and method == 'original'").iloc[0]
    l_vec = np.full(6, 1 / 6)
    np.testing.assert_allclose([original.lower, original.upper],
                               original_ci(cs_study.betahat, cs_study.sigma, 4, 6, l_vec=l_vec))
    assert table.query("method == 'C-LF'").groupby("target").breakdown.nunique().eq(1).all()
    # a robust set under a looser restriction contains the original-sized one
    rm = table.query("target == 'on_impact' and method == 'C-LF'").set_index("M")
    assert rm.loc[1.0, "lower"] <= rm.loc[0.0, "lower"] and rm.loc[1.0, "upper"] >= rm.loc[0.0, "upper"]


def test_bad_inputs_get_clear_messages(cs_study):
    with pytest.raises(ValueError, match="betahat has 10 coefficients but num_pre_periods"):
        honest_did(cs_study.betahat, cs_study.sigma, 5, 6)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        honest_did(cs_study.betahat, -cs_study.sigma, 4, 6)
    with pytest.raises(ValueError, match="method must be 'C-LF'"):
        honest_did(cs_study.betahat, cs_study.sigma, 4, 6, method="Conditional")
    data = pd.read_csv(REFERENCE / "ehec.csv").query("year < 2016 and yexp2 != 2015")
    gappy = twfe_event_study(data[data.year != 2011], "dins", "year", "stfips", "yexp2")
    with pytest.raises(ValueError, match="TWFE event study: HonestDiD needs consecutive yearly event times"):
        event_study_from_twfe(gappy)


def test_plain_sentence_states_the_breakdown_in_words():
    from analyses.honest_did import robustness_sentence

    assert robustness_sentence("advisory support", 1.5) == (
        "For advisory support, the conclusion holds unless post-programme trend differences are more than "
        "1.5 times the largest seen before the programme.")
    assert "no conclusion to test" in robustness_sentence("grants", float("nan"))
    assert "fragile" in robustness_sentence("grants", 0.0)


def test_sensitivity_plot_shows_the_usual_interval_beside_the_robust_ones(cs_study):
    import base64

    from analyses.reporting.plots import sensitivity_plot

    table = sensitivity_analysis(cs_study, Mbarvec=[0.5, 1], Mvec=[0, 0.01])
    plot = sensitivity_plot(table, "advisory", "exporter", target="on_impact")
    assert base64.b64decode(plot.png_base64).startswith(b"\x89PNG")
    assert plot.alt.startswith("Advisory") and "Exporting" in plot.alt  # labels, not code names
    assert "relative magnitudes, smoothness" in plot.alt
