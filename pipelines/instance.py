"""The Dagster instance folder (``DAGSTER_HOME``): absolute, existing, and configured for this project.

Dagster refuses a relative or missing ``DAGSTER_HOME``. The settings below are merged into an
existing ``dagster.yaml`` (an operator's own keys are kept): no telemetry, no community pop-up
in the UI (so the first screen is the asset graph), and run monitoring on, so that the daemon
fails runs that never start or hang while cancelling.
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


def ensure_dagster_home() -> Path:
    """Create or update ``$DAGSTER_HOME/dagster.yaml`` (default ``.dagster_home/``) and export the variable."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "dagster.yaml"
    config = (yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.exists() else None) or {}
    merged = {**DEFAULT_SETTINGS, **config, **REQUIRED_SETTINGS}
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
