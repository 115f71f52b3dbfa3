"""Disclosure rules on constructed small and dominated cells, and on a small evaluation of demo data."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from analyses.reporting import ReportSettings, check_disclosure, check_published_files, write_estimate_files
from analyses.reporting.disclosure import (
    CELL_COLUMNS, check_cells, coarsen_overlap, cohort_cells, describe_panel, scan_for_identifiers, year_bands,
)
from analyses.reporting.settings import MECHANISM_EXTRA_COLUMNS
from tests.report_fixtures import make_estimates, make_panel, report_inputs

SETTINGS = ReportSettings()


def _cell(row, value, n_firms, table="total_export_value", column="2015\u20132017", largest=np.nan,
          second=np.nan, magnitude=True, is_total=False, follows=""):
    return {"table": table, "row": row, "column": column, "value": value, "n_firms": n_firms,
            "largest": largest, "second_largest": second, "cell_total": value if magnitude else np.nan,
            "magnitude": magnitude, "is_total": is_total, "follows": follows}


def _suppressed(cells, settings=SETTINGS):
    _, suppressed = check_cells(pd.DataFrame(cells, columns=CELL_COLUMNS), settings)
    return dict(zip(suppressed["row"] + "/" + suppressed["table"], suppressed["reason"]))


def test_estimate_on_nine_treated_firms_is_suppressed_and_dropped_from_the_files(tmp_path):
    estimates = make_estimates()
    small = (estimates["treatment"] == "grant") & (estimates["outcome"] == "exporter") \
        & (estimates["aggregation"] == "simple") & (estimates["estimator"] == "cs_did")
    estimates.loc[small, "n_treated"] = 9
    result = check_disclosure(estimates, None, SETTINGS)
    assert result.passed  # suppression is the remedy; nothing unsafe is left
    # a headline row: no subgroup, no dose, family headline
    assert ("grant", "exporter", "cs_did", "simple", None, "", None, "headline") in result.suppressed_keys()
    failing = result.checks[(result.checks["check"] == "min_treated_firms") & (result.checks["value"] == 9)]
    assert failing["outcome"].tolist() == ["suppressed"]
    paths = write_estimate_files(estimates, tmp_path, result)
    published = pd.read_csv(paths["csv"])
    assert len(published) == len(estimates) - 1
    assert published["n_treated"].min() >= 10
    assert list(published.columns) == [*estimates.columns, *MECHANISM_EXTRA_COLUMNS]
    assert len(pd.read_parquet(paths["parquet"])) == len(published)


def test_comparison_side_threshold_and_configurable_minimum():
    estimates = make_estimates(n_treated=60, n_control=8)  # cohorts hold 12 firms each
    assert len(check_disclosure(estimates, None, SETTINGS).suppressed_estimates) == len(estimates)
    relaxed = check_disclosure(estimates, None, ReportSettings(min_firms=5))
    assert relaxed.suppressed_estimates.empty
    strict = check_disclosure(make_estimates(n_treated=12, n_control=900), None, ReportSettings(min_firms=15))
    assert len(strict.suppressed_estimates) > 0


def test_one_small_cohort_estimate_forces_a_second_one_to_be_withheld():
    estimates = make_estimates()
    cohort_rows = estimates[(estimates["treatment"] == "advisory") & (estimates["outcome"] == "exporter")
                            & (estimates["aggregation"] == "group")].index
    estimates.loc[cohort_rows[0], "n_treated"] = 4
    estimates.loc[cohort_rows[1], "n_treated"] = 11
    result = check_disclosure(estimates, None, SETTINGS)
    hidden = result.suppressed_estimates
    hidden = hidden[(hidden["treatment"] == "advisory") & (hidden["outcome"] == "exporter")]
    assert len(hidden) == 2
    assert hidden["reason"].str.startswith("secondary suppression").sum() == 1
    # the complementary cell is the next-smallest cohort
    assert estimates.loc[cohort_rows[1], "event_time"] in set(hidden["event_time"])


def test_largest_firm_above_half_of_the_cell_is_suppressed():
    reasons = _suppressed([_cell("Grant", 1000.0, 12, largest=600.0, second=50.0)])
    assert "dominance top1" in reasons["Grant/total_export_value"]


def test_two_largest_above_two_thirds_is_suppressed_even_when_each_is_below_half():
    reasons = _suppressed([_cell("Grant", 1000.0, 12, largest=400.0, second=300.0)])
    assert "dominance top2" in reasons["Grant/total_export_value"]
    assert _suppressed([_cell("Grant", 1000.0, 12, largest=400.0, second=260.0)]) == {}


def test_dominance_thresholds_are_configurable():
    cell = [_cell("Grant", 1000.0, 12, largest=550.0, second=50.0)]
    assert _suppressed(cell, ReportSettings(dominance_top1=0.6)) == {}


def test_small_cell_triggers_secondary_suppression_so_the_total_cannot_recover_it():
    cells = [
        _cell("Advisory support", 5000.0, 40, largest=500.0, second=400.0),
        _cell("Network services", 900.0, 6, largest=300.0, second=200.0),   # too few firms
        _cell("Export grants", 3000.0, 30, largest=400.0, second=300.0),
        _cell("No support", 9000.0, 80, largest=600.0, second=500.0),
        _cell("All firms", 17900.0, 156, largest=600.0, second=500.0, is_total=True),
    ]
    reasons = _suppressed(cells)
    assert reasons["Network services/total_export_value"].startswith("fewer than 10 firms")
    # the smallest remaining interior cell is withheld as its complement
    assert reasons["Export grants/total_export_value"].startswith("secondary suppression")
    assert len(reasons) == 2
    published = [c for c in cells if f"{c['row']}/total_export_value" not in reasons]
    total = next(c["value"] for c in published if c["is_total"])
    interior = sum(c["value"] for c in published if not c["is_total"])
    assert total - interior == pytest.approx(900.0 + 3000.0)  # only the sum of two hidden cells is knowable


def test_suppressed_total_is_protected_by_an_interior_cell():
    cells = [
        _cell("A", 100.0, 12, table="firms", magnitude=False),
        _cell("B", 200.0, 20, table="firms", magnitude=False),
        _cell("All firms", 300.0, 32, table="firms", magnitude=False, is_total=True),
    ]
    reasons = _suppressed(cells, ReportSettings(min_firms=25))
    # A (12 < 25) is suppressed, which forces B, and the total stays publishable
    assert set(reasons) == {"A/firms", "B/firms"}


def test_mean_is_withheld_with_its_total():
    cells = [
        _cell("Grant", 1000.0, 12, largest=600.0, second=50.0),
        _cell("Grant", 50.0, 12, table="mean_export_value", largest=600.0, second=50.0,
              follows="total_export_value"),
    ]
    cells[1]["cell_total"] = 1000.0
    reasons = _suppressed(cells)
    assert set(reasons) == {"Grant/total_export_value", "Grant/mean_export_value"}


def test_describe_panel_builds_additive_tables_and_hides_dominated_small_groups():
    panel = make_panel(n_firms=200)
    # one grant firm with enormous exports dominates its group
    grant_firm = panel.loc[panel["first_service"] == "grant", "firm_id"].iloc[0]
    panel.loc[(panel["firm_id"] == grant_firm) & (panel["year"] == 2013), ["exporter", "export_value_eur"]] = [1, 5e9]
    cells = describe_panel(panel)
    firms = cells[(cells["table"] == "firms") & (cells["column"] == "2012\u20132014")]
    interior = firms[~firms["is_total"]]["value"].sum()
    assert firms[firms["is_total"]]["value"].iloc[0] == interior == 200
    result = check_disclosure(make_estimates(), cells, SETTINGS)
    hidden = result.suppressed_cells
    hits = hidden[(hidden["table"] == "total_export_value") & (hidden["row"] == "Export grants")
                  & (hidden["column"] == "2012\u20132014")]
    assert hits["reason"].str.contains("dominance top1").all() and len(hits) == 1
    # the total row includes the dominant firm too, so it is withheld on its own merits
    assert result.is_cell_suppressed("total_export_value", "All firms", "2012\u20132014")
    assert result.is_cell_suppressed("mean_export_value", "Export grants", "2012\u20132014")
    relation = hidden[(hidden["table"] == "total_export_value") & (hidden["column"] == "2012\u20132014")]
    assert len(relation) != 1


def test_year_bands_cover_every_year_once():
    bands = year_bands(range(2012, 2022), 3)
    assert bands == [(2012, 2014), (2015, 2017), (2018, 2021)]
    covered = [y for lo, hi in bands for y in range(lo, hi + 1)]
    assert covered == list(range(2012, 2022))


def test_cohort_cells_protect_small_cohorts_against_the_service_total():
    cohorts = pd.DataFrame({"treatment": ["grant"] * 3, "cohort": [2015, 2016, 2017], "n_firms": [30, 4, 25]})
    _, suppressed = check_cells(cohort_cells(cohorts), SETTINGS)
    assert set(suppressed["row"]) == {"2016", "2017"}


def test_overlap_histogram_bins_are_pooled_to_at_least_min_firms():
    overlap = pd.DataFrame({
        "treatment": "advisory", "group": "treated",
        "bin_lower": np.arange(0, 1, 0.05), "bin_upper": np.arange(0.05, 1.05, 0.05)[:20],
        "n_firms": [0, 0, 3, 4, 5, 20, 30, 40, 30, 12, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    })
    coarse, checks = coarsen_overlap(overlap, 10)
    non_empty = coarse[coarse["n_firms"] > 0]
    assert (non_empty["n_firms"] >= 10).all()
    assert coarse["n_firms"].sum() == overlap["n_firms"].sum()
    assert checks[0]["outcome"] == "coarsened"
    assert non_empty["bin_upper"].max() == pytest.approx(0.6)  # the 2+1 tail joins the bin before it
    assert non_empty["bin_lower"].tolist()[:2] == pytest.approx([0.10, 0.25])  # 3+4+5 pooled into one bar
    assert (coarse["n_firms"] == 0).sum() == 10  # empty bins stay visible as gaps


def test_identifier_scan_finds_firm_ids_outside_images_only():
    text = '<p>FRM100123 exported</p><img src="data:image/png;base64,FRM100999AAAA">'
    checks = scan_for_identifiers({"report": text}, ["FRM100123", "FRM100999", 7])
    assert checks["value"].tolist() == [1] and checks["outcome"].tolist() == ["fail"]
    clean = scan_for_identifiers({"report": "<p>120 firms in 2015</p>"}, ["FRM100123", 120, 2015])
    assert clean["outcome"].tolist() == ["pass"]


def test_published_files_are_rechecked_from_disk(tmp_path):
    estimates = make_estimates()
    write_estimate_files(estimates, tmp_path, check_disclosure(estimates, None, SETTINGS))
    (tmp_path / "impact_report.html").write_text("<p>safe</p>", encoding="utf-8")
    assert check_published_files(tmp_path, ["FRM100001"], SETTINGS).passed
    # a file written without the disclosure result leaks a small estimate
    estimates.loc[0, "n_control"] = 3
    write_estimate_files(estimates, tmp_path)
    (tmp_path / "impact_report.html").write_text("<p>FRM100001</p>", encoding="utf-8")
    result = check_published_files(tmp_path, ["FRM100001"], SETTINGS)
    assert not result.passed
    # the small row in the CSV and in the parquet file, and the identifier in the HTML
    assert result.metadata()["failures"] == ["published_min_n_control estimates.csv line 2: 3 vs 10",
                                             "published_min_n_control estimates.parquet row 0: 3 vs 10",
                                             "no_firm_identifiers impact_report.html: 1 vs 0"]


def test_published_parquet_is_checked_even_when_the_csv_is_clean(tmp_path):
    estimates = make_estimates()
    write_estimate_files(estimates, tmp_path, check_disclosure(estimates, None, SETTINGS))
    tampered = pd.read_parquet(tmp_path / "estimates.parquet")
    tampered.loc[5, "n_treated"] = 4
    tampered.assign(firm_id="FRM100007").to_parquet(tmp_path / "estimates.parquet", index=False)
    result = check_published_files(tmp_path, ["FRM100007"], SETTINGS)
    assert sorted(result.metadata()["failures"]) == [
        "no_firm_identifiers estimates.parquet: 1 vs 0",
        "no_identifier_columns estimates.parquet:firm_id: 1 vs 0",
        "published_min_n_treated estimates.parquet row 5: 4 vs 10",
    ]


def test_metadata_is_json_serialisable():
    estimates = make_estimates()
    estimates.loc[0, "n_treated"] = 2
    result = check_disclosure(estimates, describe_panel(make_panel(n_firms=60)), SETTINGS)
    metadata = json.loads(json.dumps(result.metadata()))
    assert metadata["n_suppressed_estimates"] >= 1
    assert metadata["min_firms"] == 10 and metadata["passed"] is True
    assert set(metadata["outcomes"]) <= {"pass", "suppressed", "secondary", "coarsened", "fail"}


def test_invalid_settings_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="dominance_top1"):
        ReportSettings(dominance_top1=1.5)
    with pytest.raises(ValueError, match="min_firms"):
        ReportSettings(min_firms=0)


# --- differencing: counts of sibling rows must not reveal a small group of firms -----------------

FAMILY = ["treatment", "outcome", "estimator", "aggregation"]


def _closest_counts(published: pd.DataFrame) -> dict:
    """Smallest positive difference between the counts of rows of one family, per family and column."""
    closest = {}
    for family, rows in published.groupby(FAMILY):
        for column in ("n_treated", "n_control"):
            gaps = np.diff(np.unique(rows[column].to_numpy()))
            if gaps.size:
                closest[(*family, column)] = int(gaps.min())
    return closest


@pytest.fixture(scope="module")
def evaluation_with_plan_cohort_size_one():
    """The grant evaluation of a small demo delivery whose plan says `min_cohort_size: 1`.

    The 2014 grant cohort holds 4 firms; without a floor it enters the event study at e = -1 but not
    at e = -2 (no base period), so those rows' n_treated differ by 4.
    """
    from analyses.demo_data import generate_demo_data
    from analyses.evaluation import EvaluationPlan, run_evaluation
    from analyses.panel import build_firm_year_panel

    demo = generate_demo_data(n_firms=1_500, seed=13)
    panel = build_firm_year_panel(demo.firms, demo.financials, demo.participation, demo.exports).panel
    # first-year covariates: the 2014 cohort has a base period (2013) without three earlier years of customs data
    plan = EvaluationPlan(services=("grant",), outcomes=("exporter",), bootstrap_iterations=0, min_cohort_size=1,
                          covariate_timing="first_year")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_evaluation(panel, plan)


def test_plan_cannot_lower_the_disclosure_minimum_for_estimated_cohorts(evaluation_with_plan_cohort_size_one):
    cohorts = evaluation_with_plan_cohort_size_one.diagnostics["cohorts"].set_index("cohort")
    assert cohorts.loc[2014, "n_firms"] == 4
    assert not cohorts.loc[2014, "used"] and cohorts.loc[2014, "reason"] == "fewer than 10 firms"
    assert cohorts.loc[cohorts["used"], "n_firms"].min() >= SETTINGS.min_firms


def test_plan_can_raise_the_cohort_minimum():
    from analyses.evaluation import EvaluationPlan, service_sample

    panel = make_panel(n_firms=400)
    sizes = service_sample(panel, "advisory", EvaluationPlan(min_cohort_size=1, covariates=()))[1].set_index("cohort")["n_firms"]
    threshold = int(sizes.sort_values().iloc[len(sizes) // 2]) + 1  # leaves out about half of the cohorts
    _, cohorts = service_sample(panel, "advisory", EvaluationPlan(min_cohort_size=threshold, covariates=()))
    assert threshold > SETTINGS.min_firms
    assert (cohorts["used"] == (cohorts["n_firms"] >= threshold)).all()
    assert set(cohorts.loc[~cohorts["used"], "reason"]) == {f"fewer than {threshold} firms"}


def test_published_estimates_of_that_evaluation_cannot_be_differenced(evaluation_with_plan_cohort_size_one, tmp_path):
    estimates = evaluation_with_plan_cohort_size_one.estimates
    result = check_disclosure(estimates, None, SETTINGS)
    write_estimate_files(estimates, tmp_path, result)
    published = pd.read_csv(tmp_path / "estimates.csv")
    dynamic = published.query("estimator == 'cs_did' and aggregation == 'dynamic'").set_index("event_time")
    assert {-2.0, -1.0, 0.0} <= set(dynamic.index)  # the event study itself is published
    too_close = {family: gap for family, gap in _closest_counts(published).items() if gap < SETTINGS.min_firms}
    assert too_close == {}
    assert result.passed and check_published_files(tmp_path, [], SETTINGS).passed


def _family(estimates, aggregation, treatment="advisory", outcome="exporter", estimator="cs_did"):
    return estimates[(estimates["treatment"] == treatment) & (estimates["outcome"] == outcome)
                     & (estimates["estimator"] == estimator) & (estimates["aggregation"] == aggregation)].index


# (aggregation, column, values for the first rows of the family): sibling rows a few firms apart
SMALL_DIFFERENCES = [
    ("dynamic", "n_treated", [214, 217]),       # the example of issue 8: a 3-firm cohort behind e = 0
    ("dynamic", "n_control", [900, 896]),
    ("calendar", "n_treated", [123, 130]),
    ("calendar", "n_control", [905, 900]),
    ("group", "n_treated", [31, 24]),
    ("group", "n_control", [901, 900]),
]


@pytest.mark.parametrize("aggregation, column, values", SMALL_DIFFERENCES)
def test_counts_a_few_firms_apart_are_rounded_down_to_the_threshold(tmp_path, aggregation, column, values):
    estimates = make_estimates(n_treated=123, n_control=953)  # counts that are not multiples of 10
    rows = _family(estimates, aggregation)
    estimates.loc[rows[:len(values)], column] = values
    result = check_disclosure(estimates, None, SETTINGS)
    assert result.passed and result.suppressed_estimates.empty  # no estimate is withheld for it
    write_estimate_files(estimates, tmp_path, result)
    published = pd.read_csv(tmp_path / "estimates.csv")
    assert len(published) == len(estimates)
    family = _family(published, aggregation)
    expected = estimates.loc[rows, column].to_numpy() // 10 * 10
    np.testing.assert_array_equal(published.loc[family, column], expected)
    assert all(gap >= 10 for gap in _closest_counts(published).values())
    # only that family and column is rounded; the other count and the other families stay exact
    other = "n_control" if column == "n_treated" else "n_treated"
    np.testing.assert_array_equal(published.loc[family, other], estimates.loc[rows, other])
    untouched = published.drop(index=family)
    pd.testing.assert_frame_equal(untouched[["n_treated", "n_control"]],
                                  estimates.drop(index=rows)[["n_treated", "n_control"]].reset_index(drop=True)
                                  .set_axis(untouched.index))
    coarsened = result.checks[result.checks["outcome"] == "coarsened"]
    assert coarsened["check"].tolist() == [f"differencing_{column}"]
    assert coarsened["cell"].iloc[0] == f"estimates advisory/exporter/cs_did/{aggregation}"
    assert coarsened["value"].iloc[0] == abs(values[0] - values[1])
    assert result.metadata()["rounded_counts"] == [
        f"estimates advisory/exporter/cs_did/{aggregation}: {column} rounded down to a multiple of 10 "
        f"(two published rows differ by {abs(values[0] - values[1])} firms)"]
    assert check_published_files(tmp_path, [], SETTINGS).passed


def test_rows_withheld_anyway_do_not_force_rounding(tmp_path):
    estimates = make_estimates(n_treated=123, n_control=953)
    rows = _family(estimates, "dynamic")
    estimates.loc[rows[0], "n_treated"] = 118  # 5 firms from its siblings, but too few comparison firms
    estimates.loc[rows[0], "n_control"] = 7
    result = check_disclosure(estimates, None, SETTINGS)
    write_estimate_files(estimates, tmp_path, result)
    published = pd.read_csv(tmp_path / "estimates.csv")
    assert len(published) == len(estimates) - 1
    assert set(published["n_treated"]) == {123, 123 * 3 // 4, 61, 24}  # 3/4: the headline's balanced cohorts
    assert "coarsened" not in set(result.checks["outcome"])


def test_written_files_with_differencing_counts_fail_the_recheck(tmp_path):
    estimates = make_estimates()
    rows = _family(estimates, "dynamic")
    estimates.loc[rows[:2], "n_treated"] = [214, 217]
    write_estimate_files(estimates, tmp_path)  # written without the disclosure result
    result = check_published_files(tmp_path, [], SETTINGS)
    assert not result.passed
    csv_line = rows[0] + 2  # header is line 1
    assert result.metadata()["failures"] == [
        f"published_differencing_n_treated estimates.csv advisory/exporter/cs_did/dynamic "
        f"lines {csv_line} and {rows[1] + 2}: 3 vs 10",
        f"published_differencing_n_treated estimates.parquet advisory/exporter/cs_did/dynamic "
        f"rows {rows[0]} and {rows[1]}: 3 vs 10",
    ]


def test_methods_annex_states_the_cohort_floor_and_the_rounding(tmp_path):
    from analyses.reporting import build_report

    inputs = report_inputs(tmp_path)
    inputs["diagnostics"]["plan"]["min_cohort_size"] = 1
    rows = _family(inputs["estimates"], "group")
    inputs["estimates"].loc[rows[:2], "n_treated"] = [31, 24]
    build_report(**inputs, output_dir=tmp_path / "out", settings=ReportSettings(formats=("html",)))
    html = " ".join((tmp_path / "out" / "impact_report.html").read_text(encoding="utf-8").split())
    assert ("Cohorts with fewer than 10 firms are not estimated: the plan asks for at least 1, and no plan "
            "can go below the disclosure minimum of 10 firms.") in html
    assert "that analysis's counts are rounded down to a multiple of 10" in html
    assert "In this report 1 such set(s) of counts were rounded." in html
