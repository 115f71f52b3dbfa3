"""Analysis stage: Callaway–Sant'Anna per service and outcome, TWFE beside it, diagnostics."""

import dagster as dg
import pandas as pd

from analyses.evaluation import run_evaluation
from analyses.panel import PanelAccount
from analyses.reporting.settings import HEADLINE
from assets.metadata import frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource


@dg.multi_asset(
    group_name="analysis",
    partitions_def=deliveries,
    outs={
        "did_estimates": dg.AssetOut(
            description="One row per estimate: service × outcome × estimator × aggregation (× event time).",
            kinds={"statsmodels", "parquet"},
        ),
        "evaluation_diagnostics": dg.AssetOut(
            io_manager_key="object_io_manager",
            description="Pre-trend tests with their power, covariate balance, propensity overlap, minimum detectable "
            "effects, cohorts, firms and firm-years left out (with reasons), ATT(g,t) cells and cohorts left out of the "
            "averages, what could not be estimated, and the panel account.",
        ),
    },
)
def did_estimates(
    context: dg.AssetExecutionContext,
    firm_year_panel: pd.DataFrame,
    panel_account: PanelAccount,
    plan: EvaluationPlanResource,
):
    """Estimate what each service did to firms' exporting, as the evaluation plan specifies."""
    evaluation_plan = plan.load()
    result = run_evaluation(firm_year_panel, evaluation_plan, progress=context.log.info, account=panel_account)
    estimates = result.estimates
    headline = estimates.loc[estimates["aggregation"].eq(HEADLINE) & estimates["event_time"].isna()]
    diagnostics = result.diagnostics
    yield dg.Output(
        estimates,
        output_name="did_estimates",
        metadata={
            **frame_metadata(estimates),
            "headline": dg.MetadataValue.md(headline_markdown(headline, evaluation_plan.headline_horizon)),
            "not_estimable": dg.MetadataValue.md(_markdown(diagnostics["not_estimable"])),
            "specification": dg.MetadataValue.json(evaluation_plan.to_dict()),
        },
    )
    yield dg.Output(
        diagnostics,
        output_name="evaluation_diagnostics",
        metadata={
            "pre_trend_tests": dg.MetadataValue.md(_markdown(diagnostics["pretests"])),
            "dropped_cells": dg.MetadataValue.md(_markdown(diagnostics["dropped_cells"])),
            "dropped_cohorts": dg.MetadataValue.md(_markdown(diagnostics["dropped_cohorts"])),
        },
    )


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3f") if not frame.empty else "none"


def headline_markdown(headline: pd.DataFrame, horizon: int) -> str:
    """Headline per service, outcome and estimator (average over event times 0..horizon, the same cohorts),
    with its 95 % interval, for the asset page."""
    if headline.empty:
        return "No headline effect could be estimated (see `not_estimable`)."
    table = headline.assign(
        ci=lambda d: "[" + d["ci_lower"].map("{:.4f}".format) + ", " + d["ci_upper"].map("{:.4f}".format) + "]"
    )[["treatment", "outcome", "estimator", "estimate", "std_error", "ci", "p_value", "n_treated", "n_control"]]
    title = f"Average effect over event times 0 to {horizon} (`{HEADLINE}`, the same cohorts at each)\n\n"
    return title + table.to_markdown(index=False, floatfmt=".4f")
