"""CSV files the product writes cannot smuggle a formula into the agency's spreadsheet (OWASP CSV injection)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analyses.csv_safety import neutralise_formulas, write_csv

REPO = Path(__file__).resolve().parents[1]
CRAFTED = ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+1+1", "-2+3", "\t=1", "\r=1", "=1"]


def test_text_starting_like_a_formula_gets_a_leading_quote():
    frame = pd.DataFrame({"firm_id": CRAFTED + ["00012", "a=b", "", "'=already"]})
    cells = neutralise_formulas(frame)["firm_id"].tolist()
    assert cells == ["'" + cell for cell in CRAFTED] + ["00012", "a=b", "", "'=already"]
    assert frame["firm_id"].tolist()[0] == CRAFTED[0]  # the caller's frame is not changed


def test_negative_numbers_stay_numbers_in_numeric_columns_only():
    frame = pd.DataFrame({
        "grant_eur": ["-100", "-1.234,50", "+5", "-1e3", "-2+3", "=1"],  # delivered text of a numeric column
        "programme": ["-100", "x", "y", "z", "w", "v"],  # a text column: '-100' there is defused like any text
        "estimate": [-0.25, 1.5, None, -3.0, 0.0, 2.0],  # a typed numeric column is never touched
    })
    safe = neutralise_formulas(frame, numeric_columns=["grant_eur"])
    assert safe["grant_eur"].tolist() == ["-100", "-1.234,50", "+5", "-1e3", "'-2+3", "'=1"]
    assert safe["programme"].tolist()[0] == "'-100"
    assert safe["estimate"].dtype == "float64" and safe["estimate"].iloc[0] == -0.25


def test_write_csv_writes_the_defused_cells(tmp_path: Path):
    path = write_csv(pd.DataFrame({"firm_id": ["@SUM(A1)"], "value": [-3]}), tmp_path / "out.csv")
    assert path.read_text(encoding="utf-8") == "firm_id,value\n'@SUM(A1),-3\n"


def test_estimates_csv_is_written_through_the_helper(tmp_path: Path, monkeypatch):
    """estimates.csv text columns are vocabulary today; if delivered text ever reaches them it is defused."""
    from analyses.reporting import report

    columns = report.estimate_columns()
    row = {column: 0 for column in columns}
    row.update({"treatment": '=HYPERLINK("http://x","y")', "outcome": "@SUM(A1)", "estimator": "cs_did",
                "aggregation": "simple", "event_time": None, "estimate": -0.125, "std_error": 0.05,
                "ci_lower": -0.225, "ci_upper": -0.025, "p_value": 0.01, "n_treated": 40, "n_control": 400})
    monkeypatch.setattr(report, "validate_estimates", lambda estimates: None)
    paths = report.write_estimate_files(pd.DataFrame([row], columns=columns), tmp_path)
    written = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False).iloc[0]
    assert (written["treatment"], written["outcome"]) == ("'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(A1)")
    assert (written["estimate"], written["ci_lower"]) == ("-0.125", "-0.225")
    assert pd.read_parquet(paths["parquet"])["treatment"].iloc[0] == row["treatment"]  # Parquet keeps the data as is


def test_csv_safety_does_not_import_dagster():
    code = "import sys, analyses.csv_safety; assert 'dagster' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_every_owasp_trigger_is_defused(trigger: str):
    assert neutralise_formulas(pd.DataFrame({"text": [trigger + "cmd"]}))["text"].iloc[0] == "'" + trigger + "cmd"
