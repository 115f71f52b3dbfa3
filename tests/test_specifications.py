"""Specifications estimated apart (one step each) and combined equal one evaluation of the whole plan."""

import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
from analyses.evaluation import EvaluationPlan, run_evaluation
from analyses.panel import build_firm_year_panel
from analyses.specifications import combine_results, split_plan


@pytest.fixture(scope="module")
def built():
    demo = generate_demo_data(n_firms=1_500, seed=11)
    return build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports)


def _assert_same(left, right):
    if isinstance(left, pd.DataFrame):
        pd.testing.assert_frame_equal(left, right)
    else:
        assert left == right


@pytest.mark.parametrize("services", [("advisory", "network", "grant"), ("grant", "advisory"), ()])
def test_split_and_combined_evaluation_equals_the_whole_plan(built, services):
    plan = EvaluationPlan(services=services, outcomes=("exporter", "starts_exporting"), bootstrap_iterations=49)
    whole = run_evaluation(built.panel, plan, account=built.account)
    parts = split_plan(plan)
    assert list(parts) == (list(services) or ["all"])
    results = [run_evaluation(built.panel, part, account=built.account) for part in parts.values()]
    combined = combine_results(results[::-1], plan)  # steps finish in any order
    pd.testing.assert_frame_equal(combined.estimates, whole.estimates)
    assert set(combined.diagnostics) == set(whole.diagnostics)
    for key, value in whole.diagnostics.items():
        _assert_same(combined.diagnostics[key], value)


def test_parts_from_different_panels_are_refused(built):
    plan = EvaluationPlan(services=("advisory", "grant"), outcomes=("exporter",), bootstrap_iterations=0)
    advisory, grant = split_plan(plan).values()
    first = run_evaluation(built.panel, advisory, account=built.account)
    other = run_evaluation(built.panel.iloc[: len(built.panel) // 2], grant, account=built.account)
    with pytest.raises(ValueError, match="differ between specifications"):
        combine_results([first, other], plan)
