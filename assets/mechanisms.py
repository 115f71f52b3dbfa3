"""Mechanism stage: one asset per model family of the plan (how support works, for whom, how much, how long)."""

import dagster as dg
import pandas as pd

from analyses.mechanisms.families import RUNNERS, FamilyResult, run_bundles
from analyses.mechanisms.plan import FAMILY_NAMES
from assets.metadata import frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource

_DESCRIPTIONS = {
    "dose": "Dose-response (Callaway, Goodman-Bacon & Sant'Anna 2024) of each service's first-episode dose: ATT(d) "
    "and ACRT(d) curves with uniform bands, overall ATT and ACRT, event study (estimator cs_dose).",
    "subgroups": "Headline effect by pre-programme subgroup (cluster membership, size class, prior exporting) with "
    "the Wald test that subgroups differ, from joint influence functions.",
    "markets": "Headline effect on EU and non-EU new destinations and numbers of destinations, per service.",
    "value": "Export value with zeros by staggered Poisson (extended TWFE, Wooldridge 2023) as a proportional "
    "effect; extensive (exporter) and conditional intensive (log value among exporters) margins by extended TWFE OLS.",
    "bundles": "Starting with two services within the plan's window (12 months) as its own treatment group.",
    "sequences": "Incremental effect of adding a second service among the firms that started with the first.",
    "persistence": "Sustained exporting (t-2..t) and survival of new export spells (1-3 years), as DiD outcomes "
    "defined for every firm-year.",
}


def _output(result: FamilyResult, plan_families) -> dg.Output:
    failed = result.not_estimable
    return dg.Output(
        result.rows,
        metadata={
            **frame_metadata(result.rows),
            "rows": len(result.rows),
            "specifications_run": len(result.specifications),
            "specifications": dg.MetadataValue.md("\n".join(f"- {s}" for s in result.specifications) or "none"),
            "not_estimable": dg.MetadataValue.md(failed.to_markdown(index=False) if len(failed) else "none"),
            "seconds": round(result.seconds, 2),
            "families_plan": dg.MetadataValue.json(plan_families.to_dict()),
        },
    )


def _skipped(family: str, plan_families) -> dg.Output:
    from analyses.mechanisms.families import MECHANISM_COLUMNS

    empty = pd.DataFrame(columns=list(MECHANISM_COLUMNS))
    result = FamilyResult(family, empty, [], pd.DataFrame({"family": [family], "specification": ["(all)"],
                                                            "reason": ["not in the plan's families.run"]}))
    return _output(result, plan_families)


def _family_asset(family: str):
    @dg.asset(name=f"mechanism_{family}", group_name="mechanisms", partitions_def=deliveries,
              description=_DESCRIPTIONS[family], kinds={"pandas", "parquet"})
    def _asset(context: dg.AssetExecutionContext, firm_year_panel: pd.DataFrame, plan: EvaluationPlanResource):
        evaluation_plan = plan.load()
        if family not in evaluation_plan.families.run:
            return _skipped(family, evaluation_plan.families)
        context.log.info(f"mechanism family {family}: {_DESCRIPTIONS[family]}")
        return _output(RUNNERS[family](firm_year_panel, evaluation_plan), evaluation_plan.families)

    return _asset


@dg.asset(name="mechanism_bundles", group_name="mechanisms", partitions_def=deliveries,
          description=_DESCRIPTIONS["bundles"], kinds={"pandas", "parquet"})
def mechanism_bundles(context: dg.AssetExecutionContext, firm_year_panel: pd.DataFrame,
                      clean_participation: pd.DataFrame, plan: EvaluationPlanResource):
    evaluation_plan = plan.load()
    if "bundles" not in evaluation_plan.families.run:
        return _skipped("bundles", evaluation_plan.families)
    context.log.info(f"mechanism family bundles: {_DESCRIPTIONS['bundles']}")
    return _output(run_bundles(firm_year_panel, clean_participation, evaluation_plan), evaluation_plan.families)


mechanism_assets = [_family_asset(f) if f != "bundles" else mechanism_bundles for f in FAMILY_NAMES]
