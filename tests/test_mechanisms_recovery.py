"""Each mechanism planted in the realistic demo is recovered by its family within the 95 % interval.

The truths (``analyses.demo_data``: ``true_effects`` and ``mechanism_truths``) are those of the estimand each
estimator targets, from simulating every firm with and without support (and without later-added services).
Every check prints its standardised error z = (estimate - truth) / SE; the table is in the assertion message
of any failure and printed with ``-s``.
"""
import numpy as np
import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
from analyses.evaluation import EvaluationPlan, run_evaluation
from analyses.mechanisms.families import RUNNERS
from analyses.panel import build_firm_year_panel

pytestmark = pytest.mark.slow

N_FIRMS = 10_000
PLAN = EvaluationPlan(bootstrap_iterations=199, families={"subgroups": ["in_cluster"]})


@pytest.fixture(scope="module")
def realistic():
    data = generate_demo_data(n_firms=N_FIRMS)
    panel = build_firm_year_panel(data.firms, data.financials, data.participation, data.exports).panel
    rows = pd.concat([RUNNERS[f](panel, PLAN).rows for f in ("dose", "subgroups", "value", "sequences",
                                                             "persistence")], ignore_index=True)
    truths = pd.concat([data.true_effects, data.mechanism_truths], ignore_index=True)
    return data, panel, rows, truths


def _truth(truths: pd.DataFrame, treatment, outcome, aggregation, subgroup="", event_time=None) -> float:
    match = truths[(truths["treatment"] == treatment) & (truths["outcome"] == outcome)
                   & (truths["aggregation"] == aggregation) & (truths["subgroup"].fillna("") == subgroup)]
    match = match[match["event_time"].isna()] if event_time is None else match[match["event_time"] == event_time]
    assert len(match) == 1, (treatment, outcome, aggregation, subgroup, event_time, len(match))
    return float(match["true_effect"].iloc[0])


def _z_table(estimates: pd.DataFrame, truths: list[float], mechanism: str) -> pd.DataFrame:
    return estimates.assign(truth=truths, z=(estimates["estimate"].to_numpy() - np.asarray(truths))
                            / estimates["std_error"].to_numpy(), mechanism=mechanism,
                            covered=(estimates["ci_lower"].to_numpy() <= truths)
                            & (np.asarray(truths) <= estimates["ci_upper"].to_numpy()))


def _overall(rows: pd.DataFrame, family: str, aggregation: str) -> pd.DataFrame:
    return rows[(rows["family"] == family) & (rows["aggregation"] == aggregation) & rows["event_time"].isna()
                & rows["dose"].isna()]


def _report(table: pd.DataFrame) -> str:
    columns = ["mechanism", "treatment", "outcome", "subgroup", "event_time", "estimate", "truth", "std_error", "z"]
    text = table[[c for c in columns if c in table]].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print("\n" + text)
    return text


def test_dose_slope_is_recovered(realistic):
    _, _, rows, truths = realistic
    slopes = _overall(rows, "dose", "dose_slope")
    slopes = slopes[slopes["outcome"] == "exporter"]
    table = _z_table(slopes, [_truth(truths, r.treatment, r.outcome, "dose_slope") for r in slopes.itertuples()],
                     "dose slope (ACRT)")
    assert len(table) == 3 and table["covered"].all(), _report(table)
    _report(table)


def test_network_effect_is_bigger_outside_clusters_and_the_difference_is_detected(realistic):
    _, _, rows, truths = realistic
    network = rows[(rows["family"] == "subgroups") & (rows["treatment"] == "network") & (rows["outcome"] == "exporter")]
    groups = network[network["aggregation"] == "dynamic_balanced"].sort_values("subgroup")
    table = _z_table(groups, [_truth(truths, "network", "exporter", "dynamic_balanced", s) for s in groups["subgroup"]],
                     "network by cluster")
    assert list(groups["subgroup"]) == ["in_cluster=0", "in_cluster=1"]
    assert table["covered"].all(), _report(table)
    outside, inside = groups["estimate"]
    assert outside > inside
    test = network[network["aggregation"] == "subgroup_difference"].iloc[0]
    assert test["p_value"] < 0.05 and test["estimate"] > 0, test
    _report(table)
    print(f"difference outside - inside {test['estimate']:.4f} (SE {test['std_error']:.4f}), p = {test['p_value']:.2g}, "
          f"Holm-adjusted {test['p_value_adjusted']:.2g}")


def test_fading_grant_effects_are_recovered_year_by_year(realistic):
    _, panel, _, truths = realistic
    plan = EvaluationPlan(services=("grant",), outcomes=("exporter",), bootstrap_iterations=199)
    estimates = run_evaluation(panel, plan).estimates
    window = estimates[(estimates["estimator"] == "cs_did") & (estimates["aggregation"] == "dynamic_balanced")
                       & estimates["event_time"].notna()].sort_values("event_time")
    table = _z_table(window, [_truth(truths, "grant", "exporter", "dynamic_balanced", event_time=int(e))
                              for e in window["event_time"]], "grant by event time (fading)")
    assert list(window["event_time"]) == [0, 1, 2, 3]
    assert table["covered"].all(), _report(table)
    # planted: the grant's effect fades; so does the estimated profile (each year within its band)
    assert table["truth"].iloc[-1] < table["truth"].iloc[0]
    assert window["estimate"].iloc[-1] < window["estimate"].iloc[0]
    _report(table)


def test_incremental_second_service_is_recovered(realistic):
    _, _, rows, truths = realistic
    sequences = _overall(rows, "sequences", "dynamic_balanced")
    table = _z_table(sequences, [_truth(truths, r.treatment, r.outcome, "dynamic_balanced")
                                 for r in sequences.itertuples()], "second service added")
    # every ordered pair of services, two outcomes; exporting (the primary outcome) always covered, and at
    # most one of the twelve intervals missing its truth (about 0.6 expected at 95 %)
    assert len(table) == 12 and table.loc[table["outcome"] == "exporter", "covered"].all(), _report(table)
    assert (~table["covered"]).sum() <= 1, _report(table)
    _report(table)


def test_proportional_value_effect_is_recovered(realistic):
    _, _, rows, truths = realistic
    value = _overall(rows, "value", "simple")
    value = value[value["estimator"] == "etwfe_poisson"]
    table = _z_table(value, [_truth(truths, r.treatment, "export_value_eur", "proportional")
                             for r in value.itertuples()],
                     "proportional value (Poisson)")
    assert len(table) == 3 and table["covered"].all(), _report(table)
    _report(table)


def test_persistence_is_recovered(realistic):
    _, _, rows, truths = realistic
    persistence = _overall(rows, "persistence", "dynamic_balanced")
    table = _z_table(persistence, [_truth(truths, r.treatment, r.outcome, "dynamic_balanced")
                                   for r in persistence.itertuples()], "persistence")
    assert len(table) == 12 and table["covered"].all(), _report(table)
    _report(table)
