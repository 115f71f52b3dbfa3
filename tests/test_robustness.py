"""How much to believe it: event studies kept for HonestDiD, sensitivity table, robustness runs, evidence rating."""

import numpy as np
import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
from analyses.evaluation import ROBUSTNESS_RUNS, EvaluationPlan, run_evaluation
from analyses.panel import build_firm_year_panel
from analyses.reporting.rating import MIN_BREAKDOWN_MBAR, rate_service
from analyses.robustness import (
    ROBUSTNESS_TABLE_COLUMNS, largest_exporters, placebo_panel, robustness_variant, run_robustness,
)
from analyses.sensitivity import SENSITIVITY_COLUMNS, sensitivity_table
from analyses.reporting.settings import HEADLINE, UNIVERSAL_EVENT_STUDY
from tests.report_fixtures import make_diagnostics

EFFECT, ANTICIPATION = 1.0, 0.5


@pytest.fixture(scope="module")
def planted():
    """The demo panel with two planted outcomes for advisory firms: ``y_effect`` rises by EFFECT from the start;
    ``y_anticipation`` also by ANTICIPATION in the year before it. Firm and year effects and noise of SD 1."""
    demo = generate_demo_data(n_firms=1_500, seed=11)
    panel = build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports).panel
    rng = np.random.default_rng(3)
    start = panel["first_advisory_year"].where(panel["first_service"].eq("advisory"), 0)
    firm = pd.factorize(panel["firm_id"])[0]
    untreated = rng.normal(size=firm.max() + 1)[firm] + 0.1 * (panel["year"] - 2012) + rng.normal(size=len(panel))
    panel["y_effect"] = untreated + EFFECT * ((start > 0) & (panel["year"] >= start))
    panel["y_anticipation"] = panel["y_effect"] + ANTICIPATION * ((start > 0) & (panel["year"] == start - 1))
    plan = EvaluationPlan(services=("advisory",), outcomes=("y_effect", "y_anticipation"), bootstrap_iterations=0)
    main = run_evaluation(panel, plan)
    return panel, plan, main


@pytest.fixture(scope="module")
def runs(planted):
    panel, plan, main = planted
    return run_robustness(panel, plan, main.estimates)


def _row(table, outcome, run):
    return table.loc[(table["outcome"] == outcome) & (table["run"] == run)].iloc[0]


def test_every_pair_keeps_its_cs_and_twfe_event_studies_for_the_sensitivity_analysis(planted):
    _, plan, main = planted
    studies = main.diagnostics["event_studies"]
    assert sorted(zip(studies["outcome"], studies["estimator"])) == [
        ("y_anticipation", "cs_did"), ("y_anticipation", "twfe"), ("y_effect", "cs_did"), ("y_effect", "twfe")]
    assert studies["reason"].eq("").all()
    for record in studies.to_dict("records"):
        study = record["study"]
        assert study.num_post_periods == plan.headline_horizon + 1 and study.num_pre_periods >= 2
        assert list(study.event_times) == [*range(-study.num_pre_periods - 1, -1), *range(plan.headline_horizon + 1)]
    # the CS study carries the published universal event study's estimates and standard errors
    cs = studies.loc[(studies["outcome"] == "y_effect") & (studies["estimator"] == "cs_did"), "study"].iloc[0]
    published = main.estimates.query("outcome == 'y_effect' and estimator == 'cs_did' "
                                     "and aggregation == @UNIVERSAL_EVENT_STUDY").set_index("event_time")
    np.testing.assert_allclose(cs.betahat, published.loc[cs.event_times.astype(float), "estimate"], rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(cs.sigma)), published.loc[cs.event_times.astype(float), "std_error"],
                               rtol=1e-6)


def test_the_sensitivity_table_covers_both_targets_both_restrictions_and_the_plans_grids(planted):
    _, _, main = planted
    studies = main.diagnostics["event_studies"]
    one = studies.loc[(studies["outcome"] == "y_effect") & (studies["estimator"] == "cs_did")]
    table = sensitivity_table(one, mbar=(0.5, 1.0), m=(0.0, 0.05))
    assert list(table.columns) == list(SENSITIVITY_COLUMNS)
    assert set(table["target"]) == {"on_impact", "average"}
    for target in ("on_impact", "average"):
        rows = table[table["target"] == target]
        assert rows.loc[rows["method"] == "C-LF", "M"].tolist() == [0.5, 1.0]
        assert rows.loc[rows["method"] == "FLCI", "M"].tolist() == [0.0, 0.05]
        usual = rows[rows["method"] == "original"].iloc[0]
        assert usual["lower"] > 0  # the planted effect of 1 is found under parallel trends
        robust = rows[rows["method"] == "C-LF"]
        assert (robust["lower"] <= usual["lower"] + 1e-9).all() and (robust["upper"] >= usual["upper"] - 1e-9).all()
        assert (rows.loc[rows["method"] != "original", "breakdown"] > 0).all()


def test_each_robustness_run_executes_and_the_placebo_interval_covers_zero(runs, planted):
    _, plan, main = planted
    assert list(runs.columns) == list(ROBUSTNESS_TABLE_COLUMNS)
    assert set(runs["run"]) == {"main", *ROBUSTNESS_RUNS}
    assert runs["estimate"].notna().all() and runs["reason"].eq("").all()
    headline = main.estimates.query("estimator == 'cs_did' and aggregation == @HEADLINE and event_time != event_time")
    assert _row(runs, "y_effect", "main")["estimate"] == headline.query("outcome == 'y_effect'")["estimate"].iloc[0]
    placebo = _row(runs, "y_effect", "placebo")
    assert placebo["ci_lower"] < 0 < placebo["ci_upper"]
    # every other run finds the planted effect of 1
    for run in ("comparison_group", "covariate_timing", "dominance", "anticipation"):
        row = _row(runs, "y_effect", run)
        assert row["ci_lower"] < EFFECT < row["ci_upper"], run
    assert _row(runs, "y_effect", "comparison_group")["n_control"] > _row(runs, "y_effect", "main")["n_control"]
    assert _row(runs, "y_effect", "dominance")["n_control"] < _row(runs, "y_effect", "main")["n_control"]


def test_the_anticipation_run_moves_as_a_planted_anticipation_effect_says(runs):
    """With an effect in the year before the start, the main run's base period is already raised (the headline
    understates the effect by ANTICIPATION); anticipation = 1 moves the base a year earlier and recovers it."""
    main, early = _row(runs, "y_anticipation", "main"), _row(runs, "y_anticipation", "anticipation")
    assert main["ci_lower"] < EFFECT - ANTICIPATION < main["ci_upper"] and main["ci_upper"] < EFFECT
    assert early["ci_lower"] < EFFECT < early["ci_upper"]
    assert early["estimate"] - main["estimate"] == pytest.approx(ANTICIPATION, abs=0.25)
    # the placebo catches the anticipation: its fake post-period includes the year before the real start
    placebo = _row(runs, "y_anticipation", "placebo")
    assert placebo["ci_lower"] > 0


def test_dominance_drops_the_largest_exporters_of_each_group_and_never_fewer_than_ten(planted):
    panel, plan, _ = planted
    dropped = largest_exporters(panel, 0.01)
    firms = panel.drop_duplicates("firm_id").set_index("firm_id")
    groups = firms.loc[dropped, "first_service"].value_counts()
    sizes = firms["first_service"].value_counts()
    for group, count in groups.items():
        assert count == max(int(np.ceil(0.01 * sizes[group])), 10) or count == sizes[group]
    before = panel["exports_covered"].eq(1) & (panel["first_service"].eq("none")
                                               | (panel["year"] < panel["first_service_year"]))
    size = panel.loc[before].groupby("firm_id")["export_value_eur"].mean()
    never = firms.index[firms["first_service"] == "none"].intersection(size.index)
    kept = never.difference(dropped)
    assert size.loc[never.intersection(dropped)].min() >= size.loc[kept].max()
    _, _, description = robustness_variant("dominance", panel, plan)
    assert f"{len(dropped):,} firms in all" in description


def test_the_placebo_panel_keeps_pre_programme_years_only_and_moves_every_start(planted):
    panel, _, _ = planted
    moved = placebo_panel(panel, 2)
    supported = panel.loc[panel["first_service_year"] > 0].drop_duplicates("firm_id").set_index("firm_id")
    rows = moved.loc[moved["firm_id"].isin(supported.index)]
    real_start = supported.loc[rows["firm_id"], "first_service_year"].to_numpy()
    assert (rows["year"].to_numpy() < real_start).all()
    assert (rows["first_service_year"].to_numpy() == real_start - 2).all()
    never = moved.loc[moved["first_service_year"] == 0]
    assert len(never) == (panel["first_service_year"] == 0).sum()


def test_the_plan_registers_the_runs_and_grids_and_rejects_unknown_ones(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("robustness_runs: [placebo]\nsensitivity_mbar: [1, 2]\nsensitivity_m: [0.01]\n"
                         "placebo_years: 3\n", encoding="utf-8")
    plan = EvaluationPlan.from_yaml(plan_file)
    assert plan.robustness_runs == ("placebo",) and plan.sensitivity_mbar == (1, 2) and plan.placebo_years == 3
    assert EvaluationPlan().robustness_runs == ROBUSTNESS_RUNS  # on by default
    with pytest.raises(ValueError, match="unknown robustness run"):
        EvaluationPlan(robustness_runs=("jackknife",))
    with pytest.raises(ValueError, match="dominance_share"):
        EvaluationPlan(dominance_share=1.5)
    with pytest.raises(ValueError, match="placebo_years"):
        EvaluationPlan(placebo_years=0)
    with pytest.raises(ValueError, match="must exceed the anticipation"):
        robustness_variant("placebo", pd.DataFrame(), EvaluationPlan(placebo_years=1, anticipation=1))


# --- the evidence rating: each reason --------------------------------------------------------------------------

def _with(diagnostics, **frames):
    return {**diagnostics, **frames}


def test_the_rating_holds_when_every_conclusion_survives_and_prints_what_holds():
    rating = rate_service("advisory", make_diagnostics())
    assert rating.level == 3 and rating.reasons == ()
    assert any("holds unless post-programme trend differences exceed 3.07 times" in note for note in rating.notes)
    assert "no robustness run reverses a conclusion (16 runs); no placebo finds an effect (4)" in rating.notes


def _breakdowns(sensitivity, service, values):
    for outcome, value in values.items():
        rows = (sensitivity["service"] == service) & (sensitivity["outcome"] == outcome) & (
            sensitivity["method"] == "C-LF")
        sensitivity.loc[rows, "breakdown"] = value
    return sensitivity


def test_conclusions_that_break_down_below_mbar_one_lower_the_rating_when_they_are_half_of_them_or_more():
    diagnostics = make_diagnostics()
    # advisory concludes on exporting and markets (2 of 4 intervals exclude zero): one fragile is half
    sensitivity = _breakdowns(diagnostics["sensitivity"].copy(), "advisory", {"exporter": 0.4})
    rating = rate_service("advisory", _with(diagnostics, sensitivity=sensitivity))
    assert rating.level == 2
    assert rating.reasons == ("fragile to differences in trends: 1 of 2 effects found hold only while post-programme "
                              "trend differences stay below the largest seen before the programme (breakdown values "
                              "exporting 0.40)",)
    # at the benchmark it holds
    sensitivity = _breakdowns(sensitivity, "advisory", {"exporter": MIN_BREAKDOWN_MBAR})
    assert rate_service("advisory", _with(diagnostics, sensitivity=sensitivity)).level == 3
    # network concludes on three outcomes: one fragile is printed, not counted; two are a reason
    sensitivity = _breakdowns(sensitivity, "network", {"n_destinations": 0.3})
    rating = rate_service("network", _with(diagnostics, sensitivity=sensitivity))
    assert rating.level == 3 and any(note.startswith("fragile to differences in trends: 1 of 3")
                                     and note.endswith("(not the majority)") for note in rating.notes)
    sensitivity = _breakdowns(sensitivity, "network", {"starts_exporting": 0.5})
    assert rate_service("network", _with(diagnostics, sensitivity=sensitivity)).level == 2


def test_only_the_cs_average_decides_and_no_conclusion_means_nothing_to_break():
    diagnostics = make_diagnostics()
    sensitivity = diagnostics["sensitivity"].copy()
    other = (sensitivity["service"] == "advisory") & ((sensitivity["estimator"] == "twfe")
                                                      | (sensitivity["target"] == "on_impact"))
    sensitivity.loc[other, "breakdown"] = 0.1
    assert rate_service("advisory", _with(diagnostics, sensitivity=sensitivity)).level == 3
    rating = rate_service("advisory", _with(diagnostics, sensitivity=diagnostics["sensitivity"].assign(
        breakdown=np.nan)))
    assert rating.level == 3 and not any("trend differences" in note for note in rating.notes)


def _placebo(robustness, service, outcome, values):
    rows = (robustness["service"] == service) & (robustness["outcome"] == outcome) & (robustness["run"] == "placebo")
    robustness.loc[rows, ["estimate", "ci_lower", "ci_upper"]] = values
    return robustness


def test_placebos_that_find_effects_lower_the_rating_when_half_of_them_do():
    diagnostics = make_diagnostics()
    robustness = _placebo(diagnostics["robustness"].copy(), "network", "exporter", [0.03, 0.01, 0.05])
    rating = rate_service("network", _with(diagnostics, robustness=robustness))
    assert rating.level == 3  # one of four: expected now and then by chance, printed
    assert any(note.startswith("1 of 4 placebos (programme starts moved earlier, where the true effect is zero) find "
                               "an effect: on the probability of exporting: 3.0 pp (1.0 pp to 5.0 pp)")
               for note in rating.notes)
    robustness = _placebo(robustness, "network", "n_destinations", [0.3, 0.1, 0.5])
    rating = rate_service("network", _with(diagnostics, robustness=robustness))
    assert rating.level == 2 and rating.reasons[0].startswith("2 of 4 placebos")
    assert rate_service("advisory", _with(diagnostics, robustness=robustness)).level == 3


def test_a_run_that_reverses_a_conclusion_lowers_the_rating_but_one_that_only_loses_significance_does_not():
    diagnostics = make_diagnostics()
    robustness = diagnostics["robustness"].copy()
    run = (robustness["service"] == "advisory") & (robustness["outcome"] == "exporter") & (
        robustness["run"] == "dominance")
    robustness.loc[run, ["estimate", "ci_lower", "ci_upper"]] = [0.01, -0.013, 0.033]  # same sign, not significant
    assert rate_service("advisory", _with(diagnostics, robustness=robustness)).level == 3
    robustness.loc[run, ["estimate", "ci_lower", "ci_upper"]] = [-0.005, -0.028, 0.018]  # other sign
    rating = rate_service("advisory", _with(diagnostics, robustness=robustness))
    assert rating.level == 2 and rating.reasons == (
        "a robustness run reverses the effect on the probability of exporting (constructed run dominance): "
        "−0.5 pp (−2.8 pp to 1.8 pp) against 4.1 pp in the main run",)
    # an insignificant main estimate is reversed only by a significant run of the other sign
    insignificant = (robustness["service"] == "grant") & (robustness["outcome"] == "n_destinations")
    runs = insignificant & (robustness["run"] == "anticipation")
    robustness.loc[runs, ["estimate", "ci_lower", "ci_upper"]] = [0.05, -0.1, 0.2]
    assert not any("number of export markets" in r for r in rate_service(
        "grant", _with(diagnostics, robustness=robustness)).reasons)
    robustness.loc[runs, ["estimate", "ci_lower", "ci_upper"]] = [0.3, 0.1, 0.5]
    assert any("number of export markets" in r for r in rate_service(
        "grant", _with(diagnostics, robustness=robustness)).reasons)


def test_pre_tests_alone_never_decide_the_rating():
    diagnostics = make_diagnostics(failing_pretest=("advisory", "exporter"))
    pretests = diagnostics["pretests"].assign(p_value=0.001)
    assert rate_service("advisory", _with(diagnostics, pretests=pretests)).level == 3


def test_a_run_that_could_not_be_estimated_is_printed_not_counted():
    diagnostics = make_diagnostics()
    robustness = diagnostics["robustness"].copy()
    failed = (robustness["service"] == "advisory") & (robustness["run"] == "placebo")
    robustness.loc[failed, ["estimate", "ci_lower", "ci_upper"]] = np.nan
    robustness.loc[failed, "reason"] = "no cohort could be estimated"
    rating = rate_service("advisory", _with(diagnostics, robustness=robustness))
    assert rating.level == 3
    assert any(note.startswith("a robustness run could not be estimated") and "no cohort could be estimated" in note
               for note in rating.notes)


# --- the report: "How robust are the results", sensitivity.csv and robustness.csv -----------------------------------

@pytest.fixture(scope="module")
def robust_report(tmp_path_factory):
    from analyses.reporting import ReportSettings, build_report
    from tests.report_fixtures import report_inputs

    directory = tmp_path_factory.mktemp("robust_report")
    inputs = report_inputs(directory)
    robustness = inputs["diagnostics"]["robustness"]
    small = (robustness["service"] == "grant") & (robustness["outcome"] == "exporter") & (robustness["run"] == "dominance")
    robustness.loc[small, "n_treated"] = 7  # too few firms to publish
    result = build_report(**inputs, output_dir=directory / "out", settings=ReportSettings(formats=("html",)))
    return result, inputs, directory / "out"


def test_the_report_shows_per_service_the_sensitivity_sentence_the_runs_beside_the_main_estimate_and_the_reasons(
        robust_report):
    from analyses.reporting.report import SECTION_TITLES

    result, _, out = robust_report
    html = result.html_path.read_text(encoding="utf-8")
    assert SECTION_TITLES[2] == "How robust are the results"
    section = html.split('id="section-3"')[1].split('id="section-4"')[0]
    for title in ("Advisory support", "Network services", "Export grants"):
        assert f"<h3>{title}: how robust</h3>" in section
    # one figure and one sentence per service and outcome, from the relative-magnitudes breakdown of the average
    assert section.count("<img ") == 12
    assert ("For the effect of advisory support on the probability of exporting, the conclusion holds unless "
            "post-programme trend differences are more than 3.1 times the largest seen before the programme.") in section
    assert section.count("<caption>Robustness runs") == 12 and section.count("Main estimate") == 12
    assert "Placebo: earlier starts" in section and "Evidence rating: level 3." in section
    # the small run is withheld in the report and left out of the published file
    grant = section.split("<h3>Export grants: how robust</h3>")[1].split("</table>")[0]
    assert "Largest exporters dropped" in grant and "[c]" in grant
    published = pd.read_csv(out / "robustness.csv")
    assert not ((published["service"] == "grant") & (published["outcome"] == "exporter")
                & (published["run"] == "dominance")).any()
    assert len(published) == 12 * 6 - 1


def test_sensitivity_and_robustness_files_are_published_beside_the_estimates_and_pass_the_disclosure_check(
        robust_report):
    from analyses.reporting import check_published_files

    result, inputs, out = robust_report
    sensitivity = pd.read_csv(out / "sensitivity.csv")
    assert list(sensitivity.columns) == list(SENSITIVITY_COLUMNS)
    assert len(sensitivity) == len(inputs["diagnostics"]["sensitivity"])
    assert list(pd.read_csv(out / "robustness.csv").columns) == list(ROBUSTNESS_TABLE_COLUMNS)
    assert set(result.estimate_files) >= {"csv", "parquet", "sensitivity", "robustness"}
    checked = check_published_files(out, inputs["panel"]["firm_id"].unique())
    assert checked.passed
    assert (checked.checks["cell"].str.startswith("robustness.csv")).any()


def test_publishable_tables_follow_the_disclosure_of_the_estimates():
    from analyses.reporting.report import publishable_robustness
    from tests.report_fixtures import make_robustness, make_sensitivity

    suppressed = {("network", "exporter", "cs_did", HEADLINE, None), ("grant", "exporter", "twfe", "dynamic", 2.0)}
    robustness = make_robustness()
    close = (robustness["service"] == "advisory") & (robustness["outcome"] == "exporter") & (
        robustness["run"] == "anticipation")
    robustness.loc[close, "n_treated"] = 117  # 3 firms fewer than the main run: counts of the pair are coarsened
    sensitivity, shown = publishable_robustness(make_sensitivity(), robustness, suppressed, 10)
    assert not ((sensitivity["service"] == "network") & (sensitivity["outcome"] == "exporter")
                & (sensitivity["estimator"] == "cs_did")).any()
    assert not ((sensitivity["service"] == "grant") & (sensitivity["outcome"] == "exporter")
                & (sensitivity["estimator"] == "twfe")).any()
    assert ((sensitivity["service"] == "grant") & (sensitivity["outcome"] == "exporter")).any()  # CS stays
    assert not ((shown["service"] == "network") & (shown["outcome"] == "exporter")).any()
    pair = shown[(shown["service"] == "advisory") & (shown["outcome"] == "exporter")]
    assert sorted(pair["n_treated"]) == [100, 110, 120, 120, 120, 120]  # 117 rounded down: differed by 3 from 120


def test_the_plan_can_restrict_the_sensitivity_to_the_pre_periods_nearest_the_start(planted):
    from analyses.sensitivity import last_pre_periods

    _, _, main = planted
    study = main.diagnostics["event_studies"]["study"].iloc[0]
    short = last_pre_periods(study, 3)
    assert short.num_pre_periods == 3 and list(short.event_times[:3]) == [-4, -3, -2]
    np.testing.assert_array_equal(short.sigma, study.sigma[-(3 + study.num_post_periods):,
                                                           -(3 + study.num_post_periods):])
    assert last_pre_periods(study, 0).num_pre_periods == study.num_pre_periods
    with pytest.raises(ValueError, match="sensitivity_pre_periods"):
        EvaluationPlan(sensitivity_pre_periods=1)


def test_without_any_headline_there_is_nothing_to_test_and_the_table_keeps_its_types(planted):
    panel, plan, main = planted
    table = run_robustness(panel, plan, main.estimates.iloc[:0])
    assert table.empty and list(table.columns) == list(ROBUSTNESS_TABLE_COLUMNS)
    assert table["ci_lower"].dtype == "float64" and table["n_treated"].dtype == "int64"
