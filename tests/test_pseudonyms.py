"""Pseudonymised firm identifiers: keyed at ingestion, never stored, logged or published as delivered."""

import re
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster._serdes import serialize_value

from analyses.pseudonyms import Pseudonymiser, PseudonymKeyError, check_fingerprint, load_key
from tests.conftest import TEST_PSEUDONYM_KEY, materialise_delivery, pipeline_resources
from tests.contract_landing import write_landing

DEMO_ID = re.compile(rb"F\d{6}")  # the demo register's identifiers; pseudonyms are "p" + lowercase hex


def found_identifiers(data: bytes, identifiers: set[str]) -> set[str]:
    return {match.decode() for match in DEMO_ID.findall(data)} & identifiers


def scan_folder(folder: Path, identifiers: set[str]) -> dict[str, set[str]]:
    """Every delivered identifier found in a file under ``folder``: Parquet and DuckDB cells read as
    text (their pages may be compressed), every other file byte by byte (PDF text is the HTML's)."""
    hits = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            data = "\n".join("\n".join(map(str, column.to_pylist())) for column in table.columns).encode()
        elif path.suffix == ".duckdb":
            with duckdb.connect(str(path), read_only=True) as con:
                tables = [row[0] for row in con.sql("SHOW TABLES").fetchall()]
                data = "\n".join(str(con.sql(f'SELECT * FROM "{table}"').fetchall()) for table in tables).encode()
        elif path.suffix == ".pdf":
            continue
        else:
            data = path.read_bytes()
        found = found_identifiers(data, identifiers)
        if found:
            hits[str(path.relative_to(folder))] = found
    return hits


def as_transactions(landing: Path) -> None:
    """Replace the demo's exports.csv by the same exports as shipment-level customs transactions."""
    exports = pd.read_csv(landing / "exports.csv", dtype=str, keep_default_na=False)
    transactions = pd.DataFrame({
        "firm_id": exports["firm_id"], "date": exports["year"] + "-06-30", "destination": exports["destination"],
        "hs6": "847989", "value_eur": exports["export_value_eur"],
    })
    transactions.to_csv(landing / "customs_transactions.csv", index=False)
    (landing / "exports.csv").unlink()


def test_no_delivered_identifier_reaches_the_warehouse_outputs_or_event_log(tmp_path):
    from analyses.demo_data import write_demo_data

    landing = tmp_path / "landing"
    write_demo_data(landing, n_firms=1_000, seed=11)
    as_transactions(landing)
    identifiers = set()
    for name in ("firms", "financials", "participation", "customs_transactions"):
        identifiers |= set(pd.read_csv(landing / f"{name}.csv", dtype=str)["firm_id"])
    assert scan_folder(landing, identifiers)  # the scan does find identifiers where they are
    plan = tmp_path / "plan.yaml"
    plan.write_text("bootstrap_iterations: 99\noutcomes: [exporter]\nlinkage_table: true\n", encoding="utf-8")
    (tmp_path / "instance").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "instance"))
    result, published = materialise_delivery(landing, tmp_path, str(plan), instance=instance)
    assert result.success
    assert (published / "impact_report.html").is_file()

    assert scan_folder(tmp_path / "warehouse", identifiers) == {}
    assert scan_folder(tmp_path / "output", identifiers) == {}
    records = instance.all_logs(result.run_id)
    assert len(records) > 50
    assert found_identifiers("\n".join(serialize_value(record) for record in records).encode(), identifiers) == set()
    assert scan_folder(tmp_path / "instance", identifiers) == {}  # event log database and captured logs

    linkage = pd.read_csv(next((tmp_path / "vault" / "linkage").glob("*/firms.csv")), dtype=str)
    firms = pd.read_csv(landing / "firms.csv", dtype=str)
    assert set(linkage["firm_id"]) == set(firms["firm_id"])
    panel = result.output_for_node("firm_year_panel", "firm_year_panel")
    assert set(panel["firm_id"]) <= set(linkage["pseudonym"])
    key = Pseudonymiser(TEST_PSEUDONYM_KEY)
    assert all(key.pseudonym(firm) == pseudonym for firm, pseudonym in linkage.itertuples(index=False))


def materialise_raw(landing: Path, root: Path, key: str, instance=None):
    """Materialise the raw assets of the delivery in ``landing`` with pseudonymisation ``key`` ('' = vault's)."""
    from analyses.deliveries import identify_delivery
    from pipelines.definitions import ALL_ASSETS
    from pipelines.partitions import deliveries
    from pipelines.resources import PseudonymKey

    resources = pipeline_resources(landing, root)
    resources["pseudonyms"] = PseudonymKey(key=key, vault_dir=str(root / "vault"))
    delivery = identify_delivery(landing)
    resources["warehouse"].deliveries.register(delivery)
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(deliveries.name, [delivery.key])
    return dg.materialize(ALL_ASSETS, selection=dg.AssetSelection.groups("ingestion"), resources=resources,
                          instance=instance, partition_key=delivery.key, raise_on_error=False)


def failure_message(result) -> str:
    return " ".join(str(event.event_specific_data.error.message) for event in result.all_events
                    if event.event_type_value == "STEP_FAILURE")


def test_a_generated_key_is_announced_kept_and_a_changed_or_lost_key_stops_the_run(tmp_path):
    landing = write_landing(tmp_path / "q3")
    first = materialise_raw(landing, tmp_path, key="")
    assert first.success
    key_file = tmp_path / "vault" / "pseudonym.key"
    assert key_file.is_file() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    generated = Pseudonymiser(key_file.read_text().strip())
    firms = first.output_for_node("raw_firms").frame
    exports = first.output_for_node("raw_exports").frame
    assert list(firms["firm_id"]) == [generated.pseudonym(f"{i:05d}") for i in range(40)]
    assert set(exports["firm_id"]) <= set(firms["firm_id"])  # the same pseudonym in every source
    assert not (tmp_path / "vault" / "linkage").exists()  # only when the plan asks

    later = write_landing(tmp_path / "q4")  # another delivery, same key: the same pseudonyms
    (later / "participation.csv").write_text((landing / "participation.csv").read_text().replace("Go International", "Go Far"))
    again = materialise_raw(later, tmp_path, key="")
    assert again.success
    assert list(again.output_for_node("raw_firms").frame["firm_id"]) == list(firms["firm_id"])

    changed = materialise_raw(later, tmp_path, key="another-key-of-the-agency-0123456789")
    assert not changed.success
    assert "not the key this warehouse's pseudonyms were made with" in failure_message(changed)
    assert "pseudonyms of known firms would not match" in failure_message(changed)

    key_file.unlink()
    lost = materialise_raw(later, tmp_path, key="")
    assert not lost.success and "no pseudonymisation key" in failure_message(lost)
    assert not key_file.exists()  # no new key made for a warehouse that already holds pseudonyms


def test_the_generated_key_is_said_in_the_run_log(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    result = materialise_raw(write_landing(tmp_path / "q3"), tmp_path, key="", instance=instance)
    messages = [record.user_message for record in instance.all_logs(result.run_id)]
    assert any("generated one in" in message and "pseudonym.key" in message for message in messages)


def test_keys_are_checked_by_their_fingerprint_not_stored(tmp_path):
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        Pseudonymiser("short")
    key, note = load_key("", tmp_path / "vault", tmp_path / "warehouse")
    assert note and "generated" in note
    check_fingerprint(Pseudonymiser(key), tmp_path / "warehouse", "test")
    assert key not in "".join(p.read_text() for p in (tmp_path / "warehouse").iterdir())
    check_fingerprint(Pseudonymiser(key), tmp_path / "warehouse", "test")  # the same key passes
    with pytest.raises(PseudonymKeyError, match="would not match"):
        check_fingerprint(Pseudonymiser(key + "x"), tmp_path / "warehouse", "test")
