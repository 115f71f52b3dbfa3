"""Sensors: evaluate each new delivery in the landing folder; fail runs whose worker died; record failed runs.

A delivery counts once all four sources are present and none has changed for a settling period,
so that a half-copied file does not start a run. It is then hashed, registered as a partition of
``deliveries`` and run once (the run key is the delivery's key).
"""

import contextlib
import json
import smtplib
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from analyses.contracts import SOURCES, ContractError
from analyses.contracts.reading import transactions_form
from analyses.deliveries import Delivery, UnknownDelivery, identify_delivery
from analyses.publishing import publishable_problem
from pipelines.jobs import evaluate_programmes
from pipelines.monitoring import HOST_TAG, fail_abandoned_runs
from pipelines.partitions import deliveries
from pipelines.plan_config import plan_run_config
from pipelines.resources import EvaluationPlanResource, LandingDirectory, OutputDirectory, SmtpNotifier, WarehouseDirectory
from pipelines.run_summary import run_problems, stored_events

LANDING_SUFFIXES = (".csv", ".parquet", ".xlsx")
SETTLE_SECONDS = 120


def landing_source(path) -> str | None:
    """The source a landing file (or customs-transactions folder) delivers, if any."""
    if transactions_form(path):
        return "exports"
    return path.stem.lower() if path.suffix.lower() in LANDING_SUFFIXES and path.stem.lower() in SOURCES else None


def landing_fingerprint(landing: LandingDirectory) -> dict[str, tuple[int, int]]:
    """Name → (size, modification time in ns) of every source file (or folder: its files' total and newest) present; no data is read."""
    root = landing.root
    if not root.is_dir():
        return {}
    fingerprint = {}
    for path in sorted(root.iterdir()):
        if landing_source(path):
            stats = [part.stat() for part in path.iterdir()] if path.is_dir() else [path.stat()]
            fingerprint[path.name] = (sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0))
    return fingerprint


def register_delivery(landing: LandingDirectory, warehouse: WarehouseDirectory) -> Delivery:
    """Hash the delivery in the landing folder and record its manifest in the warehouse."""
    delivery = identify_delivery(landing.root)
    warehouse.deliveries.register(delivery)
    return delivery


def delivery_run_request(delivery: Delivery, run_key: str | None, plan: EvaluationPlanResource) -> dg.RunRequest:
    """A run of ``evaluate_programmes`` on the delivery's partition, tagged with its folder and hash, with the
    evaluation plan as it stands now in its run config (the run's page shows the specification it used; a bad
    plan fails the tick, not a run hours later)."""
    return dg.RunRequest(
        run_key=run_key, partition_key=delivery.key, tags={**delivery.tags(), HOST_TAG: socket.gethostname()},
        run_config=plan_run_config(plan.load().to_dict()),
    )


@dg.sensor(
    job=evaluate_programmes,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs the evaluation once for each new delivery that settles in the landing folder.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: LandingDirectory, warehouse: WarehouseDirectory,
                         plan: EvaluationPlanResource):
    fingerprint = landing_fingerprint(landing)
    present = {landing_source(landing.root / name) for name in fingerprint}
    missing = [source for source in SOURCES if source not in present]
    if missing:
        return dg.SkipReason(f"waiting for {', '.join(missing)} in {landing.root}")
    newest = max(mtime for _, mtime in fingerprint.values()) / 1e9
    if time.time() - newest < SETTLE_SECONDS:
        return dg.SkipReason(f"landing files changed less than {SETTLE_SECONDS} s ago; waiting for the copy to finish")
    state = json.dumps(fingerprint, sort_keys=True)
    if context.cursor == state:
        return dg.SkipReason("landing files unchanged since the last look")
    try:
        delivery = register_delivery(landing, warehouse)
    except ContractError as error:
        return dg.SkipReason(str(error))
    # The delivery key is the run key: files touched but unchanged are the same delivery, run once.
    return dg.SensorResult(
        run_requests=[delivery_run_request(delivery, run_key=delivery.key, plan=plan)],
        dynamic_partitions_requests=[deliveries.build_add_request([delivery.key])],
        cursor=state,
    )


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose worker process died (killed, machine restarted) as failed, "
    "and says so in their delivery's output folder.",
)
def abandoned_runs_sensor(context: dg.SensorEvaluationContext, output_dir: OutputDirectory):
    failed = fail_abandoned_runs(context.instance, output_dir.root)
    return dg.SkipReason(f"marked {len(failed)} abandoned run(s) failed: {failed}" if failed else "no abandoned runs")


def incident_record(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict:
    """Run id, job, delivery, failed steps and the plain failure summary of a failed run (as ``make run`` prints it)."""
    events = stored_events(instance, run.run_id)
    failed_at = instance.get_run_record_by_id(run.run_id).end_time or time.time()
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "delivery": run.tags.get("dagster/partition") or run.tags.get("export_impact/delivery"),
        "failed_at": datetime.fromtimestamp(failed_at, timezone.utc).isoformat(timespec="seconds"),
        "failed_steps": list(dict.fromkeys(e.step_key for e in events if e.event_type_value == "STEP_FAILURE")),
        "summary": run_problems(events) or ["the run stopped before it could say why (killed?)"],
    }


def write_incident(folder: Path, record: dict) -> Path:
    """``<folder>/<run id>.json``, written aside and moved so a reader never sees half a record."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def incident_email(record: dict, path: Path, private: tuple[Path, ...]) -> tuple[str, str]:
    """Subject and body of the e-mail: delivered example values withheld, private folders named by their last part."""
    subject = f"Export Impact: run {record['run_id'][:8]} failed (delivery {record['delivery'] or 'none'})"
    body = [
        f"Run {record['run_id']} of {record['job']} failed at {record['failed_at']}.",
        f"Delivery: {record['delivery'] or 'none'}",
        f"Failed step(s): {', '.join(record['failed_steps']) or 'none recorded'}",
        "",
        "What went wrong:",
        *[f"  - {publishable_problem(problem, private)}" for problem in record["summary"]],
        "",
        f"Incident record (restricted): {publishable_problem(str(path), private)}",
    ]
    return subject, "\n".join(body) + "\n"


@dg.run_failure_sensor(
    name="run_failure_incidents",
    default_status=dg.DefaultSensorStatus.RUNNING,
    # `make run` executes in its own process, outside any code location: only this setting lets the sensor see its runs
    monitor_all_code_locations=True,
    description="Writes an incident record of every failed run to <warehouse>/incidents/ and, when an SMTP "
    "server is configured (EXPORT_IMPACT_SMTP_*), e-mails it.",
)
def run_failure_incidents(context: dg.RunFailureSensorContext, warehouse: WarehouseDirectory, smtp: SmtpNotifier):
    run = context.dagster_run
    record = incident_record(context.instance, run)
    path = write_incident(warehouse.root / "incidents", record)
    context.log.info(f"incident record of run {run.run_id}: {path}")
    if not smtp.enabled:
        return
    private = [warehouse.root]
    with contextlib.suppress(UnknownDelivery):
        private.append(warehouse.deliveries.get(record["delivery"] or "").folder)
    subject, body = incident_email(record, path, tuple(private))
    try:
        smtp.send(subject, body)
    except (OSError, smtplib.SMTPException) as error:  # the record is written; a mail server down must not hide it
        context.log.error(f"could not e-mail the incident of run {run.run_id} via {smtp.host}:{smtp.port}: {error}")
        return
    context.log.info(f"incident of run {run.run_id} e-mailed to {', '.join(smtp.recipients)}")
