"""Benchmark: the full default evaluation plan on a realistic delivery (goal: at most 3 minutes on 2 cores).

Generates the realistic demo (default 40,000 firms, 2012-2023: 12 years), builds the firm-year panel, then runs
every stage of the default plan in this process, one after another, as the Dagster job's analysis steps do:
the headline (``run_evaluation``: CS and TWFE for every service and outcome), every mechanism family
(``analyses.mechanisms.families``), the sensitivity analysis of the headline's event studies and the robustness
runs. It prints the seconds per stage, their sum (one core), the two-core figure (the stages dealt to two
workers as the job's two-process executor runs its steps: the headline one step per service, sensitivity and
robustness after it, the families whenever a worker is free) and the process's peak resident memory (``resource.getrusage``; the panel and the
demo data included). The machine's load average is printed beside them: on a shared machine the figures are
upper bounds. Generation and the panel are timed apart (not part of the goal).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/mechanisms.py [--firms 40000] [--families dose value]
"""

import argparse
import os
import resource
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 180


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    from analyses.demo_data import generate_demo_data
    from analyses.evaluation import EvaluationPlan, run_evaluation
    from analyses.mechanisms.families import RUNNERS, run_bundles
    from analyses.mechanisms.plan import FAMILY_NAMES
    from analyses.panel import build_firm_year_panel
    from analyses.robustness import run_robustness
    from analyses.sensitivity import sensitivity_table
    from analyses.specifications import combine_results, split_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=40_000)
    parser.add_argument("--first-year", type=int, default=2012)
    parser.add_argument("--last-year", type=int, default=2023)
    parser.add_argument("--families", nargs="*", default=list(FAMILY_NAMES), choices=FAMILY_NAMES)
    parser.add_argument("--no-headline", dest="headline", action="store_false",
                        help="time the mechanism families only (not the headline, sensitivity and robustness)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # the estimators' notes on left-out cells and cohorts: not what is measured

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
    print(f"  {'stage':<17} {'seconds':>8} {'rows':>7} {'specs':>6} {'not est.':>8} {'peak RSS MB':>12}")
    seconds = {}

    def timed(stage: str, run) -> object:
        begun = time.perf_counter()
        result = run()
        seconds[stage] = time.perf_counter() - begun
        rows, specs, failed = (result.rows, result.specifications, result.not_estimable) if hasattr(result, "rows") \
            else (result if isinstance(result, pd.DataFrame) else result.estimates, [], [])
        print(f"  {stage:<17} {seconds[stage]:>8.1f} {len(rows):>7,} {len(specs) or '':>6} {len(failed) or '':>8} "
              f"{_peak_mb():>12,.0f}", flush=True)
        return result

    if args.headline:  # one step per service, as the job's did_estimates fans out, then the combined result
        parts = [timed(f"headline {key}", lambda: run_evaluation(panel, specification))
                 for key, specification in split_plan(plan).items()]
        evaluation = combine_results(parts, plan)
        timed("sensitivity", lambda: sensitivity_table(evaluation.diagnostics["event_studies"], plan.sensitivity_mbar,
                                                       plan.sensitivity_m, plan.alpha, plan.sensitivity_pre_periods))
        timed("robustness", lambda: run_robustness(panel, plan, evaluation.estimates))
    for family in args.families:
        timed(family, lambda: run_bundles(panel, data.participation, plan) if family == "bundles"
              else RUNNERS[family](panel, plan))
    total, two_cores = sum(seconds.values()), _workers(seconds, 2)
    print(f"  {'sum':<17} {total:>8.1f}   (one core)")
    print(f"  {'two cores':<17} {two_cores:>8.1f}   goal {GOAL_SECONDS} s: "
          f"{'met' if two_cores <= GOAL_SECONDS else 'MISSED'}; load average now "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _workers(seconds: dict[str, float], workers: int) -> float:
    """Finish time of the stages on ``workers`` processes (list scheduling): whenever a worker is free it takes,
    of the stages whose inputs are ready, the one heading the longest chain of work (sensitivity and robustness
    read every headline step; the families only the panel)."""
    headline = [s for s in seconds if s.startswith("headline")]
    needs = {s: headline if s in ("sensitivity", "robustness") else [] for s in seconds}
    chain = {s: seconds[s] + max((seconds[t] for t in seconds if s in needs[t]), default=0.0) for s in seconds}
    done, free, waiting = {}, [0.0] * workers, set(seconds)
    while waiting:
        worker = min(range(workers), key=lambda w: free[w])
        ready = [s for s in waiting if all(d in done and done[d] <= free[worker] for d in needs[s])]
        if not ready:  # idle until the next stage finishes
            free[worker] = min(t for t in done.values() if t > free[worker])
            continue
        stage = max(ready, key=lambda s: chain[s])
        start = free[worker]
        done[stage] = free[worker] = start + seconds[stage]
        waiting.remove(stage)
    return max(done.values())


if __name__ == "__main__":
    main()
