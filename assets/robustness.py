"""Robustness stage: the pre-registered robustness runs of the headline, beside the main estimate."""

import time

import dagster as dg
import pandas as pd

from analyses.robustness import run_robustness
from assets.metadata import AFTER_HEADLINE_PRIORITY, frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource


@dg.asset(
    op_tags=AFTER_HEADLINE_PRIORITY,
    group_name="analysis",
    partitions_def=deliveries,
    kinds={"statsmodels", "parquet"},
    description="The CS-DiD headline under each pre-registered robustness run (anticipation, comparison group, "
    "covariate timing, largest exporters dropped, placebo starts), beside the main estimate.",
)
def robustness(
    context: dg.AssetExecutionContext, firm_year_panel: pd.DataFrame, did_estimates: pd.DataFrame,
    plan: EvaluationPlanResource,
) -> dg.Output[pd.DataFrame]:
    """One row per service, outcome and run (``main`` first); empty estimates with the reason where a run failed."""
    started = time.perf_counter()
    table = run_robustness(firm_year_panel, plan.load(), did_estimates, progress=context.log.info)
    shown = table.assign(ci=[f"[{low:.4f}, {high:.4f}]" for low, high in zip(table["ci_lower"], table["ci_upper"])])
    columns = ["service", "outcome", "run", "estimate", "std_error", "ci", "p_value", "n_treated", "n_control", "reason"]
    return dg.Output(table, metadata={
        **frame_metadata(table),
        "runs": dg.MetadataValue.md(shown[columns].to_markdown(index=False, floatfmt=".4f") if len(table) else "none"),
        "seconds": round(time.perf_counter() - started, 1),
    })
