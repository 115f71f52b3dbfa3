"""End-to-end report build: content, form, accessibility, companions and input errors."""
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses.evaluation import ESTIMATE_COLUMNS
from analyses.reporting.settings import MECHANISM_EXTRA_COLUMNS
from analyses.reporting import ReportSettings, build_report
from analyses.reporting.report import SECTION_TITLES
from analyses.reporting.summary import format_number
from tests.report_fixtures import make_estimates, make_panel, report_inputs

HTML_ONLY = ReportSettings(formats=("html",))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    inputs = report_inputs(directory)
    result = build_report(**inputs, output_dir=directory / "out")
    return result, inputs, result.html_path.read_text(encoding="utf-8")


class _Structure(HTMLParser):
    """Collects the elements the accessibility and self-containment tests look at."""

    def __init__(self):
        super().__init__()
        self.html_lang, self.images, self.h2, self.tables, self.captions = None, [], [], 0, 0
        self.header_cells, self.external, self._in_h2 = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.html_lang = attrs.get("lang")
        if tag == "img":
            self.images.append(attrs)
        if tag == "table":
            self.tables += 1
        if tag == "caption":
            self.captions += 1
        if tag == "th":
            self.header_cells.append(attrs.get("scope"))
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


def _parse(html: str) -> _Structure:
    parser = _Structure()
    parser.feed(html)
    return parser


def test_outputs_are_written(built):
    result, _, _ = built
    out = result.html_path.parent
    assert {p.name for p in out.iterdir()} >= {"impact_report.html", "impact_report.pdf", "estimates.csv",
                                                "estimates.parquet"}
    assert result.pdf_path.read_bytes()[:5] == b"%PDF-"


def test_sections_appear_in_the_publication_order(built):
    _, _, html = built
    assert [h.strip() for h in _parse(html).h2] == SECTION_TITLES


def test_pdf_has_one_top_level_bookmark_per_section(built):
    result, _, _ = built
    assert result.pdf_bookmarks == SECTION_TITLES
    assert result.pdf_pages >= 8


def test_html_is_self_contained_and_accessible(built):
    _, _, html = built
    structure = _parse(html)
    assert structure.html_lang == "en-GB"
    assert structure.external == []
    assert not re.search(r"url\((?!data:)", html)
    assert "http://" not in html and "https://" not in html
    # 12 event studies + 12 sensitivity figures + 3 balance plots + 3 overlap plots + 3 dose-response curves
    # + 1 subgroup forest plot, all inline PNG with alt text
    assert len(structure.images) == 34
    for image in structure.images:
        assert image["src"].startswith("data:image/png;base64,")
        assert len(image.get("alt", "")) > 40
    assert structure.tables == structure.captions
    assert all(scope in ("col", "row", "rowgroup") for scope in structure.header_cells)


def test_alt_text_is_generated_from_the_numbers(built):
    _, inputs, html = built
    estimates = inputs["estimates"]
    post = estimates[(estimates["treatment"] == "advisory") & (estimates["outcome"] == "exporter")
                     & (estimates["estimator"] == "cs_did") & (estimates["aggregation"] == "dynamic")
                     & (estimates["event_time"] >= 0)]
    best = post.loc[post["estimate"].idxmax()]
    expected = f"to {100 * best['estimate']:.1f} (e = {best['event_time']:g})"
    alts = [img["alt"] for img in _parse(html).images if "advisory support on exporting" in img["alt"]]
    assert len(alts) == 1 and expected in alts[0]


def test_headline_table_matches_the_estimates(built):
    result, _, html = built
    headline = result.headline
    assert len(headline) == 12 and headline["published"].all()
    advisory = headline[(headline["treatment"] == "advisory") & (headline["outcome"] == "exporter")].iloc[0]
    assert advisory["estimate"] == pytest.approx(4.1)
    assert (advisory["ci_lower"], advisory["ci_upper"]) == pytest.approx((1.8, 6.4), abs=0.01)
    assert ("| Advisory support | Exporting | percentage points | 4.1 | 1.8 to 6.4 | <0.001 | 90 | 900 | 5.1 | 5.1 | 3 |"
            in result.headline_markdown)
    assert result.headline_markdown.count("\n") == 13
    assert "Firms that started with advisory support were 4.1 percentage points (95 % confidence interval 1.8 to 6.4) more likely" in html


def test_the_headline_is_the_balanced_event_study_average_not_rs_simple_average(built):
    result, inputs, html = built
    estimates = inputs["estimates"]
    simple = estimates.query("treatment == 'advisory' and outcome == 'exporter' and estimator == 'cs_did' "
                             "and aggregation == 'simple'")["estimate"].iloc[0]
    assert 100 * simple == pytest.approx(2.46)  # R's simple average: in estimates.csv, not the headline
    advisory = result.headline.set_index(["treatment", "outcome"]).loc[("advisory", "exporter")]
    assert advisory["estimate"] == pytest.approx(4.1) and advisory["n_treated"] == 90
    text = " ".join(html.split())
    assert ("Table 1. Average effect over the year support started and the three years after (event times 0 to 3, "
            "the same cohorts in each year)") in text
    assert "on average over the year they started and the three years after" in text
    mde = re.search(r"Table 3\. .*?</table>", text).group(0)
    assert "over the year support started and the three years after" in mde
    assert "3.3" in mde  # 2.8 x SE of the advisory exporter headline (0.01173) in pp


def test_twfe_sits_beside_cs_with_and_without_covariates_and_the_gap_is_read_from_the_numbers(built):
    result, _, html = built
    headline = result.headline.set_index(["treatment", "outcome"])
    advisory = headline.loc[("advisory", "exporter")]
    assert (advisory["no_covariates"], advisory["twfe"]) == pytest.approx((5.125, 5.125))
    text = " ".join(html.split())
    assert "<th scope=\"col\" class=\"num\">CS-DiD without covariates</th>" in text
    readings = dict(zip(result.headline["treatment"] + "/" + result.headline["outcome"],
                        result.headline["comparison"]))
    # advisory: CS without covariates equals TWFE, so the gap is the covariate adjustment
    assert "mostly covariate adjustment" in readings["advisory/exporter"]
    assert "cohort" not in readings["advisory/exporter"]
    # network: CS without covariates equals CS with them, so the gap is how TWFE weights cohorts and years
    assert "not covariate adjustment" in readings["network/exporter"] or \
        "not covariate adjustment" in readings["network/n_destinations"]
    assert "cohort" in readings["network/n_destinations"]
    assert "both" in readings["grant/exporter"]
    for reading in readings.values():
        assert reading in text


def test_evidence_rating_is_one_per_service_and_a_single_pretest_rejection_does_not_lower_it(built):
    result, _, html = built
    rated = result.headline.groupby("treatment")["sms_level"].unique()
    assert {treatment: list(levels) for treatment, levels in rated.items()} == {
        "advisory": [3], "network": [3], "grant": [3]}
    text = " ".join(html.split())
    assert "Evidence rating per service" in text
    assert "Pre-trend test rejects" not in text
    # the pre-test is reported as information, with its power against a stated alternative
    table = re.search(r"Table 2\. .*?</table>", text).group(0)
    assert "31 %" in table and "Power" in table
    assert "1 of 12 pre-trend tests rejects at &alpha; = 0.05; about 0.6 would by chance" in text
    assert "bias the headline by as much as its minimum detectable effect" in text


def test_event_studies_are_plotted_with_a_universal_base_period_and_long_run_points_name_their_cohorts(built):
    _, inputs, html = built
    text = " ".join(html.split())
    assert "universal base period" in text and "e = &minus;1" in text
    assert "the <code>dynamic</code> rows of CS-DiD in estimates.csv use the plan's base period (varying)" in text
    estimates = inputs["estimates"]
    pre = estimates.query("treatment == 'advisory' and outcome == 'exporter' and estimator == 'cs_did' "
                          "and aggregation == 'dynamic_universal' and event_time < 0")
    low = pre.loc[pre["estimate"].idxmin()]
    alts = [img["alt"] for img in _parse(html).images if "advisory support on exporting" in img["alt"]]
    assert f"from {format_number(100 * low['estimate'], 1)} (e = {low['event_time']:g})" in alts[0]
    assert "relative to the year before support (e = −1)" in alts[0]
    assert "Event times after 3 rest on fewer cohorts: e = 4: 3 cohorts (60 firms)" in text


def test_dropped_cells_and_cohorts_are_listed_with_their_reason(tmp_path):
    inputs = report_inputs(tmp_path)
    labels = {"treatment": "grant", "outcome": "exporter", "estimator": "cs_did"}
    reason = "propensity score separates the treated from the comparison units (max 0.9995)"
    cells = pd.DataFrame([{**labels, "aggregation": aggregation, "cohort": 2017, "time": time, "reason": reason}
                          for aggregation in ("dynamic", "dynamic_balanced") for time in (2016, 2017, 2018)])
    cohorts = pd.DataFrame([{**labels, "aggregation": "group", "cohort": 2017, "n_firms": 24, "reason": reason}])
    diagnostics = {**inputs["diagnostics"], "dropped_cells": cells, "dropped_cohorts": cohorts}
    result = build_report(**{**inputs, "diagnostics": diagnostics}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    text = " ".join(result.html_path.read_text(encoding="utf-8").split())
    assert "could not be estimated and were left out of the averages" in text
    assert re.search(r"<tr class=\"dropped\"><th scope=\"row\">Export grants</th><td>Exporting</td><td>CS-DiD</td>"
                     r"<td class=\"num\">2017</td><td>2016, 2017, 2018</td><td>dynamic, dynamic_balanced</td>"
                     r"<td>" + re.escape(reason) + "</td>", text)
    assert "cohort 2017 left out entirely (group)" in text


def test_a_report_is_published_when_nothing_at_all_could_be_estimated(tmp_path):
    inputs = report_inputs(tmp_path)
    empty = inputs["estimates"].iloc[0:0]
    reasons = {service: f"no cohort could be estimated (5 cohort(s): fewer than 400 firms)"
               for service in ("advisory", "network", "grant")}
    not_estimable = pd.DataFrame([{"treatment": service, "outcome": "", "estimator": "", "aggregation": "",
                                   "reason": reason} for service, reason in reasons.items()])
    diagnostics = {**inputs["diagnostics"], "not_estimable": not_estimable,
                   **{name: inputs["diagnostics"][name].iloc[0:0] for name in ("pretests", "mde", "cohorts_behind")}}
    result = build_report(**{**inputs, "estimates": empty, "diagnostics": diagnostics, "mechanisms": None},
                          output_dir=tmp_path / "out")
    text = " ".join(result.html_path.read_text(encoding="utf-8").split())
    assert "No effect could be estimated for any service." in text
    assert result.summary_paragraphs["advisory"] == ("Nothing could be estimated for advisory support: no cohort could "
                                                     "be estimated (5 cohort(s): fewer than 400 firms).")
    assert "<li>Export grants, all outcomes: no cohort could be estimated" in text
    assert result.pdf_pages >= 5 and result.pdf_bookmarks == SECTION_TITLES
    assert pd.read_csv(result.estimate_files["csv"]).empty


def test_data_quality_and_lineage_are_printed(built):
    _, inputs, html = built
    for source, record in inputs["data_quality"]["sources"].items():
        assert record["sha256"] in html
        assert f"{source}_contract v1.2.0" in html
    assert "firm_id_format (80); year_in_range (40); value_non_negative (10)" in html
    assert "unused_rule" not in html
    assert html.count("matches file on disk") == 3
    assert inputs["lineage"]["run_id"] in html and inputs["lineage"]["git_commit"] in html


def test_no_firm_identifier_reaches_the_report(built):
    result, inputs, html = built
    ids = set(inputs["panel"]["firm_id"])
    assert not any(firm in html for firm in ids)
    assert result.disclosure.passed
    assert result.disclosure.checks.query("check == 'no_firm_identifiers'")["outcome"].tolist() == ["pass"]


def test_estimate_files_have_the_evaluation_columns_then_the_mechanism_columns(built):
    result, inputs, _ = built
    csv = pd.read_csv(result.estimate_files["csv"], keep_default_na=False, na_values=[""])
    parquet = pd.read_parquet(result.estimate_files["parquet"])
    assert list(csv.columns) == [*ESTIMATE_COLUMNS, *MECHANISM_EXTRA_COLUMNS] == list(parquet.columns)
    assert len(csv) == len(parquet) == len(inputs["estimates"]) + len(inputs["mechanisms"])
    pd.testing.assert_frame_equal(csv.fillna({"subgroup": ""}), parquet, check_dtype=False)
    headline = parquet[parquet["family"] == "headline"]
    assert len(headline) == len(inputs["estimates"])
    assert headline["subgroup"].eq("").all() and headline[["dose", "p_value_adjusted"]].isna().all().all()
    assert set(parquet["family"]) == {"headline", "bundles", "sequences", "dose", "subgroups", "markets", "value",
                                      "persistence"}
    mechanisms = parquet[parquet["family"] != "headline"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mechanisms, inputs["mechanisms"], check_dtype=False)


def test_small_service_is_withheld_everywhere(tmp_path):
    inputs = report_inputs(tmp_path)
    estimates = inputs["estimates"]
    estimates.loc[estimates["treatment"] == "grant", "n_treated"] = 6
    panel = make_panel(n_firms=150, seed=5)
    result = build_report(**{**inputs, "estimates": estimates, "panel": panel}, output_dir=tmp_path / "out",
                          settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    grant = result.headline[result.headline["treatment"] == "grant"]
    assert not grant["published"].any() and grant["estimate"].isna().all()
    assert "less likely to export" not in result.summary_paragraphs["grant"]
    assert "are not published because they rest on fewer than 10" in result.summary_paragraphs["grant"]
    assert html.count("[c]") >= 5 * 4  # five headline cells for each of the four grant outcomes
    assert "Export grants: balance and overlap" in html and "Withheld: too few supported firms" in html
    assert result.pdf_path is None
    published = pd.read_csv(result.estimate_files["csv"])
    assert "grant" not in set(published.loc[published["family"] == "headline", "treatment"])


def test_template_escapes_untrusted_text(tmp_path):
    inputs = report_inputs(tmp_path)
    one_service = inputs["estimates"][inputs["estimates"]["treatment"] == "advisory"]
    settings = ReportSettings(formats=("html",), agency="<script>alert(1)</script> & Co")
    result = build_report(**{**inputs, "estimates": one_service}, output_dir=tmp_path / "out", settings=settings)
    html = result.html_path.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html


@pytest.mark.parametrize("mutate, message", [
    (lambda e: e.drop(columns=["p_value"]), r"missing \['p_value'\]"),
    (lambda e: e.assign(treatment=e["treatment"].where(e.index != 5, "loans")), r"row 5: column 'treatment'"),
    (lambda e: e.assign(ci_lower=e["ci_lower"].where(e.index != 3, 9.0)), r"row 3: interval"),
    (lambda e: e.assign(n_treated=e["n_treated"].astype(str)), r"column 'n_treated' must be numeric"),
])
def test_bad_estimates_fail_with_row_and_column(tmp_path, mutate, message):
    inputs = report_inputs(tmp_path)
    with pytest.raises(ValueError, match=message):
        build_report(**{**inputs, "estimates": mutate(make_estimates())}, output_dir=tmp_path / "out",
                     settings=HTML_ONLY)
    assert not (tmp_path / "out").exists()


def test_bad_diagnostics_and_data_quality_name_the_part(tmp_path):
    inputs = report_inputs(tmp_path)
    diagnostics = {**inputs["diagnostics"], "pretests": inputs["diagnostics"]["pretests"].drop(columns=["W"])}
    with pytest.raises(ValueError, match=r"diagnostics\['pretests'\] is missing columns \['W'\]"):
        build_report(**{**inputs, "diagnostics": diagnostics}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    quality = {"sources": {"firms": {"rows_in": 3}}}
    with pytest.raises(ValueError, match=r"data_quality\['sources'\]\['firms'\] is missing keys"):
        build_report(**{**inputs, "data_quality": quality}, output_dir=tmp_path / "out", settings=HTML_ONLY)


def test_report_builds_quickly(built):
    result, _, _ = built
    # 3 services x 4 outcomes, HTML and PDF; the budget leaves room for a slow shared machine
    assert result.seconds < 60
    assert Path(result.html_path).stat().st_size < 3_000_000


def test_rating_reasons_cover_covariates_overlap_imbalance_and_power():
    from analyses.reporting.rating import rate_service
    from tests.report_fixtures import make_diagnostics

    diagnostics = make_diagnostics()
    rating = rate_service("advisory", diagnostics)
    assert rating.level == 3 and rating.reasons == ()
    assert "Staggered difference-in-differences" in rating.explanation and "never supported" in rating.explanation
    # no pre-test (or a failing one) is no reason: pre-tests are information
    pretests = diagnostics["pretests"].assign(p_value=float("nan"))
    assert rate_service("advisory", {**diagnostics, "pretests": pretests}).level == 3
    plan = {**diagnostics["plan"], "covariates": []}
    rating = rate_service("advisory", {**diagnostics, "plan": plan})
    assert rating.level == 2 and rating.reasons[0].startswith("no covariates")
    overlap = diagnostics["overlap"].copy()
    overlap.loc[(overlap["treatment"] == "advisory") & (overlap["group"] == "comparison")
                & (overlap["bin_lower"] >= 0.5), "n_firms"] = 0
    rating = rate_service("advisory", {**diagnostics, "overlap": overlap})
    assert rating.level == 2 and rating.reasons[0].startswith("poor overlap")
    balance = diagnostics["balance"].copy()
    balance.loc[balance["treatment"] == "advisory", "smd_weighted"] = [0.05, -0.4, 0.1, 0.0]
    rating = rate_service("advisory", {**diagnostics, "balance": balance})
    assert rating.reasons == ("covariate imbalance after weighting: turnover_log SMD = −0.40",)
    mde = diagnostics["mde"].assign(mde=0.30)  # 0.67 standard deviations for every outcome
    rating = rate_service("advisory", {**diagnostics, "mde": mde})
    assert rating.level == 2 and rating.reasons[0].startswith("too few firms to detect medium-sized effects")


def test_firm_ids_quoted_in_upstream_warnings_are_redacted(tmp_path):
    inputs = report_inputs(tmp_path)
    one_service = inputs["estimates"][inputs["estimates"]["treatment"] == "network"]
    firm = inputs["panel"]["firm_id"].iloc[0]
    inputs["data_quality"]["sources"]["exports"]["warnings"] = [f"duplicate row for {firm} in 2016"]
    result = build_report(**{**inputs, "estimates": one_service}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    assert firm not in html and "duplicate row for [firm] in 2016" in html


def test_a_leaked_identifier_stops_the_build_before_anything_is_written(tmp_path):
    inputs = report_inputs(tmp_path)
    firm = inputs["panel"]["firm_id"].iloc[3]
    one_service = inputs["estimates"][inputs["estimates"]["treatment"] == "grant"]
    settings = ReportSettings(formats=("html",), title=f"Evaluation incl. {firm}")
    with pytest.raises(ValueError, match="disclosure check failed; nothing was written"):
        build_report(**{**inputs, "estimates": one_service}, output_dir=tmp_path / "out", settings=settings)
    assert not (tmp_path / "out").exists()


def test_unused_cohorts_are_counted_but_not_shown(built):
    _, _, html = built
    assert "3 cohort(s) were set aside" in html
    assert ">2020</th>" not in html


def test_pdf_rendering_refuses_external_resources(tmp_path):
    from weasyprint.urls import FatalURLFetchingError

    from analyses.reporting.report import render_pdf

    page = '<html lang="en"><body><h2>A</h2><img src="https://example.org/x.png" alt="x"></body></html>'
    with pytest.raises(FatalURLFetchingError):
        render_pdf(page, tmp_path / "x.pdf")
    bookmarks, pages = render_pdf('<html lang="en"><body><h2>A</h2><h2>B</h2></body></html>', tmp_path / "ok.pdf")
    assert bookmarks == ["A", "B"] and pages == 1


def test_cohort_table_orders_years_and_keeps_the_total_last(tmp_path):
    inputs = report_inputs(tmp_path)
    cohorts = inputs["diagnostics"]["cohorts"]
    extra = pd.DataFrame([{"treatment": "grant", "cohort": 2014, "n_delivered": 15, "n_without_baseline": 0,
                           "n_firms": 15, "used": True, "reason": ""}])
    diagnostics = {**inputs["diagnostics"], "cohorts": pd.concat([cohorts, extra], ignore_index=True)}
    one_service = inputs["estimates"][inputs["estimates"]["treatment"] == "grant"]
    result = build_report(**{**inputs, "estimates": one_service, "diagnostics": diagnostics},
                          output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    table = html[html.index("Table 6."):html.index("</table>", html.index("Table 6."))]
    labels = re.findall(r'<th scope="row">([^<]+)</th>', table)
    assert labels == ["2014", "2015", "2016", "2017", "2018", "2019", "All cohorts"]
    assert '<tr class="total"><th scope="row">All cohorts' in table
    # advisory and network have no 2014 cohort: shown as a dash, not as a number
    assert "<td class=\"num\">\u2013</td>" in table


def test_cohort_notes_count_left_out_firms_without_small_numbers(built):
    _, _, html = built
    assert ("left out of the estimation: Advisory support: 11 firms; Network services: fewer than 10 firms; "
            "Export grants: 16 firms.") in html
    assert "Advisory support: 1 (fewer than 20 firms)" in html
    assert "Every service and outcome in the evaluation plan could be estimated." in html


def test_a_register_with_accounts_for_every_supported_firm_says_so(tmp_path):
    inputs = report_inputs(tmp_path)
    cohorts = inputs["diagnostics"]["cohorts"].assign(n_without_baseline=0)
    one_service = inputs["estimates"][inputs["estimates"]["treatment"] == "network"]
    result = build_report(**{**inputs, "estimates": one_service,
                             "diagnostics": {**inputs["diagnostics"], "cohorts": cohorts}},
                          output_dir=tmp_path / "out", settings=HTML_ONLY)
    text = " ".join(result.html_path.read_text(encoding="utf-8").split())
    assert "so none was left out for lack of a before-and-after comparison" in text
    assert "left out of the estimation:" not in text


def test_confidence_level_and_band_type_follow_the_plan_everywhere(tmp_path):
    inputs = report_inputs(tmp_path)
    diagnostics = {**inputs["diagnostics"], "plan": {**inputs["diagnostics"]["plan"], "alpha": 0.10,
                                                     "bootstrap_iterations": 0}}
    one_service = inputs["estimates"][inputs["estimates"]["treatment"] == "advisory"]
    result = build_report(**{**inputs, "estimates": one_service, "diagnostics": diagnostics},
                          output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    assert not re.search(r"(?<![\d.])95 %", html) and "95 %" not in result.headline_markdown
    assert '<th scope="col" class="num">90 % CI</th>' in html and "| 90 % CI |" in result.headline_markdown
    assert "Intervals are 90 % confidence intervals" in html and "(90 % confidence interval 1.8 to 6.4)" in html
    alts = [image["alt"] for image in _parse(html).images if image["alt"].startswith("Event-study")]
    assert alts and all("90 % pointwise intervals exclude zero" in alt for alt in alts)
    assert "simultaneous band" not in html and "uniform (simultaneous)" not in html
    assert "uniform over event times" not in html and "pointwise confidence intervals (not simultaneous" in html
    assert "event-study intervals are pointwise" in html and "&alpha; = 0.1" in html


def test_pairs_that_could_not_be_estimated_are_listed_in_the_methods_annex(tmp_path):
    inputs = report_inputs(tmp_path)
    firm = inputs["panel"]["firm_id"].iloc[2]
    estimates = inputs["estimates"]
    missing = (estimates["treatment"] == "network") & (estimates["outcome"] == "enters_new_market")
    not_estimable = pd.DataFrame([{"treatment": "network", "outcome": "enters_new_market",
                                   "reason": f"outcome constant in the sample (first seen at {firm})"}])
    diagnostics = {**inputs["diagnostics"], "not_estimable": not_estimable}
    result = build_report(**{**inputs, "estimates": estimates[~missing & (estimates["treatment"] == "network")],
                             "diagnostics": diagnostics}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    assert "<li>Network services, entering a new market: outcome constant in the sample (first seen at [firm])</li>" \
        in html
    assert "could not be estimated (see the methods annex)" in result.summary_paragraphs["network"]
    assert firm not in html


def test_an_estimate_without_standard_error_is_not_shown_as_n_a(tmp_path):
    inputs = report_inputs(tmp_path)
    estimates = inputs["estimates"][inputs["estimates"]["treatment"] == "grant"].copy()
    broken = ((estimates["outcome"] == "exporter") & (estimates["aggregation"] == "dynamic_balanced")
              & estimates["event_time"].isna())
    estimates.loc[broken, ["std_error", "ci_lower", "ci_upper", "p_value"]] = np.nan
    result = build_report(**{**inputs, "estimates": estimates}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    assert "n/a to n/a" not in html and "| could not be estimated |" in result.headline_markdown
    assert "could not be estimated for firms that started with an export grant" in html


def test_pretests_that_do_not_reject_are_never_said_to_pass(built):
    _, _, html = built
    assert "no evidence against parallel pre-trends" in html
    assert "passes the pre-trend" not in html and "passing the pre-trend" not in html
    assert "parallel trends hold" not in html


def test_importing_the_package_loads_no_plotting_templating_or_evaluation_modules():
    probe = ("import sys, analyses.reporting; heavy = ('matplotlib', 'jinja2', 'weasyprint', 'statsmodels', "
             "'analyses.evaluation', 'dagster'); print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
             "or m in heavy))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               cwd=Path(__file__).resolve().parents[1])
    assert completed.stdout.strip() == "[]"


def test_outcome_definitions_with_the_plans_window_are_in_the_methods_annex(tmp_path):
    inputs = report_inputs(tmp_path)
    diagnostics = dict(inputs["diagnostics"])
    diagnostics["plan"] = {**diagnostics["plan"], "lookback_years": 4, "covariate_timing": "base_period"}
    result = build_report(**{**inputs, "diagnostics": diagnostics}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    assert "<dt>Entering a new market</dt><dd>1 if the firm exported to a destination not served in the previous 4 years" in html
    assert "as they stood in the base period of each comparison" in html


def _page_fill(html: str) -> list[float]:
    """Share of each PDF page's height that its content reaches (weasyprint's layout of the report)."""
    import weasyprint

    def lowest(box) -> float:
        bottom = 0.0
        for child in getattr(box, "children", None) or []:
            if getattr(child, "height", None) is not None and hasattr(child, "position_y"):
                if getattr(child, "element_tag", "") not in ("html", "body", "section"):
                    bottom = max(bottom, child.position_y + child.margin_height())
                bottom = max(bottom, lowest(child))
        return bottom

    boxes = [page._page_box for page in weasyprint.HTML(string=html).render().pages]
    # children[0] is the document's root box; the others are margin boxes (the page footer)
    return [(lowest(box.children[0]) - box.content_box_y()) / box.height for box in boxes]


def test_no_page_of_the_pdf_is_left_nearly_empty(built):
    """A section forced onto a new page left a page holding only the previous section's last lines (the demo's
    page 4 after the TWFE bullets). With the report's own style, however long the text before each section
    runs, every page but the last is well filled."""
    _, _, html = built
    style = re.search(r"<style>.*?</style>", html, re.S).group(0)
    line = "<p>" + "The two-way fixed-effects gap comes from the covariates, not from cohort weights. " * 4 + "</p>"
    figure = '<figure><div style="height: 80mm; background: #ccc"></div><figcaption>Figure</figcaption></figure>'
    for filler in range(9, 30, 4):  # sweeps the end of section 2 over a page
        sections = [f'<section id="section-{i}"><h2>Section {i}</h2>{line * (filler if i == 2 else 3)}'
                    f'{figure * 2 if i in (3, 6) else ""}</section>' for i in range(1, 8)]
        fill = _page_fill(f'<html lang="en"><head>{style}</head><body>{"".join(sections)}</body></html>')
        assert min(fill[:-1]) > 0.3, (filler, [round(f, 2) for f in fill])
