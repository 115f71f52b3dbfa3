"""The one ``Definitions`` object of the Export Impact code location."""

import os
from pathlib import Path

import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasIOManager

from assets.analysis import did_estimates
from assets.contracts import validated_sources
from assets.ingestion import raw_source_assets
from assets.panel import firm_year_panel
from assets.reporting import impact_report
from pipelines.jobs import evaluate_programmes
from pipelines.resources import (
    DEFAULT_LANDING_DIR,
    DEFAULT_OUTPUT_DIR,
    DEFAULT_WAREHOUSE,
    EvaluationPlanResource,
    LandingDirectory,
    OutputDirectory,
    env_or_default,
)
from pipelines.schedules import quarterly_evaluation
from pipelines.sensors import landing_files_sensor

ALL_ASSETS = [*raw_source_assets, validated_sources, firm_year_panel, did_estimates, impact_report]


def build_resources() -> dict:
    """Resources from the environment (``EXPORT_IMPACT_*``), else the embedded defaults."""
    output_dir = env_or_default("EXPORT_IMPACT_OUTPUT_DIR", str(DEFAULT_OUTPUT_DIR))
    warehouse = env_or_default("EXPORT_IMPACT_WAREHOUSE", str(DEFAULT_WAREHOUSE))
    Path(os.environ.get("EXPORT_IMPACT_WAREHOUSE", DEFAULT_WAREHOUSE)).parent.mkdir(parents=True, exist_ok=True)
    return {
        "landing": LandingDirectory(path=env_or_default("EXPORT_IMPACT_LANDING_DIR", str(DEFAULT_LANDING_DIR))),
        "output_dir": OutputDirectory(path=output_dir),
        "plan": EvaluationPlanResource(plan_file=env_or_default("EXPORT_IMPACT_PLAN", "")),
        "io_manager": DuckDBPandasIOManager(database=warehouse, schema="export_impact"),
        "object_io_manager": dg.FilesystemIOManager(),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[evaluate_programmes],
    schedules=[quarterly_evaluation],
    sensors=[landing_files_sensor],
    resources=build_resources(),
    # Process start-up costs seconds per step; one process runs this graph twice as fast.
    executor=dg.in_process_executor,
)
