"""Publishable impact report: wording, disclosure control, figures, rendering, lineage.

Pure Python (pandas, matplotlib, jinja2, WeasyPrint); the Dagster asset that
calls `build_report` lives under assets/. Importing the package loads only
numpy, pandas and scipy: matplotlib, jinja2, WeasyPrint and the evaluation
module (statsmodels) are imported where they are used.
"""
from analyses.reporting.disclosure import (
    DisclosureResult, check_disclosure, check_published_files, describe_panel,
)
from analyses.reporting.lineage import file_sha256, git_commit
from analyses.reporting.report import ReportResult, build_report, estimate_columns, write_estimate_files
from analyses.reporting.settings import ReportSettings

__all__ = [
    "DisclosureResult", "ReportResult", "ReportSettings", "build_report", "check_disclosure",
    "check_published_files", "describe_panel", "estimate_columns", "file_sha256", "git_commit",
    "write_estimate_files",
]
