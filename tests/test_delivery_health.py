"""Asset health between deliveries: schema change, volume and content drift, freshness (issue 13).

Two deliveries are materialised in a row with the real assets against one warehouse and instance;
the second has a changed column, a year missing from the customs extract and fewer firms.
"""

import re

import dagster as dg
import pandas as pd
import pytest

from analyses.contracts import load_contract
from analyses.drift import drift_outcomes, freshness_verdict, previous_delivery, schema_changes, text_logical_type
from pipelines.run_summary import run_problems, run_warnings
from tests.conftest import materialise_delivery
from tests.test_pipeline import landing_copy

QUICK_PLAN = "bootstrap_iterations: 0\noutcomes: [exporter]\nservices: [advisory]\n"
DROPPED_SHARE = 0.3


def _csv(landing, source) -> pd.DataFrame:
    return pd.read_csv(landing / f"{source}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def two_deliveries(demo_landing, tmp_path_factory):
    """First: the demo with a text column ``legal_form``. Second: ``legal_form`` as numeric codes, the customs
    extract without its second year, and 30 % of the firms gone from every file."""
    root = tmp_path_factory.mktemp("health")
    plan = root / "plan.yaml"
    plan.write_text(QUICK_PLAN, encoding="utf-8")
    tables = {source: _csv(demo_landing, source) for source in ("firms", "financials", "participation", "exports")}
    firms = tables["firms"]
    one = landing_copy(demo_landing, root / "one", firms=firms.assign(legal_form="GmbH"))
    kept = set(firms["firm_id"].sample(frac=1 - DROPPED_SHARE, random_state=1))
    second = {source: table[table["firm_id"].isin(kept)] for source, table in tables.items()}
    years = sorted(second["exports"]["year"].astype(int).unique())
    missing_year = years[1]
    second["exports"] = second["exports"][second["exports"]["year"].astype(int) != missing_year]
    second["firms"] = second["firms"].assign(legal_form=[str(i % 3 + 1) for i in range(len(second["firms"]))])
    two = landing_copy(demo_landing, root / "two", **second)
    instance = dg.DagsterInstance.ephemeral()
    first_result, first_folder = materialise_delivery(one, root, str(plan), instance=instance)
    second_result, second_folder = materialise_delivery(two, root, str(plan), instance=instance)
    return {
        "first": first_result, "second": second_result, "one": one, "two": two, "instance": instance,
        "missing_year": missing_year, "keys": (first_folder.name, second_folder.name),
    }


def _checks(result, asset: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations() if c.asset_key.to_user_string() == asset}


def _value(evaluation, key):
    return evaluation.metadata[key].value


def test_both_runs_succeed_and_the_first_has_nothing_to_compare(two_deliveries):
    first, second = two_deliveries["first"], two_deliveries["second"]
    assert first.success, run_problems(first.all_events)
    assert second.success, run_problems(second.all_events)
    assert run_problems(second.all_events) == []  # drift does not stop a run: it warns
    for source in ("firms", "financials", "participation", "exports"):
        checks = _checks(first, f"clean_{source}")
        contract = load_contract(source)
        expected = {"schema_change", *(f"drift_{m.name}" for m in contract.drift.metrics)}
        assert expected <= set(checks)
        for name in expected:
            assert checks[name].passed and _value(checks[name], "previous_delivery") == "none"


def test_schema_change_warns_on_a_retyped_optional_column_and_lists_it(two_deliveries):
    first_key, _ = two_deliveries["keys"]
    check = _checks(two_deliveries["second"], "clean_firms")["schema_change"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert _value(check, "previous_delivery") == first_key
    assert _value(check, "retyped") == {"legal_form": ["string", "integer"]}
    assert _value(check, "added") == {} and _value(check, "removed") == {}
    assert (_value(check, "observed"), _value(check, "threshold")) == (1, 0)
    assert re.search(r"\| legal_form \| string +\| integer +\| no", _value(check, "differences"))
    for source in ("financials", "participation", "exports"):
        unchanged = _checks(two_deliveries["second"], f"clean_{source}")["schema_change"]
        assert unchanged.passed and _value(unchanged, "observed") == 0


def test_fewer_rows_fail_the_volume_checks_with_the_numbers(two_deliveries):
    one, two = two_deliveries["one"], two_deliveries["two"]
    before, after = len(_csv(one, "firms")), len(_csv(two, "firms"))
    check = _checks(two_deliveries["second"], "clean_firms")["drift_rows"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert _value(check, "observed") == pytest.approx((after - before) / before, abs=1e-4)
    assert (_value(check, "previous_value"), _value(check, "current_value")) == (before, after)
    assert (_value(check, "threshold"), _value(check, "warn_threshold"), _value(check, "fail_threshold")) == (0.25, 0.10, 0.25)
    # every source lost about 30 % of its firms on the years both deliveries span
    for source in ("financials", "participation", "exports"):
        firms = _checks(two_deliveries["second"], f"clean_{source}")["drift_firms"]
        assert not firms.passed and firms.severity == dg.AssetCheckSeverity.ERROR
        assert -0.40 < _value(firms, "observed") < -0.25


def test_a_year_missing_from_the_customs_extract_fails_the_per_year_checks(two_deliveries):
    year = two_deliveries["missing_year"]
    exports = _csv(two_deliveries["one"], "exports")
    first_year = exports[exports["year"].astype(int) == year]
    for name, previous in (("drift_exporting_firms_per_year", first_year["firm_id"].nunique()),
                           ("drift_export_value_per_year", first_year["export_value_eur"].astype(float).sum())):
        check = _checks(two_deliveries["second"], "clean_exports")[name]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert _value(check, "worst_group") == f"year {year}"
        assert _value(check, "observed") == -1.0
        assert _value(check, "previous_value") == pytest.approx(previous, rel=1e-6)
        assert _value(check, "current_value") == 0
        assert f"| year {year} |" in _value(check, "groups") and "fail" in _value(check, "groups")
    # the accounts still have that year: per year they lost only the dropped firms
    financials = _checks(two_deliveries["second"], "clean_financials")["drift_firms_per_year"]
    assert -0.40 < _value(financials, "observed") < -0.2


def test_failed_checks_between_deliveries_are_reported_as_warnings_of_a_successful_run(two_deliveries):
    warnings = "\n".join(run_warnings(two_deliveries["second"].all_events))
    assert "clean_exports / drift_exporting_firms_per_year" in warnings and "clean_firms / schema_change" in warnings


def test_freshness_check_puts_the_age_of_the_newest_delivery_beside_the_contract_interval(two_deliveries):
    from assets.checks import freshness_evaluation

    instance, (_, second_key) = two_deliveries["instance"], two_deliveries["keys"]
    check = _checks(two_deliveries["second"], "raw_participation")["freshness"]
    assert check.passed and _value(check, "newest_delivery") == second_key
    assert _value(check, "observed") < 1 and _value(check, "threshold") == pytest.approx(3 * 365.25 / 12, abs=0.1)
    received = _value(check, "received_at")
    overdue = freshness_evaluation(instance, "participation", now=received + 100 * 86400)
    assert not overdue.passed and overdue.severity == dg.AssetCheckSeverity.WARN
    assert overdue.metadata["observed"].value == 100.0 and "overdue" in overdue.description
    # the customs extract is due yearly: 100 days is fine
    assert freshness_evaluation(instance, "exports", now=received + 100 * 86400).passed


def test_freshness_sensor_reports_an_overdue_delivery_without_a_run(two_deliveries):
    from assets.checks import freshness_sensor

    instance = dg.DagsterInstance.ephemeral()
    result = freshness_sensor(dg.build_sensor_context(instance=instance))
    evaluations = {e.asset_key.to_user_string(): e for e in result.asset_events}
    assert set(evaluations) == {"raw_firms", "raw_financials", "raw_participation", "raw_exports"}
    assert not any(e.passed for e in evaluations.values())  # nothing delivered yet: every source is overdue
    assert evaluations["raw_exports"].metadata["received_at"].value == "never"


def test_schema_change_fails_when_a_required_column_goes_or_changes_type():
    change = schema_changes({"firm_id": "string", "year": "integer", "note": "string"},
                            {"firm_id": "integer", "note": "string", "extra": "date"}, required=["firm_id", "year"])
    assert change.severity == "ERROR"
    assert change.failing == ["removed year (integer)", "retyped firm_id: string → integer"]
    assert change.added == {"extra": "date"}
    warn = schema_changes({"a": "string"}, {"a": "string", "b": "number"}, required=["a"])
    assert warn.severity == "WARN" and warn.differences == ["added b (number)"]
    assert schema_changes({"a": "empty"}, {"a": "integer"}, required=[]).severity is None


def test_text_columns_read_as_their_narrowest_type():
    assert [text_logical_type(pd.Series(values)) for values in (
        ["1", " 2", ""], ["1.5", "2,25"], ["2020-01-31", "31.01.2020"], ["yes", "No"], ["GmbH", "1"], ["", None]
    )] == ["integer", "number", "date", "boolean", "string", "empty"]


def test_previous_delivery_is_the_latest_earlier_registered_one_with_the_table():
    registered = ["a", "b", "c", "d"]
    assert previous_delivery("d", registered, lambda key: key in {"a", "c"}) == "c"
    assert previous_delivery("c", registered, lambda key: key in {"a", "d"}) == "a"  # d came later
    assert previous_delivery("a", registered, lambda key: True) is None
    assert previous_delivery("x", registered, lambda key: key != "d") == "c"


def test_drift_compares_only_the_years_both_deliveries_span_and_judges_groups_by_size():
    contract = load_contract("participation")
    previous = pd.DataFrame({"firm_id": [f"F{i}" for i in range(60)], "service": ["advisory"] * 40 + ["grant"] * 20,
                             "start_date": pd.to_datetime(["2015-03-01"] * 20 + ["2016-03-01"] * 20 + ["2016-05-01"] * 20)})
    # 2017 is new (outside the common span: not a change); grants fell from 20 to 5
    current = pd.concat([previous.iloc[:40], previous.iloc[40:45],
                         previous.iloc[:10].assign(start_date=pd.Timestamp("2017-01-01"))])
    outcomes = {o.metric.name: o for o in drift_outcomes(previous, current, contract)}
    assert outcomes["rows"].years == (2015, 2016) and outcomes["rows"].observed == pytest.approx(-0.25)
    per_service = outcomes["participants_per_service_and_year"].table.set_index("group")
    assert per_service.loc["service grant, year 2016", "verdict"] == "fail"
    assert per_service.loc["service grant, year 2015", "verdict"] == "ok"  # neither had grants in 2015
    assert outcomes["participants_per_service_and_year"].severity == "ERROR"


def test_freshness_verdict_counts_days_from_the_delivery():
    from datetime import timedelta

    verdict = freshness_verdict(0.0, 40 * 86400.0, timedelta(days=30))
    assert not verdict.fresh and verdict.age_days == 40 and verdict.due_at == 30 * 86400
    assert freshness_verdict(None, 0.0, timedelta(days=1)).fresh is False


def test_every_check_puts_the_observed_value_beside_its_threshold(two_deliveries):
    evaluations = two_deliveries["second"].get_asset_check_evaluations()
    assert len(evaluations) > 40
    missing = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations
               if not {"observed", "threshold"} <= set(e.metadata)]
    assert missing == []
