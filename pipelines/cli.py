"""``python -m pipelines.cli run``: the whole evaluation from a terminal, as ``make run`` calls it.

Without ``EXPORT_IMPACT_LANDING_DIR`` it first generates the seeded demo extracts. The run is
recorded in the Dagster instance (``DAGSTER_HOME``), so it shows up in the UI afterwards. A failed
run ends with a short, actionable summary instead of a traceback.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from pipelines.resources import DEFAULT_LANDING_DIR, DEFAULT_OUTPUT_DIR, PROJECT_ROOT

DEMO_FIRMS = 10_000
OUTPUT_FILES = ("impact_report.html", "impact_report.pdf", "estimates.csv", "estimates.parquet", "data_quality.json")
#: Dagster's own wrapper around a failed blocking check; the check itself is reported instead.
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"


def ensure_dagster_home() -> Path:
    """An absolute, existing DAGSTER_HOME with telemetry off (Dagster refuses anything else)."""
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def ensure_landing_dir(demo_firms: int) -> Path:
    """The agency's landing folder, or demo data of the requested size when none is configured."""
    configured = os.environ.get("EXPORT_IMPACT_LANDING_DIR")
    if configured:
        return Path(configured)
    firms_file = DEFAULT_LANDING_DIR / "firms.csv"
    generated = sum(1 for _ in firms_file.open(encoding="utf-8")) - 1 if firms_file.exists() else None
    if generated != demo_firms:
        from analyses.demo_data import write_demo_data

        print(f"No EXPORT_IMPACT_LANDING_DIR set: generating demo data ({demo_firms:,} firms) in {DEFAULT_LANDING_DIR}")
        write_demo_data(DEFAULT_LANDING_DIR, n_firms=demo_firms)
    return DEFAULT_LANDING_DIR


def run(demo_firms: int = DEMO_FIRMS) -> int:
    ensure_dagster_home()
    landing = ensure_landing_dir(demo_firms)
    if not landing.is_dir():
        print(f"error: landing directory {landing} does not exist (set EXPORT_IMPACT_LANDING_DIR)", file=sys.stderr)
        return 2

    import dagster as dg

    from pipelines.definitions import defs

    started = time.time()
    job = defs.resolve_job_def("evaluate_programmes")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        problems = run_problems(result)
        notes = run_warnings(result)
    output_dir = Path(os.environ.get("EXPORT_IMPACT_OUTPUT_DIR", DEFAULT_OUTPUT_DIR)).resolve()
    written = [output_dir / name for name in OUTPUT_FILES if _written_since(output_dir / name, started)]
    if problems or not result.success:
        print("\nThe evaluation did not complete:", file=sys.stderr)
        for line in problems or [f"run {result.run_id} failed; see the Dagster UI (make ui) for its log"]:
            print(f"  - {line}", file=sys.stderr)
        if _written_since(output_dir / "data_quality.json", started):
            print(f"  Rows set aside, with reasons: {output_dir / 'quarantine'}", file=sys.stderr)
        return 1
    print(f"\nEvaluation finished in {time.time() - started:.1f} s (run {result.run_id}).")
    for line in notes:
        print(f"  note: {line}")
    for path in written:
        print(f"  {path.name:<20} {path}")
    return 0


def _written_since(path: Path, started: float) -> bool:
    """Only files this run wrote count: an earlier run's report must not pass for this one's."""
    return path.exists() and path.stat().st_mtime >= started - 1


def run_problems(result) -> list[str]:
    """Human lines for every failed step and every failed error-level check of a finished run."""
    problems = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            failure = event.step_failure_data
            if failure.user_failure_data is not None:
                problems.append(f"{event.step_key}: {failure.user_failure_data.description}")
            elif failure.error is not None and failure.error.cls_name != CHECK_FAILED_ERROR:
                problems.append(f"{event.step_key}: {innermost_message(failure.error)}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed and evaluation.severity.value == "ERROR":
                problems.append(check_explanation(evaluation))
    return list(dict.fromkeys(problems))


def run_warnings(result) -> list[str]:
    """Failed checks that did not stop the run (e.g. a few rows quarantined): worth a look."""
    return list(
        dict.fromkeys(
            check_explanation(event.event_specific_data)
            for event in result.all_events
            if event.event_type_value == "ASSET_CHECK_EVALUATION"
            and not event.event_specific_data.passed
            and event.event_specific_data.severity.value == "WARN"
        )
    )


def innermost_message(error) -> str:
    """The user's exception, not Dagster's wrapper around it."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()  # already "ExceptionClass: text"


def check_explanation(evaluation) -> str:
    summary = evaluation.metadata.get("summary")
    detail = summary.value if summary is not None else evaluation.description or "failed"
    return f"{evaluation.asset_key.to_user_string()} / {evaluation.check_name}: {detail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the whole evaluation job")
    run_parser.add_argument("--demo-firms", type=int, default=DEMO_FIRMS, help="size of generated demo data")
    args = parser.parse_args(argv)
    try:
        return run(args.demo_firms)
    except Exception as error:  # the last line a user sees is a sentence, not a traceback
        print(f"\nerror: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
