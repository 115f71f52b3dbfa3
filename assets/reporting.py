"""Reporting stage: the publishable impact report and the analysts' estimate files, published atomically."""

import os
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from analyses.publishing import private_paths_in, publish
from analyses.reporting import ReportSettings, build_report, check_published_files, git_commit
from pipelines.partitions import deliveries
from pipelines.resources import PROJECT_ROOT, OutputDirectory, WarehouseDirectory


@dg.asset(
    group_name="reporting",
    io_manager_key="object_io_manager",
    partitions_def=deliveries,
    check_specs=[
        dg.AssetCheckSpec(
            "disclosure_control",
            asset="impact_report",
            description="Every published cell rests on enough firms and passes the dominance rules; "
            "no firm identifier and no path of the analyst's file system in any published file.",
        )
    ],
    kinds={"html", "pdf"},
)
def impact_report(
    context: dg.AssetExecutionContext,
    output_dir: OutputDirectory,
    warehouse: WarehouseDirectory,
    did_estimates: pd.DataFrame,
    evaluation_diagnostics: dict,
    data_quality: dict,
    firm_year_panel: pd.DataFrame,
    sensitivity: pd.DataFrame,
    robustness: pd.DataFrame,
    mechanism_dose: pd.DataFrame,
    mechanism_subgroups: pd.DataFrame,
    mechanism_markets: pd.DataFrame,
    mechanism_value: pd.DataFrame,
    mechanism_bundles: pd.DataFrame,
    mechanism_sequences: pd.DataFrame,
    mechanism_persistence: pd.DataFrame,
):
    """HTML and PDF report, estimates.csv/.parquet, sensitivity.csv and robustness.csv, after statistical disclosure
    control.

    The mechanism families' tables go through the same disclosure control and are published beside the
    headline rows (column ``family``) and in the report's "How support works" section.

    Everything is written to the run's staging folder, checked there as it will be published,
    and only then moved to ``<output>/<delivery>/`` in one rename.
    """
    delivery = warehouse.deliveries.get(context.partition_key)
    lineage = {
        "run_id": context.run.run_id,
        "delivery": delivery.key,
        "git_commit": git_commit(PROJECT_ROOT),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            source: {"file": entry["file"], "sha256": entry["sha256"]}
            for source, entry in data_quality["sources"].items()
        },
        "contract_versions": {source: entry["contract_version"] for source, entry in data_quality["sources"].items()},
        "plan": evaluation_diagnostics.get("plan", {}),
    }
    settings = ReportSettings()
    staging = output_dir.staging(context.run.run_id, warehouse)
    diagnostics = {**evaluation_diagnostics, "sensitivity": sensitivity, "robustness": robustness}
    families = [mechanism_dose, mechanism_subgroups, mechanism_markets, mechanism_value, mechanism_bundles,
                mechanism_sequences, mechanism_persistence]
    estimated = [table for table in families if len(table)]
    report = build_report(
        did_estimates, diagnostics, data_quality, firm_year_panel, lineage, staging, settings,
        input_locations={source: delivery.path(source) for source in delivery.files},
        mechanisms=pd.concat(estimated, ignore_index=True) if estimated else None,
    )
    # What was intended (suppression applied while rendering) and what actually lies in the files.
    published = check_published_files(staging, firm_year_panel["firm_id"].unique(), settings)
    leaks = private_paths_in(staging, [delivery.folder, warehouse.root, output_dir.root, os.path.expanduser("~")])
    passed = report.disclosure.passed and published.passed and not leaks
    yield dg.AssetCheckResult(
        check_name="disclosure_control",
        passed=passed,
        metadata={
            # failing disclosure rules (intended and as written) plus private paths found; none is allowed
            "observed": int((report.disclosure.checks["outcome"] == "fail").sum()
                            + (published.checks["outcome"] == "fail").sum() + len(leaks)),
            "threshold": 0,
            **report.disclosure.metadata(),
            "published_files": dg.MetadataValue.json(published.metadata()),
            "private_paths": dg.MetadataValue.json(leaks),
        },
    )
    if not passed:
        raise dg.Failure(
            description="disclosure control failed on the files about to be published; nothing was published "
            f"(see the disclosure_control check of impact_report{': paths ' + str(leaks) if leaks else ''})",
            allow_retries=False,
        )
    folder = publish(staging, output_dir.root, delivery.key, context.run.run_id)
    paths = {path.name: str(path) for path in sorted(folder.iterdir())}
    context.log.info(f"published {len(paths)} files to {folder}")
    yield dg.Output(
        paths,
        metadata={
            "folder": dg.MetadataValue.path(str(folder)),
            "html": dg.MetadataValue.path(str(folder / Path(report.html_path).name)),
            "headline": dg.MetadataValue.md(report.headline_markdown),
            "pdf_pages": report.pdf_pages,
            "build_seconds": round(report.seconds, 2),
        },
    )
