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
from analyses.reporting import ReportSettings, build_report
from analyses.reporting.report import SECTION_TITLES
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
    # 12 event studies + 3 balance plots + 3 overlap plots, all inline PNG with alt text
    assert len(structure.images) == 18
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
    assert "| Advisory support | Exporting | percentage points | 4.1 | 1.8 to 6.4 | <0.001 | 120 | 900 | 3 |" \
        in result.headline_markdown
    assert result.headline_markdown.count("\n") == 13
    assert "Firms that started with advisory support were 4.1 percentage points (95 % CI 1.8 to 6.4) more likely" in html


def test_evidence_rating_drops_where_the_pretest_fails(built):
    result, _, html = built
    rated = result.headline.set_index(["treatment", "outcome"])["sms_level"]
    assert rated[("grant", "log_export_value")] == 2
    assert (rated.drop(("grant", "log_export_value")) == 3).all()
    assert "Pre-trend test rejects parallel trends (p = 0.012)." in html


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


def test_estimate_files_have_exactly_the_twelve_columns(built):
    result, inputs, _ = built
    csv = pd.read_csv(result.estimate_files["csv"])
    parquet = pd.read_parquet(result.estimate_files["parquet"])
    assert list(csv.columns) == list(ESTIMATE_COLUMNS) == list(parquet.columns)
    assert len(csv) == len(parquet) == len(inputs["estimates"])
    pd.testing.assert_frame_equal(csv, parquet, check_dtype=False)


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
    assert "grant" not in set(published["treatment"])


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


def test_rating_reasons_cover_missing_pretests_poor_overlap_and_imbalance():
    from analyses.reporting.rating import rate_estimate
    from tests.report_fixtures import make_diagnostics

    diagnostics = make_diagnostics()
    assert rate_estimate("advisory", "exporter", diagnostics).level == 3
    pretests = diagnostics["pretests"].copy()
    pretests.loc[(pretests["treatment"] == "advisory") & (pretests["outcome"] == "exporter"), "p_value"] = float("nan")
    rating = rate_estimate("advisory", "exporter", {**diagnostics, "pretests": pretests})
    assert rating.level == 2 and rating.reasons == ("no pre-trend test available",)
    overlap = diagnostics["overlap"].copy()
    overlap.loc[(overlap["treatment"] == "advisory") & (overlap["group"] == "comparison")
                & (overlap["bin_lower"] >= 0.5), "n_firms"] = 0
    rating = rate_estimate("advisory", "exporter", {**diagnostics, "overlap": overlap})
    assert rating.level == 2 and rating.reasons[0].startswith("poor overlap")
    balance = diagnostics["balance"].copy()
    balance.loc[balance["treatment"] == "advisory", "smd_weighted"] = [0.05, -0.4, 0.1, 0.0]
    rating = rate_estimate("advisory", "exporter", {**diagnostics, "balance": balance})
    assert rating.reasons == ("covariate imbalance after weighting: turnover_log SMD = -0.40",)


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
    assert "95 %" not in html and "95 %" not in result.headline_markdown
    assert '<th scope="col" class="num">90 % CI</th>' in html and "| 90 % CI |" in result.headline_markdown
    assert "Intervals are 90 % confidence intervals" in html and "(90 % CI 1.8 to 6.4)" in html
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
    broken = (estimates["outcome"] == "exporter") & (estimates["aggregation"] == "simple")
    estimates.loc[broken, ["std_error", "ci_lower", "ci_upper", "p_value"]] = np.nan
    result = build_report(**{**inputs, "estimates": estimates}, output_dir=tmp_path / "out", settings=HTML_ONLY)
    html = result.html_path.read_text(encoding="utf-8")
    assert "n/a to n/a" not in html and "| could not be estimated |" in result.headline_markdown
    assert "could not be estimated for firms that started with an export grant" in html


def test_pretests_that_do_not_reject_are_never_said_to_pass(built):
    _, _, html = built
    assert "no evidence against parallel trends (p = " in html
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
