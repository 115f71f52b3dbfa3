"""Publishable impact report: wording, disclosure control, figures, rendering, lineage.

Pure Python (pandas, matplotlib, jinja2, WeasyPrint); the Dagster asset that
calls `build_report` lives under assets/.
"""
from analyses.reporting.disclosure import (
    DisclosureResult, check_disclosure, check_published_files, describe_panel,
)
from analyses.reporting.lineage import file_sha256, git_commit
from analyses.reporting.report import (
    ESTIMATE_COLUMNS, ReportResult, build_report, write_estimate_files,
)
from analyses.reporting.settings import ReportSettings

__all__ = [
    "ESTIMATE_COLUMNS", "DisclosureResult", "ReportResult", "ReportSettings", "build_report",
    "check_disclosure", "check_published_files", "describe_panel", "file_sha256", "git_commit",
    "write_estimate_files",
]
