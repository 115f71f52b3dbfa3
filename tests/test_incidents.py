"""A failed run leaves an incident record in the warehouse and, when SMTP is configured, an e-mail (issue 13)."""

import json
import socket

import dagster as dg
import pandas as pd
import pytest

from pipelines.resources import SmtpNotifier, WarehouseDirectory, smtp_from_environment
from pipelines.sensors import run_failure_incidents
from tests.conftest import materialise_delivery
from tests.smtp_server import smtp_server
from tests.test_pipeline import landing_copy


@pytest.fixture(scope="module")
def failed_run(demo_landing, tmp_path_factory):
    """A delivery whose customs extract lacks its value column: the structure check stops the run."""
    root = tmp_path_factory.mktemp("incident")
    exports = pd.read_csv(demo_landing / "exports.csv", dtype=str).drop(columns="export_value_eur")
    landing = landing_copy(demo_landing, root / "broken", exports=exports)
    instance = dg.DagsterInstance.ephemeral()
    result, folder = materialise_delivery(landing, root, instance=instance)
    assert not result.success
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return {"instance": instance, "run": instance.get_run_by_id(result.run_id), "event": failure.dagster_event,
            "warehouse": WarehouseDirectory(path=str(root / "warehouse")), "delivery": folder.name, "landing": landing}


def evaluate_sensor(failed_run, smtp: SmtpNotifier):
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_incidents", dagster_instance=failed_run["instance"], dagster_run=failed_run["run"],
        dagster_event=failed_run["event"], resources={"warehouse": failed_run["warehouse"], "smtp": smtp},
    ) as context:
        run_failure_incidents(context.for_run_failure())
    return failed_run["warehouse"].root / "incidents" / f"{failed_run['run'].run_id}.json"


def test_the_sensor_writes_an_incident_record_of_the_failed_run(failed_run):
    path = evaluate_sensor(failed_run, SmtpNotifier())
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["run_id"] == failed_run["run"].run_id and record["delivery"] == failed_run["delivery"]
    assert record["job"] == failed_run["run"].job_name and record["failed_at"].endswith("+00:00")
    assert record["failed_steps"] == ["raw_exports"]
    [summary] = record["summary"]
    assert "exports.csv" in summary and "export_value_eur" in summary and "raw_exports / structure" in summary


def test_smtp_is_off_unless_configured(monkeypatch):
    for name in ("HOST", "PORT", "FROM", "TO"):
        monkeypatch.delenv(f"EXPORT_IMPACT_SMTP_{name}", raising=False)
    from pipelines.definitions import build_resources

    assert build_resources()["smtp"].enabled is False


def test_the_incident_is_e_mailed_through_a_loopback_smtp_server(failed_run, monkeypatch):
    with smtp_server() as server:
        monkeypatch.setenv("EXPORT_IMPACT_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("EXPORT_IMPACT_SMTP_PORT", str(server.server_address[1]))
        monkeypatch.setenv("EXPORT_IMPACT_SMTP_FROM", "pipeline@agency.example")
        monkeypatch.setenv("EXPORT_IMPACT_SMTP_TO", "oncall@agency.example, lead@agency.example")
        path = evaluate_sensor(failed_run, smtp_from_environment())
    [mail] = server.received
    run_id = failed_run["run"].run_id
    assert mail.sender == "pipeline@agency.example"
    assert mail.recipients == ["oncall@agency.example", "lead@agency.example"]
    assert mail.message["Subject"] == f"Export Impact: run {run_id[:8]} failed (delivery {failed_run['delivery']})"
    body = mail.message.get_payload(decode=True).decode("utf-8")
    assert f"Run {run_id}" in body and "Failed step(s): raw_exports" in body and "export_value_eur" in body
    assert f"incidents/{run_id}.json" in body
    for private in (failed_run["warehouse"].root, failed_run["landing"]):  # named by their last part only
        assert str(private) not in body
    assert path.is_file()


def test_a_mail_server_that_is_down_does_not_lose_the_record(failed_run, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = evaluate_sensor(failed_run, SmtpNotifier(host="127.0.0.1", port=port, to_addresses="oncall@agency.example"))
    path.unlink()
    path = evaluate_sensor(failed_run, SmtpNotifier(host="127.0.0.1", port=port, to_addresses="oncall@agency.example"))
    assert json.loads(path.read_text())["failed_steps"] == ["raw_exports"]
