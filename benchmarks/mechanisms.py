"""Benchmark: the full default mechanism plan on a realistic delivery (goal: at most 3 minutes on 2 cores).

Generates the realistic demo (default 40,000 firms, 2012-2023: 12 years), builds the firm-year panel, then runs
every family of the default plan (``analyses.mechanisms.families``) in this process and prints the seconds per
family, their total, and the process's peak resident memory (``resource.getrusage``; the panel and the demo
data included). The machine's load average is printed beside them: on a shared machine the figures are upper
bounds. Generation and the panel are timed apart (not part of the goal).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/mechanisms.py [--firms 40000] [--families dose value]
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 180


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    from analyses.demo_data import generate_demo_data
    from analyses.evaluation import EvaluationPlan
    from analyses.mechanisms.families import RUNNERS, run_bundles
    from analyses.mechanisms.plan import FAMILY_NAMES
    from analyses.panel import build_firm_year_panel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=40_000)
    parser.add_argument("--first-year", type=int, default=2012)
    parser.add_argument("--last-year", type=int, default=2023)
    parser.add_argument("--families", nargs="*", default=list(FAMILY_NAMES), choices=FAMILY_NAMES)
    args = parser.parse_args(argv)

    print(f"cores {os.cpu_count()}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    started = time.perf_counter()
    data = generate_demo_data(n_firms=args.firms, first_year=args.first_year, last_year=args.last_year)
    generated = time.perf_counter()
    panel = build_firm_year_panel(data.firms, data.financials, data.participation, data.exports).panel
    print(f"demo data {args.firms:,} firms, {args.last_year - args.first_year + 1} years: generated in "
          f"{generated - started:.1f} s, panel of {len(panel):,} firm-years in {time.perf_counter() - generated:.1f} s; "
          f"peak RSS {_peak_mb():,.0f} MB")
    plan = EvaluationPlan()
    print(f"default plan: {plan.bootstrap_iterations} bootstrap iterations, services {list(plan.services)}")
    print(f"  {'family':<12} {'seconds':>8} {'rows':>7} {'specs':>6} {'not est.':>8} {'peak RSS MB':>12}")
    total = 0.0
    for family in args.families:
        begun = time.perf_counter()
        result = run_bundles(panel, data.participation, plan) if family == "bundles" else RUNNERS[family](panel, plan)
        seconds = time.perf_counter() - begun
        total += seconds
        print(f"  {family:<12} {seconds:>8.1f} {len(result.rows):>7,} {len(result.specifications):>6} "
              f"{len(result.not_estimable):>8} {_peak_mb():>12,.0f}", flush=True)
    print(f"  {'total':<12} {total:>8.1f}   goal {GOAL_SECONDS} s: {'met' if total <= GOAL_SECONDS else 'MISSED'}; "
          f"load average now {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
