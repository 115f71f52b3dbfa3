"""Hand-checked firm-year panel: every column on a tiny example, plus bad input."""

import time

import numpy as np
import pandas as pd
import pytest

from analyses.panel import (
    BASELINE_COVARIATES,
    PANEL_OUTCOMES,
    SERVICES,
    build_firm_year_panel,
)


def _tables():
    firms = pd.DataFrame(
        {
            "firm_id": ["F001", "F002", "F003"],
            "nace2": ["25", "62", "01"],
            "region": ["DE11", "DE21", "DE30"],
            "founded_year": [2005, 2010, 1999],
            "in_cluster": [True, False, True],
        }
    )
    financials = pd.DataFrame(
        {
            "firm_id": ["F001"] * 4 + ["F002"] * 2 + ["F999"],
            "year": [2015, 2016, 2017, 2018, 2016, 2017, 2016],
            "employees": [10, 12, 0, 20, 5, 6, 3],
            "turnover_eur": [1e6, 1.1e6, 0.0, 2e6, 3e5, 4e5, 1e5],
        }
    )
    exports = pd.DataFrame(
        {
            "firm_id": ["F001", "F001", "F001", "F001", "F001", "F001", "F002", "F002", "F002", "F002"],
            "year": [2015, 2015, 2017, 2017, 2018, 2018, 2016, 2017, 2017, 2019],
            "destination": ["FR", "FR", "FR", "US", "US", "FR", "CH", "CH", "AT", "FR"],
            "export_value_eur": [100.0, 50.0, 200.0, 300.0, 10.0, 0.0, 1000.0, 500.0, 100.0, 5.0],
        }
    )
    nan = np.nan
    participation = pd.DataFrame(
        {
            "firm_id": ["F001", "F001", "F001", "F002", "F002", "F003"],
            "programme": ["Go International 2016"] * 6,
            "service": ["advisory", "advisory", "grant", "grant", "network", "advisory"],
            "start_date": pd.to_datetime(
                ["2016-03-01", "2018-01-10", "2017-05-01", "2017-02-01", "2017-02-01", "2015-01-01"]
            ),
            "end_date": pd.to_datetime(["2016-09-01", None, "2018-05-01", None, None, "2015-06-01"]),
            "advisory_hours": [20.0, 15.5, nan, nan, nan, 40.0],
            "grant_eur": [nan, nan, 50_000.0, 25_000.0, nan, nan],
            "network_events": [nan, nan, nan, nan, 3.0, nan],
        }
    )
    return firms, financials, participation, exports


@pytest.fixture
def panel():
    return build_firm_year_panel(*_tables()).panel.set_index(["firm_id", "year"])


def test_rows_are_register_times_accounts(panel):
    assert list(panel.index) == [
        ("F001", 2015), ("F001", 2016), ("F001", 2017), ("F001", 2018),
        ("F002", 2016), ("F002", 2017),
    ]


def test_export_outcomes_sum_shipments_and_mark_new_markets(panel):
    f1 = panel.loc["F001"]
    assert f1["export_value_eur"].tolist() == [150.0, 0.0, 500.0, 10.0]
    assert f1["exporter"].tolist() == [1, 0, 1, 1]
    assert f1["n_destinations"].tolist() == [1, 0, 2, 1]  # the zero-valued FR row is not a market
    assert f1["n_eu_destinations"].tolist() == [1, 0, 1, 0]
    assert f1["enters_new_market"].tolist() == [0, 0, 1, 0]  # US first appears in 2017
    np.testing.assert_allclose(f1["log_export_value"], np.log1p([150.0, 0.0, 500.0, 10.0]))
    f2 = panel.loc["F002"]
    # 2016 is F002's first panel year: 0 by convention; the 2019 row is outside the panel.
    assert f2["enters_new_market"].tolist() == [0, 1]
    assert f2["export_value_eur"].tolist() == [1000.0, 600.0]
    assert f2["n_eu_destinations"].tolist() == [0, 1]


def test_treatment_columns_and_first_service_tie_break(panel):
    f1 = panel.loc[("F001", 2017)]
    assert (f1["first_advisory_year"], f1["advisory_intensity"]) == (2016, 35.5)
    assert (f1["first_network_year"], f1["network_intensity"]) == (0, 0.0)
    assert (f1["first_grant_year"], f1["grant_intensity"]) == (2017, 50_000.0)
    assert (f1["first_service"], f1["first_service_year"]) == ("advisory", 2016)
    f2 = panel.loc[("F002", 2016)]
    # grant and network start on the same day; the fixed order puts network first.
    assert (f2["first_service"], f2["first_service_year"]) == ("network", 2017)
    assert (f2["first_network_year"], f2["network_intensity"]) == (2017, 3.0)
    assert (f2["first_grant_year"], f2["grant_intensity"]) == (2017, 25_000.0)
    assert (f2["first_advisory_year"], f2["advisory_intensity"]) == (0, 0.0)


def test_no_participation_gives_zero_codes_and_covered_non_exporting_years_give_zeros():
    firms, financials, participation, exports = _tables()
    panel = build_firm_year_panel(firms, financials, participation.iloc[:0], exports).panel
    assert len(panel) == 6
    # F001 has no export row in 2016, a year the customs extract covers: a non-exporting year, not missing
    f1 = panel.set_index("firm_id").loc["F001"]
    assert f1["exporter"].tolist() == [1, 0, 1, 1] and f1["n_destinations"].tolist() == [1, 0, 2, 1]
    assert (panel["first_service"] == "none").all()
    for s in SERVICES:
        assert (panel[f"first_{s}_year"] == 0).all()
        assert (panel[f"{s}_intensity"] == 0.0).all()
    assert (panel["first_service_year"] == 0).all()


def test_covariates_and_first_year_values(panel):
    f1 = panel.loc["F001"]
    np.testing.assert_allclose(f1["log_employees"], np.log1p([10, 12, 0, 20]))
    np.testing.assert_allclose(f1["log_employees_first"], np.log1p(10))
    np.testing.assert_allclose(f1["log_turnover_first"], np.log1p(1e6))
    assert f1["exporter_first"].tolist() == [1, 1, 1, 1]
    assert f1["firm_age"].tolist() == [10, 11, 12, 13]
    assert f1["firm_age_first"].tolist() == [10] * 4
    assert f1["in_cluster"].tolist() == [1] * 4
    assert f1["nace2"].tolist() == ["25"] * 4
    f2 = panel.loc["F002"]
    assert f2["firm_age_first"].tolist() == [6, 6]
    assert f2["in_cluster"].tolist() == [0, 0]
    assert f2["region"].tolist() == ["DE21", "DE21"]


def test_dtypes_and_declared_constants(panel):
    for column in ("exporter", "n_destinations", "enters_new_market", "employees", "in_cluster",
                   "first_service_year", "exporter_first", "firm_age_first"):
        assert panel[column].dtype == "int64", column
    for column in ("export_value_eur", "log_export_value", "log_turnover_first", "grant_intensity"):
        assert panel[column].dtype == "float64", column
    assert set(PANEL_OUTCOMES) | set(BASELINE_COVARIATES) <= set(panel.columns)


def test_duplicate_firm_year_in_financials_is_named():
    firms, financials, participation, exports = _tables()
    doubled = pd.concat([financials, financials.iloc[[1]]])
    with pytest.raises(ValueError, match=r"financials: 2 rows share a firm_id/year key.*F001"):
        build_firm_year_panel(firms, doubled, participation, exports)


def test_unknown_service_is_named_with_its_row():
    firms, financials, participation, exports = _tables()
    participation.loc[2, "service"] = "coaching"
    with pytest.raises(ValueError, match=r"participation: row 2 column 'service' has 'coaching'"):
        build_firm_year_panel(firms, financials, participation, exports)


def test_missing_column_is_named():
    firms, financials, participation, exports = _tables()
    with pytest.raises(ValueError, match=r"exports: missing required column\(s\) \['destination'\]"):
        build_firm_year_panel(firms, financials, participation, exports.drop(columns="destination"))


def test_ten_thousand_firms_thirteen_years_is_quick():
    rng = np.random.default_rng(7)
    n, years = 10_000, np.arange(2012, 2025)
    ids = np.array([f"F{i:06d}" for i in range(n)], dtype=object)
    firms = pd.DataFrame({"firm_id": ids, "nace2": "25", "region": "DE11",
                          "founded_year": 2000, "in_cluster": rng.random(n) < 0.3})
    financials = pd.DataFrame({"firm_id": np.repeat(ids, years.size), "year": np.tile(years, n),
                               "employees": rng.integers(0, 250, n * years.size),
                               "turnover_eur": rng.random(n * years.size) * 1e7})
    m = 250_000
    exports = pd.DataFrame({"firm_id": ids[rng.integers(0, n, m)], "year": rng.choice(years, m),
                            "destination": rng.choice(["FR", "US", "CN", "AT", "PL", "CH"], m),
                            "export_value_eur": rng.random(m) * 1e5})
    k = 4_000
    service = rng.choice(SERVICES, k)
    participation = pd.DataFrame({
        "firm_id": ids[rng.integers(0, n, k)], "programme": "P", "service": service,
        "start_date": pd.to_datetime("2014-01-01") + pd.to_timedelta(rng.integers(0, 3000, k), "D"),
        "end_date": pd.NaT,
        "advisory_hours": np.where(service == "advisory", 20.0, np.nan),
        "grant_eur": np.where(service == "grant", 1e4, np.nan),
        "network_events": np.where(service == "network", 2.0, np.nan)})
    started = time.perf_counter()
    panel = build_firm_year_panel(firms, financials, participation, exports).panel
    elapsed = time.perf_counter() - started
    assert len(panel) == n * years.size
    assert panel["n_destinations"].sum() == exports.drop_duplicates(
        ["firm_id", "year", "destination"]).shape[0]
    assert elapsed < 5.0, f"panel build took {elapsed:.2f}s"


def test_eu_destinations_follow_membership_years():
    firms, financials, participation, _ = _tables()
    financials = pd.DataFrame({"firm_id": "F001", "year": [2012, 2013, 2019, 2020],
                               "employees": 1, "turnover_eur": 1.0})
    exports = pd.DataFrame({"firm_id": "F001", "year": [2012, 2013, 2019, 2020],
                            "destination": ["HR", "HR", "GB", "GB"], "export_value_eur": 1.0})
    panel = build_firm_year_panel(firms, financials, participation, exports).panel
    assert panel["n_eu_destinations"].tolist() == [0, 1, 1, 0]  # Croatia joins 2013, UK leaves 2020
    assert panel["n_destinations"].tolist() == [1, 1, 1, 1]


def test_empty_required_cell_is_named_but_empty_doses_are_fine():
    firms, financials, participation, exports = _tables()
    financials.loc[3, "employees"] = np.nan
    with pytest.raises(ValueError, match=r"financials: row 3 column 'employees' is empty"):
        build_firm_year_panel(firms, financials, participation, exports)
    _, financials, _, _ = _tables()
    participation.loc[1, "start_date"] = pd.NaT
    with pytest.raises(ValueError, match=r"participation: row 1 column 'start_date' is empty"):
        build_firm_year_panel(firms, financials, participation, exports)


# --- every clean row accounted for ------------------------------------------------------------

from analyses.panel import (  # noqa: E402
    REASON_AFTER_PANEL,
    REASON_ALREADY_TREATED,
    REASON_IN_PANEL,
    REASON_NO_ACCOUNTS,
    REASON_NO_FIRM_YEAR,
    REASON_NOT_REGISTERED,
    REASON_UNCOVERED,
)


def _fates(build, source):
    """{(status, reason): (rows, firms)} of one source in the panel account."""
    table = build.account.table
    rows = table[table["source"] == source]
    return {(r["status"], r["reason"]): (r["rows"], r["firms"]) for r in rows.to_dict("records")}


def test_every_clean_row_enters_the_panel_or_is_counted_with_a_reason():
    build = build_firm_year_panel(*_tables())
    # F003 is registered and supported but has no accounts: its episode must not vanish silently
    assert _fates(build, "firms") == {("used", REASON_IN_PANEL): (2, 2), ("left out", REASON_NO_ACCOUNTS): (1, 1)}
    assert _fates(build, "financials") == {("used", REASON_IN_PANEL): (6, 2),
                                           ("left out", REASON_NOT_REGISTERED): (1, 1)}
    assert _fates(build, "participation") == {("used", REASON_IN_PANEL): (5, 2),
                                              ("left out", REASON_NO_ACCOUNTS): (1, 1)}
    assert _fates(build, "exports") == {("used", REASON_IN_PANEL): (9, 2),
                                        ("left out", REASON_NO_FIRM_YEAR): (1, 1)}
    assert build.account.rows_clean == {"firms": 3, "financials": 7, "participation": 6, "exports": 10}
    build.account.check_accounting()
    build.account.table.loc[0, "rows"] -= 1
    with pytest.raises(RuntimeError, match=r"firms: panel accounting does not add up: 3 clean rows"):
        build.account.check_accounting()


def test_support_before_the_first_accounts_year_marks_the_firm_already_treated():
    firms, financials, participation, exports = _tables()
    early = participation.iloc[[0]].assign(start_date=pd.Timestamp("2012-05-01"), service="network",
                                           advisory_hours=np.nan, network_events=2.0)
    build = build_firm_year_panel(firms, financials, pd.concat([participation, early], ignore_index=True), exports)
    f1 = build.panel.set_index(["firm_id", "year"]).loc[("F001", 2017)]
    # the 2012 episode comes first: F001 started with network before the panel, not with advisory in 2016
    assert (f1["first_service"], f1["first_service_year"], f1["first_network_year"]) == ("network", 2012, 2012)
    assert _fates(build, "participation")[("used", REASON_ALREADY_TREATED)] == (4, 1)


def test_support_after_the_last_accounts_year_does_not_treat_the_panel_years():
    firms, financials, participation, exports = _tables()
    late = pd.DataFrame({"firm_id": ["F001", "F002"], "programme": "P", "service": ["network", "advisory"],
                         "start_date": pd.to_datetime(["2019-02-01", "2020-06-01"]), "end_date": pd.NaT,
                         "advisory_hours": [np.nan, 10.0], "grant_eur": np.nan, "network_events": [4.0, np.nan]})
    build = build_firm_year_panel(firms, financials, pd.concat([participation, late], ignore_index=True), exports)
    panel = build.panel.drop_duplicates("firm_id").set_index("firm_id")
    # as R did codes units first treated after the sample: untreated in every panel year, doses not counted
    assert (panel.loc["F001", "first_network_year"], panel.loc["F001", "network_intensity"]) == (0, 0.0)
    assert (panel.loc["F002", "first_advisory_year"], panel.loc["F002", "advisory_intensity"]) == (0, 0.0)
    assert panel.loc["F001", "first_service"] == "advisory"
    assert _fates(build, "participation")[("left out", REASON_AFTER_PANEL)] == (2, 2)
    build.account.check_accounting()


def test_the_participation_contract_keeps_episodes_outside_the_accounts_years(tmp_path):
    from tests.contract_landing import run_contracts, valid_tables, write_landing

    tables = valid_tables()
    tables["participation"].loc[0, "start_date"] = "2009-04-01"
    tables["participation"].loc[1, "start_date"] = "2023-04-01"
    tables["participation"].loc[1, "end_date"] = ""
    _, results = run_contracts(write_landing(tmp_path, tables))
    assert results["participation"].rows_quarantined == 0


def _exporting_world(n_firms=200, years=range(2015, 2023)):
    """Every firm has accounts in every year; a steady 40 % of firms export, to one or two markets."""
    ids = [f"E{i:04d}" for i in range(n_firms)]
    years = list(years)
    firms = pd.DataFrame({"firm_id": ids, "nace2": "25", "region": "DE11", "founded_year": 2000,
                          "in_cluster": False})
    financials = pd.DataFrame({"firm_id": np.repeat(ids, len(years)), "year": np.tile(years, n_firms),
                               "employees": 10, "turnover_eur": 1e6})
    rows = [{"firm_id": firm, "year": year, "destination": ("FR", "US")[(i + year) % 2], "export_value_eur": 100.0}
            for i, firm in enumerate(ids) for year in years if (i + year) % 5 < 2]
    participation = pd.DataFrame(columns=["firm_id", "programme", "service", "start_date", "end_date",
                                          "advisory_hours", "grant_eur", "network_events"])
    participation["start_date"] = pd.to_datetime(participation["start_date"])
    return firms, financials, participation, pd.DataFrame(rows)


@pytest.mark.parametrize("year", [2015, 2018, 2022], ids=["first", "middle", "last"])
def test_a_year_without_export_rows_is_not_covered_and_its_outcomes_are_missing(year):
    firms, financials, participation, exports = _exporting_world()
    build = build_firm_year_panel(firms, financials, participation, exports[exports["year"] != year])
    coverage = build.account.coverage.set_index("year")
    assert coverage.index[~coverage["covered"]].tolist() == [year]
    assert coverage.loc[year, "reason"] == f"no export rows for {year}"
    panel = build.panel
    uncovered = panel["year"] == year
    for outcome in ("exporter", "export_value_eur", "log_export_value", "n_destinations", "n_eu_destinations",
                    "enters_new_market"):
        assert panel.loc[uncovered, outcome].isna().all(), outcome
    assert panel.loc[~uncovered, "exporter"].notna().all()
    assert panel.loc[~uncovered, "exporter"].mean() == pytest.approx(0.4)
    assert (panel["exports_covered"] == (~uncovered).astype(int)).all()
    # baseline export status comes from the first covered year, never from a missing one
    assert panel["exporter_first"].notna().all()


def test_a_year_with_a_fraction_of_the_exporters_is_not_covered_and_its_rows_are_counted():
    firms, financials, participation, exports = _exporting_world()
    in_2019 = exports.index[exports["year"] == 2019]
    dropped = in_2019[: int(len(in_2019) * 0.7)]  # the extract holds 30 % of 2019's exporters
    build = build_firm_year_panel(firms, financials, participation, exports.drop(dropped))
    coverage = build.account.coverage.set_index("year")
    assert coverage.index[~coverage["covered"]].tolist() == [2019]
    assert coverage.loc[2019, "reason"].startswith("24 exporting firms (12.0% of firms with accounts) against 40.0%")
    assert build.panel.loc[build.panel["year"] == 2019, "exporter"].isna().all()
    kept_2019 = len(in_2019) - len(dropped)
    assert _fates(build, "exports")[("left out", REASON_UNCOVERED)] == (kept_2019, kept_2019)
    build.account.check_accounting()
    # a year just above the threshold (60 % of the exporters) stays covered
    fewer = exports.drop(in_2019[: int(len(in_2019) * 0.4)])
    assert build_firm_year_panel(firms, financials, participation, fewer).account.coverage["covered"].all()


def test_new_markets_after_an_uncovered_year_are_missing_not_guessed():
    firms, financials, participation, exports = _exporting_world()
    panel = build_firm_year_panel(firms, financials, participation, exports[exports["year"] != 2018]).panel
    assert panel.loc[panel["year"] == 2019, "enters_new_market"].isna().all()  # 2018 history unknown
    assert panel.loc[panel["year"] == 2020, "enters_new_market"].notna().all()


def test_no_covered_year_stops_with_a_clear_message():
    firms, financials, participation, exports = _tables()
    with pytest.raises(ValueError, match=r"exports: no year of the accounts \(2015-2018\) is covered by the customs "
                                         r"extract.*no export rows for 2015"):
        build_firm_year_panel(firms, financials, participation, exports.iloc[:0])
