"""analyses.did against R ``did`` 2.5 reference output on mpdta (see tests/reference/mpdta_expected.md)."""
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analyses.did
from analyses.did import aggte, att_gt, load_mpdta

REFERENCE = Path(__file__).resolve().parent / "reference"

SCENARIOS = {
    "mpdta_nev_dr": {},
    "mpdta_nyt_dr": {"control_group": "notyettreated"},
    "mpdta_nev_reg_cov": {"xformla": "~lpop", "est_method": "reg"},
    "mpdta_nev_ipw": {"est_method": "ipw"},
}
ATT_TOL = 1e-8
SE_RTOL = 1e-6


@pytest.fixture(scope="module")
def mpdta():
    return pd.read_csv(REFERENCE / "mpdta.csv")


@pytest.fixture(scope="module")
def analytic_results(mpdta):
    return {name: att_gt(mpdta, "lemp", "year", "countyreal", "first.treat", bstrap=False, cband=False, **kw)
            for name, kw in SCENARIOS.items()}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_att_gt_matches_r(analytic_results, scenario):
    ref = pd.read_csv(REFERENCE / "mpdta_R_did250_ref_attgt.csv").query("scenario == @scenario")
    table = analytic_results[scenario].table
    assert list(table.columns) == ["group", "time", "att", "se", "ci_lower", "ci_upper"]
    np.testing.assert_array_equal(table.group, ref.group)
    np.testing.assert_array_equal(table.time, ref.t)
    np.testing.assert_allclose(table.att, ref.att, rtol=0, atol=ATT_TOL)
    np.testing.assert_allclose(table.se, ref.se, rtol=SE_RTOL)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pretest_matches_r(analytic_results, scenario):
    ref = pd.read_csv(REFERENCE / "mpdta_R_did250_ref_pretest.csv").query("scenario == @scenario").iloc[0]
    result = analytic_results[scenario]
    assert result.W == pytest.approx(ref.W, rel=1e-8)
    assert result.Wpval == pytest.approx(ref.Wpval, abs=1e-12)  # R rounds the p-value to 5 digits


@pytest.mark.parametrize("agg_type", ["simple", "group", "dynamic", "calendar"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_aggte_matches_r(analytic_results, scenario, agg_type):
    ref = pd.read_csv(REFERENCE / "mpdta_R_did250_ref_aggte.csv").query("scenario == @scenario and type == @agg_type")
    agg = aggte(analytic_results[scenario], agg_type)
    assert agg.overall_att == pytest.approx(ref.overall_att.iloc[0], abs=ATT_TOL)
    assert agg.overall_se == pytest.approx(ref.overall_se.iloc[0], rel=SE_RTOL)
    if agg_type == "simple":
        assert agg.table is None
        return
    key = {"group": "group", "dynamic": "event_time", "calendar": "time"}[agg_type]
    np.testing.assert_array_equal(agg.table[key], ref.egt.astype(int))
    np.testing.assert_allclose(agg.table.att, ref.att_egt, rtol=0, atol=ATT_TOL)
    np.testing.assert_allclose(agg.table.se, ref.se_egt, rtol=SE_RTOL)


def test_dynamic_balance_e_matches_published_vignette(analytic_results):
    """[DID-BASICS] mw.dyn.balance (balance_e=1), published to 4 dp."""
    agg = aggte(analytic_results["mpdta_nev_dr"], "dynamic", balance_e=1)
    assert agg.table.event_time.tolist() == [-2, -1, 0, 1]
    np.testing.assert_allclose(agg.table.att, [0.0065, -0.0028, -0.0066, -0.0510], atol=5.1e-5)
    assert agg.overall_att == pytest.approx(-0.0288, abs=5.1e-5)


def _markdown_table(heading: str) -> list[list[str]]:
    text = (REFERENCE / "mpdta_expected.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip().strip("*") for cell in row] for row in rows[1:]]  # drop the header row


def test_dr_with_covariate_matches_csdid_tables_3_and_4(mpdta):
    """dr with ~lpop has no R analytic output; csdid's numbers (Tables 3-4) are the cross-check."""
    result = att_gt(mpdta, "lemp", "year", "countyreal", "first.treat", xformla="~lpop", bstrap=False, cband=False)
    table3 = pd.DataFrame([[float(c) for c in row[:2] + row[4:6]] for row in _markdown_table("## Table 3")],
                          columns=["group", "time", "att", "se"])
    np.testing.assert_array_equal(result.table.group, table3.group)
    np.testing.assert_allclose(result.table.att, table3.att, atol=1e-9)
    np.testing.assert_allclose(result.table.se, table3.se, atol=1e-9)
    for agg_type, key, att_text, se_text, *_reg_columns in _markdown_table("## Table 4"):
        agg = aggte(result, agg_type)
        if key == "overall":
            att, se = agg.overall_att, agg.overall_se
        else:
            row = agg.table.loc[agg.table.iloc[:, 0] == int(key)].iloc[0]
            att, se = row.att, row.se
        assert att == pytest.approx(float(att_text), abs=1e-9), (agg_type, key)
        assert se == pytest.approx(float(se_text), abs=1e-9), (agg_type, key)


def test_published_pretest_p_value_with_covariate(mpdta):
    """[DID-ATT] out2 (dr, ~lpop) prints a pre-test p-value of 0.23267."""
    result = att_gt(mpdta, "lemp", "year", "countyreal", "first.treat", xformla="~lpop", bstrap=False)
    assert result.Wpval == pytest.approx(0.23267, abs=1e-5)


def test_bootstrap_se_close_to_analytic(mpdta, analytic_results):
    boot = att_gt(mpdta, "lemp", "year", "countyreal", "first.treat", biters=1000, random_state=20240915)
    analytic = analytic_results["mpdta_nev_dr"]
    np.testing.assert_allclose(boot.table.att, analytic.table.att, atol=1e-15)
    np.testing.assert_allclose(boot.table.se, analytic.table.se, rtol=0.15)
    assert boot.cband and boot.crit_val > 1.96  # uniform band is wider than the pointwise one
    assert np.all(boot.table.ci_upper - boot.table.ci_lower > 2 * 1.959 * boot.table.se)
    for agg_type in ["simple", "group", "dynamic", "calendar"]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            agg_boot = aggte(boot, agg_type)
        agg_analytic = aggte(analytic, agg_type)
        assert agg_boot.overall_se == pytest.approx(agg_analytic.overall_se, rel=0.15)
        if agg_boot.table is not None:
            np.testing.assert_allclose(agg_boot.table.se, agg_analytic.table.se, rtol=0.15)
            assert agg_boot.cband


def test_bootstrap_is_reproducible_with_random_state(mpdta):
    first = att_gt(mpdta, "lemp", "year", "countyreal", "first.treat", biters=200, random_state=7)
    second = att_gt(mpdta, "lemp", "year", "countyreal", "first.treat", biters=200, random_state=7)
    pd.testing.assert_frame_equal(first.table, second.table)


def test_summaries_read_like_r(analytic_results):
    result = analytic_results["mpdta_nev_dr"]
    text = result.summary()
    assert "Group-Time Average Treatment Effects" in text and "0.16812" in text
    assert re.search(r"2004\s+2005\s+-0\.0704\s+0\.0310", text)
    agg_text = aggte(result, "dynamic").summary()
    assert "event-study/dynamic" in agg_text and "-0.0772" in agg_text
    assert "AttGtResult(12 cells" in repr(result)


def test_report_counts(analytic_results):
    agg = aggte(analytic_results["mpdta_nev_dr"], "group")
    assert (agg.n_treated, agg.n_control) == (191, 309)  # 20 + 40 + 131 treated counties, 309 never treated
    assert agg.overall_ci_lower < agg.overall_att < agg.overall_ci_upper
    assert 0 < agg.overall_pvalue < 0.05


def test_reference_copy_and_shipped_example_data_are_the_documented_mpdta():
    """The in-repo reference and `load_mpdta`'s package data are the bytes mpdta_expected.md describes."""
    documented = re.search(r"md5 `([0-9a-f]{32})`", (REFERENCE / "mpdta_expected.md").read_text()).group(1)
    shipped = Path(analyses.did.__file__).parent / "data" / "mpdta.csv"
    for path in (REFERENCE / "mpdta.csv", shipped):
        assert hashlib.md5(path.read_bytes()).hexdigest() == documented, path
    pd.testing.assert_frame_equal(load_mpdta(), pd.read_csv(REFERENCE / "mpdta.csv"))
    assert load_mpdta().shape == (2500, 6)
