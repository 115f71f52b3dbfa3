"""Analysis stage: Callaway–Sant'Anna per service and outcome, TWFE beside it, diagnostics."""

import dagster as dg
import pandas as pd

from analyses.evaluation import EvaluationResult, run_evaluation
from analyses.panel import PanelAccount
from analyses.reporting.settings import HEADLINE
from analyses.specifications import combine_results, split_plan
from assets.metadata import HEADLINE_PRIORITY, frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource


@dg.op(out=dg.DynamicOut(io_manager_key="object_io_manager"), tags=HEADLINE_PRIORITY)
def plan_specifications(panel_account: PanelAccount, plan: EvaluationPlanResource):
    """The evaluation plan, one specification per service: each is estimated in its own step. It waits for the
    panel step (``panel_account``, not the panel itself: nothing here reads it), which checked that the plan fits."""
    for key, specification in split_plan(plan.load()).items():
        yield dg.DynamicOutput(specification, mapping_key=key)


@dg.op(out=dg.Out(io_manager_key="object_io_manager"), tags=HEADLINE_PRIORITY)
def estimate_specification(
    context: dg.OpExecutionContext, firm_year_panel: pd.DataFrame, panel_account: PanelAccount, specification
) -> EvaluationResult:
    """Callaway–Sant'Anna and TWFE for one specification (a service) of the plan."""
    return run_evaluation(firm_year_panel, specification, progress=context.log.info, account=panel_account)


@dg.op(
    tags=HEADLINE_PRIORITY,
    out={
        "did_estimates": dg.Out(),
        "evaluation_diagnostics": dg.Out(io_manager_key="object_io_manager"),
    }
)
def combine_specifications(parts: list, plan: EvaluationPlanResource):
    """The specifications' estimates and diagnostics as one evaluation of the whole plan."""
    evaluation_plan = plan.load()
    result = combine_results(parts, evaluation_plan)
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


@dg.graph_multi_asset(
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
def did_estimates(firm_year_panel: pd.DataFrame, panel_account: PanelAccount):
    """Estimate what each service did to firms' exporting, as the evaluation plan specifies: one step per
    specification (fanned out, so executors with several processes or workers estimate them in parallel),
    then one step that combines them."""
    parts = plan_specifications(panel_account).map(
        lambda specification: estimate_specification(firm_year_panel, panel_account, specification)
    )
    return combine_specifications(parts.collect())


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
