"""Each mechanism planted in the realistic demo is recovered by its family, over several draws of the demo.

The truths (``analyses.demo_data``: ``true_effects`` and ``mechanism_truths``) are those of the estimand each
estimator targets, from simulating every firm with and without support (and without later-added services).
Every check prints its standardised errors z = (estimate - truth) / SE per seed; the table is in the assertion
message of any failure and printed with ``-s``.

One draw cannot tell a biased estimator from an unlucky draw: with dozens of 95 % intervals some miss by
chance (the network in-cluster subgroup of the default seed sits at z = -2.1, and so does the same estimate
on that seed's untreated world, where the effect is zero). So each mechanism is judged on ``SEEDS``, the
default demo seed first, by what 95 % intervals promise:

* coverage: at most the misses 95 % intervals allow (binomial, one-sided 99 %: 2 of 8, 3 of 12, 6 of 48);
* no bias: the mean z over the draws within 3 / sqrt(draws) of zero (each draw's mean z has SD <= 1; the
  persistence models with base-period covariates, biased by regression to the mean, sat at mean z ~ +1.6);
* the planted pattern itself: the subgroup difference detected on every draw, the grant effect fading.
"""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from analyses.demo_data import DEFAULT_SEED, demo_worlds, generate_demo_data
from analyses.evaluation import EvaluationPlan, run_evaluation
from analyses.mechanisms.families import RUNNERS
from analyses.panel import build_firm_year_panel

pytestmark = pytest.mark.slow

N_FIRMS = 10_000
SEEDS = (DEFAULT_SEED, 1, 2, 3)
PLAN = EvaluationPlan(bootstrap_iterations=199)


@pytest.fixture(scope="module")
def draws():
    """Per seed: the panel, the families' rows and the truths."""
    out = {}
    for seed in SEEDS:
        data = generate_demo_data(n_firms=N_FIRMS, seed=seed)
        panel = build_firm_year_panel(data.firms, data.financials, data.participation, data.exports).panel
        rows = pd.concat([RUNNERS[f](panel, PLAN).rows for f in ("dose", "subgroups", "value", "sequences",
                                                                 "persistence")], ignore_index=True)
        out[seed] = (panel, rows, pd.concat([data.true_effects, data.mechanism_truths], ignore_index=True))
    return out


def _truth(truths: pd.DataFrame, treatment, outcome, aggregation, subgroup="", event_time=None) -> float:
    match = truths[(truths["treatment"] == treatment) & (truths["outcome"] == outcome)
                   & (truths["aggregation"] == aggregation) & (truths["subgroup"].fillna("") == subgroup)]
    match = match[match["event_time"].isna()] if event_time is None else match[match["event_time"] == event_time]
    assert len(match) == 1, (treatment, outcome, aggregation, subgroup, event_time, len(match))
    return float(match["true_effect"].iloc[0])


def _overall(rows: pd.DataFrame, family: str, aggregation: str) -> pd.DataFrame:
    return rows[(rows["family"] == family) & (rows["aggregation"] == aggregation) & rows["event_time"].isna()
                & rows["dose"].isna()]


def _z_table(draws, mechanism: str, select, truth_of) -> pd.DataFrame:
    """Estimates chosen by ``select(panel, rows)`` on every draw, with their truths ``truth_of(truths, row)``."""
    frames = []
    for seed, (panel, rows, truths) in draws.items():
        estimates = select(panel, rows)
        truth = np.array([truth_of(truths, row) for row in estimates.itertuples()])
        frames.append(estimates.assign(seed=seed, truth=truth, mechanism=mechanism,
                                       z=(estimates["estimate"].to_numpy() - truth) / estimates["std_error"].to_numpy(),
                                       covered=(estimates["ci_lower"].to_numpy() <= truth)
                                       & (truth <= estimates["ci_upper"].to_numpy())))
    return pd.concat(frames, ignore_index=True)


def _report(table: pd.DataFrame) -> str:
    columns = ["seed", "mechanism", "treatment", "outcome", "subgroup", "event_time", "estimate", "truth", "std_error",
               "z"]
    text = table[[c for c in columns if c in table]].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    text += (f"\n{len(table)} intervals, {int((~table['covered']).sum())} miss (allowed {_allowed_misses(len(table))}),"
             f" mean z {table['z'].mean():+.2f} (bound +-{3 / np.sqrt(table['seed'].nunique()):.2f})")
    print("\n" + text)
    return text


def _allowed_misses(n: int) -> int:
    """The most misses that n intervals of 95 % coverage give with probability 99 % (binomial)."""
    return int(binom.ppf(0.99, n, 0.05))


def _assert_recovered(table: pd.DataFrame) -> None:
    text = _report(table)
    assert (~table["covered"]).sum() <= _allowed_misses(len(table)), text
    per_draw = table.groupby("seed")["z"].mean()
    assert abs(per_draw.mean()) < 3 / np.sqrt(len(per_draw)), text


def test_dose_slope_is_recovered(draws):
    def select(_, rows):
        slopes = _overall(rows, "dose", "dose_slope")
        return slopes[slopes["outcome"] == "exporter"]

    table = _z_table(draws, "dose slope (ACRT)", select,
                     lambda truths, r: _truth(truths, r.treatment, r.outcome, "dose_slope"))
    assert table.groupby("seed").size().eq(3).all()
    _assert_recovered(table)


def test_every_subgroup_effect_is_recovered(draws):
    """Every service by cluster membership, size class and prior exporting (each matched in its base year)."""
    def select(_, rows):
        groups = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == "dynamic_balanced")]
        return groups.sort_values(["treatment", "subgroup"])

    table = _z_table(draws, "for whom", select,
                     lambda truths, r: _truth(truths, r.treatment, r.outcome, "dynamic_balanced", r.subgroup))
    assert table.groupby("seed").size().eq(3 * 7).all()  # 3 services x (2 + 3 + 2) values
    _assert_recovered(table)


def test_network_effect_is_bigger_outside_clusters_and_the_difference_is_detected(draws):
    def network(rows):
        return rows[(rows["family"] == "subgroups") & (rows["treatment"] == "network") & (rows["outcome"] == "exporter")
                    & rows["subgroup"].str.startswith("in_cluster")]

    def select(_, rows):
        return network(rows)[network(rows)["aggregation"] == "dynamic_balanced"].sort_values("subgroup")

    table = _z_table(draws, "network by cluster", select,
                     lambda truths, r: _truth(truths, "network", "exporter", "dynamic_balanced", r.subgroup))
    assert all(tuple(v) == ("in_cluster=0", "in_cluster=1") for _, v in table.groupby("seed")["subgroup"])
    _assert_recovered(table)
    for seed, (_, rows, _) in draws.items():
        groups = select(None, rows)
        outside, inside = groups["estimate"]
        assert outside > inside, seed
        test = network(rows)[network(rows)["aggregation"] == "subgroup_difference"].iloc[0]
        print(f"seed {seed}: difference outside - inside {test['estimate']:.4f} (SE {test['std_error']:.4f}), "
              f"p = {test['p_value']:.2g}, Holm-adjusted {test['p_value_adjusted']:.2g}")
        assert test["p_value"] < 0.05 and test["estimate"] > 0, (seed, test)


def test_fading_grant_effects_are_recovered_year_by_year(draws):
    plan = EvaluationPlan(services=("grant",), outcomes=("exporter",), bootstrap_iterations=199)

    def select(panel, _):
        estimates = run_evaluation(panel, plan).estimates
        return estimates[(estimates["estimator"] == "cs_did") & (estimates["aggregation"] == "dynamic_balanced")
                         & estimates["event_time"].notna()].sort_values("event_time")

    table = _z_table(draws, "grant by event time (fading)", select,
                     lambda truths, r: _truth(truths, "grant", "exporter", "dynamic_balanced", event_time=int(r.event_time)))
    assert all(tuple(v) == (0, 1, 2, 3) for _, v in table.groupby("seed")["event_time"])
    _assert_recovered(table)
    # planted: the grant's effect fades on every draw; so does the estimated profile, on average over the draws
    # (on one draw a year's noise can reverse it: the SE of the difference is about that of each year)
    ends = table.groupby("seed").agg(first_truth=("truth", "first"), last_truth=("truth", "last"),
                                     first=("estimate", "first"), last=("estimate", "last"))
    assert (ends["last_truth"] < ends["first_truth"]).all(), ends
    assert (ends["last"] - ends["first"]).mean() < 0, ends


def test_incremental_second_service_is_recovered(draws):
    table = _z_table(draws, "second service added", lambda _, rows: _overall(rows, "sequences", "dynamic_balanced"),
                     lambda truths, r: _truth(truths, r.treatment, r.outcome, "dynamic_balanced"))
    # every ordered pair of services, two outcomes
    assert table.groupby("seed").size().eq(12).all()
    _assert_recovered(table)


def test_proportional_value_effect_is_recovered(draws):
    def select(_, rows):
        value = _overall(rows, "value", "simple")
        return value[value["estimator"] == "etwfe_poisson"]

    table = _z_table(draws, "proportional value (Poisson)", select,
                     lambda truths, r: _truth(truths, r.treatment, "export_value_eur", "proportional"))
    assert table.groupby("seed").size().eq(3).all()
    _assert_recovered(table)


def test_persistence_is_recovered(draws):
    table = _z_table(draws, "persistence", lambda _, rows: _overall(rows, "persistence", "dynamic_balanced"),
                     lambda truths, r: _truth(truths, r.treatment, r.outcome, "dynamic_balanced"))
    assert table.groupby("seed").size().eq(12).all()
    _assert_recovered(table)


def test_value_models_find_no_effect_in_the_untreated_world():
    """On the demo's untreated world (no support had any effect) the proportional value effect and the extensive
    margin are zero; the intensive margin, conditional on exporting, is descriptive and not checked. Before the
    value models had their own sample and the margins their controls, this draw gave z = +3.3 (advisory,
    Poisson) and -3.6 (network, exporting)."""
    panel = build_firm_year_panel(**demo_worlds(n_firms=N_FIRMS)["untreated"]).panel
    rows = RUNNERS["value"](panel, PLAN).rows
    rows = rows[(rows["aggregation"] == "simple") & rows["outcome"].isin(["export_value_eur", "exporter"])]
    table = rows.assign(z=rows["estimate"] / rows["std_error"])
    text = table[["treatment", "outcome", "estimator", "estimate", "std_error", "z"]].to_string(index=False)
    print("\n" + text)
    assert len(table) == 6 and (table["z"].abs() < 3).all(), text
