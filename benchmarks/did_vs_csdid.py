"""Speed and memory of analyses.did against the Python ``csdid`` package on one synthetic panel.

    .venv/bin/python benchmarks/did_vs_csdid.py [--firms 100000] [--years 12] [--biters 999] [--skip-csdid]

Workload: ``firms x years`` balanced panel, 6 treated cohorts plus never-treated, two
covariates (``~ x1 + x2``), ``est_method="dr"``, multiplier bootstrap with ``biters``
draws and uniform bands, then all four aggregations.  Each estimator runs in its own
fresh subprocess on the same data file, so each peak RSS (``ru_maxrss``) belongs to
one estimator alone; the parent checks that both produced the same point estimates.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

AGGREGATIONS = ["simple", "group", "dynamic", "calendar"]
COHORTS = [3, 4, 5, 6, 7, 8]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _run_ours(data, biters):
    from analyses.did import aggte, att_gt

    result = att_gt(data, "y", "period", "unit", "first_treat", xformla="~ x1 + x2", est_method="dr",
                    biters=biters, cband=True, random_state=1, progress=True)
    aggregations = {kind: aggte(result, kind) for kind in AGGREGATIONS}
    estimates = {"att_gt": result.att, "se_gt": result.se}
    for kind, agg in aggregations.items():
        estimates[f"{kind}_overall"] = np.array([agg.overall_att, agg.overall_se])
        if agg.table is not None:
            estimates[f"{kind}_egt"] = agg.table.att.to_numpy()
    return estimates


def _run_csdid(data, biters):
    from csdid.att_gt import ATTgt

    np.random.seed(1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = ATTgt(yname="y", gname="first_treat", idname="unit", tname="period", xformla="y ~ x1 + x2",
                      data=data, biters=biters, cband=True).fit(est_method="dr", bstrap=True)
        estimates = {"att_gt": np.asarray(model.results["att"], float),
                     "se_gt": np.asarray(model.results["se"], float)}
        for kind in AGGREGATIONS:
            print(f"csdid aggte({kind})", file=sys.stderr, flush=True)
            agg = model.aggte(typec=kind).atte
            estimates[f"{kind}_overall"] = np.array([np.ravel(agg["overall_att"])[0], np.ravel(agg["overall_se"])[0]])
            if agg["att_egt"] is not None:
                estimates[f"{kind}_egt"] = np.asarray(agg["att_egt"], float)
    return estimates


def worker(engine: str, data_path: str, out_path: str, biters: int) -> None:
    import pandas as pd

    data = pd.read_parquet(data_path)
    # time estimation, not module imports (csdid's and ours both pull in SciPy and friends)
    importlib.import_module("analyses.did" if engine == "ours" else "csdid.att_gt")
    baseline = _peak_rss_mb()
    start = time.perf_counter()
    estimates = (_run_ours if engine == "ours" else _run_csdid)(data, biters)
    seconds = time.perf_counter() - start
    np.savez(out_path, **estimates)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "baseline_rss_mb": baseline}))


def _spawn(engine, data_path, workdir, biters):
    out_path = Path(workdir) / f"{engine}.npz"
    completed = subprocess.run(
        [sys.executable, __file__, "--worker", engine, "--data", str(data_path), "--out", str(out_path),
         "--biters", str(biters)], stdout=subprocess.PIPE, text=True, check=True)
    stats = json.loads(completed.stdout.strip().splitlines()[-1])
    return stats, dict(np.load(out_path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--firms", type=int, default=100_000)
    parser.add_argument("--years", type=int, default=12)
    parser.add_argument("--biters", type=int, default=999)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-csdid", action="store_true", help="time analyses.did alone")
    parser.add_argument("--worker", choices=["ours", "csdid"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for analyses.*
    if args.worker:
        worker(args.worker, args.data, args.out, args.biters)
        return

    from analyses.did.simulate import simulate_staggered_panel

    data = simulate_staggered_panel(args.firms, args.years, COHORTS, selection_on_x=0.3, covariate_trend=0.1,
                                    seed=args.seed).drop(columns="true_effect")
    print(f"panel: {args.firms:,} firms x {args.years} years = {len(data):,} rows, cohorts {COHORTS} + never-treated, "
          f"covariates ~ x1 + x2, dr, {args.biters} bootstrap draws, aggregations {AGGREGATIONS}")
    with tempfile.TemporaryDirectory() as workdir:
        data_path = Path(workdir) / "panel.parquet"
        data.to_parquet(data_path)
        ours_stats, ours = _spawn("ours", data_path, workdir, args.biters)
        print(f"analyses.did: {ours_stats['seconds']:8.2f} s   peak RSS {ours_stats['peak_rss_mb']:7.0f} MB "
              f"(after loading data: {ours_stats['baseline_rss_mb']:.0f} MB)")
        if args.skip_csdid:
            return
        csdid_stats, theirs = _spawn("csdid", data_path, workdir, args.biters)
        print(f"csdid 0.4.3 : {csdid_stats['seconds']:8.2f} s   peak RSS {csdid_stats['peak_rss_mb']:7.0f} MB "
              f"(after loading data: {csdid_stats['baseline_rss_mb']:.0f} MB)")
    print(f"speed-up: {csdid_stats['seconds'] / ours_stats['seconds']:.1f}x")
    point_keys = ["att_gt"] + [k for k in ours if k.endswith("_egt")]
    worst_point = max(np.max(np.abs(ours[k] - theirs[k])) for k in point_keys)
    worst_overall = max(abs(ours[f"{k}_overall"][0] - theirs[f"{k}_overall"][0]) for k in AGGREGATIONS)
    se_ratio = np.nanmax(np.abs(ours["se_gt"] / theirs["se_gt"] - 1))
    print(f"max |ATT difference|: cells and aggregated rows {worst_point:.2e}, overall effects {worst_overall:.2e}")
    print(f"max relative difference of bootstrap SE(g,t) (independent random draws): {se_ratio:.1%}")
    if max(worst_point, worst_overall) > 1e-8:
        raise SystemExit("estimates disagree")


if __name__ == "__main__":
    main()
