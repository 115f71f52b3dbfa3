"""Jobs: the one evaluation job that takes the landing files to the published report."""

import dagster as dg

evaluate_programmes = dg.define_asset_job(
    "evaluate_programmes",
    selection=dg.AssetSelection.all(),
    description="Ingest, validate, build the firm-year panel, estimate and report — everything.",
)
