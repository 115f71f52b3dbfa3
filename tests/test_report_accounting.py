"""The report's "left out" counts are the accounting's numbers, from clean rows to the estimation sample."""
import re
import warnings

import pandas as pd
import pytest

from analyses.demo_data import generate_demo_data
from analyses.evaluation import EvaluationPlan, run_evaluation
from analyses.panel import build_firm_year_panel
from analyses.reporting import ReportSettings, build_report
from analyses.reporting.summary import outcome_spec
from tests.report_fixtures import make_inputs_on_disk
from tests.test_evaluation import supported_before_the_accounts


def _table_rows(html: str, row_class: str) -> list[list[str]]:
    """Cell texts of every ``<tr class=row_class>``, tags stripped."""
    rows = re.findall(rf'<tr class="{row_class}">(.*?)</tr>', html, flags=re.S)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)]
            for row in rows]


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def _firms(n: int) -> str:
    """Firm counts as published: small groups (below the disclosure minimum of 10) are not singled out."""
    return f"{n:,}" if n >= 10 or n == 0 else "fewer than 10"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Demo data with three kinds of trouble: supported firms without accounts, firms supported before
    the accounts begin, and a customs extract that misses the last year."""
    demo = generate_demo_data(n_firms=1_500, seed=11)
    participation, _ = supported_before_the_accounts(demo)
    advisory = demo.participation.loc[demo.participation["service"] == "advisory", "firm_id"].unique()
    no_accounts = sorted(advisory)[:12]
    financials = demo.financials[~demo.financials["firm_id"].isin(no_accounts)]
    last = int(demo.financials["year"].max())
    build = build_firm_year_panel(demo.firms, financials, participation, demo.exports[demo.exports["year"] != last])
    plan = EvaluationPlan(services=("advisory", "grant"), outcomes=("exporter",), bootstrap_iterations=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_evaluation(build.panel, plan, account=build.account)
    directory = tmp_path_factory.mktemp("accounting")
    data_quality, lineage = make_inputs_on_disk(directory / "inputs")
    built = build_report(result.estimates, result.diagnostics, data_quality, build.panel, lineage, directory / "out",
                         ReportSettings(formats=("html",)))
    return build, result, built.html_path.read_text(encoding="utf-8"), last


def test_the_panel_account_in_the_report_is_the_builders_account(report):
    build, _, html, _ = report
    shown = [(source, status, reason, _count(rows), firms)
             for source, status, reason, rows, firms in _table_rows(html, "panel-account")]
    expected = [(source, status, reason, rows, _firms(firms)) for source, status, reason, rows, firms
                in build.account.table[["source", "status", "reason", "rows", "firms"]].itertuples(index=False)]
    assert shown == expected
    left_out = {(source, reason): rows for source, status, reason, rows, _ in shown if status == "left out"}
    assert left_out[("participation", "firm has no accounts rows (financials)")] >= 12
    # per source, what the report shows adds up to the clean rows
    for source, clean in build.account.rows_clean.items():
        assert sum(rows for s, _, _, rows, _ in shown if s == source) == clean, source


def test_the_estimation_left_out_table_is_the_evaluations_and_nothing_is_called_complete(report):
    _, result, html, last = report
    shown = [(service, outcome, reason, firms, _count(firm_years))
             for service, outcome, reason, firms, firm_years in _table_rows(html, "left-out")]
    left_out = result.diagnostics["left_out"]
    titles = {"advisory": "Advisory support", "grant": "Export grants"}
    labels = {"": "all outcomes", "exporter": outcome_spec("exporter").label}
    expected = [(titles[r["treatment"]], labels[r["outcome"]], r["reason"], _firms(r["firms"]), r["firm_years"])
                for r in left_out.to_dict("records")]
    assert shown == expected
    reasons = set(left_out["reason"])
    # with prior exporting among the covariates the year leaves before any outcome is read, naming the year
    assert any(f"{last} not covered by the customs extract" in reason for reason in reasons)
    assert any(reason.startswith("already treated") for reason in reasons)
    text = " ".join(html.split())
    assert "none was left out" not in text
    assert f"The customs extract does not cover {last} (no export rows for {last})" in text
    assert "12 supported firms have no accounts in the business register" in text
