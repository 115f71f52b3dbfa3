"""Hand-checked firm-year panel: every column on a tiny example, plus bad input."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses.panel import (
    BASELINE_COVARIATES,
    FIRST_YEAR_COLUMN,
    PANEL_OUTCOMES,
    SERVICES,
    TIME_VARYING_COVARIATES,
    WINDOW_OUTCOMES,
    build_firm_year_panel,
)
from tests.panel_fixtures import no_participation, stationary_exporters


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
    # three years of history exist only in 2018 (2015-2017); US was served in 2017, so nothing is new
    np.testing.assert_array_equal(f1["enters_new_market"], [np.nan, np.nan, np.nan, 0])
    np.testing.assert_allclose(f1["log_export_value"], np.log1p([150.0, 0.0, 500.0, 10.0]))
    f2 = panel.loc["F002"]
    # two panel years are too few history for the three-year window; the 2019 row is outside the panel.
    assert f2["enters_new_market"].isna().all()
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
    for column in ("exporter", "n_destinations", "n_eu_destinations", "n_non_eu_destinations", "employees",
                   "in_cluster", "first_service_year", "exporter_first", "firm_age_first", "firm_age"):
        assert panel[column].dtype == "int64", column
    for column in ("export_value_eur", "log_export_value", "log_turnover_first", "grant_intensity",
                   "grant_first_dose", *WINDOW_OUTCOMES, "exported_last_year", "years_exported_last3",
                   "years_exported_3y"):
        assert panel[column].dtype == "float64", column  # window columns are missing without history
    assert set(PANEL_OUTCOMES) | set(BASELINE_COVARIATES) | set(TIME_VARYING_COVARIATES) <= set(panel.columns)
    assert set(FIRST_YEAR_COLUMN.values()) <= set(panel.columns)


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
    assert panel["n_eu_destinations"].tolist() == [0, 1, 1, 1]  # Croatia joins 2013; the UK is EU until 2020
    assert panel["n_non_eu_destinations"].tolist() == [1, 0, 0, 0]
    assert panel["n_destinations"].tolist() == [1, 1, 1, 1]
    later = exports.assign(year=[2019, 2020, 2021, 2022])
    panel = build_firm_year_panel(firms, financials.assign(year=[2019, 2020, 2021, 2022]), participation,
                                  later.assign(destination="GB")).panel
    # the single market ended on 31 December 2020: from 2021 British customers are outside the EU
    assert panel["n_eu_destinations"].tolist() == [1, 1, 0, 0]


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
    by_year = panel.groupby("year")
    # 2015-2017 lack three years of history; 2018 is not covered, and the windows of 2019-2021 reach back to it;
    # covariates describe the years before, so 2018's are known
    expected = {column: [2015, 2016, 2017, 2018, 2019, 2020, 2021] for column in WINDOW_OUTCOMES}
    expected |= {"years_exported_last3": [2015, 2016, 2017, 2019, 2020, 2021], "exported_last_year": [2015, 2019],
                 "years_exported_3y": [2015, 2016, 2018, 2019, 2020]}
    for column, years in expected.items():
        missing = by_year[column].apply(lambda values: values.isna().all())
        assert missing[missing].index.tolist() == years, column
        assert panel.loc[~panel["year"].isin(years), column].notna().all(), column


def test_no_covered_year_stops_with_a_clear_message():
    firms, financials, participation, exports = _tables()
    with pytest.raises(ValueError, match=r"exports: no year of the accounts \(2015-2018\) is covered by the customs "
                                         r"extract.*no export rows for 2015"):
        build_firm_year_panel(firms, financials, participation, exports.iloc[:0])


# --- outcomes over a fixed look-back window ---------------------------------------------------

NAN = np.nan
WINDOW_YEARS = list(range(2010, 2022))
#: one firm's markets by year: a restart (2013), a first-time start after three idle years (2017),
#: then new EU and non-EU markets added while exporting (2018-2021; GB joins as EU in 2020)
WINDOW_MARKETS = {2010: ["FR"], 2011: ["FR"], 2012: [], 2013: ["FR", "US"], 2014: [], 2015: [], 2016: [],
                  2017: ["CN"], 2018: ["CN", "PL"], 2019: ["CN", "PL", "US"], 2020: ["CN", "GB"],
                  2021: ["CN", "GB", "NO"]}


def _one_firm(markets, years, firm_id="W001"):
    firms = pd.DataFrame({"firm_id": [firm_id], "nace2": "25", "region": "DE11", "founded_year": 2000,
                          "in_cluster": False})
    financials = pd.DataFrame({"firm_id": firm_id, "year": years, "employees": 5, "turnover_eur": 1e5})
    exports = pd.DataFrame([{"firm_id": firm_id, "year": year, "destination": d, "export_value_eur": 10.0}
                            for year, served in markets.items() for d in served])
    return firms, financials, no_participation(), exports


def _with_covered_neighbours(tables):
    """Add exporting firms so that no year of a one-firm example looks uncovered by the customs extract."""
    firms, financials, participation, exports = tables
    years = sorted(financials["year"].unique())
    others = pd.DataFrame({"firm_id": [f"X{i:03d}" for i in range(3)], "nace2": "25", "region": "DE11",
                           "founded_year": 2000, "in_cluster": False})
    other_years = pd.DataFrame([(f, y) for f in others["firm_id"] for y in years], columns=["firm_id", "year"])
    return (pd.concat([firms, others], ignore_index=True),
            pd.concat([financials, other_years.assign(employees=5, turnover_eur=1e5)], ignore_index=True),
            participation,
            pd.concat([exports, other_years.assign(destination="AT", export_value_eur=1.0)], ignore_index=True))


def test_window_outcomes_by_hand():
    panel = build_firm_year_panel(*_with_covered_neighbours(_one_firm(WINDOW_MARKETS, WINDOW_YEARS))).panel
    firm = panel[panel["firm_id"] == "W001"].set_index("year")
    expected = {
        # 2010-2012: fewer than three earlier years observed
        "enters_new_market": [NAN] * 3 + [1, 0, 0, 0, 1, 1, 1, 1, 1],
        "starts_exporting": [NAN] * 3 + [0, 0, 0, 0, 1, 0, 0, 0, 0],  # 2013 restarts after one idle year only
        "new_destination": [NAN] * 3 + [0, 0, 0, 0, 0, 1, 1, 1, 1],  # 2017 is a start, not a new destination
        "new_eu_destination": [NAN] * 3 + [0, 0, 0, 0, 0, 1, 0, 1, 0],  # PL 2018, GB 2020 (EU until 2020)
        "new_non_eu_destination": [NAN] * 3 + [0, 0, 0, 0, 0, 0, 1, 0, 1],  # US 2019 (served 2013: > 3 years), NO 2021
        "n_eu_destinations": [1, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0],  # in 2021 GB is outside the EU
        "n_non_eu_destinations": [0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 1, 3],
        "exported_last_year": [NAN, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1],
        "years_exported_last3": [NAN] * 3 + [2, 2, 1, 1, 0, 1, 2, 3, 3],
        "years_exported_3y": [NAN] * 2 + [2, 2, 1, 1, 0, 1, 2, 3, 3, 3],  # t-2..t: read in g-1, years in g-3..g-1
    }
    for column, values in expected.items():
        np.testing.assert_array_equal(firm[column].to_numpy(), np.asarray(values, dtype=float), err_msg=column)
    # every market entry is a start, a new destination of a current exporter, or a restart after a short pause
    defined = firm["enters_new_market"].notna()
    restart = firm["enters_new_market"] - firm["starts_exporting"] - firm["new_destination"]
    assert restart[defined].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0]


def test_the_window_length_is_a_parameter():
    tables = _with_covered_neighbours(_one_firm(WINDOW_MARKETS, WINDOW_YEARS))
    firm = build_firm_year_panel(*tables, lookback_years=1).panel.query("firm_id == 'W001'").set_index("year")
    # with one year of history, the 2013 restart after one idle year counts as a start
    np.testing.assert_array_equal(firm["starts_exporting"], [NAN, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(firm["new_destination"], [NAN, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ValueError, match=r"lookback_years must be a whole number of years >= 1"):
            build_firm_year_panel(*tables, lookback_years=bad)


def test_a_window_over_a_year_without_accounts_is_missing():
    years = [y for y in WINDOW_YEARS if y != 2015]  # no accounts (and so no customs history) for 2015
    markets = {y: m for y, m in WINDOW_MARKETS.items() if y != 2015}
    firm = build_firm_year_panel(*_with_covered_neighbours(_one_firm(markets, years))).panel
    firm = firm[firm["firm_id"] == "W001"].set_index("year")
    for column in (*WINDOW_OUTCOMES, "years_exported_last3"):
        assert firm.loc[[2016, 2017, 2018], column].isna().all(), column
        assert firm.loc[[2014, 2019], column].notna().all(), column
    assert np.isnan(firm.loc[2016, "exported_last_year"]) and firm.loc[2017, "exported_last_year"] == 0
    assert firm.loc[[2016, 2017], "years_exported_3y"].isna().all()
    assert firm.loc[[2014, 2018], "years_exported_3y"].notna().all()


def test_accounts_two_years_before_the_programme_give_missing_not_distorted_history():
    """Issue 9: a participant whose accounts start two years before its programme has no three-year window
    until the programme's second year; its first years must not look like years full of new markets."""
    markets = {2014: ["FR"], 2015: ["FR", "US"], 2016: ["FR", "US", "PL"], 2017: ["FR", "US", "PL"],
               2018: ["FR", "US", "PL", "CN"]}
    firms, financials, _, exports = _with_covered_neighbours(_one_firm(markets, list(range(2012, 2019))))
    financials = financials[(financials["firm_id"] != "W001") | (financials["year"] >= 2014)]
    participation = pd.DataFrame({"firm_id": ["W001"], "programme": "P", "service": "grant",
                                  "start_date": pd.to_datetime(["2016-03-01"]), "end_date": pd.NaT,
                                  "advisory_hours": np.nan, "grant_eur": 20_000.0, "network_events": np.nan})
    firm = build_firm_year_panel(firms, financials, participation, exports).panel.set_index(["firm_id", "year"])
    firm = firm.loc["W001"]
    assert firm["first_grant_year"].iloc[0] == 2016
    for column in WINDOW_OUTCOMES:
        assert firm.loc[2014:2016, column].isna().all(), column  # history 2011-2015 not observed
    assert firm.loc[2017, "enters_new_market"] == 0 and firm.loc[2018, "new_destination"] == 1


def test_new_market_rates_do_not_trend_with_years_observed():
    """Issue 9: with 'never served in any earlier panel year' the rate among last year's exporters fell from
    0.59 to 0.28 over the panel for no reason but history length. In a stationary world with firms entering
    the register at different years, the window outcomes must be flat in calendar year and in tenure."""
    years = range(2012, 2025)
    rng = np.random.default_rng(3)
    first_years = rng.choice(np.arange(2012, 2019), size=4_000)
    tables = stationary_exporters(n_firms=4_000, years=years, first_years=first_years, seed=5)
    panel = build_firm_year_panel(*tables).panel
    panel["tenure"] = panel["year"] - panel.groupby("firm_id")["year"].transform("min")
    exporters = panel[panel["exported_last_year"].eq(1)]
    for column in ("enters_new_market", "new_destination"):
        for by in ("year", "tenure"):
            rates = exporters.dropna(subset=[column]).groupby(by)[column].agg(["mean", "size"])
            x = rates.index.to_numpy(dtype=float)
            slope = np.polyfit(x, rates["mean"], 1, w=np.sqrt(rates["size"]))[0]  # weights: 1 / sampling sd
            assert abs(slope * (x.max() - x.min())) < 0.03, (column, by, rates["mean"].round(3).to_dict())
    # the same world under "served in no earlier panel year" trends strongly: the test can tell the two apart
    shipped = tables[3].merge(panel[["firm_id", "year"]])
    first_served = shipped.groupby(["firm_id", "destination"])["year"].transform("min")
    new_ever = shipped.assign(new=shipped["year"].eq(first_served)).groupby(["firm_id", "year"])["new"].any()
    ever = exporters.set_index(["firm_id", "year"]).join(new_ever.rename("new_ever"))["new_ever"].eq(True)
    ever = ever[ever.index.get_level_values("year") > ever.index.get_level_values("year").min()]
    by_year = ever.groupby(level="year").mean()
    assert by_year.iloc[0] - by_year.iloc[-1] > 0.1, by_year.round(3).to_dict()


def test_first_dose_is_the_first_episode_and_intensity_the_sum(panel):
    f1 = panel.loc[("F001", 2017)]
    # advisory: 20 h in 2016, 15.5 h more in 2018 (after the start, so not part of the dose known at the start)
    assert (f1["advisory_first_dose"], f1["advisory_intensity"]) == (20.0, 35.5)
    assert (f1["grant_first_dose"], f1["network_first_dose"]) == (50_000.0, 0.0)
    f2 = panel.loc[("F002", 2016)]
    assert (f2["network_first_dose"], f2["grant_first_dose"], f2["advisory_first_dose"]) == (3.0, 25_000.0, 0.0)


def test_episodes_starting_on_the_same_first_day_form_the_first_dose():
    firms, financials, participation, exports = _tables()
    same_day = participation.iloc[[0]].assign(advisory_hours=5.0, programme="Other")
    panel = build_firm_year_panel(firms, financials, pd.concat([participation, same_day], ignore_index=True),
                                  exports).panel.set_index(["firm_id", "year"])
    assert (panel.loc[("F001", 2015), "advisory_first_dose"], panel.loc[("F001", 2015), "advisory_intensity"]) == (
        25.0, 40.5)


def test_every_column_is_defined_in_the_data_dictionary(panel):
    from analyses.panel import PANEL_COLUMNS

    assert list(panel.reset_index().columns) == list(PANEL_COLUMNS)
    dictionary = (Path(__file__).resolve().parents[1] / "data_contracts" / "DATA_DICTIONARY.md").read_text()
    for column in PANEL_COLUMNS:
        assert f"| `{column}` |" in dictionary, column
