"""Panel stage: the firm-year panel every model reads."""

import dagster as dg
import pandas as pd

from analyses.panel import build_firm_year_panel
from assets.metadata import frame_metadata
from pipelines.partitions import deliveries


@dg.asset(group_name="panel", partitions_def=deliveries, kinds={"pandas", "parquet"})
def firm_year_panel(
    clean_firms: pd.DataFrame,
    clean_financials: pd.DataFrame,
    clean_participation: pd.DataFrame,
    clean_exports: pd.DataFrame,
) -> dg.MaterializeResult:
    """One row per firm-year of the register and accounts: outcomes, treatment timing, covariates."""
    panel = build_firm_year_panel(clean_firms, clean_financials, clean_participation, clean_exports)
    firms = panel.drop_duplicates("firm_id")
    return dg.MaterializeResult(
        value=panel,
        metadata={
            **frame_metadata(panel),
            "firms": int(len(firms)),
            "years": f"{int(panel['year'].min())}–{int(panel['year'].max())}",
            "firms_by_first_service": dg.MetadataValue.md(
                firms["first_service"].value_counts().rename_axis("first_service").to_frame("firms").to_markdown()
            ),
        },
    )
