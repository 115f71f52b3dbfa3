"""Jobs: the one evaluation job that takes one delivery's landing files to its published report."""

import dagster as dg

from pipelines.hooks import publish_failure_note
from pipelines.partitions import deliveries

evaluate_programmes = dg.define_asset_job(
    "evaluate_programmes",
    selection=dg.AssetSelection.all(),
    partitions_def=deliveries,
    hooks={publish_failure_note},
    description="Ingest, validate, build the firm-year panel, estimate and report one delivery — everything.",
)
