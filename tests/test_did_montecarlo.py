"""Monte Carlo: 95% intervals of the simple and dynamic aggregations cover the truth 93-97% of the time.

DGP (analyses.did.simulate): 600 firms, 5 periods, cohorts 3/4/5 plus never-treated;
treatment take-up rises with a covariate x1 that also shifts outcome trends, so parallel
trends hold only conditional on x1 and the doubly robust estimator with ``~ x1`` is used.
Effects differ by cohort and grow with exposure.  Because every treated cohort is tilted
by x1 in the same way, cohort shares among the treated equal ``COHORT_PROBS`` and the
aggregated truths are exact.
"""
import warnings

import numpy as np
import pytest

from analyses.did import aggte, att_gt
from analyses.did.simulate import heterogeneous_dynamic_effect, simulate_staggered_panel

REPLICATIONS = 2000
N_UNITS, N_PERIODS, COHORTS = 600, 5, [3, 4, 5]
COHORT_PROBS = [0.4, 0.2, 0.2, 0.2]  # never-treated first


def _truths():
    shares = dict(zip(COHORTS, COHORT_PROBS[1:]))
    cells = [(g, t) for g in COHORTS for t in range(g, N_PERIODS + 1)]
    effect = {(g, t): float(heterogeneous_dynamic_effect(np.float64(g), np.float64(t - g))) for g, t in cells}
    simple = sum(shares[g] * effect[g, t] for g, t in cells) / sum(shares[g] for g, _ in cells)
    dynamic = {}
    for e in range(0, N_PERIODS - min(COHORTS) + 1):
        members = [g for g in COHORTS if g + e <= N_PERIODS]
        dynamic[e] = sum(shares[g] * effect[g, g + e] for g in members) / sum(shares[g] for g in members)
    for e in range(1 - max(COHORTS) + 1, 0):
        dynamic[e] = 0.0  # pre-treatment placebo effects
    dynamic_overall = np.mean([v for e, v in dynamic.items() if e >= 0])
    return simple, dynamic, dynamic_overall


@pytest.mark.slow
def test_confidence_intervals_cover_truth():
    simple_truth, dynamic_truth, dynamic_overall_truth = _truths()
    hits = {"simple": 0, "dynamic overall": 0, **{f"e={e}": 0 for e in dynamic_truth}}
    for replication in range(REPLICATIONS):
        data = simulate_staggered_panel(N_UNITS, N_PERIODS, COHORTS, cohort_probs=COHORT_PROBS,
                                        selection_on_x=0.7, covariate_trend=0.3, seed=replication)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # small-group notes in unlucky draws
            result = att_gt(data, "y", "period", "unit", "first_treat", xformla="~ x1", bstrap=False)
        simple = aggte(result, "simple")
        dynamic = aggte(result, "dynamic", cband=False)
        hits["simple"] += simple.overall_ci_lower <= simple_truth <= simple.overall_ci_upper
        hits["dynamic overall"] += dynamic.overall_ci_lower <= dynamic_overall_truth <= dynamic.overall_ci_upper
        for row in dynamic.table.itertuples(index=False):
            hits[f"e={row.event_time}"] += row.ci_lower <= dynamic_truth[row.event_time] <= row.ci_upper
    coverage = {name: count / REPLICATIONS for name, count in hits.items()}
    print("coverage:", {name: round(float(value), 4) for name, value in coverage.items()})
    for name, value in coverage.items():
        assert 0.93 <= value <= 0.97, f"{name}: coverage {value:.3f} outside [0.93, 0.97] ({coverage})"
