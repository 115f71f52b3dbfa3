"""Deliveries and runs are isolated: overlapping runs, failed and killed runs, what is published where."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from analyses.deliveries import identify_delivery
from analyses.publishing import (
    ensure_restricted_apart,
    private_paths_in,
    publish,
    publish_failure,
    staging_dir,
    withhold_examples,
)
from pipelines.run_summary import run_problems
from tests.conftest import materialise_delivery, pipeline_resources
from tests.test_pipeline import ROOT, cli_env, landing_copy, run_cli

QUICK_PLAN = "bootstrap_iterations: 99\noutcomes: [exporter, n_destinations]\n"


def start_cli(tmp_path: Path, landing: Path, **settings: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(tmp_path, landing, **settings),
                            start_new_session=True)


def test_two_overlapping_runs_on_different_deliveries_each_publish_their_own(demo_landing, tmp_path):
    """Run B starts while run A is running, against the same warehouse, instance and output folder."""
    from analyses.demo_data import write_demo_data

    other = tmp_path / "2026-q4"
    write_demo_data(other, n_firms=2_000, seed=7)
    plan = tmp_path / "plan.yaml"
    plan.write_text(QUICK_PLAN, encoding="utf-8")
    landings = {"A": demo_landing, "B": other}
    processes = {name: start_cli(tmp_path, landing, EXPORT_IMPACT_PLAN=str(plan)) for name, landing in landings.items()}
    outputs = {name: process.communicate(timeout=600) for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name][1][-3000:]

    delivery = {name: identify_delivery(landing) for name, landing in landings.items()}
    published = {name: tmp_path / "out" / d.key for name, d in delivery.items()}
    for name, mine in delivery.items():
        theirs = delivery["B" if name == "A" else "A"]
        html = (published[name] / "impact_report.html").read_text(encoding="utf-8")
        quality = json.loads((published[name] / "data_quality.json").read_text())["sources"]
        for source, file in mine.files.items():
            assert quality[source]["sha256"] == file.sha256
            assert file.sha256 in html and theirs.files[source].sha256 not in html  # lineage footer
        assert f"Delivery: <code>{mine.key}</code>" in html
        firms = pd.read_csv(landings[name] / "firms.csv")
        assert quality["firms"]["rows_in"] == len(firms)
        assert json.loads((published[name] / "run.json").read_text())["delivery"] == mine.key
    estimates = {name: pd.read_csv(folder / "estimates.csv") for name, folder in published.items()}
    assert not estimates["A"]["estimate"].equals(estimates["B"]["estimate"])
    assert not list((tmp_path / "out" / ".staging").iterdir())

    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        records = instance.get_run_records()
        assert len(records) == 2
        spans = {}
        for record in records:
            run = record.dagster_run
            assert run.status == dg.DagsterRunStatus.SUCCESS
            key = run.tags["export_impact/delivery"]
            assert run.tags["dagster/partition"] == key
            assert run.tags["export_impact/delivery_sha256"] in {d.sha256 for d in delivery.values()}
            stats = instance.get_run_stats(run.run_id)
            spans[key] = (stats.start_time, stats.end_time)
        (a_start, a_end), (b_start, b_end) = spans.values()
        assert a_start < b_end and b_start < a_end, spans  # the runs really overlapped


def test_a_failed_rerun_replaces_the_published_folder_with_a_plain_failure_note(demo_landing, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(QUICK_PLAN, encoding="utf-8")
    first = run_cli(tmp_path, demo_landing, EXPORT_IMPACT_PLAN=str(plan))
    assert first.returncode == 0, first.stderr[-3000:]
    folder = tmp_path / "out" / identify_delivery(demo_landing).key
    assert (folder / "impact_report.pdf").exists()

    plan.write_text("outcomes: [exporter, turnover_growth]\n", encoding="utf-8")  # not a panel column
    second = run_cli(tmp_path, demo_landing, EXPORT_IMPACT_PLAN=str(plan))
    assert second.returncode == 1
    assert "Traceback" not in second.stdout + second.stderr
    assert second.stderr.count("turnover_growth") == 1
    # the earlier run's report is gone with it: the folder holds one run, and says it failed
    assert sorted(p.name for p in folder.iterdir()) == ["RUN_FAILED.txt", "data_quality.json", "run.json"]
    assert "turnover_growth" in (folder / "RUN_FAILED.txt").read_text()
    log_file = Path(second.stderr.strip().splitlines()[-1].split()[-1])
    log = log_file.read_text()
    assert 'File "' in log and "in check_plan_fits_panel" in log  # the stack trace is kept, in the log file


def test_a_killed_run_is_marked_failed_at_the_next_start(demo_landing, tmp_path):
    from pipelines.monitoring import fail_abandoned_runs

    process = start_cli(tmp_path, demo_landing)
    for line in process.stdout:  # kill it mid-way, once validation is done
        if "validated_sources: done" in line:
            break
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    key = identify_delivery(demo_landing).key
    assert not (tmp_path / "out" / key).exists()  # nothing half-published
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        [record] = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.STARTED
        assert fail_abandoned_runs(instance, tmp_path / "out") == [record.dagster_run.run_id]
        assert instance.get_run_by_id(record.dagster_run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert fail_abandoned_runs(instance, tmp_path / "out") == []
    note = (tmp_path / "out" / key / "RUN_FAILED.txt").read_text()
    assert "killed" in note and "FAILED" in note


def test_restricted_folder_inside_the_output_folder_is_refused(demo_landing, tmp_path):
    out = run_cli(tmp_path, demo_landing, EXPORT_IMPACT_WAREHOUSE=str(tmp_path / "out" / "warehouse"))
    assert out.returncode == 2
    last_line = out.stderr.strip().splitlines()[-1]
    assert "inside the output folder" in last_line and "EXPORT_IMPACT_WAREHOUSE" in last_line
    with pytest.raises(ValueError, match="inside the output folder"):
        ensure_restricted_apart(tmp_path, tmp_path)


@pytest.mark.parametrize("source", ["firms", "financials", "participation", "exports"])
def test_a_file_changed_after_registration_is_not_read_into_the_delivery(demo_landing, tmp_path, source):
    landing = landing_copy(demo_landing, tmp_path)
    delivery = identify_delivery(landing)
    from pipelines.resources import WarehouseDirectory

    WarehouseDirectory(path=str(tmp_path / "root" / "warehouse")).deliveries.register(delivery)
    with open(landing / f"{source}.csv", "a", encoding="utf-8") as handle:
        handle.write("\n")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("deliveries", [delivery.key])
    from pipelines.definitions import ALL_ASSETS

    result = dg.materialize(ALL_ASSETS, resources=pipeline_resources(landing, tmp_path / "root"), instance=instance,
                            partition_key=delivery.key, raise_on_error=False,
                            selection=[f"raw_{source}"])
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert f"{source}.csv" in message and f"changed after delivery {delivery.key} was registered" in message


def test_published_files_hold_no_path_of_the_analysts_file_system(materialised_pipeline, demo_landing):
    result, folder = materialised_pipeline
    assert result.success
    private = [demo_landing, folder.parent.parent / "warehouse", folder.parent, Path.home()]
    assert private_paths_in(folder, private) == []
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "disclosure_control"]
    assert check.passed and check.metadata["private_paths"].value == []


def test_private_path_scan_finds_a_path_in_any_published_file(tmp_path):
    (tmp_path / "data_quality.json").write_text(json.dumps({"path": str(tmp_path / "landing" / "firms.csv")}))
    (tmp_path / "estimates.csv").write_text("a,b\n1,2\n")
    assert private_paths_in(tmp_path, [tmp_path / "landing"]) == [
        {"file": "data_quality.json", "path": str((tmp_path / "landing").resolve())}
    ]


def test_publish_swaps_a_whole_folder_so_old_and_new_files_never_mix(tmp_path):
    old = staging_dir(tmp_path, "run-1")
    for name in ("impact_report.html", "impact_report.pdf", "estimates.csv"):
        (old / name).write_text("old")
    publish(old, tmp_path, "d1", "run-1")
    new = staging_dir(tmp_path, "run-2")
    (new / "impact_report.html").write_text("new")  # killed before the PDF: nothing of it is visible
    assert sorted(p.name for p in (tmp_path / "d1").iterdir()) == [
        "estimates.csv", "impact_report.html", "impact_report.pdf", "run.json"]
    assert (tmp_path / "d1" / "impact_report.html").read_text() == "old"
    (new / "data_quality.json").write_text("{}")
    publish_failure(tmp_path, "d1", "run-2", ["exports.csv: rejected"])
    assert sorted(p.name for p in (tmp_path / "d1").iterdir()) == ["RUN_FAILED.txt", "data_quality.json", "run.json"]
    record = json.loads((tmp_path / "d1" / "run.json").read_text())
    assert (record["run_id"], record["status"]) == ("run-2", "failed")
    assert list((tmp_path / ".staging").iterdir()) == []


def test_dagster_home_gets_nux_and_telemetry_off_and_keeps_operator_settings(tmp_path, monkeypatch):
    from pipelines.instance import ensure_dagster_home

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\nrun_queue:\n  max_concurrent_runs: 2\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ensure_dagster_home()
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["nux"] == {"enabled": False} and config["telemetry"] == {"enabled": False}
    assert config["run_queue"] == {"max_concurrent_runs": 2} and config["run_monitoring"]["enabled"] is True
    with dg.DagsterInstance.from_config(str(home)) as instance:  # Dagster accepts the merged file
        assert instance.run_monitoring_enabled


def test_a_delivery_with_other_columns_runs_against_the_same_warehouse(demo_landing, tmp_path):
    """Second delivery: an extra column added, the first one's extra column gone, a column of another type."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("bootstrap_iterations: 0\noutcomes: [exporter]\nservices: [advisory]\n", encoding="utf-8")
    firms = pd.read_csv(demo_landing / "firms.csv", dtype=str)
    financials = pd.read_csv(demo_landing / "financials.csv", dtype=str)
    one = landing_copy(demo_landing, tmp_path / "one", firms=firms.assign(legal_form="GmbH"))
    first, first_folder = materialise_delivery(one, tmp_path / "root", str(plan))
    assert first.success, run_problems(first.all_events)
    financials["turnover_eur"] = financials["turnover_eur"].str.split(".").str[0]  # now integers
    two = landing_copy(demo_landing, tmp_path / "two", firms=firms.assign(website="https://example.org"),
                       financials=financials)
    second, folder = materialise_delivery(two, tmp_path / "root", str(plan))
    assert second.success, run_problems(second.all_events)
    tables = tmp_path / "root" / "warehouse" / "tables"
    assert len(list((tables / "clean_firms").iterdir())) == 2
    columns = {f.name: set(pd.read_parquet(tables / "clean_firms" / f"{f.name}.parquet").columns)
               for f in (first_folder, folder)}
    assert "legal_form" in columns[first_folder.name] - columns[folder.name]
    assert "website" in columns[folder.name] - columns[first_folder.name]
    assert (folder / "impact_report.html").exists() and (first_folder / "impact_report.html").exists()


def test_published_failure_notes_withhold_delivered_values_and_private_paths(tmp_path):
    problem = ("clean_financials / quarantine_share: financials.csv: 2 of 9 rows quarantined\n"
               "  - column employees: 1 row(s), rule 'ranges' (e.g. '=HYPERLINK(\"http://x\",\"y\")' in row 3)\n"
               "  - column firm_id, year: 1 row(s) (e.g. 'firm_id=F000001, year=2012' in sheet 'a)' row 2)\n"
               f"raw_firms: firms.csv in {tmp_path / 'landing'} changed")
    assert withhold_examples("rule 'ranges' (e.g. '-3' in row 7); next") == "rule 'ranges'; next"
    folder = publish_failure(tmp_path / "out", "d1", "run-1", [problem], (tmp_path / "landing",))
    note = (folder / "RUN_FAILED.txt").read_text()
    for withheld in ("HYPERLINK", "F000001", "e.g.", str(tmp_path)):
        assert withheld not in note
    assert "rule 'ranges'" in note and "firms.csv in landing changed" in note


def test_an_interrupted_run_says_so_without_a_traceback_and_publishes_its_own_note(demo_landing, tmp_path):
    process = start_cli(tmp_path, demo_landing)
    for line in process.stdout:
        if "validated_sources: done" in line:
            break
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in stdout + stderr and "interrupted" in stderr
    published = tmp_path / "out" / identify_delivery(demo_landing).key
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        [record] = instance.get_run_records()
    assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert json.loads((published / "run.json").read_text())["run_id"] == record.dagster_run.run_id


def test_a_plain_error_reads_without_its_class_name_and_an_unexpected_one_keeps_it():
    """A message written for the user (ValueError, ContractError) is shown as written; a bug (KeyError...)
    keeps its class so that it is not mistaken for a sentence about the data."""
    from types import SimpleNamespace

    from pipelines.run_summary import innermost_message

    def error(cls_name, text):
        wrapper = SimpleNamespace(cls_name="DagsterExecutionStepExecutionError", message="Error in step", cause=None)
        wrapper.cause = SimpleNamespace(cls_name=cls_name, message=f"{cls_name}: {text}\n", cause=None)
        return wrapper

    assert innermost_message(error("ValueError", "evaluation plan: families.run must be a list")) == \
        "evaluation plan: families.run must be a list"
    assert innermost_message(error("KeyError", "'exports_a_lot'")) == "KeyError: 'exports_a_lot'"
