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
    return build_firm_year_panel(*_tables()).set_index(["firm_id", "year"])


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


def test_no_participation_and_no_exports_give_zero_codes():
    firms, financials, participation, exports = _tables()
    panel = build_firm_year_panel(firms, financials, participation.iloc[:0], exports.iloc[:0])
    assert len(panel) == 6
    for outcome in ("exporter", "n_destinations", "enters_new_market", "export_value_eur", "exporter_first"):
        assert (panel[outcome] == 0).all(), outcome
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
    panel = build_firm_year_panel(firms, financials, participation, exports)
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
    panel = build_firm_year_panel(firms, financials, participation, exports)
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
