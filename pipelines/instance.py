"""The Dagster instance folder (``DAGSTER_HOME``): absolute, existing, and configured for this project.

Dagster refuses a relative or missing ``DAGSTER_HOME``. The settings below are merged into an
existing ``dagster.yaml`` (an operator's own keys are kept): no telemetry, no community pop-up
in the UI (so the first screen is the asset graph), and run monitoring on, so that the daemon
fails runs that never start or hang while cancelling.

``EXPORT_IMPACT_PROFILE`` chooses the profile: ``embedded`` (default: run history, event log and
schedules in SQLite files under ``DAGSTER_HOME``) or ``agency`` (the same on the PostgreSQL server
the ``DAGSTER_PG_*`` variables name, read by Dagster at start-up so no password is written to the
file, and a run queue that starts at most ``EXPORT_IMPACT_MAX_CONCURRENT_RUNS`` runs at once, one
per delivery, so a sensor's run and a manual one wait for each other instead of overloading the
machine).
"""

import contextlib
import fcntl
import os
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REQUIRED_SETTINGS = {"telemetry": {"enabled": False}, "nux": {"enabled": False}}
DEFAULT_SETTINGS = {
    "run_monitoring": {"enabled": True, "start_timeout_seconds": 180, "cancel_timeout_seconds": 180},
}
PROFILES = ("embedded", "agency")
#: PostgreSQL connection variables of the agency profile (``DAGSTER_PG_PORT`` is optional, default 5432)
PG_VARIABLES = {"username": "DAGSTER_PG_USERNAME", "password": "DAGSTER_PG_PASSWORD", "hostname": "DAGSTER_PG_HOST",
                "db_name": "DAGSTER_PG_DB"}
#: runs of one delivery never overlap, whatever the overall limit
DELIVERY_TAG = "export_impact/delivery"


def agency_settings() -> dict:
    """Run, event-log and schedule storage on PostgreSQL, and a run queue with a concurrency limit.

    Raises ``ValueError`` naming the ``DAGSTER_PG_*`` variables that are not set.
    """
    missing = [name for name in PG_VARIABLES.values() if not os.environ.get(name)]
    if missing:
        raise ValueError(f"EXPORT_IMPACT_PROFILE=agency needs the PostgreSQL connection in {', '.join(missing)}")
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the lock installs psycopg2 (as dagster-postgres uses)
    postgres_db = {**{key: {"env": name} for key, name in PG_VARIABLES.items()}, "scheme": "postgresql+psycopg2"}
    if os.environ.get("DAGSTER_PG_PORT"):
        postgres_db["port"] = {"env": "DAGSTER_PG_PORT"}
    return {
        "storage": {"postgres": {"postgres_db": postgres_db}},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {"runs": {
            "max_concurrent_runs": int(os.environ.get("EXPORT_IMPACT_MAX_CONCURRENT_RUNS") or 1),
            "tag_concurrency_limits": [{"key": DELIVERY_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}],
        }},
    }


def profile_settings() -> dict:
    """The settings of the profile ``EXPORT_IMPACT_PROFILE`` names (``embedded`` when unset)."""
    profile = os.environ.get("EXPORT_IMPACT_PROFILE") or "embedded"
    if profile not in PROFILES:
        raise ValueError(f"EXPORT_IMPACT_PROFILE={profile!r}: expected one of {', '.join(PROFILES)}")
    return {**DEFAULT_SETTINGS, **(agency_settings() if profile == "agency" else {})}


def ensure_dagster_home() -> Path:
    """Create or update ``$DAGSTER_HOME/dagster.yaml`` (default ``.dagster_home/``) and export the variable.

    The profile's settings fill in what the file does not say; keys already in the file win.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    config = (yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.exists() else None) or {}
    merged = {**profile_settings(), **config, **REQUIRED_SETTINGS}
    if merged != config:
        config_file.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@contextlib.contextmanager
def instance_lock(home: Path):
    """Serialise the first use of the instance: two runs started together on a fresh
    ``DAGSTER_HOME`` would otherwise both create its SQLite tables ("table already exists")."""
    with open(home / ".instance.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


if __name__ == "__main__":
    print(ensure_dagster_home() / "dagster.yaml")
