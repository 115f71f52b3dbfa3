"""Customs transactions: the second form of the exports source, validated and summed out of core by DuckDB.

Each delivery format (CSV, gzip CSV, a folder of Parquet files) goes through the real Dagster
assets to the firm-year panel, which must equal the panel built from the same exports delivered
as the firm-year-destination file; bad shipments are quarantined with file, row, column and rule.
"""

import gzip
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from analyses.contracts import ContractError, load_contract
from analyses.contracts.transactions import stage_transactions
from tests.conftest import pipeline_resources
from tests.contract_landing import valid_tables

PANEL_STAGES = dg.AssetSelection.groups("ingestion", "contracts", "panel")
BAD_SHIPMENTS = {  # value to spoil -> (column, rule id)
    "value_eur": ("-12.5", "ranges.value_eur"),
    "destination": ("XX", "allowed_values.destination"),
    "hs6": ("84A989", "allowed_values.hs6"),
    "date": ("31.02.2019", "types.date"),
    "firm_id": ("99999", "referential_integrity.firm_id"),
}


def shipments(exports: pd.DataFrame) -> pd.DataFrame:
    """Every firm-year-destination export split into shipments (one to three) whose values add up to it."""
    rows = []
    for i, record in enumerate(exports.itertuples(index=False)):
        total, parts = float(record.export_value_eur), 1 + i % 3
        values = [round(total / parts, 2)] * (parts - 1)
        values.append(round(total - sum(values), 2))
        for k, value in enumerate(values):
            rows.append({"firm_id": record.firm_id, "date": f"{record.year}-{1 + (i + k) % 12:02d}-{1 + k * 9:02d}",
                         "destination": record.destination, "hs6": ("847989", "20130", "620342")[k],
                         "value_eur": f"{value:.2f}"})
    return pd.DataFrame(rows)


def with_bad_rows(table: pd.DataFrame) -> pd.DataFrame:
    """A spoiled copy of a shipment inserted at the positions 5, 10, …, one per rule (the good shipments stay)."""
    rows = table.to_dict("records")
    for k, (column, (value, _rule)) in enumerate(BAD_SHIPMENTS.items()):
        rows.insert(5 * (k + 1), {**rows[5 * (k + 1)], column: value})
    return pd.DataFrame(rows)


def write_delivery(folder: Path, form: str, transactions: pd.DataFrame | None) -> Path:
    """The three reference files and the exports as ``exports.csv`` or as transactions in ``form``."""
    tables = valid_tables()
    folder.mkdir(parents=True)
    for source in ("firms", "financials", "participation"):
        tables[source].to_csv(folder / f"{source}.csv", index=False)
    if form == "exports":
        tables["exports"].to_csv(folder / "exports.csv", index=False)
    elif form == "csv":
        transactions.to_csv(folder / "customs_transactions.csv", index=False)
    elif form == "csv.gz":
        with gzip.open(folder / "customs_transactions.csv.gz", "wt", encoding="utf-8", newline="") as handle:
            transactions.to_csv(handle, index=False, sep=";", decimal=",")
    else:
        parts = folder / "customs_transactions"
        parts.mkdir()
        typed = transactions.assign(value_eur=pd.to_numeric(transactions["value_eur"], errors="coerce"))
        half = len(typed) // 2
        typed.iloc[:half].to_parquet(parts / "part-0.parquet", index=False)
        typed.iloc[half:].to_parquet(parts / "part-1.parquet", index=False)
    return folder


def materialise_panel(landing: Path, root: Path):
    from analyses.deliveries import identify_delivery
    from pipelines.definitions import ALL_ASSETS
    from pipelines.partitions import deliveries

    resources = pipeline_resources(landing, root)
    delivery = identify_delivery(landing)
    resources["warehouse"].deliveries.register(delivery)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(deliveries.name, [delivery.key])
    result = dg.materialize(ALL_ASSETS, selection=PANEL_STAGES, resources=resources, instance=instance,
                            partition_key=delivery.key, raise_on_error=False)
    return result, root / "warehouse" / "deliveries" / delivery.key


@pytest.fixture(scope="module")
def exports_form_panel(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports_form")
    result, _ = materialise_panel(write_delivery(root / "landing", "exports", None), root)
    assert result.success
    return result.output_for_node("firm_year_panel", "firm_year_panel")


@pytest.mark.parametrize("form", ["csv", "csv.gz", "parquet"])
def test_transactions_in_each_format_reach_the_same_panel_as_the_exports_file(form, tmp_path, exports_form_panel):
    delivered = with_bad_rows(shipments(valid_tables()["exports"]))
    result, restricted = materialise_panel(write_delivery(tmp_path / "landing", form, delivered), tmp_path)
    assert result.success

    panel = result.output_for_node("firm_year_panel", "firm_year_panel")
    pd.testing.assert_frame_equal(panel, exports_form_panel, check_exact=False, rtol=1e-9)
    clean = result.output_for_node("validated_sources", "clean_exports")
    assert list(clean.columns) == ["firm_id", "year", "destination", "export_value_eur", "transactions"]
    assert clean["transactions"].sum() == len(delivered) - len(BAD_SHIPMENTS)

    quality = result.output_for_node("validated_sources", "data_quality")["sources"]["exports"]
    assert quality["form"] == "customs_transactions"
    assert quality["rows_in"] == len(delivered)
    assert quality["rows_in"] == quality["rows_clean"] + quality["rows_quarantined"] + quality["blank_lines_skipped"]
    assert quality["rows_quarantined"] == len(BAD_SHIPMENTS)
    assert quality["rows_aggregated"] == len(clean)
    for _column, (_value, rule) in BAD_SHIPMENTS.items():
        assert quality["rules"][rule] >= 1, rule

    quarantine = pd.read_csv(restricted / "quarantine" / "exports.csv", dtype=str, keep_default_na=False)
    assert len(quarantine) == len(BAD_SHIPMENTS)
    for k, (column, (value, rule)) in enumerate(BAD_SHIPMENTS.items()):
        position = 5 * (k + 1)
        row = quarantine.loc[quarantine["quarantine_reason"].str.contains(f"{column}", regex=False)].iloc[0]
        if form == "parquet":  # file and row inside it
            half = len(delivered) // 2
            assert row["source_file"] == ("part-0.parquet" if position < half else "part-1.parquet")
            assert int(row["source_row"]) == (position if position < half else position - half) + 2
        else:
            assert int(row["source_row"]) == position + 2  # the header is line 1
        if column != "firm_id":
            assert row[column].replace(",", ".") == value.replace(",", ".") or form == "parquet"
    reasons = " ".join(quarantine["quarantine_reason"])
    assert "value_eur must be >= 0" in reasons and "destination must be a code listed in countries.csv" in reasons
    assert "hs6 must match the pattern" in reasons and "date must be a date" in reasons and "firm_id not in firms" in reasons

    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    assert not checks[("clean_exports", "ranges")].passed
    assert checks[("clean_exports", "uniqueness")].passed  # no uniqueness rules in the transactions contract
    assert checks[("raw_exports", "structure")].passed


def test_blank_lines_decimal_commas_and_short_codes_are_accounted_for(tmp_path):
    path = tmp_path / "customs_transactions.csv"
    path.write_text(
        "firm_id;date;destination;hs6;value_eur\n"
        "F1;2019-01-05;de;20130;1.234,50\n"
        "\n"
        "F2;05.02.2019;FR;847989;12,5\n"
        ";;;;\n"
        "F3;2019-03-01;US;620342;48.200\n"
        "\n",
        encoding="utf-8",
    )
    raw, _ = stage_transactions(path, load_contract("customs_transactions"), tmp_path / "db" / "t.duckdb")
    assert (raw.rows_read, raw.blank_lines_skipped, raw.rows_delivered) == (3, 3, 6)
    assert raw.number_formats == {"value_eur": "comma"}  # 1.234,50 and 12,5 show a decimal comma
    import duckdb

    with duckdb.connect(str(raw.database), read_only=True) as con:
        assert con.sql("SELECT source_row FROM typed ORDER BY source_row").fetchall() == [(2,), (4,), (6,)]


def test_a_line_with_too_many_fields_stops_the_run_naming_the_line_but_not_its_content(tmp_path):
    path = tmp_path / "customs_transactions.csv"
    path.write_text("firm_id,date,destination,hs6,value_eur\nF1,2019-01-05,DE,020130,1\nSECRET-FIRM,2019-01-05,DE,020130,1,5\n")
    with pytest.raises(ContractError) as error:
        stage_transactions(path, load_contract("customs_transactions"), tmp_path / "t.duckdb")
    assert "line 3" in str(error.value) and "expected 5 fields, found 6" in str(error.value)
    assert "SECRET-FIRM" not in str(error.value)


def test_a_value_column_that_is_not_a_number_anywhere_fails_the_structure_check(tmp_path):
    path = tmp_path / "customs_transactions.csv"
    path.write_text("firm_id,date,destination,hs6,value_eur\nF1,2019-01-05,DE,020130,n/a\nF2,2019-01-05,DE,020130,tbd\n")
    raw, _ = stage_transactions(path, load_contract("customs_transactions"), tmp_path / "t.duckdb")
    assert [(p.rule, p.column) for p in raw.problems] == [("column type", "value_eur")]


def test_identifiers_are_pseudonymised_while_staging(tmp_path):
    from analyses.pseudonyms import Pseudonymiser

    path = tmp_path / "customs_transactions.csv"
    pd.DataFrame({"firm_id": ["FIRM-A", " FIRM-B", "FIRM-A"], "date": "2019-01-05", "destination": "DE",
                  "hs6": "020130", "value_eur": "1"}).to_csv(path, index=False)
    pseudonymiser = Pseudonymiser("k" * 32)
    raw, mapping = stage_transactions(path, load_contract("customs_transactions"), tmp_path / "t.duckdb",
                                      pseudonymiser.mapping)
    assert set(mapping) == {"FIRM-A", "FIRM-B"}  # identifiers as the contract reads them (trimmed)
    assert raw.database.read_bytes().find(b"FIRM-") == -1
    import duckdb

    with duckdb.connect(str(raw.database), read_only=True) as con:
        staged = [row[0] for row in con.sql("SELECT c0 FROM typed ORDER BY source_row").fetchall()]
    assert staged == [pseudonymiser.pseudonym("FIRM-A"), pseudonymiser.pseudonym("FIRM-B"), pseudonymiser.pseudonym("FIRM-A")]


def test_exports_and_transactions_together_are_refused(tmp_path):
    from analyses.contracts import find_source_file

    landing = write_delivery(tmp_path / "landing", "csv", shipments(valid_tables()["exports"]))
    valid_tables()["exports"].to_csv(landing / "exports.csv", index=False)
    with pytest.raises(ContractError, match="expected exactly one"):
        find_source_file(landing, "exports")
