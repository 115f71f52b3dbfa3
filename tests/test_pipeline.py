"""The Dagster code location end to end: definitions load, the graph materialises, outputs are right."""

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from tests.conftest import materialise_delivery

ROOT = Path(__file__).resolve().parents[1]
ESTIMATE_COLUMNS = [
    "treatment", "outcome", "estimator", "aggregation", "event_time", "estimate",
    "std_error", "ci_lower", "ci_upper", "p_value", "n_treated", "n_control",
    "subgroup", "dose", "p_value_adjusted", "family",
]


def landing_copy(demo_landing: Path, tmp_path: Path, **replaced: pd.DataFrame | None) -> Path:
    """The demo delivery with some sources replaced by the given tables (``None``: file left out)."""
    landing = tmp_path / "landing"
    landing.mkdir(parents=True)
    for source in ("firms", "financials", "participation", "exports"):
        if source not in replaced:
            (landing / f"{source}.csv").write_bytes((demo_landing / f"{source}.csv").read_bytes())
        elif replaced[source] is not None:
            replaced[source].to_csv(landing / f"{source}.csv", index=False)
    return landing


def cli_env(tmp_path: Path, landing: Path, **settings: str) -> dict:
    return {**os.environ, "EXPORT_IMPACT_LANDING_DIR": str(landing), "EXPORT_IMPACT_OUTPUT_DIR": str(tmp_path / "out"),
            "EXPORT_IMPACT_WAREHOUSE": str(tmp_path / "warehouse"), "DAGSTER_HOME": str(tmp_path / "home"),
            "EXPORT_IMPACT_VAULT": str(tmp_path / "vault"), **settings}


def run_cli(tmp_path: Path, landing: Path, **settings: str) -> subprocess.CompletedProcess:
    """``python -m pipelines.cli run`` against test folders, as ``make run`` would call it."""
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run"], capture_output=True, text=True, cwd=ROOT,
                          env=cli_env(tmp_path, landing, **settings), timeout=600)


def delivery_key(landing: Path) -> str:
    from analyses.deliveries import identify_delivery

    return identify_delivery(landing).key


def test_definitions_load_with_every_asset_check_job_schedule_and_sensor():
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    sources = ("firms", "financials", "participation", "exports")
    assert keys == {
        *(f"raw_{s}" for s in sources), *(f"clean_{s}" for s in sources),
        "data_quality", "firm_year_panel", "panel_account", "did_estimates", "evaluation_diagnostics", "sensitivity",
        "robustness", "impact_report",
        *(f"mechanism_{f}" for f in ("dose", "subgroups", "markets", "value", "bundles", "sequences", "persistence")),
    }
    checks = {(key.asset_key.to_user_string(), key.name) for key in repository.asset_graph.asset_check_keys}
    assert {(f"raw_{s}", "structure") for s in sources} <= checks
    assert {(f"clean_{s}", "quarantine_share") for s in sources} <= checks
    assert ("impact_report", "disclosure_control") in checks
    assert defs.resolve_job_def("evaluate_programmes")
    assert defs.resolve_schedule_def("quarterly_evaluation").cron_schedule == "0 6 1 1,4,7,10 *"
    assert defs.resolve_sensor_def("landing_files_sensor")
    assert defs.resolve_sensor_def("abandoned_runs_sensor")
    unpartitioned = [key for key in keys if repository.asset_graph.get(dg.AssetKey(key)).partitions_def is None]
    assert unpartitioned == []  # every table belongs to one delivery


def test_the_headline_chain_takes_free_processes_before_the_mechanism_families():
    """With two processes the families (ready first) would otherwise delay the headline, and sensitivity and
    robustness after it, to the end of the run (measured on 40,000 firms: the chain started last)."""
    from pipelines.definitions import defs

    job = defs.resolve_job_def("evaluate_programmes")
    priority = {op.name: int(op.tags.get("dagster/priority", 0)) for op in job.graph.iterate_op_defs()}
    families = [name for name in priority if name.startswith("mechanism_")]
    headline = ("plan_specifications", "estimate_specification", "combine_specifications")  # did_estimates' steps
    assert len(families) == 7
    chain = min(priority[name] for name in headline)
    assert chain > priority["robustness"] == priority["sensitivity"] > max(priority[name] for name in families)


def test_warehouse_keeps_deliveries_with_other_columns_apart(tmp_path):
    """A delivery with an extra, a missing or a retyped column is stored beside the earlier one (no BinderException)."""
    from pipelines.resources import ParquetWarehouse

    parts = dg.DynamicPartitionsDefinition(name="deliveries")
    tables = {
        "d1": pd.DataFrame({"firm_id": ["007"], "nace2": ["01"], "employees": [3]}),
        "d2": pd.DataFrame({"firm_id": ["008"], "nace2": ["02"], "employees": [4], "extra": [1.5]}),
        "d3": pd.DataFrame({"firm_id": ["009"], "employees": ["four"]}),
    }

    @dg.asset(partitions_def=parts)
    def stored(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return tables[context.partition_key]

    @dg.asset(partitions_def=parts)
    def reloaded(context: dg.AssetExecutionContext, stored: pd.DataFrame) -> None:
        pd.testing.assert_frame_equal(stored, tables[context.partition_key])

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("deliveries", list(tables))
    warehouse = ParquetWarehouse(base_dir=str(tmp_path / "tables"))
    for key in tables:
        assert dg.materialize([stored, reloaded], partition_key=key, instance=instance,
                              resources={"io_manager": warehouse}).success
    assert sorted(p.name for p in (tmp_path / "tables" / "stored").iterdir()) == ["d1.parquet", "d2.parquet", "d3.parquet"]


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
    for name in ("impact_report.html", "impact_report.pdf", "estimates.csv", "estimates.parquet", "data_quality.json",
                 "sensitivity.csv", "robustness.csv"):
        assert (output / name).stat().st_size > 0, name
    assert json.loads((output / "run.json").read_text())["status"] == "succeeded"
    assert not any((output.parent / ".staging").iterdir())  # the run's staging folder was moved, not copied
    published = pd.read_csv(output / "estimates.csv")
    assert list(published.columns) == ESTIMATE_COLUMNS
    # the mechanism families' rows are published beside the headline's
    assert {"headline", "dose", "subgroups", "value"} <= set(published["family"])
    estimates = published.query("family == 'headline'")
    for service in ("advisory", "network", "grant"):
        for outcome in ("exporter", "n_destinations"):
            rows = estimates.query("treatment == @service and outcome == @outcome and estimator == 'cs_did'")
            assert (rows["aggregation"] == "simple").sum() == 1
            simple = rows.query("aggregation == 'simple'")
            assert simple["event_time"].isna().all()
            dynamic = rows.query("aggregation == 'dynamic'")
            assert dynamic["event_time"].min() < 0 < dynamic["event_time"].max()
    # the headline: CS-DiD with and without covariates and TWFE over event times 0..3 on the same cohorts
    headline = estimates.query("aggregation == 'dynamic_balanced' and event_time != event_time")
    from analyses.evaluation import DEFAULT_OUTCOMES

    pairs = 3 * len(DEFAULT_OUTCOMES)
    assert sorted(headline.groupby("estimator").size().items()) == [
        ("cs_did", pairs), ("cs_did_no_covariates", pairs), ("twfe", pairs)]
    window = estimates.query("aggregation == 'dynamic_balanced' and estimator == 'cs_did'")["event_time"]
    assert sorted(window.dropna().unique()) == [0.0, 1.0, 2.0, 3.0]
    assert len(estimates.query("aggregation == 'dynamic_universal'")) > 0
    materialisation = result.asset_materializations_for_node("did_estimates")[0]
    assert "dynamic_balanced" in materialisation.metadata["headline"].value
    # every published headline has its sensitivity analysis (CS-DiD and TWFE) and its robustness runs
    published = set(zip(headline["treatment"], headline["outcome"]))
    sensitivity = pd.read_csv(output / "sensitivity.csv")
    assert set(zip(sensitivity["service"], sensitivity["outcome"])) == published
    assert set(sensitivity["estimator"]) == {"cs_did", "twfe"} and set(sensitivity["target"]) == {"on_impact", "average"}
    robustness = pd.read_csv(output / "robustness.csv")
    assert set(robustness["run"]) == {"main", "anticipation", "comparison_group", "covariate_timing", "dominance",
                                      "placebo"}
    for node in ("sensitivity", "robustness"):
        assert result.asset_materializations_for_node(node)[0].metadata["seconds"].value >= 0
    html = (output / "impact_report.html").read_text(encoding="utf-8")
    assert html.count("matches file on disk") == 4 and "not available to verify" not in html  # lineage footer
    quality = json.loads((output / "data_quality.json").read_text())
    for entry in quality["sources"].values():
        assert entry["rows_in"] == entry["rows_clean"] + entry["rows_quarantined"] + entry["blank_lines_skipped"]


def test_planted_effects_lie_inside_the_reported_confidence_intervals(materialised_pipeline, demo_landing):
    """The demo generator's true effects must be covered by the pipeline's 95 % intervals.

    The truths are those of the estimand the pipeline targets (starting with a service against
    never-served firms, on the firms and cohorts the estimator uses), for every published overall
    effect (``simple``, and the headline where published) and event time. Every overall interval must
    cover (seeded data, so this is deterministic). Because a few intervals can cover by luck, the
    event-time estimates are also checked as standardised errors z = (estimate - truth) / SE: centred
    on zero (no bias), spread about one (honest standard errors), pointwise 95 % coverage near nominal.
    """
    from analyses.demo_data import truth_as_estimate_rows

    _, output = materialised_pipeline
    estimates = pd.read_csv(output / "estimates.csv").query("estimator == 'cs_did' and family == 'headline'")
    truth = truth_as_estimate_rows(pd.read_csv(demo_landing / "true_effects.csv"))
    merged = estimates.merge(truth, on=["treatment", "outcome", "aggregation", "event_time"], validate="one_to_one")
    overall = merged[merged["event_time"].isna()]
    from analyses.evaluation import DEFAULT_OUTCOMES

    assert (overall["aggregation"] == "simple").sum() == 3 * len(DEFAULT_OUTCOMES)
    assert (overall["aggregation"] == "dynamic_balanced").sum() == 3 * len(DEFAULT_OUTCOMES)  # the headline
    missed = overall.loc[~overall["true_effect"].between(overall["ci_lower"], overall["ci_upper"])]
    assert missed.empty, missed[["treatment", "outcome", "aggregation", "estimate", "ci_lower", "ci_upper", "true_effect"]]
    post = merged.query("aggregation == 'dynamic' and event_time >= 0")
    z = (post["estimate"] - post["true_effect"]) / post["std_error"]
    assert len(z) >= 80
    assert abs(z.mean()) < 0.3, z.describe()
    assert 0.7 < z.std() < 1.3, z.describe()  # standard errors neither overconfident nor inflated
    assert (z.abs() <= 1.96).mean() >= 0.90, z.describe()
    uniform = post["true_effect"].between(post["ci_lower"], post["ci_upper"])
    assert uniform.mean() >= 0.95


def test_two_way_fixed_effects_is_further_from_the_truth_than_callaway_santanna(materialised_pipeline, demo_landing):
    from analyses.demo_data import truth_as_estimate_rows

    _, output = materialised_pipeline
    estimates = pd.read_csv(output / "estimates.csv").query("aggregation == 'simple' and family == 'headline'")
    truth = truth_as_estimate_rows(pd.read_csv(demo_landing / "true_effects.csv")).query("aggregation == 'simple'")
    merged = estimates.merge(truth[["treatment", "outcome", "true_effect"]], on=["treatment", "outcome"])
    # in standard errors, so outcomes on different scales (markets, shares) weigh alike
    merged["abs_z"] = (merged["estimate"] - merged["true_effect"]).abs() / merged["std_error"]
    error = merged.pivot_table(index=["treatment", "outcome"], columns="estimator", values="abs_z")
    assert error["cs_did"].mean() < error["twfe"].mean(), error


def test_missing_landing_file_stops_the_run_with_one_clear_line(demo_landing, tmp_path):
    landing = landing_copy(demo_landing, tmp_path, exports=None)
    out = run_cli(tmp_path, landing)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    last_line = out.stderr.strip().splitlines()[-1]
    assert "exports" in last_line and str(landing) in last_line


def test_cli_reports_a_missing_landing_directory_without_a_traceback(tmp_path):
    out = run_cli(tmp_path, tmp_path / "nowhere")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    last_line = out.stderr.strip().splitlines()[-1]
    assert "nowhere" in last_line and "does not exist" in last_line


def test_sensor_requests_one_run_per_complete_settled_delivery(demo_landing, tmp_path):
    from pipelines.resources import EvaluationPlanResource, LandingDirectory, WarehouseDirectory
    from pipelines.sensors import SETTLE_SECONDS, landing_files_sensor

    landing = tmp_path / "landing"
    landing.mkdir()
    warehouse = WarehouseDirectory(path=str(tmp_path / "warehouse"))
    resources = {"landing": LandingDirectory(path=str(landing)), "warehouse": warehouse,
                 "plan": EvaluationPlanResource()}
    long_ago = time.time() - 10 * SETTLE_SECONDS

    def deliver(name: str, settled: bool = True, content: bytes | None = None) -> None:
        target = landing / name
        target.write_bytes(content if content is not None else (demo_landing / name.lower()).read_bytes())
        if settled:
            os.utime(target, (long_ago, long_ago))

    def tick(cursor=None):
        with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
            return landing_files_sensor(context), context.cursor

    for name in ("firms.csv", "financials.csv", "participation.csv"):
        deliver(name)
    outcome, cursor = tick()
    assert isinstance(outcome, dg.SkipReason) and "exports" in outcome.skip_message
    deliver("EXPORTS.csv", settled=False)  # still being copied
    outcome, cursor = tick(cursor)
    assert isinstance(outcome, dg.SkipReason) and "waiting" in outcome.skip_message
    deliver("EXPORTS.csv")
    outcome, cursor = tick(cursor)
    first = delivery_key(landing)
    assert isinstance(outcome, dg.SensorResult)
    [request] = outcome.run_requests
    assert request.run_key == request.partition_key == first
    assert request.tags["export_impact/landing_dir"] == str(landing.resolve())
    assert outcome.dynamic_partitions_requests[0].partition_keys == [first]
    assert warehouse.deliveries.get(first).folder == landing.resolve()  # manifest registered
    outcome, cursor = tick(outcome.cursor)
    assert isinstance(outcome, dg.SkipReason)
    os.utime(landing / "firms.csv", (long_ago + 1, long_ago + 1))  # touched, same content: same delivery
    outcome, cursor = tick(cursor)
    assert [r.run_key for r in outcome.run_requests] == [first]  # Dagster runs a run key once
    deliver("firms.csv", content=(demo_landing / "firms.csv").read_bytes() + b"\n")  # re-delivered, changed
    outcome, cursor = tick(cursor)
    assert [r.run_key for r in outcome.run_requests] == [delivery_key(landing)] != [first]


def test_a_few_bad_rows_are_quarantined_and_the_run_still_completes(demo_landing, tmp_path):
    """Real registers have gaps: one quarantined accounts row makes the panel unbalanced, not the run fail."""
    financials = pd.read_csv(demo_landing / "financials.csv", dtype=str)
    financials.loc[[5, 500], "employees"] = "-3"
    landing = landing_copy(demo_landing, tmp_path, financials=financials)
    plan = tmp_path / "plan.yaml"
    plan.write_text("bootstrap_iterations: 0\noutcomes: [exporter]\n", encoding="utf-8")
    key = delivery_key(landing)
    out = run_cli(tmp_path, landing, EXPORT_IMPACT_PLAN=str(plan))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(data checks: clean_financials / quarantine_share, clean_exports / quarantine_share)" in out.stdout
    assert out.stdout.count("rows quarantined (0.0%, limit 5%)") == 2  # financials and exports, each once
    assert str(tmp_path / "out" / key / "impact_report.html") in out.stdout
    # one line per stage, not Dagster's DEBUG stream; the full log is kept in a file
    assert "validated_sources: done" in out.stdout and "DEBUG" not in out.stdout + out.stderr
    # one line per step, then a short account: files, notes and the log (the steps grow with the plan's families)
    other_lines = [line for line in out.stdout.splitlines() if not re.fullmatch(r"  \S+: done \([\d.]+ s\)", line)]
    assert len(other_lines) < 25, out.stdout
    log_file = Path(out.stdout.strip().splitlines()[-1].split()[-1])
    assert log_file.is_file() and "STEP_SUCCESS" in log_file.read_text()
    # quarantined rows are firm-level data: restricted folder, never the published one
    quarantine = tmp_path / "warehouse" / "deliveries" / key / "quarantine" / "financials.csv"
    quarantined = pd.read_csv(quarantine, dtype=str)
    assert sorted(quarantined["source_row"].astype(int)) == [7, 502]  # header is row 1
    assert quarantined["quarantine_reason"].str.contains("employees").all()
    assert not list((tmp_path / "out").rglob("quarantine"))
    quality = json.loads((tmp_path / "out" / key / "data_quality.json").read_text())["sources"]["financials"]
    assert (quality["rows_in"], quality["rows_quarantined"]) == (len(financials), 2)


def test_a_mistyped_plan_stops_before_any_run_with_one_line_and_replaces_nothing(demo_landing, tmp_path):
    """The plan is read once before the run: not once per ingestion step, and a delivery's published report is not
    replaced by a RUN_FAILED note because of a typo in the plan."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("families:\n  run: dose\n")
    published = tmp_path / "out" / delivery_key(demo_landing)
    published.mkdir(parents=True)
    (published / "impact_report.html").write_text("the last good report")
    out = run_cli(tmp_path, demo_landing, EXPORT_IMPACT_PLAN=str(plan))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: evaluation plan: families.run must be a list (e.g. [dose]), got 'dose'"
    assert "Traceback" not in out.stdout and sorted(p.name for p in published.iterdir()) == ["impact_report.html"]


def test_cli_explains_a_rejected_delivery_in_plain_words(demo_landing, tmp_path):
    """Too many bad rows: the run stops after validation, says what, where and how many, and publishes that."""
    exports = pd.read_csv(demo_landing / "exports.csv", dtype=str)
    bad = exports.sample(frac=0.10, random_state=1).index
    exports.loc[bad, "export_value_eur"] = "-" + exports.loc[bad, "export_value_eur"]
    landing = landing_copy(demo_landing, tmp_path, exports=exports)
    key = delivery_key(landing)
    out = run_cli(tmp_path, landing)
    assert out.returncode == 1
    tail = out.stderr[out.stderr.index("The evaluation did not complete"):]
    assert "Traceback" not in out.stdout + out.stderr and "DagsterAssetCheckFailedError" not in tail
    assert f"{len(bad)} of {len(exports)} rows quarantined" in tail
    assert tail.count(f"{len(bad)} of {len(exports)} rows quarantined") == 1  # the summary is printed once
    assert "export_value_eur" in tail and "quarantine" in tail
    quarantined = pd.read_csv(tmp_path / "warehouse" / "deliveries" / key / "quarantine" / "exports.csv", dtype=str)
    assert len(quarantined) == len(bad)
    published = tmp_path / "out" / key
    assert sorted(p.name for p in published.iterdir()) == ["RUN_FAILED.txt", "data_quality.json", "run.json"]
    note = (published / "RUN_FAILED.txt").read_text()
    assert "FAILED" in note and f"{len(bad)} of {len(exports)} rows quarantined" in note
    # the terminal shows an example cell to look at; the published note withholds delivered values
    assert "(e.g. " in tail and "(e.g. " not in note
    assert not [firm for firm in exports["firm_id"].unique() if firm in note]
    assert not [value for value in exports.loc[bad, "export_value_eur"] if value in note]
    assert json.loads((published / "run.json").read_text())["status"] == "failed"


def test_a_delivery_where_nothing_can_be_estimated_still_gets_a_report_that_says_why(tmp_path):
    """Every cohort below the size floor, for every service: no estimate, but a published report (no crash)."""
    from analyses.demo_data import write_demo_data

    landing = tmp_path / "landing"
    write_demo_data(landing, n_firms=300, seed=7)
    plan = tmp_path / "plan.yaml"
    plan.write_text("bootstrap_iterations: 0\nmin_cohort_size: 100000\n", encoding="utf-8")
    result, output = materialise_delivery(landing, tmp_path, str(plan))
    assert result.success
    assert pd.read_csv(output / "estimates.csv").empty
    assert (output / "impact_report.pdf").stat().st_size > 0
    text = " ".join((output / "impact_report.html").read_text(encoding="utf-8").split())
    assert "No effect could be estimated for any service." in text
    for service in ("advisory support", "network services", "export grants"):
        assert f"Nothing could be estimated for {service}: no cohort could be estimated (" in text
    assert "fewer than 100000 firms" in text
    materialisation = result.asset_materializations_for_node("did_estimates")[0]
    assert "No headline effect could be estimated" in materialisation.metadata["headline"].value
