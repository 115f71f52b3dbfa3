"""The evaluation design: who is compared with whom, row counts, plans, and failure isolation."""

import warnings

import numpy as np
import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
import yaml

from analyses.evaluation import (
    DEFAULT_OUTCOMES,
    REASON_ALREADY_TREATED_FIRMS,
    REASON_NO_BASELINE,
    EvaluationPlan,
    run_evaluation,
    service_sample,
)
from analyses.reporting.summary import OUTCOMES
from analyses.panel import (
    BASELINE_COVARIATES,
    PANEL_OUTCOMES,
    PRIOR_EXPORT_YEARS,
    SERVICES,
    TIME_VARYING_COVARIATES,
    build_firm_year_panel,
)


@pytest.fixture(scope="module")
def demo():
    return generate_demo_data(n_firms=1_500, seed=11)


@pytest.fixture(scope="module")
def panel(demo):
    return build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports).panel


def _quick_plan(**overrides) -> EvaluationPlan:
    return EvaluationPlan(bootstrap_iterations=0, **overrides)


def test_sample_keeps_first_service_firms_and_never_treated_only(panel):
    sample, cohorts = service_sample(panel, "network", _quick_plan())
    firms = sample.drop_duplicates("firm_id")
    assert set(firms["first_service"]) == {"network", "none"}
    assert (firms.loc[firms["first_service"] == "none", "cohort"] == 0).all()
    treated = firms.loc[firms["cohort"] > 0]
    assert (treated["cohort"] == treated["first_network_year"]).all()
    used = cohorts.loc[cohorts["used"]]
    assert used["n_firms"].sum() == len(treated)
    assert (used["n_firms"] >= 10).all()


def test_firms_that_enter_the_register_only_after_starting_support_are_left_out(demo):
    advisory_firms = demo.participation.query("service == 'advisory'").groupby("firm_id")["start_date"].min()
    late_entrant = advisory_firms.dt.year.loc[lambda y: y >= 2018].index[0]
    entry = int(advisory_firms.loc[late_entrant].year)
    financials = demo.financials.loc[~((demo.financials["firm_id"] == late_entrant) & (demo.financials["year"] < entry))]
    panel = build_firm_year_panel(demo.firms, financials, demo.participation, demo.exports).panel
    sample, cohorts = service_sample(panel, "advisory", _quick_plan())
    if panel.loc[panel["firm_id"] == late_entrant, "first_service"].iloc[0] != "advisory":
        pytest.skip("the chosen firm's first service is not advisory")
    assert late_entrant not in set(sample["firm_id"])
    assert cohorts.set_index("cohort").loc[entry, "n_without_baseline"] == 1


def test_unbalanced_register_is_estimated_not_rejected(demo):
    rng = np.random.default_rng(3)
    leavers = set(rng.choice(demo.firms["firm_id"], 150, replace=False))
    financials = demo.financials.loc[~(demo.financials["firm_id"].isin(leavers) & (demo.financials["year"] > 2021))]
    panel = build_firm_year_panel(demo.firms, financials, demo.participation, demo.exports).panel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(panel, _quick_plan(services=("advisory",), outcomes=("exporter",)))
    simple = result.estimates.query("estimator == 'cs_did' and aggregation == 'simple'")
    assert len(simple) == 1 and np.isfinite(simple["std_error"]).all()


def test_each_row_counts_only_the_cohorts_behind_it(panel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(panel, _quick_plan(services=("advisory",), outcomes=("exporter",)))
    sample, cohorts = service_sample(panel, "advisory", _quick_plan())
    sizes = cohorts.loc[cohorts["used"]].set_index("cohort")["n_firms"]
    # the prior-exporting covariates need three earlier years: the first usable year is the fourth
    first_year, last_year = int(panel["year"].min()) + PRIOR_EXPORT_YEARS, int(panel["year"].max())
    dynamic = result.estimates.query("estimator == 'cs_did' and aggregation == 'dynamic'").set_index("event_time")
    for e, row in dynamic.iterrows():
        # with a varying base period a cell at year t needs t - 1 in the panel
        behind = [g for g in sizes.index if first_year + 1 <= g + e <= last_year]
        assert row["n_treated"] == sizes.loc[behind].sum(), e
    twfe = result.estimates.query("estimator == 'twfe' and aggregation == 'dynamic'").set_index("event_time")
    latest = twfe.index.max()
    assert twfe.loc[latest, "n_treated"] == sizes.loc[[g for g in sizes.index if g + latest <= last_year]].sum()


def test_an_outcome_that_cannot_be_estimated_is_reported_not_fatal(panel):
    flat = panel.assign(never_changes=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(flat, _quick_plan(services=("grant",), outcomes=("never_changes", "exporter")))
    assert set(result.estimates["outcome"]) == {"exporter"}
    failed = result.diagnostics["not_estimable"]
    assert failed[["treatment", "outcome"]].values.tolist() == [["grant", "never_changes"]]


def test_plan_file_round_trips_and_rejects_typos(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("services: [grant]\ncontrol_group: notyettreated\nbootstrap_iterations: 0\n")
    plan = EvaluationPlan.from_yaml(plan_file)
    assert plan.services == ("grant",) and plan.control_group == "notyettreated"
    assert plan.xformla == "~ " + " + ".join(TIME_VARYING_COVARIATES)
    plan_file.write_text("covariate_timing: first_year\nlookback_years: 2\n")
    plan = EvaluationPlan.from_yaml(plan_file)
    assert plan.xformla.startswith("~ log_employees_first") and plan.lookback_years == 2
    plan_file.write_text(yaml.safe_dump(plan.to_dict()))
    assert EvaluationPlan.from_yaml(plan_file) == plan
    plan_file.write_text("servises: [grant]\n")
    with pytest.raises(ValueError, match="servises"):
        EvaluationPlan.from_yaml(plan_file)
    with pytest.raises(ValueError, match="control_group"):
        EvaluationPlan(control_group="everyone")


def supported_before_the_accounts(demo, n: int = 12) -> tuple[pd.DataFrame, list[str]]:
    """The demo's episodes plus a grant in 2010 (before the 2012 accounts) for ``n`` never-supported firms."""
    never = sorted(set(demo.firms["firm_id"]) - set(demo.participation["firm_id"]))[:n]
    early = pd.DataFrame({"firm_id": never, "programme": "Export start 2010", "service": "grant",
                          "start_date": pd.Timestamp("2010-03-01"), "end_date": pd.Timestamp("2010-12-31"),
                          "advisory_hours": np.nan, "grant_eur": 5_000.0, "network_events": np.nan})
    return pd.concat([demo.participation, early], ignore_index=True), never


def test_firms_supported_before_the_first_accounts_year_are_in_no_cohort_and_no_comparison_group(demo):
    participation, early = supported_before_the_accounts(demo)
    build = build_firm_year_panel(demo.firms, demo.financials, participation, demo.exports)
    for service in SERVICES:
        sample, _ = service_sample(build.panel, service, _quick_plan())
        assert not set(early) & set(sample["firm_id"]), service
    _, cohorts = service_sample(build.panel, "grant", _quick_plan())
    already = cohorts.set_index("cohort").loc[2010]
    assert (already["n_delivered"], already["n_already_treated"], already["n_firms"], already["used"]) == (12, 12, 0, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(build.panel, _quick_plan(services=("grant",), outcomes=("exporter",)),
                                account=build.account)
    left_out = result.diagnostics["left_out"].set_index("reason")
    assert left_out.loc[REASON_ALREADY_TREATED_FIRMS, "firms"] >= 12
    assert left_out.loc[REASON_ALREADY_TREATED_FIRMS, "firms"] == cohorts.loc[
        cohorts["cohort"] <= 2012, "n_already_treated"].sum()


def test_an_uncovered_last_year_is_left_out_not_counted_as_a_year_without_exports(demo):
    last = int(demo.financials["year"].max())
    exports = demo.exports[demo.exports["year"] != last]
    uncovered = build_firm_year_panel(demo.firms, demo.financials, demo.participation, exports)
    shorter = build_firm_year_panel(demo.firms, demo.financials[demo.financials["year"] != last],
                                    demo.participation, exports)
    plan = _quick_plan(services=("advisory", "network"), outcomes=("exporter", "n_destinations"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = [run_evaluation(build.panel, plan, account=build.account) for build in (uncovered, shorter)]
    # a year the customs extract does not cover carries no information: the same estimates as without it
    columns = ["estimate", "std_error", "n_treated", "n_control"]
    pd.testing.assert_frame_equal(results[0].estimates[columns], results[1].estimates[columns])
    left_out = results[0].diagnostics["left_out"]
    missing = left_out[left_out["outcome"] == "exporter"].set_index("treatment")
    sample, _ = service_sample(uncovered.panel, "advisory", plan)
    assert missing.loc["advisory", "firm_years"] == int((sample["year"] == last).sum()) > 1000
    assert missing.loc["advisory", "reason"] == f"outcome missing: {last} not covered by the customs extract"
    coverage = results[0].diagnostics["export_coverage"].set_index("year")
    assert not coverage.loc[last, "covered"] and coverage.drop(last)["covered"].all()


# --- covariates: time-varying, taken from the base period ---------------------------------------

def test_default_plan_uses_time_varying_covariates_with_prior_exporting_and_the_new_outcomes():
    plan = EvaluationPlan()
    assert plan.covariate_timing == "base_period" and plan.lookback_years == 3
    assert plan.covariates == plan.covariate_columns == TIME_VARYING_COVARIATES
    assert {"exported_last_year", "years_exported_last3"} <= set(plan.covariates)
    assert plan.outcomes == DEFAULT_OUTCOMES == ("exporter", "n_destinations", "starts_exporting", "new_destination")
    assert all(OUTCOMES[o].definition for o in PANEL_OUTCOMES)  # every panel outcome can be reported and defined
    snapshot = EvaluationPlan(covariate_timing="first_year")
    assert snapshot.covariates == snapshot.covariate_columns == BASELINE_COVARIATES
    chosen = EvaluationPlan(covariates=("log_employees", "in_cluster", "exporter"), covariate_timing="first_year")
    assert chosen.covariate_columns == ("log_employees_first", "in_cluster", "exporter_first")
    with pytest.raises(ValueError, match=r"exported_last_year has no first-year snapshot"):
        EvaluationPlan(covariates=("exported_last_year",), covariate_timing="first_year")
    with pytest.raises(ValueError, match=r"covariate_timing must be 'base_period' or 'first_year', got 'baseline'"):
        EvaluationPlan(covariate_timing="baseline")
    with pytest.raises(ValueError, match=r"lookback_years must be a whole number of years >= 1, got 0"):
        EvaluationPlan(lookback_years=0)


def _time_varying_panel(seed=2, n_units=400, n_periods=6):
    """Selection on a covariate that drifts over time; outcome trends follow the covariate's current value."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n_units)
    drift = rng.normal(0.3, 0.3, size=n_units)
    cohort = np.where(rng.random(n_units) < 1 / (1 + np.exp(-x0)), rng.choice([3, 4, 5], n_units), 0)
    unit, period = np.repeat(np.arange(1, n_units + 1), n_periods), np.tile(np.arange(1, n_periods + 1), n_units)
    x = np.repeat(x0, n_periods) + np.repeat(drift, n_periods) * period + rng.normal(0, 0.3, unit.size)
    g = np.repeat(cohort, n_periods)
    y = np.repeat(rng.normal(size=n_units), n_periods) + 0.5 * x * period / n_periods + 0.2 * (g > 0) * (period >= g)
    return pd.DataFrame({"unit": unit, "period": period, "g": g, "x": x, "y": y + rng.normal(0, 0.5, unit.size)})


@pytest.mark.parametrize("balanced", [True, False], ids=["panel-path", "unbalanced-path"])
def test_time_varying_covariates_are_taken_as_r_did_takes_them(balanced):
    """R did (compute.att_gt): on a panel the covariates of the earlier period of each 2x2 comparison
    (g-1 for post-treatment cells); on the unbalanced path each row's own. Checked against csdid, which
    ports R, and by hand: a post cell equals the two-period estimate with x frozen at g-1."""
    from analyses.did import att_gt

    csdid = pytest.importorskip("csdid.att_gt", reason="csdid (test-only dependency) is not installed")
    data = _time_varying_panel()
    if not balanced:
        data = data.drop(data.sample(frac=0.08, random_state=1).index)
    options = dict(yname="y", tname="period", idname="unit", gname="g", est_method="dr", bstrap=False, cband=False,
                   allow_unbalanced_panel=not balanced)
    ours = att_gt(data, xformla="~ x", **options)
    assert ours.panel.balanced == balanced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = csdid.ATTgt(yname="y", gname="g", idname="unit", tname="period", xformla="y ~ x", data=data,
                             allow_unbalanced_panel=not balanced)
        theirs.fit(est_method="dr", bstrap=False)
    # up to the logit's convergence tolerance; taking x from another period moves cells by ~1e-2
    np.testing.assert_allclose(ours.att, np.asarray(theirs.results["att"], float), rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.se, np.asarray(theirs.results["se"], float), rtol=1e-6)
    if balanced:  # by hand: ATT(4, 6) compares period 6 with period 3, with x as it stood in period 3
        two = data[data["period"].isin([3, 6]) & data["g"].isin([0, 4])].copy()
        frozen = two.assign(x=two.groupby("unit")["x"].transform("first"), g=np.where(two["g"] > 0, 6, 0))
        current = frozen.assign(x=two.groupby("unit")["x"].transform("last"))
        cell = ours.att[(ours.group == 4) & (ours.time == 6)].item()
        by_hand = [att_gt(frame, xformla="~ x", **options).att.item() for frame in (frozen, current)]
        assert cell == pytest.approx(by_hand[0], abs=1e-12) and abs(cell - by_hand[1]) > 1e-3


def test_years_without_covariates_are_dropped_and_counted_and_baseless_firms_left_out(demo):
    panel = build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports).panel
    plan = _quick_plan(services=("advisory",), outcomes=("exporter",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the engine must not find a missing covariate to drop
        warnings.filterwarnings("ignore", message=".*(propensity|small groups|covariate column).*")
        result = run_evaluation(panel, plan)
    left_out = result.diagnostics["left_out"]
    missing = left_out[left_out["reason"].str.startswith("covariate(s) missing")]
    first_year = int(panel["year"].min())
    sample, cohorts = service_sample(panel, "advisory", plan)
    early = sample["year"] < first_year + PRIOR_EXPORT_YEARS
    assert missing["firm_years"].sum() == early.sum() and "years_exported_last3" in missing["reason"].iloc[0]
    # cohorts whose base year (g - 1) comes before three years of customs history have no baseline covariates
    without = cohorts.set_index("cohort")["n_without_baseline"]
    assert (without.loc[without.index <= first_year + PRIOR_EXPORT_YEARS] > 0).all()
    assert (without.loc[without.index > first_year + PRIOR_EXPORT_YEARS] == 0).all()
    assert REASON_NO_BASELINE in set(left_out["reason"])
    snapshot = _quick_plan(services=("advisory",), outcomes=("exporter",), covariate_timing="first_year")
    assert service_sample(panel, "advisory", snapshot)[1]["n_without_baseline"].sum() == 0


def test_a_panel_built_with_another_window_is_refused(demo):
    build = build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports, lookback_years=2)
    with pytest.raises(ValueError, match=r"built with lookback_years=2 but the evaluation plan says 3"):
        run_evaluation(build.panel, _quick_plan(), account=build.account)


def test_the_readme_plan_example_is_the_default_plan(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (tmp_path / "plan.yaml").write_text(re.search(r"```yaml\n(.*?)```", readme, re.S).group(1))
    assert EvaluationPlan.from_yaml(tmp_path / "plan.yaml") == EvaluationPlan()
