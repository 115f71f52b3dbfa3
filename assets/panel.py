"""Panel stage: the firm-year panel every model reads, and the account of every clean row."""

import dagster as dg
import pandas as pd

from analyses.evaluation import check_plan_fits_panel
from analyses.panel import build_firm_year_panel
from assets.metadata import frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource


@dg.multi_asset(
    group_name="panel",
    partitions_def=deliveries,
    outs={
        "firm_year_panel": dg.AssetOut(
            description="One row per firm-year of the register and accounts: outcomes, treatment timing, covariates.",
            kinds={"pandas", "parquet"},
        ),
        "panel_account": dg.AssetOut(
            io_manager_key="object_io_manager",
            description="Every clean input row in the panel or counted out with its reason; customs coverage by year.",
        ),
    },
)
def firm_year_panel(
    clean_firms: pd.DataFrame,
    clean_financials: pd.DataFrame,
    clean_participation: pd.DataFrame,
    clean_exports: pd.DataFrame,
    plan: EvaluationPlanResource,
):
    """One row per firm-year of the register and accounts: outcomes, treatment timing, covariates."""
    evaluation_plan = plan.load()
    build = build_firm_year_panel(clean_firms, clean_financials, clean_participation, clean_exports,
                                  lookback_years=evaluation_plan.lookback_years)  # part of the plan
    panel = build.panel
    # a plan naming a column the panel lacks stops here, once, before any model (and before the families'
    # steps, which would each fail with it)
    check_plan_fits_panel(panel, evaluation_plan, build.account)
    firms = panel.drop_duplicates("firm_id")
    yield dg.Output(
        panel,
        output_name="firm_year_panel",
        metadata={
            **frame_metadata(panel),
            "firms": int(len(firms)),
            "years": f"{int(panel['year'].min())}–{int(panel['year'].max())}",
            "firms_by_first_service": dg.MetadataValue.md(
                firms["first_service"].value_counts().rename_axis("first_service").to_frame("firms").to_markdown()
            ),
        },
    )
    yield dg.Output(
        build.account,
        output_name="panel_account",
        metadata={
            "account": dg.MetadataValue.md(build.account.table.to_markdown(index=False)),
            "years_not_covered_by_customs": ", ".join(map(str, build.account.uncovered_years)) or "none",
        },
    )
