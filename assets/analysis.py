"""Analysis stage: Callaway–Sant'Anna per service and outcome, TWFE beside it, diagnostics."""

import dagster as dg
import pandas as pd

from analyses.evaluation import run_evaluation
from analyses.panel import PanelAccount
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
            description="Pre-trend tests, covariate balance, propensity overlap, minimum detectable effects, cohorts, "
            "firms and firm-years left out (with reasons) and the panel account.",
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
    headline = result.estimates.query("estimator == 'cs_did' and aggregation == 'simple'")
    yield dg.Output(
        result.estimates,
        output_name="did_estimates",
        metadata={
            **frame_metadata(result.estimates),
            "headline": dg.MetadataValue.md(headline_markdown(headline)),
            "specification": dg.MetadataValue.json(evaluation_plan.to_dict()),
        },
    )
    pretests = result.diagnostics["pretests"]
    yield dg.Output(
        result.diagnostics,
        output_name="evaluation_diagnostics",
        metadata={"pre_trend_tests": dg.MetadataValue.md(pretests.to_markdown(index=False, floatfmt=".3f"))},
    )


def headline_markdown(headline: pd.DataFrame) -> str:
    """Overall ATT per service and outcome with its 95 % interval, for the asset page."""
    table = headline.assign(
        ci=lambda d: "[" + d["ci_lower"].map("{:.4f}".format) + ", " + d["ci_upper"].map("{:.4f}".format) + "]"
    )[["treatment", "outcome", "estimate", "std_error", "ci", "p_value", "n_treated", "n_control"]]
    return table.to_markdown(index=False, floatfmt=".4f")
