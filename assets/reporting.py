"""Reporting stage: the publishable impact report and the analysts' estimate files."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from analyses.reporting import ReportSettings, build_report, check_published_files, git_commit
from pipelines.resources import PROJECT_ROOT, OutputDirectory


@dg.asset(
    group_name="reporting",
    io_manager_key="object_io_manager",
    check_specs=[
        dg.AssetCheckSpec(
            "disclosure_control",
            asset="impact_report",
            description="Every published cell rests on enough firms and passes the dominance rules.",
        )
    ],
    kinds={"html", "pdf"},
)
def impact_report(
    context: dg.AssetExecutionContext,
    output_dir: OutputDirectory,
    did_estimates: pd.DataFrame,
    evaluation_diagnostics: dict,
    data_quality: dict,
    firm_year_panel: pd.DataFrame,
):
    """HTML and PDF report, estimates.csv/.parquet, after statistical disclosure control."""
    lineage = {
        "run_id": context.run.run_id,
        "git_commit": git_commit(PROJECT_ROOT),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            source: {"file": entry["file"], "path": entry["path"], "sha256": entry["sha256"]}
            for source, entry in data_quality["sources"].items()
        },
        "contract_versions": {source: entry["contract_version"] for source, entry in data_quality["sources"].items()},
        "plan": evaluation_diagnostics.get("plan", {}),
    }
    settings = ReportSettings()
    report = build_report(
        did_estimates, evaluation_diagnostics, data_quality, firm_year_panel, lineage, output_dir.root, settings
    )
    paths = {"html": str(report.html_path), "pdf": str(report.pdf_path) if report.pdf_path else None}
    paths.update({name: str(path) for name, path in report.estimate_files.items()})
    yield dg.Output(
        paths,
        metadata={
            "html": dg.MetadataValue.path(paths["html"]),
            "pdf": dg.MetadataValue.path(paths["pdf"] or ""),
            "headline": dg.MetadataValue.md(report.headline_markdown),
            "pdf_pages": report.pdf_pages,
            "build_seconds": round(report.seconds, 2),
        },
    )
    # What was intended (suppression applied while rendering) and what actually landed on disk.
    published = check_published_files(output_dir.root, firm_year_panel["firm_id"].unique(), settings)
    yield dg.AssetCheckResult(
        check_name="disclosure_control",
        passed=report.disclosure.passed and published.passed,
        metadata={
            **report.disclosure.metadata(),
            "published_files": dg.MetadataValue.json(published.metadata()),
        },
    )
