"""The evaluation design: who is compared with whom, row counts, plans, and failure isolation."""

import warnings

import numpy as np
import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
from analyses.evaluation import REASON_ALREADY_TREATED_FIRMS, EvaluationPlan, run_evaluation, service_sample
from analyses.panel import SERVICES, build_firm_year_panel


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
    first_year, last_year = int(panel["year"].min()), int(panel["year"].max())
    dynamic = result.estimates.query("estimator == 'cs_did' and aggregation == 'dynamic'").set_index("event_time")
    for e, row in dynamic.iterrows():
        # with a varying base period a cell at year t needs t - 1 in the panel
        behind = [g for g in sizes.index if first_year + 1 <= g + e <= last_year]
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
    assert plan.xformla.startswith("~ log_employees_first")
    plan_file.write_text("servises: [grant]\n")
    with pytest.raises(ValueError, match="servises"):
        EvaluationPlan.from_yaml(plan_file)
    with pytest.raises(ValueError, match="control_group"):
        EvaluationPlan(control_group="everyone")


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
    missing = left_out[left_out["outcome"] == "exporter"].set_index("treatment")
    sample, _ = service_sample(uncovered.panel, "advisory", plan)
    assert missing.loc["advisory", "firm_years"] == int((sample["year"] == last).sum()) > 500
    assert missing.loc["advisory", "reason"] == f"outcome missing: {last} not covered by the customs extract"
    coverage = results[0].diagnostics["export_coverage"].set_index("year")
    assert not coverage.loc[last, "covered"] and coverage.drop(last)["covered"].all()
