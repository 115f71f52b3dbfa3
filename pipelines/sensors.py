"""Sensors: start an evaluation when the agency drops new or changed files in the landing folder."""

import hashlib
import json

import dagster as dg

from analyses.contracts import SOURCES
from pipelines.jobs import evaluate_programmes
from pipelines.resources import LandingDirectory

LANDING_SUFFIXES = (".csv", ".parquet", ".xlsx")


def landing_fingerprint(landing: LandingDirectory) -> dict[str, str]:
    """Name → size and modification time of every source file present (cheap; no hashing of data)."""
    root = landing.root
    if not root.is_dir():
        return {}
    return {
        path.name: f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
        for path in sorted(root.iterdir())
        if path.suffix.lower() in LANDING_SUFFIXES and path.stem in SOURCES
    }


@dg.sensor(
    job=evaluate_programmes,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs the evaluation when a landing file appears or changes.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: LandingDirectory):
    fingerprint = landing_fingerprint(landing)
    if not fingerprint:
        return dg.SkipReason(f"no source files in {landing.root}")
    state = json.dumps(fingerprint, sort_keys=True)
    if state == context.cursor:
        return dg.SkipReason("landing files unchanged since the last run")
    context.update_cursor(state)
    return dg.RunRequest(
        run_key=hashlib.sha256(state.encode()).hexdigest()[:16],
        tags={"export_impact/trigger": "landing_files_changed"},
    )
