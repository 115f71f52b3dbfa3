"""The evaluation design: who is compared with whom, row counts, plans, and failure isolation."""

import warnings

import numpy as np
import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
import yaml

from analyses.evaluation import (
    _classify,
    check_plan_fits_panel,
    covariates_known,
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
    full = build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports).panel
    before, cohorts_before = service_sample(full, "advisory", _quick_plan())
    candidates = before.loc[(before["cohort"] >= 2018), ["firm_id", "cohort"]].drop_duplicates()
    late_entrant, entry = candidates.iloc[0]
    financials = demo.financials.loc[~((demo.financials["firm_id"] == late_entrant) & (demo.financials["year"] < entry))]
    panel = build_firm_year_panel(demo.firms, financials, demo.participation, demo.exports).panel
    sample, cohorts = service_sample(panel, "advisory", _quick_plan())
    assert late_entrant not in set(sample["firm_id"])
    without = cohorts.set_index("cohort")["n_without_baseline"] - cohorts_before.set_index("cohort")["n_without_baseline"]
    assert without.loc[entry] == 1 and without.drop(entry).eq(0).all()


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
        plan = _quick_plan(services=("advisory",), outcomes=("exporter",), covariate_timing="base_period")
    result = run_evaluation(panel, plan)
    sample, cohorts = service_sample(panel, "advisory", plan)
    sizes = cohorts.loc[cohorts["used"]].set_index("cohort")["n_firms"]
    # the exporting history (years exported in t-2..t) needs two earlier years: the first usable year is the third
    first_year, last_year = int(panel["year"].min()) + PRIOR_EXPORT_YEARS - 1, int(panel["year"].max())
    dynamic = result.estimates.query("estimator == 'cs_did' and aggregation == 'dynamic'").set_index("event_time")
    dropped = result.diagnostics["dropped_cells"].query("estimator == 'cs_did' and aggregation == 'dynamic'")
    not_estimated = set(zip(dropped["cohort"], dropped["time"]))
    for e, row in dynamic.iterrows():
        # with a varying base period a cell at year t needs t - 1 in the panel; cells that could not be
        # estimated are left out of the aggregate, and so are their cohorts' firms from its count
        behind = [g for g in sizes.index
                  if first_year + 1 <= g + e <= last_year and (g, g + e) not in not_estimated]
        assert row["n_treated"] == sizes.loc[behind].sum(), e
    twfe = result.estimates.query("estimator == 'twfe' and aggregation == 'dynamic'").set_index("event_time")
    latest = twfe.index.max()
    treated = sample[sample["cohort"].isin(sizes.index)]
    assert twfe.loc[latest, "n_treated"] == treated.loc[treated["year"] - treated["cohort"] == latest, "unit"].nunique()


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
    assert plan.xformla == "~ " + " + ".join(BASELINE_COVARIATES) and plan.lookback_years == 2
    plan_file.write_text(yaml.safe_dump(plan.to_dict()))
    assert EvaluationPlan.from_yaml(plan_file) == plan
    plan_file.write_text("servises: [grant]\n")
    with pytest.raises(ValueError, match="servises"):
        EvaluationPlan.from_yaml(plan_file)
    with pytest.raises(ValueError, match="control_group"):
        EvaluationPlan(control_group="everyone")


@pytest.mark.parametrize("plan_text, key", [
    ("outcomes: [exporter, log_export_value]\n", "outcomes"),
    ("families:\n  sequence_outcomes: [log_export_value]\n", "families.sequence_outcomes"),
    ("families:\n  dose_outcomes: [exporter, log_export_value]\n", "families.dose_outcomes"),
])
def test_a_plan_never_runs_a_did_on_log_one_plus_euros(tmp_path, plan_text, key):
    """Issue 10, model 5: the plan refuses log(1 + EUR) wherever an outcome is named, and says what to run."""
    message = _refusal(tmp_path, plan_text)
    assert message.startswith(f"evaluation plan: {key} names 'log_export_value'")
    for pointer in ("families: run: [..., value]", "etwfe_poisson", "proportional effect exp(b) - 1",
                    "mixes entry into exporting with changes in value"):
        assert pointer in message, pointer


@pytest.mark.parametrize("plan_text, message", [
    ("services: advisory\n", "services must be a list (e.g. [advisory]), got 'advisory'"),
    ("families:\n  run: dose\n", "families.run must be a list (e.g. [dose]), got 'dose'"),
    ("families:\n  dose_grid: wide\n", "families.dose_grid must be a list (e.g. [wide]), got 'wide'"),
    ("families: [dose, subgroups]\n", "families must be a mapping of settings (e.g. run: [dose, value]), got a list"),
    ("families:\n  run: [dose, survival\n", "plan.yaml: not valid YAML: while parsing a flow sequence"),
])
def test_a_mistyped_plan_is_refused_naming_the_key_not_a_list_of_letters(tmp_path, plan_text, message):
    assert message in _refusal(tmp_path, plan_text)


def _refusal(tmp_path, plan_text: str) -> str:
    """The message with which a plan file of ``plan_text`` is refused."""
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan_text)
    with pytest.raises(ValueError) as raised:
        EvaluationPlan.from_yaml(plan_file)
    return str(raised.value)


@pytest.mark.parametrize("key", ["dose_outcomes", "subgroup_outcomes", "market_outcomes", "sequence_outcomes",
                                 "bundle_outcomes", "persistence_outcomes", "value_controls", "margin_controls"])
def test_every_family_column_the_plan_names_is_checked_against_the_panel_before_any_model(panel, key):
    """A name the panel lacks stops the run at the panel (once), naming the plan key, not as a KeyError in a
    family's step after the headline has run."""
    plan = EvaluationPlan(families={key: ["exports_a_lot"]})
    with pytest.raises(ValueError, match=rf"evaluation plan: families\.{key} names \['exports_a_lot'\], which the "
                                         "firm-year panel does not have"):
        check_plan_fits_panel(panel, plan)
    check_plan_fits_panel(panel, EvaluationPlan(families={key: ["exports_a_lot"], "run": []}))  # family not run


def supported_before_the_accounts(demo, n: int = 12) -> tuple[pd.DataFrame, list[str]]:
    """The demo's episodes plus a grant in 2005 (before the 2012 accounts) for ``n`` never-supported firms."""
    never = sorted(set(demo.firms["firm_id"]) - set(demo.participation["firm_id"]))[:n]
    early = pd.DataFrame({"firm_id": never, "programme": "Export start 2005", "service": "grant",
                          "start_date": pd.Timestamp("2005-03-01"), "end_date": pd.Timestamp("2005-12-31"),
                          "advisory_hours": np.nan, "grant_eur": 5_000.0, "network_events": np.nan})
    return pd.concat([demo.participation, early], ignore_index=True), never


def test_firms_supported_before_the_first_accounts_year_are_in_no_cohort_and_no_comparison_group(demo):
    participation, early = supported_before_the_accounts(demo)
    build = build_firm_year_panel(demo.firms, demo.financials, participation, demo.exports)
    for service in SERVICES:
        sample, _ = service_sample(build.panel, service, _quick_plan())
        assert not set(early) & set(sample["firm_id"]), service
    _, cohorts = service_sample(build.panel, "grant", _quick_plan())
    already = cohorts.set_index("cohort").loc[2005]
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
    # the year has no exporting history either, so it leaves with the covariates (before any outcome is read)
    missing = left_out[left_out["reason"].str.contains(f"{last} not covered by the customs extract")]
    missing = missing.set_index("treatment")
    classified, _ = _classify(uncovered.panel, "advisory", plan)
    in_sample = classified["left_out"].eq("") & classified["year"].eq(last)
    assert missing.loc["advisory", "firm_years"] == int(in_sample.sum()) > 500
    assert missing.loc["advisory", "outcome"] == "" and "exporter" in missing.loc["advisory", "reason"]
    coverage = results[0].diagnostics["export_coverage"].set_index("year")
    assert not coverage.loc[last, "covered"] and coverage.drop(last)["covered"].all()


# --- covariates: time-varying, taken from the base period ---------------------------------------

def test_default_plan_uses_time_varying_covariates_with_prior_exporting_and_first_year_snapshots_on_request():
    plan = EvaluationPlan()
    assert plan.covariate_timing == "base_period" and plan.lookback_years == 3
    assert plan.covariates == plan.covariate_columns == TIME_VARYING_COVARIATES
    assert {"exporter", "years_exported_3y"} <= set(plan.covariates)  # read in g-1: exported in g-1, in g-3..g-1
    assert plan.outcomes == DEFAULT_OUTCOMES == ("exporter", "n_destinations", "starts_exporting", "new_destination")
    assert all(OUTCOMES[o].definition for o in PANEL_OUTCOMES)  # every panel outcome can be reported and defined
    snapshot = EvaluationPlan(covariate_timing="first_year")
    assert snapshot.covariate_columns == BASELINE_COVARIATES
    chosen = EvaluationPlan(covariates=("log_employees", "in_cluster", "exporter"), covariate_timing="first_year")
    assert chosen.covariate_columns == ("log_employees_first", "in_cluster", "exporter_first")
    with pytest.raises(ValueError, match=r"years_exported_3y has no first-year snapshot"):
        EvaluationPlan(covariates=("years_exported_3y",), covariate_timing="first_year")
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


def test_time_varying_covariates_are_read_in_the_base_period_on_both_paths():
    """R did (compute.att_gt) reads a balanced panel's covariates in the earlier period of each 2x2 comparison
    (g-1 for post-treatment cells): checked against csdid, which ports R, and by hand (a post cell equals the
    two-period estimate with x frozen at g-1). On the unbalanced path R reads each row's own covariates; ours
    reads them in the same base period, so a cell equals the panel path's on the firms observed in both years."""
    from analyses.did import att_gt
    from analyses.did.estimators import drdid_rc

    csdid = pytest.importorskip("csdid.att_gt", reason="csdid (test-only dependency) is not installed")
    data = _time_varying_panel()
    options = dict(yname="y", tname="period", idname="unit", gname="g", est_method="dr", bstrap=False, cband=False)
    ours = att_gt(data, xformla="~ x", **options)
    assert ours.panel.balanced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = csdid.ATTgt(yname="y", gname="g", idname="unit", tname="period", xformla="y ~ x", data=data)
        theirs.fit(est_method="dr", bstrap=False)
    # up to the logit's convergence tolerance; taking x from another period moves cells by ~1e-2
    np.testing.assert_allclose(ours.att, np.asarray(theirs.results["att"], float), rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours.se, np.asarray(theirs.results["se"], float), rtol=1e-6)
    # by hand: ATT(4, 6) compares period 6 with period 3, with x as it stood in period 3
    two = data[data["period"].isin([3, 6]) & data["g"].isin([0, 4])].copy()
    frozen = two.assign(x=two.groupby("unit")["x"].transform("first"), g=np.where(two["g"] > 0, 6, 0))
    current = frozen.assign(x=two.groupby("unit")["x"].transform("last"))
    cell = ours.att[(ours.group == 4) & (ours.time == 6)].item()
    by_hand = [att_gt(frame, xformla="~ x", **options).att.item() for frame in (frozen, current)]
    assert cell == pytest.approx(by_hand[0], abs=1e-12) and abs(cell - by_hand[1]) > 1e-3

    # unbalanced: units not seen in period 3, the base of ATT(4, 6), leave it; the others enter the
    # repeated-cross-section estimator with their period-3 covariates on both rows
    unbalanced = data.drop(data.sample(frac=0.08, random_state=1).index)
    rc = att_gt(unbalanced, xformla="~ x", allow_unbalanced_panel=True, **options)
    assert not rc.panel.balanced
    cell_rows = unbalanced[unbalanced["period"].isin([3, 6]) & unbalanced["g"].isin([0, 4])]
    x_base = cell_rows[cell_rows["period"] == 3].set_index("unit")["x"]
    cell_rows = cell_rows[cell_rows["unit"].isin(x_base.index)]
    assert cell_rows["unit"].nunique() < data.loc[data["g"].isin([0, 4]), "unit"].nunique()  # some left
    expected, _ = drdid_rc(cell_rows["y"].to_numpy(), (cell_rows["period"] == 6).to_numpy(float),
                           (cell_rows["g"] == 4).to_numpy(float),
                           np.column_stack([np.ones(len(cell_rows)), x_base.loc[cell_rows["unit"]].to_numpy()]),
                           np.ones(len(cell_rows)))
    assert rc.att[(rc.group == 4) & (rc.time == 6)].item() == pytest.approx(expected, abs=1e-12)


def test_years_without_covariates_are_dropped_and_counted_and_baseless_firms_left_out(demo):
    panel = build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports).panel
    plan = _quick_plan(services=("advisory",), outcomes=("exporter",), covariate_timing="base_period")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_evaluation(panel, plan)
    # the evaluation drops and counts them itself: the engine never finds a missing covariate to drop
    assert not [w for w in caught if "missing or not finite" in str(w.message)]
    left_out = result.diagnostics["left_out"]
    missing = left_out[left_out["reason"].str.startswith("covariate(s) missing")]
    first_year = int(panel["year"].min())
    sample, cohorts = service_sample(panel, "advisory", plan)
    usable = first_year + PRIOR_EXPORT_YEARS - 1  # the first year with the history t-2..t
    assert (sample["year"] >= usable).all()  # the estimation sample has covariates
    classified, _ = _classify(panel, "advisory", plan)
    kept = classified.loc[classified["left_out"].eq("")]
    without = ~covariates_known(kept, plan.covariate_columns)
    assert missing["firm_years"].sum() == without.sum() and "years_exported_3y" in missing["reason"].iloc[0]
    assert without[kept["year"] < usable].all()  # no history yet in the first years
    # cohorts whose base year (g - 1) comes before three years of customs history have no baseline
    # covariates; later ones lose only firms whose own accounts start too late
    table = cohorts.set_index("cohort")
    share = table["n_without_baseline"] / table["n_delivered"]
    in_panel = share.index > first_year + 1  # earlier cohorts are already treated when the data start
    early_cohorts = in_panel & (share.index <= usable)
    assert (share.loc[early_cohorts] == 1).all() and (share.loc[share.index > usable] < 0.5).all()
    assert REASON_NO_BASELINE in set(left_out["reason"])
    snapshot = _quick_plan(services=("advisory",), outcomes=("exporter",), covariate_timing="first_year")
    # first-year snapshots need no history, so fewer firms lack a baseline
    assert service_sample(panel, "advisory", snapshot)[1]["n_without_baseline"].sum() < table["n_without_baseline"].sum()


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
    # every key is documented there, the mechanism families' too
    documented = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert set(documented) == set(EvaluationPlan().to_dict())
    assert set(documented["families"]) == set(EvaluationPlan().families.to_dict())
# --- headline, comparisons and weak cohorts (issue 9) -------------------------------------------------------------

def _estimate(estimates: pd.DataFrame, estimator: str, aggregation: str, event_time: float | None = None) -> pd.Series:
    rows = estimates.query("estimator == @estimator and aggregation == @aggregation")
    rows = rows[rows["event_time"].isna()] if event_time is None else rows[rows["event_time"] == event_time]
    assert len(rows) == 1, (estimator, aggregation, event_time, rows)
    return rows.iloc[0]


@pytest.fixture(scope="module")
def advisory_exporter(panel):
    plan = _quick_plan(services=("advisory",), outcomes=("exporter",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(panel, plan)
    sample, _ = service_sample(panel, "advisory", plan)
    return plan, result, sample


def _att_gt(sample, plan, **options):
    from analyses.did import att_gt

    arguments = dict(yname="exporter", tname="year", idname="unit", gname="cohort", xformla=plan.xformla,
                     control_group=plan.control_group, est_method=plan.est_method, base_period=plan.base_period,
                     bstrap=False, cband=False, allow_unbalanced_panel=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return att_gt(sample, **{**arguments, **options})


@pytest.mark.parametrize("estimator, xformla", [("cs_did", "plan"), ("cs_did_no_covariates", None)])
def test_headline_is_the_balanced_event_study_average_over_the_plans_horizon(advisory_exporter, estimator, xformla):
    from analyses.did import aggte

    plan, result, sample = advisory_exporter
    assert plan.headline_horizon == 3
    reference = _att_gt(sample, plan, **({} if xformla == "plan" else {"xformla": None}))
    expected = aggte(reference, type="dynamic", balance_e=3, min_e=0, max_e=3)
    headline = _estimate(result.estimates, estimator, "dynamic_balanced")
    assert headline["estimate"] == pytest.approx(expected.overall_att, rel=1e-10)
    assert headline["std_error"] == pytest.approx(expected.overall_se, rel=1e-10)
    rows = result.estimates.query("estimator == @estimator and aggregation == 'dynamic_balanced'")
    assert sorted(rows["event_time"].dropna()) == [0.0, 1.0, 2.0, 3.0]  # the window is recorded by its rows
    np.testing.assert_allclose(rows.dropna(subset=["event_time"])["estimate"], expected.table["att"], rtol=1e-10)
    # the same cohorts at every event time: those observed at least three years after starting
    last = int(sample["year"].max())
    sizes = sample.loc[sample["cohort"].between(1, last - 3)].groupby("cohort")["unit"].nunique()
    assert set(rows["n_treated"]) == {sizes.sum()}
    # R's simple aggregation stays, under its own name
    assert len(result.estimates.query("estimator == 'cs_did' and aggregation == 'simple'")) == 1


def test_headline_horizon_is_a_plan_key(panel, tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("headline_horizon: 2\nbootstrap_iterations: 0\nservices: [grant]\noutcomes: [exporter]\n")
    plan = EvaluationPlan.from_yaml(plan_file)
    assert plan.headline_horizon == 2 and plan.to_dict()["headline_horizon"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(panel, plan)
    rows = result.estimates.query("estimator == 'cs_did' and aggregation == 'dynamic_balanced'")
    assert sorted(rows["event_time"].dropna()) == [0.0, 1.0, 2.0]
    mde = result.diagnostics["mde"]
    assert mde["aggregation"].tolist() == ["dynamic_balanced"]
    headline = _estimate(result.estimates, "cs_did", "dynamic_balanced")
    assert mde["mde"].iloc[0] == pytest.approx(2.8016 * headline["std_error"], rel=1e-3)
    for bad in (-1, 1.5, "three"):
        with pytest.raises(ValueError, match="headline_horizon"):
            EvaluationPlan(headline_horizon=bad)


def test_event_study_rows_with_a_universal_base_period_are_published_beside_the_plans(advisory_exporter):
    from analyses.did import aggte

    plan, result, sample = advisory_exporter
    assert plan.base_period == "varying"
    universal = aggte(_att_gt(sample, plan, base_period="universal"), type="dynamic").table.set_index("event_time")
    varying = aggte(_att_gt(sample, plan), type="dynamic").table.set_index("event_time")
    rows = result.estimates.query("estimator == 'cs_did' and aggregation == 'dynamic_universal'")
    shown = rows.set_index("event_time")["estimate"]
    assert -1.0 not in shown.index  # the reference period, 0 by construction, is not an estimate
    np.testing.assert_allclose(shown, universal.loc[shown.index, "att"], rtol=1e-10)
    # pre-period points differ from the plan's (varying) ones, post-period points do not
    plan_rows = result.estimates.query("estimator == 'cs_did' and aggregation == 'dynamic'").set_index("event_time")
    np.testing.assert_allclose(plan_rows["estimate"], varying.loc[plan_rows.index, "att"], rtol=1e-10)
    early = shown.index[(shown.index < -1) & shown.index.isin(plan_rows.index)]
    assert len(early) and not np.allclose(shown.loc[early], plan_rows.loc[early, "estimate"])
    post = shown.index[shown.index >= 0]
    np.testing.assert_allclose(shown.loc[post], plan_rows.loc[post, "estimate"], rtol=1e-10)


def test_twfe_headline_averages_the_event_study_on_the_same_cohorts(advisory_exporter):
    from analyses.twfe import twfe_event_study

    plan, result, sample = advisory_exporter
    last = int(sample["year"].max())
    balanced = sample.loc[(sample["cohort"] == 0) | (sample["cohort"] <= last - 3)]
    study = twfe_event_study(balanced, yname="exporter", tname="year", idname="unit", gname="cohort")
    coefficients = study.table.set_index("event_time")["att"]
    headline = _estimate(result.estimates, "twfe", "dynamic_balanced")
    assert headline["estimate"] == pytest.approx(coefficients.loc[[0, 1, 2, 3]].mean(), rel=1e-10)
    estimated = study.table.loc[study.table["event_time"] != study.ref_e, "event_time"].to_numpy()
    weights = np.isin(estimated, [0, 1, 2, 3]) / 4
    assert headline["std_error"] == pytest.approx(np.sqrt(weights @ study.covariance @ weights), rel=1e-10)


def test_pretests_carry_their_power_against_a_linear_pre_trend_of_the_mdes_size(advisory_exporter):
    from scipy import stats

    from analyses.evaluation import pretest_power

    plan, result, sample = advisory_exporter
    pretest = result.diagnostics["pretests"].iloc[0]
    mde = result.diagnostics["mde"].iloc[0]["mde"]
    # the alternative: a linear differential trend that would bias the headline by its MDE
    assert pretest["trend_slope"] == pytest.approx(2 * mde / (plan.headline_horizon + 2))
    assert plan.alpha < pretest["power"] < 1
    reference = _att_gt(sample, plan)
    assert pretest["W"] == pytest.approx(reference.W)
    assert pretest_power(reference, 0.0, 0.05) == pytest.approx(0.05)
    assert pretest_power(reference, pretest["trend_slope"], plan.alpha) == pytest.approx(pretest["power"])
    # power grows with the slope of the alternative
    assert pretest_power(reference, 2 * pretest["trend_slope"], 0.05) > pretest["power"]
    # and matches the non-central chi-square of the Wald statistic under that alternative (Monte Carlo)
    pre = (reference.group > reference.time) & np.isfinite(reference.att)
    n = reference.inf_func.shape[0]
    covariance = reference.inf_func[:, pre].T @ reference.inf_func[:, pre] / n**2
    rng = np.random.default_rng(1)
    draws = rng.multivariate_normal(np.full(pre.sum(), pretest["trend_slope"]), covariance, size=4000)
    wald = np.einsum("ij,ij->i", draws, np.linalg.solve(covariance, draws.T).T)
    simulated = np.mean(wald > stats.chi2.isf(plan.alpha, pre.sum()))
    assert simulated == pytest.approx(pretest["power"], abs=0.03)


def test_one_weak_cohort_is_left_out_of_the_aggregates_with_its_reason(panel):
    """A cohort whose propensity model fails (its firms are set apart by a covariate) does not sink the service."""
    sample, cohorts = service_sample(panel, "advisory", _quick_plan())
    weak = int(cohorts.loc[cohorts["used"], "cohort"].iloc[1])
    separated = panel.assign(
        set_apart=np.where((panel["first_service"] == "advisory") & (panel["first_advisory_year"] == weak), 1.0, 0.0)
        + np.random.default_rng(0).normal(0, 0.01, len(panel)))
    plan = _quick_plan(services=("advisory",), outcomes=("exporter",), covariates=("set_apart",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(separated, plan)
    assert result.diagnostics["not_estimable"].empty
    headline = _estimate(result.estimates, "cs_did", "dynamic_balanced")
    assert np.isfinite(headline["estimate"]) and np.isfinite(headline["std_error"])
    cells = result.diagnostics["dropped_cells"]
    assert list(cells.columns) == ["treatment", "outcome", "estimator", "aggregation", "cohort", "time", "reason"]
    assert set(cells["cohort"]) == {weak}
    assert {"simple", "dynamic", "group", "calendar"} <= set(cells["aggregation"])
    assert cells["reason"].str.contains("propensity").all()
    assert set(cells["estimator"]) == {"cs_did"}  # without covariates the cohort is estimable
    dropped = result.diagnostics["dropped_cohorts"]
    group = dropped.query("aggregation == 'group'")
    assert group[["treatment", "outcome", "cohort"]].values.tolist() == [["advisory", "exporter", weak]]
    used = service_sample(separated, "advisory", plan)[1].set_index("cohort")
    assert group["n_firms"].iloc[0] == used.loc[weak, "n_firms"]
    assert result.estimates.query("aggregation == 'group' and estimator == 'cs_did'")["event_time"].ne(weak).all()


def test_a_service_without_any_usable_cohort_is_listed_as_not_estimable_with_the_reason(panel):
    plan = _quick_plan(services=("grant", "advisory"), outcomes=("exporter",), min_cohort_size=100_000)
    result = run_evaluation(panel, plan)
    assert result.estimates.empty
    assert pd.api.types.is_float_dtype(result.estimates["estimate"])  # typed, even when empty
    assert pd.api.types.is_float_dtype(result.estimates["event_time"])
    failed = result.diagnostics["not_estimable"]
    assert failed["treatment"].tolist() == ["grant", "advisory"]
    assert failed["reason"].str.contains("no cohort could be estimated").all()
    assert failed["reason"].str.contains("fewer than 100000 firms").all()


def test_supported_firms_covariates_after_their_programme_started_do_not_move_the_estimates(panel):
    """Post-programme prior exporting is an outcome: the estimator reads covariates in each comparison's base
    period, so scrambling every supported firm's covariates from its programme start on changes nothing
    (R's repeated-cross-section path would read them)."""
    plan = _quick_plan(services=("advisory",), outcomes=("exporter",))
    columns = [c for c in plan.covariate_columns if c not in plan.outcomes]
    started = panel["first_advisory_year"].gt(0) & panel["year"].ge(panel["first_advisory_year"])
    rng = np.random.default_rng(4)
    scrambled = panel.astype({c: "float64" for c in columns})
    values = panel.loc[started, columns].to_numpy()
    scrambled.loc[started, columns] = values + rng.normal(3.0, 2.0, values.shape)  # missing ones stay missing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimates = [run_evaluation(frame, plan).estimates.query("estimator == 'cs_did'") for frame in (panel, scrambled)]
    np.testing.assert_allclose(estimates[1]["estimate"], estimates[0]["estimate"], rtol=0, atol=1e-10)
    # the comparison firms' covariates do move the estimates (the check can fail)
    shifted = panel.assign(log_turnover=panel["log_turnover"] + np.where(panel["first_service"].eq("none"),
                                                                         0.2 * (panel["year"] - 2012), 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = run_evaluation(shifted, plan).estimates.query("estimator == 'cs_did' and aggregation == 'simple'")
    assert abs(moved["estimate"].item() - estimates[0].query("aggregation == 'simple'")["estimate"].item()) > 1e-4
