"""Benchmark: wall time of the whole job with the in-process, multiprocess and Celery executors.

Generates the realistic demo delivery (40,000 firms by default), starts its own PostgreSQL and
Redis in temporary folders, and runs ``python -m pipelines.cli run`` three times on the agency
profile (PostgreSQL instance, so only the executor differs): in-process, multiprocess with at most
2 concurrent steps, and Celery with 2 workers. Prints the wall time of each run, the span of the
estimation steps (one per service, the part that runs in parallel) and the CPU count, and checks
that the three published ``estimates.csv`` are identical.

    .venv/bin/python benchmarks/executors.py [--firms 40000] [--plan plan.yaml]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyses.demo_data import write_demo_data  # noqa: E402
from tests.services import celery_workers, missing_services, postgres_server, redis_server  # noqa: E402

STEP_LINE = re.compile(r"^\s+(?P<step>\S+): done \((?P<seconds>[\d.]+) s\)$", re.MULTILINE)
WORKERS = 2


def _run(env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed ({env['EXPORT_IMPACT_EXECUTOR']}):\n{done.stdout}\n{done.stderr}")
    return wall, done.stdout


def _estimation_seconds(stdout: str) -> tuple[float, int]:
    """Sum of the per-service estimation steps' durations and how many there were."""
    steps = [float(m["seconds"]) for m in STEP_LINE.finditer(stdout) if "estimate_specification[" in m["step"]]
    return sum(steps), len(steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=40_000)
    parser.add_argument("--plan", default="", help="evaluation plan YAML (default: the built-in plan)")
    args = parser.parse_args(argv)
    if missing_services():
        raise SystemExit(missing_services())
    work = Path(tempfile.mkdtemp(prefix="export-impact-bench-"))
    try:
        _compare(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compare(args: argparse.Namespace, work: Path) -> None:
    started = time.perf_counter()
    write_demo_data(work / "landing", n_firms=args.firms)
    print(f"demo delivery: {args.firms:,} firms generated in {time.perf_counter() - started:.0f} s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_IMPACT_", "DAGSTER_PG_"))}
    results = {}
    with postgres_server() as postgres, redis_server() as broker:
        common = {**base, **postgres.env(), "EXPORT_IMPACT_PROFILE": "agency", "PYTHONPATH": str(ROOT),
                  "EXPORT_IMPACT_LANDING_DIR": str(work / "landing"), "EXPORT_IMPACT_PLAN": args.plan,
                  "GX_ANALYTICS_ENABLED": "false", "MPLBACKEND": "Agg", "DAGSTER_HOME": str(work / "home")}
        subprocess.run([sys.executable, "-m", "pipelines.instance"], cwd=ROOT, env=common, check=True,
                       capture_output=True)
        for name, settings in (
            ("in_process", {}),
            ("multiprocess", {"EXPORT_IMPACT_MAX_CONCURRENT_STEPS": str(WORKERS)}),
            ("celery", {"EXPORT_IMPACT_CELERY_BROKER": broker}),
        ):
            env = {**common, **settings, "EXPORT_IMPACT_EXECUTOR": name,
                   "EXPORT_IMPACT_OUTPUT_DIR": str(work / name / "out"),
                   "EXPORT_IMPACT_WAREHOUSE": str(work / name / "warehouse")}
            if name == "celery":
                with celery_workers(env, count=WORKERS, log_dir=work):
                    results[name] = _run(env)
            else:
                results[name] = _run(env)
            print(f"  {name}: {results[name][0]:.0f} s", flush=True)
    estimates = {name: next((work / name / "out").glob("[!.]*/estimates.csv")).read_bytes() for name in results}
    same = len(set(estimates.values())) == 1
    print(f"\nWhole job on {args.firms:,} firms (PostgreSQL instance; {WORKERS} processes or workers):")
    print(f"{'executor':<14}{'wall time':>11}{'estimation steps (sum)':>25}{'speed-up':>10}")
    reference = results["in_process"][0]
    for name, (wall, stdout) in results.items():
        seconds, count = _estimation_seconds(stdout)
        # Celery workers print their steps' lines in their own logs, not the run's terminal
        steps = f"{seconds:>15.0f} s in {count}" if count else f"{'(in the workers)':>22}"
        print(f"{name:<14}{wall:>9.0f} s{steps}{reference / wall:>9.2f}x")
    print(f"estimates.csv identical across executors: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
