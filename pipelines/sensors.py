"""Sensors: start an evaluation when the agency drops new or changed files in the landing folder.

A delivery counts once all four sources are present and none has changed for a settling period,
so that a half-copied file does not start a run.
"""

import json
import time

import dagster as dg

from analyses.contracts import SOURCES
from pipelines.jobs import evaluate_programmes
from pipelines.resources import LandingDirectory

LANDING_SUFFIXES = (".csv", ".parquet", ".xlsx")
SETTLE_SECONDS = 120


def landing_fingerprint(landing: LandingDirectory) -> dict[str, tuple[int, int]]:
    """Name → (size, modification time in ns) of every source file present; no data is read."""
    root = landing.root
    if not root.is_dir():
        return {}
    return {
        path.name: (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.iterdir())
        if path.suffix.lower() in LANDING_SUFFIXES and path.stem.lower() in SOURCES
    }


@dg.sensor(
    job=evaluate_programmes,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs the evaluation when a landing file appears or changes.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: LandingDirectory):
    fingerprint = landing_fingerprint(landing)
    present = {name.rsplit(".", 1)[0].lower() for name in fingerprint}
    missing = [source for source in SOURCES if source not in present]
    if missing:
        return dg.SkipReason(f"waiting for {', '.join(missing)} in {landing.root}")
    newest = max(mtime for _, mtime in fingerprint.values()) / 1e9
    if time.time() - newest < SETTLE_SECONDS:
        return dg.SkipReason(f"landing files changed less than {SETTLE_SECONDS} s ago; waiting for the copy to finish")
    state = json.dumps(fingerprint, sort_keys=True)
    previous = json.loads(context.cursor) if context.cursor else {"state": None, "deliveries": 0}
    if state == previous["state"]:
        return dg.SkipReason("landing files unchanged since the last run")
    deliveries = previous["deliveries"] + 1
    context.update_cursor(json.dumps({"state": state, "deliveries": deliveries}))
    return dg.RunRequest(
        run_key=f"delivery-{deliveries}",
        tags={"export_impact/trigger": "landing_files_changed", "export_impact/delivery": str(deliveries)},
    )
