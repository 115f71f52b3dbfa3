"""The one ``Definitions`` object of the Export Impact code location."""

import dagster as dg

from assets.analysis import did_estimates
from assets.catalogue import catalogued
from assets.checks import DELIVERY_CHECKS, freshness_sensor
from assets.contracts import validated_sources
from assets.ingestion import raw_source_assets
from assets.mechanisms import mechanism_assets
from assets.panel import firm_year_panel
from assets.reporting import impact_report
from assets.robustness import robustness
from assets.sensitivity import sensitivity
from pipelines.executors import selected_executor
from pipelines.jobs import evaluate_programmes
from pipelines.progress import progress_logger
from pipelines.resources import (
    DEFAULT_LANDING_DIR,
    DEFAULT_OUTPUT_DIR,
    DEFAULT_VAULT,
    DEFAULT_WAREHOUSE,
    EvaluationPlanResource,
    LandingDirectory,
    OutputDirectory,
    ParquetWarehouse,
    PseudonymKey,
    WarehouseDirectory,
    env_or_default,
    setting,
    smtp_from_environment,
)
from pipelines.schedules import quarterly_evaluation
from pipelines.sensors import abandoned_runs_sensor, landing_files_sensor, run_failure_incidents

#: Every asset (with owner, kinds and business description) and the checks defined apart from them
#: (between deliveries, freshness); ``dg.materialize`` takes both in one list.
ALL_ASSETS = [
    *dg.map_asset_specs(catalogued, [*raw_source_assets, validated_sources, firm_year_panel, did_estimates,
                                     sensitivity, robustness, *mechanism_assets, impact_report]),
    *DELIVERY_CHECKS,
]


def build_resources() -> dict:
    """Resources from the environment (``EXPORT_IMPACT_*``), else the embedded defaults."""
    warehouse = setting("EXPORT_IMPACT_WAREHOUSE", DEFAULT_WAREHOUSE)
    return {
        "landing": LandingDirectory(path=env_or_default("EXPORT_IMPACT_LANDING_DIR", str(DEFAULT_LANDING_DIR))),
        "output_dir": OutputDirectory(path=env_or_default("EXPORT_IMPACT_OUTPUT_DIR", str(DEFAULT_OUTPUT_DIR))),
        "warehouse": WarehouseDirectory(path=env_or_default("EXPORT_IMPACT_WAREHOUSE", str(DEFAULT_WAREHOUSE))),
        "plan": EvaluationPlanResource(plan_file=env_or_default("EXPORT_IMPACT_PLAN", "")),
        "pseudonyms": PseudonymKey(
            key=env_or_default("EXPORT_IMPACT_PSEUDONYM_KEY", ""),
            vault_dir=env_or_default("EXPORT_IMPACT_VAULT", str(DEFAULT_VAULT)),
        ),
        "io_manager": ParquetWarehouse(base_dir=str(warehouse / "tables")),
        "object_io_manager": dg.FilesystemIOManager(base_dir=str(warehouse / "objects")),
        "smtp": smtp_from_environment(),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[evaluate_programmes],
    schedules=[quarterly_evaluation],
    sensors=[landing_files_sensor, abandoned_runs_sensor, run_failure_incidents, freshness_sensor],
    resources=build_resources(),
    loggers={"console": dg.colored_console_logger, "progress": progress_logger},
    # in-process unless EXPORT_IMPACT_EXECUTOR says multiprocess or celery (pipelines/executors.py)
    executor=selected_executor(),
)
