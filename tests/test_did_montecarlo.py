"""Monte Carlo: 95% intervals of the simple and dynamic aggregations cover the truth 93-97% of the time.

DGP (analyses.did.simulate): 600 firms, 5 periods, cohorts 3/4/5 plus never-treated;
treatment take-up rises with a covariate x1 that also shifts outcome trends, so parallel
trends hold only conditional on x1 and the doubly robust estimator with ``~ x1`` is used.
Effects differ by cohort and grow with exposure.  Because every treated cohort is tilted
by x1 in the same way, cohort shares among the treated equal ``COHORT_PROBS`` and the
aggregated truths are exact.

Three checks: analytic standard errors (pointwise); what the pipeline reports
(multiplier-bootstrap standard errors with 999 draws and the uniform sup-t band of the
event study, whose coverage must hold for all event times at once); and double
robustness (outcome trend quadratic in x1, so the outcome model is wrong while the
propensity score is right).
"""
import time
import warnings

import numpy as np
import pytest

from analyses.did import aggte, att_gt
from analyses.did.simulate import heterogeneous_dynamic_effect, simulate_staggered_panel

REPLICATIONS = 2000
BOOTSTRAP_REPLICATIONS = 2000
DOUBLY_ROBUST_REPLICATIONS = 2000
PIPELINE_BITERS = 999  # analyses.evaluation.EvaluationPlan.bootstrap_iterations
N_UNITS, N_PERIODS, COHORTS = 600, 5, [3, 4, 5]
COHORT_PROBS = [0.4, 0.2, 0.2, 0.2]  # never-treated first
QUADRATIC_TREND = 0.25  # outcome-regression intervals then cover ~70%: the misspecification bites


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


def _panel(seed, quadratic_trend=0.0):
    return simulate_staggered_panel(N_UNITS, N_PERIODS, COHORTS, cohort_probs=COHORT_PROBS, selection_on_x=0.7,
                                    covariate_trend=0.3, quadratic_trend=quadratic_trend, seed=seed)


def _att_gt(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-group notes in unlucky draws
        return att_gt(data, "y", "period", "unit", "first_treat", xformla="~ x1", **options)


def _as_pipeline(data, seed):
    """``att_gt`` with the options analyses.evaluation uses (bootstrap SEs, uniform bands); ``aggte`` inherits them."""
    return _att_gt(data, bstrap=True, biters=PIPELINE_BITERS, cband=True, random_state=seed)


def _covers(aggregate, truth):
    return aggregate.overall_ci_lower <= truth <= aggregate.overall_ci_upper


def _assert_coverage(coverage):
    print("coverage:", {name: round(float(value), 4) for name, value in coverage.items()})
    for name, value in coverage.items():
        assert 0.93 <= value <= 0.97, f"{name}: coverage {value:.3f} outside [0.93, 0.97] ({coverage})"


@pytest.mark.slow
def test_confidence_intervals_cover_truth():
    simple_truth, dynamic_truth, dynamic_overall_truth = _truths()
    hits = {"simple": 0, "dynamic overall": 0, **{f"e={e}": 0 for e in dynamic_truth}}
    for replication in range(REPLICATIONS):
        result = _att_gt(_panel(replication), bstrap=False)
        simple = aggte(result, "simple")
        dynamic = aggte(result, "dynamic", cband=False)
        hits["simple"] += _covers(simple, simple_truth)
        hits["dynamic overall"] += _covers(dynamic, dynamic_overall_truth)
        for row in dynamic.table.itertuples(index=False):
            hits[f"e={row.event_time}"] += row.ci_lower <= dynamic_truth[row.event_time] <= row.ci_upper
    _assert_coverage({name: count / REPLICATIONS for name, count in hits.items()})


@pytest.mark.slow
def test_pipeline_bootstrap_intervals_and_uniform_band_cover_truth():
    """Pointwise coverage with bootstrap SEs, and simultaneous coverage of the event-study band."""
    simple_truth, dynamic_truth, dynamic_overall_truth = _truths()
    hits = {"simple": 0, "dynamic overall": 0, "uniform band, all event times": 0}
    start = time.perf_counter()
    for replication in range(BOOTSTRAP_REPLICATIONS):
        result = _as_pipeline(_panel(replication), seed=replication)
        simple, dynamic = aggte(result, "simple"), aggte(result, "dynamic")
        assert dynamic.bstrap and dynamic.cband, "the event study must report a bootstrap uniform band"
        assert list(dynamic.table.event_time) == sorted(dynamic_truth)
        truth = dynamic.table.event_time.map(dynamic_truth)
        hits["simple"] += _covers(simple, simple_truth)
        hits["dynamic overall"] += _covers(dynamic, dynamic_overall_truth)
        hits["uniform band, all event times"] += bool(
            ((dynamic.table.ci_lower <= truth) & (truth <= dynamic.table.ci_upper)).all())
    print(f"{BOOTSTRAP_REPLICATIONS} replications in {time.perf_counter() - start:.0f} s")
    _assert_coverage({name: count / BOOTSTRAP_REPLICATIONS for name, count in hits.items()})


@pytest.mark.slow
def test_doubly_robust_coverage_with_misspecified_outcome_model():
    """Outcome trend quadratic in x1, propensity score logit-linear in x1: dr stays valid, reg does not."""
    simple_truth = _truths()[0]
    dr_hits = reg_hits = 0
    start = time.perf_counter()
    for replication in range(DOUBLY_ROBUST_REPLICATIONS):
        data = _panel(100_000 + replication, quadratic_trend=QUADRATIC_TREND)
        dr_hits += _covers(aggte(_as_pipeline(data, seed=replication), "simple"), simple_truth)
        reg_hits += _covers(aggte(_att_gt(data, est_method="reg", bstrap=False), "simple"), simple_truth)
    print(f"{DOUBLY_ROBUST_REPLICATIONS} replications in {time.perf_counter() - start:.0f} s; "
          f"reg (misspecified outcome model) coverage {reg_hits / DOUBLY_ROBUST_REPLICATIONS:.4f}")
    assert reg_hits / DOUBLY_ROBUST_REPLICATIONS < 0.8, "the design must actually misspecify the outcome model"
    _assert_coverage({"simple (dr, bootstrap)": dr_hits / DOUBLY_ROBUST_REPLICATIONS})
