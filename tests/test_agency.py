"""The agency profile for real: PostgreSQL instance, run queue, Celery executor with two workers on Redis."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from tests.services import celery_workers, missing_services, postgres_server, redis_server

ROOT = Path(__file__).resolve().parents[1]
#: every service (a step each), one outcome: quick enough for the default suite
PLAN = "outcomes: [exporter]\nbootstrap_iterations: 99\n"
needs_services = pytest.mark.skipif(bool(missing_services()), reason=missing_services() or "services available")


@pytest.fixture(scope="module")
def services():
    with postgres_server() as postgres, redis_server() as broker:
        yield postgres, broker


def _profile_env(home: Path, **settings: str) -> dict:
    """The environment without any of this project's settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_IMPACT_", "DAGSTER_PG_"))}
    return {**env, "DAGSTER_HOME": str(home), **settings}


def _instance_config(env: dict) -> dict:
    """``python -m pipelines.instance`` (as ``make home`` runs it) in ``env``; the dagster.yaml it wrote."""
    subprocess.run([sys.executable, "-m", "pipelines.instance"], cwd=ROOT, env=env, check=True, capture_output=True,
                   text=True)
    return yaml.safe_load((Path(env["DAGSTER_HOME"]) / "dagster.yaml").read_text())


def test_embedded_profile_keeps_sqlite_and_the_default_coordinator(tmp_path):
    config = _instance_config(_profile_env(tmp_path / "home"))
    assert not {"storage", "run_coordinator", "concurrency"} & set(config)
    assert config["run_monitoring"]["enabled"] is True
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"


def test_agency_profile_names_the_missing_postgres_settings(tmp_path):
    env = _profile_env(tmp_path / "home", EXPORT_IMPACT_PROFILE="agency", DAGSTER_PG_HOST="db.example")
    failed = subprocess.run([sys.executable, "-m", "pipelines.instance"], cwd=ROOT, env=env, capture_output=True,
                            text=True)
    assert failed.returncode != 0
    assert "DAGSTER_PG_USERNAME, DAGSTER_PG_PASSWORD, DAGSTER_PG_DB" in failed.stderr
    wrong = subprocess.run([sys.executable, "-m", "pipelines.instance"], cwd=ROOT, capture_output=True, text=True,
                           env=_profile_env(tmp_path / "home", EXPORT_IMPACT_PROFILE="production"))
    assert "EXPORT_IMPACT_PROFILE='production': expected one of embedded, agency" in wrong.stderr


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, "in_process"),
    ({"EXPORT_IMPACT_EXECUTOR": "multiprocess", "EXPORT_IMPACT_MAX_CONCURRENT_STEPS": "2"}, "multiprocess 2"),
    ({"EXPORT_IMPACT_EXECUTOR": "celery", "EXPORT_IMPACT_CELERY_BROKER": "redis://127.0.0.1:1/0"},
     "celery redis://127.0.0.1:1/0"),
    ({"EXPORT_IMPACT_EXECUTOR": "celery"}, "needs EXPORT_IMPACT_CELERY_BROKER"),
    ({"EXPORT_IMPACT_EXECUTOR": "threads"}, "expected one of in_process, multiprocess, celery"),
])
def test_the_environment_chooses_the_jobs_executor(tmp_path, settings, expected):
    code = (
        "from pipelines.definitions import defs\n"
        "executor = defs.resolve_job_def('evaluate_programmes').executor_def\n"
        "configured = executor.name != 'in_process'\n"
        "config = executor.config_schema.resolve_config({}).value['config'] if configured else {}\n"
        "print(executor.name, config.get('max_concurrent', ''), config.get('broker', ''))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_profile_env(tmp_path / "home", **settings),
                          capture_output=True, text=True)
    assert expected in " ".join((done.stdout + done.stderr).split())


@needs_services
def test_agency_profile_stores_runs_events_and_schedules_in_postgres_behind_a_run_queue(tmp_path, services):
    postgres, _ = services
    env = _profile_env(tmp_path / "home", EXPORT_IMPACT_PROFILE="agency", EXPORT_IMPACT_MAX_CONCURRENT_RUNS="2",
                       **postgres.env())
    config = _instance_config(env)
    assert postgres.password not in yaml.safe_dump(config)  # read from the environment at start-up, never stored
    code = (
        "import dagster as dg\n"
        "i = dg.DagsterInstance.get()\n"
        "q = i.get_concurrency_config().run_queue_config\n"
        "print(type(i.run_storage).__name__, type(i.event_log_storage).__name__, type(i.schedule_storage).__name__,"
        " type(i.run_coordinator).__name__, q.max_concurrent_runs, q.tag_concurrency_limits[0]['key'],"
        " i.run_monitoring_enabled)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage",
                                  "QueuedRunCoordinator", "2", "export_impact/delivery", "True"]


def _run_cli(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)


def _estimates(root: Path) -> pd.DataFrame:
    (folder,) = [path for path in (root / "out").iterdir() if not path.name.startswith(".")]  # not .staging
    return pd.read_csv(folder / "estimates.csv")


@needs_services
def test_celery_workers_on_the_postgres_instance_publish_the_embedded_estimates(tmp_path, services, demo_landing):
    postgres, broker = services
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")

    def settings(name: str, **more: str) -> dict:
        root = tmp_path / name
        return _profile_env(root / "home", EXPORT_IMPACT_LANDING_DIR=str(demo_landing), EXPORT_IMPACT_PLAN=str(plan),
                            EXPORT_IMPACT_OUTPUT_DIR=str(root / "out"), EXPORT_IMPACT_WAREHOUSE=str(root / "wh"), **more)

    started = time.monotonic()
    embedded = _run_cli(settings("embedded"))
    assert embedded.returncode == 0, embedded.stderr
    print(f"embedded run: {time.monotonic() - started:.0f} s")
    agency = settings("agency", EXPORT_IMPACT_PROFILE="agency", EXPORT_IMPACT_EXECUTOR="celery",
                      EXPORT_IMPACT_CELERY_BROKER=broker, **postgres.env())
    _instance_config(agency)  # workers open the instance named in the run, so it must exist first
    started = time.monotonic()
    with celery_workers(agency, count=2, log_dir=tmp_path) as workers:
        distributed = _run_cli(agency)
    assert distributed.returncode == 0, distributed.stdout + distributed.stderr
    print(f"Celery run: {time.monotonic() - started:.0f} s")

    pd.testing.assert_frame_equal(_estimates(tmp_path / "agency"), _estimates(tmp_path / "embedded"),
                                  check_exact=False, rtol=1e-9, atol=1e-12)
    # the run is recorded in PostgreSQL (the module's only successful run), and both workers executed its steps
    code = (
        "import dagster as dg\n"
        "i = dg.DagsterInstance.get()\n"
        "(record,) = i.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))\n"
        "events = i.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)\n"
        "workers = {e.dagster_event.engine_event_data.metadata['Celery worker'].value for e in events\n"
        "           if 'Celery worker' in e.dagster_event.engine_event_data.metadata}\n"
        "print(type(i.run_storage).__name__, record.dagster_run.status.value, *sorted(workers))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=agency, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["PostgresRunStorage", "SUCCESS", *sorted(workers)]


@needs_services
def test_a_worker_pointed_at_another_warehouse_stops_the_run_with_a_message(tmp_path, services, demo_landing):
    postgres, broker = services
    redis_db = broker.rsplit("/", 1)[0] + "/1"  # its own queue: no other test's worker picks these steps up
    run = _profile_env(tmp_path / "home", EXPORT_IMPACT_PROFILE="agency", EXPORT_IMPACT_EXECUTOR="celery",
                       EXPORT_IMPACT_CELERY_BROKER=redis_db, EXPORT_IMPACT_LANDING_DIR=str(demo_landing),
                       EXPORT_IMPACT_OUTPUT_DIR=str(tmp_path / "out"), EXPORT_IMPACT_WAREHOUSE=str(tmp_path / "wh"),
                       **postgres.env())
    _instance_config(run)
    with celery_workers({**run, "EXPORT_IMPACT_WAREHOUSE": str(tmp_path / "elsewhere")}, count=1, log_dir=tmp_path):
        failed = _run_cli(run)
    assert failed.returncode == 1
    assert f"is not registered in {tmp_path / 'elsewhere' / 'deliveries'}" in failed.stderr, failed.stderr
