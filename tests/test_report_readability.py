"""The report as a non-specialist reads it: plain names, explained terms, comparable tables, clean pages."""
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from analyses.panel import PANEL_COLUMNS
from analyses.reporting import ReportSettings, build_report
from analyses.reporting.disclosure import describe_panel
from analyses.reporting.plots import balance_plot, overlap_plot
from analyses.reporting.report import _quality_rows, keep_table_ends
from analyses.reporting.summary import known_label, variable_label
from tests.report_fixtures import make_diagnostics, report_inputs

HTML_ONLY = ReportSettings(formats=("html",))
#: a code name: lower-case words joined by underscores (log_employees_first, n_destinations)
CODE = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]+)+\b")


class _Figures(HTMLParser):
    """Images with their axis words, and the text of the balance tables' row headers."""

    def __init__(self):
        super().__init__()
        self.images, self.row_headers, self._in_row_header = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self._in_row_header = tag == "th" and attrs.get("scope") == "row"

    def handle_data(self, data):
        if self._in_row_header and data.strip():
            self.row_headers.append(data.strip())
            self._in_row_header = False


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("readable")
    inputs = report_inputs(directory)
    inputs["diagnostics"]["plan"]["covariates"] = ["log_employees_first", "in_cluster", "years_exported_last3"]
    inputs["diagnostics"]["balance"]["covariate"] = inputs["diagnostics"]["balance"]["covariate"].map(
        {"employees_log": "log_employees_first", "turnover_log": "log_turnover_first", "in_cluster": "in_cluster",
         "manufacturing": "exporter_first"})
    result = build_report(**inputs, output_dir=directory / "out", settings=HTML_ONLY)
    return result.html_path.read_text(encoding="utf-8")


def test_every_figure_has_label_axis_titles_and_no_code_names(built):
    parser = _Figures()
    parser.feed(built)
    assert len(parser.images) == 34  # 18 + a sensitivity figure per service and outcome + 4 of "How support works"
    for image in parser.images:
        titles = [t for t in image["data-axis-titles"].split(" | ") if t]
        assert titles, image["alt"][:60]
        words = image["data-axis-titles"] + " " + image["data-tick-labels"]
        assert not CODE.findall(words), (image["alt"][:60], CODE.findall(words))


def test_tables_outside_the_methods_annex_name_variables_not_codes(built):
    before_annex = built.split('id="section-7"')[0]
    parser = _Figures()
    parser.feed(before_annex)
    assert "Employees (log), first panel year" in parser.row_headers
    assert not [h for h in parser.row_headers if CODE.search(h)]
    # the codes are in the methods annex, beside their names
    annex = built.split('id="section-7"')[1]
    assert "<code>log_employees_first</code>" in annex and "Employees (log), first panel year" in annex


@pytest.mark.parametrize("code", sorted(PANEL_COLUMNS))
def test_every_panel_column_has_a_readable_name(code):
    assert not CODE.search(variable_label(code)), variable_label(code)


def test_terms_are_explained_in_a_glossary_and_the_summary_uses_plain_words(built):
    summary = built.split('id="section-2"')[0]
    for term in ("Effect (ATT)", "Pointwise interval and simultaneous (uniform) band", "Confidence interval (CI)",
                 "Event time (e)", "CS-DiD and TWFE", "Minimum detectable effect (MDE)"):
        assert f"<dt>{term}</dt>" in built, term
    paragraphs = re.findall(r'<div class="summary">(.*?)</div>', summary, re.S)[0]
    assert "confidence interval" in paragraphs
    for jargon in ("simultaneous band", "pointwise CI", " CI ", "ATT"):
        assert jargon not in paragraphs, jargon


def test_descriptive_tables_are_per_year_so_periods_of_unequal_length_compare():
    years = range(2012, 2019)  # bands 2012-2014 (3 years) and 2015-2018 (4 years)
    services = ["advisory", "network", "grant", "none"]
    panel = pd.DataFrame([{"firm_id": f"F{i:03d}", "year": y, "exporter": 1, "export_value_eur": 1000.0 + i,
                           "first_service": services[i % 4]} for i in range(80) for y in years])
    cells = describe_panel(panel)
    for table in ("firms", "exporters", "total_export_value", "mean_export_value"):
        per_band = cells[cells["table"] == table].pivot(index="row", columns="column", values="value")
        assert list(per_band.columns) == ["2012\u20132014", "2015\u20132018"]
        np.testing.assert_allclose(per_band.iloc[:, 0], per_band.iloc[:, 1], err_msg=table)
    firms = cells[(cells["table"] == "firms") & cells["is_total"]]
    assert firms["value"].tolist() == [80, 80] and firms["n_firms"].tolist() == [80, 80]


def test_descriptive_captions_say_per_year(built):
    captions = re.findall(r"<caption>Table \d+\. ([^<]*)</caption>", built)
    value_captions = [c for c in captions if "xport value" in c or "firms" in c.lower() and "year" in c]
    assert any(c.startswith("Export value per year (EUR million, average over the period") for c in captions)
    assert not any(c.startswith("Total export value") for c in captions), value_captions


def test_overlap_density_ticks_are_never_negative():
    overlap = make_diagnostics()["overlap"]
    plot = overlap_plot(overlap, "advisory")
    values = [float(t.replace("\u2212", "-")) for t in plot.tick_labels]
    assert values and min(values) >= 0
    assert "Density (comparison below)" in plot.axis_titles


def test_balance_figures_name_their_service_and_variables(built):
    captions = re.findall(r"<figcaption>(Covariate balance, [^:]*):", built)
    assert captions == ["Covariate balance, advisory support", "Covariate balance, network services",
                        "Covariate balance, export grants"]
    balance = make_diagnostics()["balance"].assign(covariate="log_turnover_first")
    plot = balance_plot(balance, "grant")
    assert "Turnover (log), first panel year" in plot.tick_labels and "Turnover (log)" in plot.alt


def test_a_source_without_encoding_prints_nothing_for_it(built):
    data_quality = {"sources": {"exports": {"file": "exports.xlsx", "format": "xlsx", "encoding": None,
                                            "rows_in": 10, "rows_clean": 10, "rows_quarantined": 0}}}
    (row,) = _quality_rows(data_quality, [])
    assert row["encoding"] == ""
    assert ">None<" not in built and " None" not in re.sub(r"<[^>]+>", " ", built)


def test_long_table_bodies_keep_three_rows_at_each_end_and_short_ones_whole():
    rows = "".join(f"<tr><td>{i}</td></tr>" for i in range(10))
    grouped = keep_table_ends(f"<table><tbody>{rows}</tbody></table>")
    bodies = re.findall(r'<tbody class="([^"]+)">(.*?)</tbody>', grouped, re.S)
    assert [(cls, body.count("<tr>")) for cls, body in bodies] == [("keep part", 3), ("part", 4), ("keep part", 3)]
    short = keep_table_ends("<table><tbody><tr><td>1</td></tr></tbody></table>")
    assert short == '<table><tbody class="keep"><tr><td>1</td></tr></tbody></table>'


def table_rows_per_page(html: str) -> dict[str, list[int]]:
    """Body rows of each table on each page of the PDF WeasyPrint lays out from `html` (pages without
    the table omitted), keyed by the table's caption."""
    import weasyprint

    document = weasyprint.HTML(string=html).render()
    counts: dict[int, dict[int, int]] = {}
    captions: dict[int, str] = {}

    def walk(box, page, table):
        kind = type(box).__name__
        if kind == "TableBox":
            table = id(box.element)
            caption = box.element.find("caption")
            captions[table] = "".join(caption.itertext())[:60] if caption is not None else f"table {table}"
        if kind == "TableRowGroupBox" and getattr(box, "is_header", False):
            return
        if kind == "TableRowBox" and table is not None:
            counts.setdefault(table, {}).setdefault(page, 0)
            counts[table][page] += 1
        for child in getattr(box, "children", None) or []:
            walk(child, page, table)

    for number, page in enumerate(document.pages):
        walk(page._page_box, number, None)
    return {captions[t]: [pages[p] for p in sorted(pages)] for t, pages in counts.items()}


@pytest.mark.parametrize("n_rows", [42, 43, 44, 75, 83])
def test_no_pdf_page_holds_fewer_than_three_rows_of_a_split_table(tmp_path, n_rows):
    inputs = report_inputs(tmp_path)
    # a left-out table long enough to run over pages; 41 rows fill a page, so 42-44 rows would leave 1-3
    inputs["diagnostics"]["left_out"] = pd.DataFrame(
        [{"treatment": "advisory", "outcome": "exporter", "reason": f"reason number {i} for leaving firms out",
          "firms": 20 + i, "firm_years": 100 + i} for i in range(n_rows)])
    html = build_report(**inputs, output_dir=tmp_path / "out", settings=HTML_ONLY).html_path.read_text("utf-8")
    pages = table_rows_per_page(html)
    split = {caption: rows for caption, rows in pages.items() if len(rows) > 1}
    assert any(caption.startswith("Table 7") for caption in split)  # the long table did run over a page
    assert all(min(rows) >= 3 for rows in split.values()), split


def _plan_codes():
    """Every covariate a default plan (either covariate timing) can put in a table or figure, and every outcome
    the headline, the default outcomes, the panel and the default mechanism families can report."""
    from analyses.evaluation import DEFAULT_COVARIATES, DEFAULT_OUTCOMES, EvaluationPlan
    from analyses.mechanisms.plan import FamiliesPlan
    from analyses.panel import BASELINE_COVARIATES, PANEL_OUTCOMES, WINDOW_OUTCOMES
    from analyses.reporting.mechanisms import VALUE_MARGINS

    covariates = {*BASELINE_COVARIATES}
    for timing in DEFAULT_COVARIATES:
        plan = EvaluationPlan(covariate_timing=timing)
        covariates |= {*plan.covariates, *plan.covariate_columns}
    families = FamiliesPlan()
    outcomes = {*DEFAULT_OUTCOMES, *PANEL_OUTCOMES, *WINDOW_OUTCOMES, *VALUE_MARGINS, *families.dose_outcomes,
                *families.subgroup_outcomes, *families.market_outcomes, *families.sequence_outcomes,
                *families.bundle_outcomes, *families.persistence_outcomes}
    return sorted(covariates), sorted(outcomes)


@pytest.mark.parametrize("code", _plan_codes()[0])
def test_every_covariate_of_the_default_plans_has_a_written_label(code):
    """Not the words of the code ("Years exported 3y" for years_exported_3y): a label someone wrote."""
    assert known_label(code) is not None, variable_label(code)


@pytest.mark.parametrize("code", _plan_codes()[1])
def test_every_outcome_a_table_or_figure_can_show_has_a_written_label(code):
    from analyses.reporting.mechanisms import mechanism_outcome

    label = mechanism_outcome(code).label  # raises for an outcome neither list knows
    assert label and label.lower() != code.replace("_", " ")


def test_prior_exporting_reads_as_years_before_support():
    assert variable_label("years_exported_3y") == "Years with exports in the three years before"
