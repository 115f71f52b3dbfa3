"""Sensitivity stage: how far each headline survives violations of parallel trends (HonestDiD)."""

import time

import dagster as dg
import pandas as pd

from analyses.sensitivity import sensitivity_table
from assets.metadata import AFTER_HEADLINE_PRIORITY, frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource


@dg.asset(
    op_tags=AFTER_HEADLINE_PRIORITY,
    group_name="analysis",
    partitions_def=deliveries,
    kinds={"scipy", "parquet"},
    description="Robust confidence sets (Rambachan & Roth 2023) for every headline event study (CS-DiD and TWFE): "
    "effect on impact and fixed-horizon average, relative magnitudes (C-LF) and smoothness (FLCI), breakdown values.",
)
def sensitivity(
    context: dg.AssetExecutionContext, evaluation_diagnostics: dict, plan: EvaluationPlanResource
) -> dg.Output[pd.DataFrame]:
    """One row per service, outcome, estimator, target, restriction and M (the published sensitivity.csv)."""
    evaluation_plan = plan.load()
    started = time.perf_counter()
    table = sensitivity_table(evaluation_diagnostics["event_studies"], evaluation_plan.sensitivity_mbar,
                              evaluation_plan.sensitivity_m, evaluation_plan.alpha,
                              evaluation_plan.sensitivity_pre_periods, progress=context.log.info)
    breakdowns = (table.drop_duplicates(["service", "outcome", "estimator", "target", "method"])
                  .loc[lambda t: t["method"] != "original",
                       ["service", "outcome", "estimator", "target", "method", "breakdown"]])
    skipped = evaluation_diagnostics["event_studies"].loc[lambda t: t["study"].isna(),
                                                          ["treatment", "outcome", "estimator", "reason"]]
    return dg.Output(table, metadata={
        **frame_metadata(table),
        "breakdown_values": dg.MetadataValue.md(breakdowns.to_markdown(index=False, floatfmt=".3g")
                                                if not breakdowns.empty else "none"),
        "not_analysed": dg.MetadataValue.md(skipped.to_markdown(index=False) if not skipped.empty else "none"),
        "seconds": round(time.perf_counter() - started, 1),
    })
