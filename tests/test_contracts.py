"""Contract engine: contracts and reference list, parsing, typed outputs, accounting, volume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses.contracts import (
    SOURCES,
    ContractError,
    check_structure,
    country_codes,
    data_quality_summary,
    failure_summary,
    find_source_file,
    is_eu_member,
    load_contract,
    load_contracts,
    load_countries,
    read_source,
    row_rule_groups,
    write_quarantine,
)
from analyses.contracts.dictionary import render
from analyses.contracts.parsing import number_format, parse_boolean, parse_date, parse_integer, parse_number, parse_string
from analyses.contracts.synthetic import _REGIONS, write_synthetic_landing
from analyses.demo_data import NUTS2_WEIGHTS
from analyses.panel import build_firm_year_panel
from tests.contract_landing import run_contracts, valid_tables, write_landing

REPO = Path(__file__).resolve().parents[1]


def test_contracts_declare_the_v1_inputs():
    contracts = load_contracts()
    assert list(contracts) == list(SOURCES)
    assert contracts["firms"].column_names == ["firm_id", "nace2", "region", "founded_year", "in_cluster"]
    assert contracts["financials"].column_names == ["firm_id", "year", "employees", "turnover_eur"]
    assert contracts["participation"].column_names == [
        "firm_id", "programme", "service", "start_date", "end_date", "advisory_hours", "grant_eur", "network_events",
    ]
    assert contracts["exports"].column_names == ["firm_id", "year", "destination", "export_value_eur"]
    assert {source: contract.version for source, contract in contracts.items()} == {
        "firms": "1.1.0", "financials": "1.1.0", "participation": "1.1.0", "exports": "1.2.0",
    }
    for contract in contracts.values():
        assert contract.id.endswith(contract.source)
        assert contract.quarantine_threshold == 0.05 and contract.freshness and contract.owner
    assert contracts["financials"].unique_combinations == [("firm_id", "year")]
    assert contracts["participation"].not_before == [("end_date", "start_date")]
    (accounts,) = contracts["exports"].row_references
    assert (accounts.columns, accounts.source, accounts.reference_columns) == (("firm_id", "year"), "financials", ("firm_id", "year"))
    assert accounts.reason == "no annual accounts (financials) for this firm and year"
    assert all(not contract.row_references for source, contract in contracts.items() if source != "exports")


def test_unknown_contract_rule_is_refused(tmp_path: Path):
    text = (REPO / "data_contracts" / "exports.yaml").read_text().replace("rule: validValues", "rule: mostlyValid")
    (tmp_path / "exports.yaml").write_text(text)
    with pytest.raises(ContractError, match="unknown quality rule 'mostlyValid'"):
        load_contract("exports", tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("to: [financials.firm_id, financials.year]", "to: [financials.firm_id]"), "'to' must name as many <source>.<column> as 'from'"),
        (("from: [firm_id, year]", "from: [firm_id, yr]"), r"relationship names unknown column\(s\) \('firm_id', 'yr'\)"),
        (("        reason: no annual accounts (financials) for this firm and year\n", ""), "needs a 'reason'"),
    ],
)
def test_malformed_row_relationship_is_refused(tmp_path: Path, edit, message):
    text = (REPO / "data_contracts" / "exports.yaml").read_text()
    assert edit[0] in text
    (tmp_path / "exports.yaml").write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(ContractError, match=message):
        load_contract("exports", tmp_path)


def test_country_list_has_all_249_codes_and_eu_membership_by_year():
    countries = load_countries()
    assert len(countries) == 249 and countries["iso2"].is_unique
    assert countries["iso2"].str.fullmatch("[A-Z]{2}").all()
    assert {"NA", "GB", "HR", "XK"} & set(country_codes()) == {"NA", "GB", "HR"}
    # the UK left on 31 January 2020 but stayed in the single market through 2020 (issue 9)
    assert is_eu_member("GB", 2020) and not is_eu_member("GB", 2021)
    assert not is_eu_member("HR", 2012) and is_eu_member("hr", 2013)
    assert not is_eu_member("CH", 2015) and not is_eu_member("NO", 2015)
    members = {year: sum(is_eu_member(code, year) for code in countries["iso2"]) for year in (1995, 2004, 2012, 2020, 2021)}
    assert members == {1995: 15, 2004: 25, 2012: 27, 2020: 28, 2021: 27}
    with pytest.raises(ValueError, match="'UK' is not an ISO 3166-1 alpha-2 code"):
        is_eu_member("UK", 2019)


@pytest.mark.parametrize(
    ("source", "edit", "message"),
    [
        ("firms", ("          zeroPadTo: 2", "          zeroPadTo: two"), "zeroPadTo needs a string column and a whole number"),
        ("financials", ("          minimum: 0\n        examples: [12]", "          minimum: 0\n          zeroPadTo: 3\n        examples: [12]"),
         "property employees: zeroPadTo needs a string column"),
        ("firms", ("        required: true\n        unique: true", "        required: true\n        unique: true\n        logicalTypeOptions:\n          notAfterDeliveryYear: true"),
         "property firm_id: notAfterDeliveryYear applies to integer"),
    ],
)
def test_code_width_and_delivery_year_options_are_checked(tmp_path: Path, source, edit, message):
    text = (REPO / "data_contracts" / f"{source}.yaml").read_text()
    assert edit[0] in text
    (tmp_path / f"{source}.yaml").write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ContractError, match=message):
        load_contract(source, tmp_path)


def test_nuts2_list_is_the_2021_classification_and_covers_every_region_we_generate():
    contract = load_contract("firms")
    assert contract.column("region").valid_values_source == "nuts2_2021.csv#nuts2"
    nuts = pd.read_csv(REPO / "data_contracts" / "nuts2_2021.csv", dtype=str, keep_default_na=False)
    assert list(nuts.columns) == ["nuts2", "country", "name"] and nuts["nuts2"].is_unique
    assert nuts["nuts2"].str.fullmatch("[A-Z]{2}[A-Z0-9]{2}").all() and nuts["name"].str.len().gt(0).all()
    assert (nuts["nuts2"].str[:2] == nuts["country"]).all()
    eu27 = {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE", "IT", "LT", "LU",
            "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}
    per_country = nuts["country"].value_counts()
    assert int(per_country[list(eu27)].sum()) == 242  # NUTS 2021: 242 level-2 regions in the EU-27
    assert (per_country["DE"], per_country["FR"], per_country["IT"], per_country["PL"], per_country["HU"]) == (38, 27, 21, 17, 8)
    assert {"HR02", "HR05", "HR06", "NL35", "NL36", "PL91", "PL92", "FI1B", "HU11", "HU12"} <= set(nuts["nuts2"])
    assert not {"HR04", "NL31", "NL33", "PL12", "HU10", "UKI3", "PT19"} & set(nuts["nuts2"])  # older or newer versions
    fixtures = set(valid_tables()["firms"]["region"]) | set(_REGIONS) | set(NUTS2_WEIGHTS)
    assert fixtures <= set(nuts["nuts2"])
    assert "Eurostat" in (REPO / "data_contracts" / "nuts2_2021.PROVENANCE.md").read_text(encoding="utf-8")


def test_data_dictionary_is_up_to_date():
    committed = (REPO / "data_contracts" / "DATA_DICTIONARY.md").read_text(encoding="utf-8")
    assert committed == render(), "run `make data-dictionary` and commit data_contracts/DATA_DICTIONARY.md"
    for contract in load_contracts().values():
        assert f"version **{contract.version}**" in committed
        for column in contract.columns:
            assert f"| `{column.name}` |" in committed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (["1234", "-3", "0.5", "1e5", ""], [1234.0, -3.0, 0.5, 1e5, None]),
        (["1,234.50", "12,500", "7"], [1234.5, 12500.0, 7.0]),
        (["1.234,50", "12,5", "7"], [1234.5, 12.5, 7.0]),
        (["1 234,50", "1\u00a0234,50", "0,5"], [1234.5, 1234.5, 0.5]),
        (["1.234.567,89", "48.200"], [1234567.89, 48200.0]),
        (["1,234,567.89", "48,200"], [1234567.89, 48200.0]),
        (["48.200", "12.5"], [48.2, 12.5]),
        (["0.500", "1.500"], [0.5, 1.5]),  # a leading 0 is never a thousands group: the dot is decimal
        (["1.234.567", "2.500"], [1234567.0, 2500.0]),  # two dots can only be thousands separators
    ],
)
def test_parse_number_decides_the_separators_from_all_values_of_the_column(text, expected):
    values, unreadable, undecided = parse_number(pd.Series(text, dtype=object))
    assert not unreadable.any() and not undecided.any()
    assert [None if pd.isna(v) else v for v in values] == expected


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        (["1.234,5"], "comma"), (["1,234.5"], "point"), (["1.5", "1.234,5", "2,5"], "comma"),
        (["48.200", "1.500"], None), (["48,200"], None), (["1000", ""], None), (["12.5", "12,5"], None),
    ],
)
def test_number_format_is_a_function_of_all_values(text, fmt):
    assert number_format(pd.Series(text, dtype=object)) == fmt


def test_ambiguous_separators_without_evidence_are_not_guessed():
    text = pd.Series(["48.200", "1,500", "-2.125", "1000", "12.5,3", "", "1.234.567"], dtype=object)
    values, unreadable, undecided = parse_number(text.iloc[:6])
    assert undecided.tolist() == [True, True, True, False, False, False]
    assert unreadable.tolist() == [False, False, False, False, True, False]
    assert values.isna().tolist() == [True, True, True, False, True, True]
    # one value with two dots decides the column: the other dots are thousands separators too
    values, unreadable, undecided = parse_number(text.iloc[[0, 6]])
    assert values.tolist() == [48200.0, 1234567.0] and not undecided.any()


def test_native_numbers_are_read_as_stored_and_do_not_decide_the_column():
    text = pd.Series(["2.125", "1e-05", "48.200", "1.234,5"], dtype=object)
    native = np.array([True, True, False, False])
    values, unreadable, undecided = parse_number(text, native)
    assert values.tolist() == [2.125, 1e-05, 48200.0, 1234.5] and not unreadable.any() and not undecided.any()
    values, unreadable, undecided = parse_number(text.iloc[:3], native[:3])
    assert undecided.tolist() == [False, False, True]


@pytest.mark.parametrize("bad", ["abc", "12abc", "1.2.3,4,5", "nan", "inf", "€100", "--1"])
def test_parse_number_marks_unreadable_cells(bad):
    values, unreadable, undecided = parse_number(pd.Series(["1", bad], dtype=object))
    assert unreadable.tolist() == [False, True] and np.isnan(values.iloc[1]) and not undecided.any()


def test_parse_integer_accepts_spreadsheet_floats_but_not_fractions():
    values, unreadable, undecided = parse_integer(pd.Series(["2019", "2019.0", "12.5", ""], dtype=object))
    assert unreadable.tolist() == [False, False, True, False] and not undecided.any()
    assert values.iloc[:2].tolist() == [2019.0, 2019.0]
    values, unreadable, undecided = parse_integer(pd.Series(["1.500", "250"], dtype=object))
    assert undecided.tolist() == [True, False] and not unreadable.any()


def test_parse_string_zero_pads_fixed_width_codes():
    values, unreadable = parse_string(pd.Series(["1", "1.0", " 7 ", "10", "10.0", "123", "1A", ""], dtype=object), None, 2)
    assert values.tolist() == ["01", "01", "07", "10", "10", "123", "1A", None] and not unreadable.any()


def test_parse_date_accepts_iso_and_dotted_and_rejects_impossible_dates():
    text = pd.Series(["2020-01-31", "31.01.2020", "1.2.2020", "2020-01-31T10:00:00", "2020-02-30", "31/01/2020", ""])
    values, unreadable = parse_date(text)
    assert unreadable.tolist() == [False, False, False, False, True, True, False]
    assert values.iloc[:4].tolist() == [pd.Timestamp("2020-01-31")] * 2 + [pd.Timestamp("2020-02-01"), pd.Timestamp("2020-01-31")]


def test_parse_boolean_variants():
    values, unreadable = parse_boolean(pd.Series(["TRUE", "no", "1", "0", "Yes", "", "maybe"]))
    assert values.tolist()[:5] == [True, False, True, False, True] and values.iloc[5] is None
    assert unreadable.tolist() == [False] * 6 + [True]


def test_clean_tables_have_the_dtypes_the_panel_builder_relies_on(tmp_path: Path):
    tables = valid_tables()
    tables["firms"]["contact"] = "x"
    raws, results = run_contracts(write_landing(tmp_path, tables))
    dtypes = {source: {c: str(t) for c, t in result.clean.dtypes.items()} for source, result in results.items()}
    assert dtypes["firms"] == {
        "firm_id": "object", "nace2": "object", "region": "object", "founded_year": "int64",
        "in_cluster": "bool", "contact": "object", "source_row": "int64",
    }
    assert dtypes["financials"] == {
        "firm_id": "object", "year": "int64", "employees": "int64", "turnover_eur": "float64", "source_row": "int64",
    }
    assert dtypes["participation"] == {
        "firm_id": "object", "programme": "object", "service": "object", "start_date": "datetime64[ns]",
        "end_date": "datetime64[ns]", "advisory_hours": "float64", "grant_eur": "float64", "network_events": "float64",
        "source_row": "int64",
    }
    assert dtypes["exports"] == {
        "firm_id": "object", "year": "int64", "destination": "object", "export_value_eur": "float64", "source_row": "int64",
    }
    participation = results["participation"].clean
    assert participation["end_date"].isna().sum() == 8  # ongoing episodes stay NaT
    assert participation["grant_eur"].notna().sum() == 10  # not applicable stays NaN
    assert results["firms"].clean["in_cluster"].tolist()[:6] == [True, False, True, False, True, False]
    assert "NA" in set(results["exports"].clean["destination"])  # Namibia, not a missing value
    assert results["exports"].clean.attrs["contract_version"] == "1.2.0"


def test_export_rows_without_clean_accounts_are_quarantined_not_lost_in_the_panel(tmp_path: Path):
    """Every exports row the panel could not place (no clean firm-year) must be quarantined, with the reason."""
    tables = valid_tables()
    # firm 00000 exports in 2018 and 2020: drop its 2018 accounts, make its 2020 accounts unreadable
    tables["financials"] = tables["financials"].drop(index=1).reset_index(drop=True)
    tables["financials"].loc[2, "employees"] = "about 20"
    raws, results = run_contracts(write_landing(tmp_path, tables))
    exports = results["exports"]
    assert exports.rule_counts["referential_integrity.firm_id+year"] == 2 == exports.rows_quarantined
    assert exports.quarantine[["firm_id", "year"]].values.tolist() == [["00000", "2018"], ["00000", "2020"]]
    assert set(exports.quarantine["quarantine_reason"]) == {
        "referential_integrity: no annual accounts (financials) for this firm and year"
    }
    referential = next(check for check in exports.checks if check.name == "referential_integrity")
    assert not referential.passed and referential.metadata["rows_failing referential_integrity.firm_id+year"] == 2
    assert referential.metadata["example_value"] == "firm_id=00000, year=2018"
    summary = failure_summary(results)
    assert "column firm_id, year: 2 row(s), rule 'referential_integrity: no annual accounts" in summary
    assert summary.endswith("so fix the first file first.")  # the unreadable accounts row cascades
    clean = {source: result.clean for source, result in results.items()}
    panel = build_firm_year_panel(clean["firms"], clean["financials"], clean["participation"], clean["exports"]).panel
    assert panel["export_value_eur"].sum() == pytest.approx(clean["exports"]["export_value_eur"].sum())
    summary_rows = data_quality_summary(raws, results)["sources"]["exports"]
    assert (summary_rows["rows_in"], summary_rows["rows_clean"], summary_rows["rows_quarantined"]) == (80, 78, 2)


def test_failure_summary_of_all_sources_lists_each_file_then_the_cascade_note(tmp_path: Path):
    tables = valid_tables()
    tables["firms"].loc[0, "nace2"] = "1A"  # firm 00000 quarantined: its accounts, episode and exports follow
    raws, results = run_contracts(write_landing(tmp_path, tables))
    lines = failure_summary(results).splitlines()
    headlines = [line for line in lines if not line.startswith("  - ")]
    assert [line.split(":")[0] for line in headlines[:-1]] == ["firms.csv", "financials.csv", "participation.csv", "exports.csv"]
    assert headlines[-1].startswith("Files are listed in dependency order") and headlines[-1] == lines[-1]
    assert headlines[-2].startswith("exports.csv: 2 of 80 rows quarantined (2.5%, limit 5%) - accepted without these rows.")
    # one source alone cannot know that its references were quarantined upstream
    assert "dependency order" not in failure_summary({"exports": results["exports"]})


def test_a_row_breaking_two_rules_is_counted_once_and_names_both(tmp_path: Path):
    tables = valid_tables()
    tables["exports"].loc[5, ["destination", "export_value_eur"]] = ["ZZ", "-1"]
    raws, results = run_contracts(write_landing(tmp_path, tables))
    exports = results["exports"]
    assert (exports.rows_quarantined, exports.rule_counts["ranges.export_value_eur"], exports.rule_counts["allowed_values.destination"]) == (1, 1, 1)
    assert exports.quarantine["quarantine_reason"].iloc[0] == (
        "ranges: export_value_eur must be >= 0; allowed_values: destination must be a code listed in countries.csv (e.g. DE, US)"
    )
    assert exports.quarantine["source_row"].iloc[0] == 7


def test_checks_match_the_declared_rule_groups_and_carry_json_metadata(tmp_path: Path):
    tables = valid_tables()
    tables["exports"].loc[3, "export_value_eur"] = "-250"
    raws, results = run_contracts(write_landing(tmp_path, tables))
    for source, result in results.items():
        assert [check.name for check in result.checks] == row_rule_groups(result.contract)
        for check in result.checks:
            assert all(isinstance(value, (str, int, float)) for value in check.metadata.values())
            json.dumps(check.metadata)
    ranges = next(check for check in results["exports"].checks if check.name == "ranges")
    assert (ranges.passed, ranges.blocking, ranges.severity, ranges.observed, ranges.threshold) == (False, False, "WARN", 1, 0)
    assert ranges.description == "1 row(s) quarantined: 1 with export_value_eur must be >= 0 (e.g. '-250' in row 5); threshold 0"
    assert (ranges.metadata["example_value"], ranges.metadata["example_row"]) == ("-250", 5)
    share = next(check for check in results["exports"].checks if check.name == "quarantine_share")
    assert (share.passed, share.blocking, share.observed, share.threshold) == (False, False, 0.0125, 0.05)


def test_data_quality_summary_accounts_for_every_row(tmp_path: Path):
    tables = valid_tables()
    tables["exports"].loc[3, "export_value_eur"] = "-250"
    raws, results = run_contracts(write_landing(tmp_path / "landing", tables))
    summary = json.loads(json.dumps(data_quality_summary(raws, results)))
    exports = summary["sources"]["exports"]
    assert exports["rows_in"] == 80 and exports["rows_clean"] == 79 and exports["rows_quarantined"] == 1
    assert exports["rules"]["ranges.export_value_eur"] == 1 and sum(exports["rules"].values()) == 1
    assert exports["contract_version"] == "1.2.0" and exports["contract_id"] == "urn:export-impact:contract:exports"
    assert (exports["format"], exports["encoding"], exports["delimiter"]) == ("csv", "utf-8", ",")
    assert exports["quarantine_file"] == "quarantine/exports.csv"
    modified = pd.Timestamp((tmp_path / "landing" / "exports.csv").stat().st_mtime, unit="s", tz="UTC")
    assert abs(pd.Timestamp(exports["file_modified"]) - modified) < pd.Timedelta("1ms")  # its year bounds founded_year (the delivery year)
    for source, entry in summary["sources"].items():
        assert entry["rows_in"] == entry["rows_clean"] + entry["rows_quarantined"] + entry["blank_lines_skipped"]
        assert entry["blank_lines_skipped"] == 0
        assert entry["file"] == f"{source}.csv" and str(tmp_path) not in json.dumps(entry)  # published: no paths
    firms_quarantine = write_quarantine(results["firms"], tmp_path / "out")
    assert firms_quarantine.read_text().strip() == "firm_id,nace2,region,founded_year,in_cluster,source_row,quarantine_reason"
    assert failure_summary({"firms": results["firms"]}).startswith("All delivered rows passed")


def test_blank_lines_count_as_delivered_rows_and_are_accounted_for(tmp_path: Path):
    landing = write_landing(tmp_path)
    lines = (landing / "exports.csv").read_text().splitlines()
    (landing / "exports.csv").write_text("\n".join(lines[:3] + ["", ",,,", ""] + lines[3:] + [""]) + "\n")
    raws, results = run_contracts(landing)
    exports = results["exports"]
    assert (exports.rows_in, exports.blank_lines_skipped, exports.rows_clean, exports.rows_quarantined) == (84, 4, 80, 0)
    entry = data_quality_summary(raws, results)["sources"]["exports"]
    assert (entry["rows_in"], entry["blank_lines_skipped"], entry["rows_clean"]) == (84, 4, 80)
    # blank lines do not dilute the quarantine share
    tables = valid_tables()
    tables["exports"].loc[3, "export_value_eur"] = "-250"
    write_landing(landing, {"exports": tables["exports"]})
    lines = (landing / "exports.csv").read_text().splitlines()
    (landing / "exports.csv").write_text("\n".join(lines + [""] * 20) + "\n")
    exports = run_contracts(landing)[1]["exports"]
    assert (exports.rows_in, exports.blank_lines_skipped, exports.quarantine_share) == (100, 20, 1 / 80)


def test_row_accounting_that_does_not_add_up_names_source_and_numbers(tmp_path: Path):
    tables = valid_tables()
    tables["exports"].loc[3, "export_value_eur"] = "-250"
    raws, results = run_contracts(write_landing(tmp_path, tables))
    results["exports"].clean = results["exports"].clean.iloc[1:]  # a row lost after validation
    expected = "exports.csv: row accounting does not add up: 80 rows delivered, but 78 clean + 1 quarantined + 0 blank lines"
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        data_quality_summary(raws, results)
    raws, results = run_contracts(tmp_path)
    raws["exports"].frame = raws["exports"].frame.iloc[:-1]  # results of another delivery
    with pytest.raises(RuntimeError, match=r"exports\.csv: the validation result counts 80 rows delivered but the file as read has 79"):
        data_quality_summary(raws, results)


def test_report_lineage_verifies_inputs_at_their_locations_without_publishing_them(tmp_path: Path, monkeypatch):
    from analyses.reporting.lineage import input_rows  # the reporting package is heavy; only this test needs it

    raws, results = run_contracts(write_landing(tmp_path / "landing"))
    quality = json.loads(json.dumps(data_quality_summary(raws, results)))
    # what the report asset records: the bare file name and the hash
    lineage = {
        "run_id": "r1", "git_commit": "unknown", "generated_at": "2026-11-27T10:00:00+00:00",
        "inputs": {source: {"file": entry["file"], "sha256": entry["sha256"]} for source, entry in quality["sources"].items()},
        "contract_versions": {source: entry["contract_version"] for source, entry in quality["sources"].items()},
    }
    locations = {source: raw.path for source, raw in raws.items()}  # the delivery's manifest, never printed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rows = {row["source"]: row for row in input_rows(lineage, quality, locations)}
    assert {source: row["status"] for source, row in rows.items()} == {source: "matches file on disk" for source in SOURCES}
    assert rows["exports"]["file"] == "exports.csv" and str(tmp_path) not in json.dumps(rows)
    (tmp_path / "landing" / "exports.csv").write_text("firm_id,year,destination,export_value_eur\n", encoding="utf-8")
    assert input_rows(lineage, quality, locations)[0]["status"].startswith("MISMATCH")
    (tmp_path / "landing" / "firms.csv").unlink()
    assert {row["source"]: row["status"] for row in input_rows(lineage, quality, locations)}["firms"] == (
        "file not available to verify")


def test_structure_check_outcome_describes_the_problem(tmp_path: Path):
    tables = valid_tables()
    write_landing(tmp_path, {"financials": tables["financials"].drop(columns="employees")})
    contract = load_contract("financials")
    outcome = check_structure(read_source(tmp_path / "financials.csv", contract), contract)
    assert (outcome.name, outcome.passed, outcome.blocking, outcome.severity, outcome.observed) == ("structure", False, True, "ERROR", 1)
    assert outcome.description == (
        "financials.csv, column employees: required columns: missing employees; found columns firm_id, year, turnover_eur; "
        "expected firm_id, year, employees, turnover_eur"
    )
    write_landing(tmp_path, {"financials": tables["financials"]})
    assert check_structure(read_source(tmp_path / "financials.csv", contract), contract).passed


def test_two_files_for_one_source_are_ambiguous(tmp_path: Path):
    write_landing(tmp_path)
    valid_tables()["firms"].to_parquet(tmp_path / "firms.parquet")
    with pytest.raises(ContractError, match=r"found 2 files for firms \(firms.csv, firms.parquet\)"):
        find_source_file(tmp_path, "firms")
    with pytest.raises(ContractError, match="landing directory .* does not exist"):
        find_source_file(tmp_path / "nowhere", "firms")


def test_excel_dates_and_parquet_types_are_read_as_text_then_typed(tmp_path: Path):
    write_landing(tmp_path)
    participation = valid_tables()["participation"]
    (tmp_path / "participation.csv").unlink()
    typed = participation.assign(
        start_date=pd.Timestamp("2018-03-01"), grant_eur=pd.to_numeric(participation["grant_eur"]).astype("float64")
    )
    typed.to_excel(tmp_path / "participation.xlsx", index=False)
    raws, results = run_contracts(tmp_path)
    assert raws["participation"].frame["start_date"].iloc[0] == "2018-03-01"
    assert results["participation"].rows_quarantined == 0
    assert results["participation"].clean["grant_eur"].sum() == 150000.0


def test_importing_and_reading_does_not_import_great_expectations(tmp_path: Path):
    write_landing(tmp_path)
    code = (
        "import sys; from pathlib import Path; from analyses.contracts import *\n"
        f"raw = read_source(Path({str(tmp_path / 'firms.csv')!r}), load_contract('firms'))\n"
        "assert check_structure(raw, load_contract('firms')).passed\n"
        "assert 'great_expectations' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _validate_volume(tmp_path: Path, export_rows: int) -> float:
    landing = write_synthetic_landing(tmp_path, firms=2_000, export_rows=export_rows)
    started = time.perf_counter()
    raws, results = run_contracts(landing)
    elapsed = time.perf_counter() - started
    exports = results["exports"]
    assert exports.rows_in == export_rows == exports.rows_clean
    assert all(result.rows_quarantined == 0 for result in results.values())
    assert exports.clean["export_value_eur"].dtype == "float64" and exports.clean["firm_id"].str.len().eq(6).all()
    return elapsed


def test_100k_row_valid_exports_file(tmp_path: Path):
    assert _validate_volume(tmp_path, 100_000) < 60


@pytest.mark.slow
def test_1m_row_valid_exports_file(tmp_path: Path):
    assert _validate_volume(tmp_path, 1_000_000) < 120


def test_xlsx_sheet_can_be_configured_in_the_contract(tmp_path: Path):
    text = (REPO / "data_contracts" / "firms.yaml").read_text().replace(
        "customProperties:\n", "customProperties:\n  - property: sheet\n    value: Register\n", 1
    )
    (tmp_path / "firms.yaml").write_text(text)
    contract = load_contract("firms", tmp_path)
    assert contract.sheet == "Register"
    workbook = tmp_path / "firms.xlsx"
    with pd.ExcelWriter(workbook) as writer:
        pd.DataFrame({"note": ["exported from CRM"]}).to_excel(writer, sheet_name="Notes", index=False)
        valid_tables()["firms"].to_excel(writer, sheet_name="Register", index=False)
    raw = read_source(workbook, contract)
    assert raw.frame["firm_id"].tolist()[:2] == ["00000", "00001"] and raw.format == "xlsx"
    pd.DataFrame({"note": ["x"]}).to_excel(workbook, sheet_name="Notes", index=False)
    with pytest.raises(ContractError, match="firms.xlsx: sheet: no sheet 'Register'; the workbook has Notes"):
        read_source(workbook, contract)
