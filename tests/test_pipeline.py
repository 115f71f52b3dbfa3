"""The Dagster code location end to end: definitions load, the graph materialises, outputs are right."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.conftest import pipeline_resources

ROOT = Path(__file__).resolve().parents[1]
ESTIMATE_COLUMNS = [
    "treatment", "outcome", "estimator", "aggregation", "event_time", "estimate",
    "std_error", "ci_lower", "ci_upper", "p_value", "n_treated", "n_control",
]


def test_definitions_load_with_every_asset_check_job_schedule_and_sensor():
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    sources = ("firms", "financials", "participation", "exports")
    assert keys == {
        *(f"raw_{s}" for s in sources), *(f"clean_{s}" for s in sources),
        "data_quality", "firm_year_panel", "did_estimates", "evaluation_diagnostics", "impact_report",
    }
    checks = {(key.asset_key.to_user_string(), key.name) for key in repository.asset_graph.asset_check_keys}
    assert {(f"raw_{s}", "structure") for s in sources} <= checks
    assert {(f"clean_{s}", "quarantine_share") for s in sources} <= checks
    assert ("impact_report", "disclosure_control") in checks
    assert defs.resolve_job_def("evaluate_programmes")
    assert defs.resolve_schedule_def("quarterly_evaluation").cron_schedule == "0 6 1 1,4,7,10 *"
    assert defs.resolve_sensor_def("landing_files_sensor")


def test_analyses_package_never_imports_dagster():
    offenders = []
    for path in (ROOT / "analyses").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "dagster"]
    assert offenders == []
    # and importing the whole analysis stack does not drag Dagster in transitively
    code = ("import sys, analyses.evaluation, analyses.contracts, analyses.reporting, analyses.demo_data;"
            "print('dagster' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_whole_graph_materialises_and_writes_outputs(materialised_pipeline):
    result, output = materialised_pipeline
    assert result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed and c.severity.value == "ERROR"]
    assert failed == []
    for name in ("impact_report.html", "impact_report.pdf", "estimates.csv", "estimates.parquet", "data_quality.json"):
        assert (output / name).stat().st_size > 0, name
    estimates = pd.read_csv(output / "estimates.csv")
    assert list(estimates.columns) == ESTIMATE_COLUMNS
    for service in ("advisory", "network", "grant"):
        for outcome in ("exporter", "n_destinations"):
            rows = estimates.query("treatment == @service and outcome == @outcome and estimator == 'cs_did'")
            assert (rows["aggregation"] == "simple").sum() == 1
            simple = rows.query("aggregation == 'simple'")
            assert simple["event_time"].isna().all()
            dynamic = rows.query("aggregation == 'dynamic'")
            assert dynamic["event_time"].min() < 0 < dynamic["event_time"].max()
    quality = json.loads((output / "data_quality.json").read_text())
    for entry in quality["sources"].values():
        assert entry["rows_in"] == entry["rows_clean"] + entry["rows_quarantined"]


def test_planted_effects_lie_inside_the_reported_confidence_intervals(materialised_pipeline, demo_landing):
    """The demo generator's true ATTs must be covered by the pipeline's 95 % intervals.

    Seeded data, so the outcome is deterministic; every headline (simple) interval must cover,
    and at least 90 % of the event-time intervals (uniform bands) must.
    """
    _, output = materialised_pipeline
    estimates = pd.read_csv(output / "estimates.csv").query("estimator == 'cs_did'")
    truth = pd.read_csv(demo_landing / "true_effects.csv")
    simple = estimates.query("aggregation == 'simple'").merge(
        truth.query("aggregation == 'simple'"), on=["treatment", "outcome"], validate="one_to_one"
    )
    assert len(simple) == 9
    missed = simple.loc[~simple["true_effect"].between(simple["ci_lower"], simple["ci_upper"])]
    assert missed.empty, missed[["treatment", "outcome", "estimate", "ci_lower", "ci_upper", "true_effect"]]
    dynamic = estimates.query("aggregation == 'dynamic'").merge(
        truth.query("aggregation == 'dynamic'"), on=["treatment", "outcome", "event_time"], validate="one_to_one"
    )
    covered = dynamic["true_effect"].between(dynamic["ci_lower"], dynamic["ci_upper"])
    assert len(dynamic) > 50 and covered.mean() >= 0.90


def test_two_way_fixed_effects_is_further_from_the_truth_than_callaway_santanna(materialised_pipeline, demo_landing):
    _, output = materialised_pipeline
    estimates = pd.read_csv(output / "estimates.csv").query("aggregation == 'simple'")
    truth = pd.read_csv(demo_landing / "true_effects.csv").query("aggregation == 'simple'")
    merged = estimates.merge(truth[["treatment", "outcome", "true_effect"]], on=["treatment", "outcome"])
    merged["abs_error"] = (merged["estimate"] - merged["true_effect"]).abs()
    error = merged.pivot_table(index=["treatment", "outcome"], columns="estimator", values="abs_error")
    assert error["cs_did"].mean() < error["twfe"].mean()


def test_missing_landing_file_stops_the_run_with_one_clear_line(demo_landing, tmp_path):
    from pipelines.definitions import ALL_ASSETS

    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("firms.csv", "financials.csv", "participation.csv"):
        (landing / name).write_bytes((demo_landing / name).read_bytes())
    result = dg.materialize(
        ALL_ASSETS, resources=pipeline_resources(landing, tmp_path / "out"),
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["raw_exports"]
    message = failures[0].step_failure_data.user_failure_data.description
    assert "exports" in message and str(landing) in message and "\n" not in message


def test_cli_reports_a_missing_landing_directory_without_a_traceback(tmp_path):
    env = {**os.environ, "EXPORT_IMPACT_LANDING_DIR": str(tmp_path / "nowhere"),
           "EXPORT_IMPACT_OUTPUT_DIR": str(tmp_path / "out"), "DAGSTER_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    last_line = out.stderr.strip().splitlines()[-1]
    assert "nowhere" in last_line and "does not exist" in last_line


def test_sensor_requests_a_run_only_when_landing_files_change(demo_landing, tmp_path):
    from pipelines.resources import LandingDirectory
    from pipelines.sensors import landing_files_sensor

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "firms.csv").write_bytes((demo_landing / "firms.csv").read_bytes())
    resources = {"landing": LandingDirectory(path=str(landing))}
    with dg.build_sensor_context(resources=resources) as context:
        first = landing_files_sensor(context)
        assert isinstance(first, dg.RunRequest)
        cursor = context.cursor
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        assert isinstance(landing_files_sensor(context), dg.SkipReason)
    (landing / "exports.csv").write_text("firm_id,year,destination,export_value_eur\n", encoding="utf-8")
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        assert isinstance(landing_files_sensor(context), dg.RunRequest)


def test_cli_explains_a_rejected_delivery_in_plain_words(demo_landing, tmp_path):
    """Too many bad rows: the run stops after validation and says what, where and how many."""
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("firms.csv", "financials.csv", "participation.csv"):
        (landing / name).write_bytes((demo_landing / name).read_bytes())
    exports = pd.read_csv(demo_landing / "exports.csv", dtype=str)
    bad = exports.sample(frac=0.10, random_state=1).index
    exports.loc[bad, "export_value_eur"] = "-" + exports.loc[bad, "export_value_eur"]
    exports.to_csv(landing / "exports.csv", index=False)
    env = {**os.environ, "EXPORT_IMPACT_LANDING_DIR": str(landing), "EXPORT_IMPACT_OUTPUT_DIR": str(tmp_path / "out"),
           "DAGSTER_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode == 1
    tail = out.stderr[out.stderr.index("The evaluation did not complete"):]
    assert "Traceback" not in tail
    assert f"{len(bad)} of {len(exports)} rows quarantined" in tail
    assert "export_value_eur" in tail and "quarantine" in tail
    quarantined = pd.read_csv(tmp_path / "out" / "quarantine" / "exports.csv", dtype=str)
    assert len(quarantined) == len(bad)
    assert not (tmp_path / "out" / "impact_report.html").exists()
