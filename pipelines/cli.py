"""``python -m pipelines.cli run``: evaluate one delivery from a terminal, as ``make run`` calls it.

Without ``EXPORT_IMPACT_LANDING_DIR`` it first generates the seeded demo extracts. The files in
the landing folder are hashed and registered as a delivery (a partition of every asset), and the
run is recorded in the Dagster instance (``DAGSTER_HOME``), so it shows up in the UI afterwards.
The terminal gets one line per finished stage and, at the end, where the outputs went or a short
account of what failed; the full log, tracebacks included, goes to a file under the warehouse.
"""

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from pipelines.instance import ensure_dagster_home, instance_lock

DEMO_FIRMS = 10_000


def ensure_landing_dir(demo_firms: int) -> Path:
    """The agency's landing folder, or demo data of the requested size when none is configured.

    The demo is generated again whenever its size or the generator's code changed (a stamp file
    records both), so a stale demo never meets newer truths or contracts.
    """
    from analyses.deliveries import file_sha256
    from pipelines.resources import DEFAULT_LANDING_DIR

    configured = os.environ.get("EXPORT_IMPACT_LANDING_DIR")
    if configured:
        return Path(configured)
    import analyses.demo_data as demo

    stamp = DEFAULT_LANDING_DIR / ".generated"
    wanted = f"{demo_firms} firms, generator {file_sha256(demo.__file__)}"
    if not stamp.exists() or stamp.read_text(encoding="utf-8") != wanted:
        print(f"No EXPORT_IMPACT_LANDING_DIR set: generating demo data ({demo_firms:,} firms) in {DEFAULT_LANDING_DIR}")
        demo.write_demo_data(DEFAULT_LANDING_DIR, n_firms=demo_firms)
        stamp.write_text(wanted, encoding="utf-8")
    return DEFAULT_LANDING_DIR


def _log_to_file(log_file: Path) -> None:
    """Library logging, Python warnings and errors in Dagster's helper threads go to the log file."""
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)
    threading.excepthook = lambda hook: logging.getLogger("export_impact.cli").error(
        "in thread %s", hook.thread.name if hook.thread else "?",
        exc_info=(hook.exc_type, hook.exc_value, hook.exc_traceback))


@contextlib.contextmanager
def _stderr_to(log_file: Path):
    """Send file descriptor 2 to the log while the job runs: Dagster's helper processes inherit it,
    so their tracebacks (e.g. on Ctrl-C) land in the log, not on the terminal."""
    saved = os.dup(2)
    with open(log_file, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _reconstructable_job(name: str):
    """The job as a pointer into ``pipelines.definitions``, which step processes and workers import."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from pipelines.resources import PROJECT_ROOT

    repository = ReconstructableRepository.for_module("pipelines.definitions", "defs", str(PROJECT_ROOT))
    return repository.get_reconstructable_job(name)


def _bullet(text: str) -> str:
    """A possibly multi-line explanation as one bullet, its continuation lines indented under it."""
    return "  - " + text.replace("\n", "\n      ")


def run(demo_firms: int = DEMO_FIRMS) -> int:
    home = ensure_dagster_home()
    landing = ensure_landing_dir(demo_firms)
    if not landing.is_dir():
        print(f"error: landing directory {landing} does not exist (set EXPORT_IMPACT_LANDING_DIR)", file=sys.stderr)
        return 2

    from analyses.contracts import ContractError
    from analyses.deliveries import identify_delivery
    from analyses.publishing import FAILURE_NOTE, ensure_restricted_apart, publish_failure, published_status
    from pipelines.resources import (DEFAULT_OUTPUT_DIR, DEFAULT_WAREHOUSE, EvaluationPlanResource, WarehouseDirectory,
                                     setting)

    output_root = setting("EXPORT_IMPACT_OUTPUT_DIR", DEFAULT_OUTPUT_DIR)
    warehouse = WarehouseDirectory(path=str(setting("EXPORT_IMPACT_WAREHOUSE", DEFAULT_WAREHOUSE)))
    try:
        ensure_restricted_apart(output_root, warehouse.path)
        delivery = identify_delivery(landing)
        # a mistyped plan stops here, once: no run starts and the delivery's last good report stays
        EvaluationPlanResource(plan_file=os.environ.get("EXPORT_IMPACT_PLAN", "")).load()
    except (ValueError, ContractError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    warehouse.deliveries.register(delivery)

    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.executors import executor_name
    from pipelines.monitoring import HOST_TAG, fail_abandoned_runs
    from pipelines.partitions import deliveries
    from pipelines.run_summary import run_problems, run_warnings

    run_id = str(uuid.uuid4())
    logs = warehouse.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{run_id}.log"
    _log_to_file(log_file)
    print(f"Evaluating delivery {delivery.key} ({delivery.folder})")
    started = time.time()
    job = defs.resolve_job_def("evaluate_programmes")
    with instance_lock(home):
        instance = dg.DagsterInstance.get()
    with instance:
        for abandoned in fail_abandoned_runs(instance, output_root):
            print(f"  note: run {abandoned} had been killed; it is now marked failed")
        instance.add_dynamic_partitions(deliveries.name, [delivery.key])
        tags = {**delivery.tags(), HOST_TAG: socket.gethostname()}
        run_config = {
            "loggers": {
                "console": {"config": {"log_level": "CRITICAL"}},
                "progress": {"config": {"stages_to_stdout": True, "log_file": str(log_file)}},
            }
        }
        try:
            with _stderr_to(log_file):
                if executor_name() == "in_process":
                    result = job.execute_in_process(instance=instance, partition_key=delivery.key, run_id=run_id,
                                                    tags=tags, run_config=run_config, raise_on_error=False)
                else:  # steps in other processes or on Celery workers load the job from its module
                    result = dg.execute_job(_reconstructable_job(job.name), instance=instance, run_config=run_config,
                                            tags={**tags, "dagster/partition": delivery.key})
        except KeyboardInterrupt:
            result = None
        if result is not None and result.run_id != run_id:  # execute_job chose the run id: the log follows it
            run_id = result.run_id
            log_file = log_file.rename(logs / f"{run_id}.log")
        problems = run_problems(result.all_events) if result else ["interrupted (Ctrl-C)"]
        notes = run_warnings(result.all_events) if result else []
    folder = output_root / delivery.key
    if problems or not result.success:
        if (published_status(output_root, delivery.key) or {}).get("run_id") != run_id:
            # the failure hook did not get to run (interrupted): this run still says what happened
            publish_failure(output_root, delivery.key, run_id, problems, (delivery.folder, warehouse.root))
        print("\nThe evaluation did not complete:", file=sys.stderr)
        for line in problems or [f"run {run_id} failed; see the Dagster UI (make ui) for its log"]:
            print(_bullet(line), file=sys.stderr)
        print(f"  What was published instead: {folder / FAILURE_NOTE}", file=sys.stderr)
        quarantine = warehouse.deliveries.folder(delivery.key) / "quarantine"
        if quarantine.is_dir():
            print(f"  Rows set aside, with reasons: {quarantine}", file=sys.stderr)
        print(f"  Full log: {log_file}", file=sys.stderr)
        return 1
    print(f"\nEvaluation finished in {time.time() - started:.1f} s (run {run_id}).")
    for line in notes + _delivery_warnings(folder):
        print(_bullet(f"note: {line}"))
    for path in sorted(folder.iterdir()):
        print(f"  {path.name:<20} {path}")
    print(f"  {'full log':<20} {log_file}")
    return 0


def _delivery_warnings(folder: Path) -> list[str]:
    """What the contracts noticed but accepted (zero-padded codes, ignored sheets, encodings)."""
    quality = json.loads((folder / "data_quality.json").read_text(encoding="utf-8"))
    return [f"{entry['file']}: {warning}" for entry in quality["sources"].values() for warning in entry["warnings"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the whole evaluation job on the landing folder's delivery")
    run_parser.add_argument("--demo-firms", type=int, default=DEMO_FIRMS, help="size of generated demo data")
    args = parser.parse_args(argv)
    try:
        return run(args.demo_firms)
    except Exception as error:  # the last line a user sees is a sentence, not a traceback
        print(f"\nerror: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
