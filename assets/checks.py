"""Checks between deliveries: what a data engineer looks at when a new delivery arrives.

Per source, on its clean table:

* ``schema_change``: columns added, removed or read as another type since the previous delivery;
  a required column removed or retyped fails, any other difference warns.
* ``drift_<measure>``: every measure of the contract's ``deliveryDrift`` section (rows, firms,
  firms per year, export value per year, participants per service and year …) against the
  previous delivery, on the years both span, with the contract's warn and fail thresholds.

The *previous delivery* is the latest delivery registered (added as a partition of ``deliveries``)
before this one whose clean table of that source is stored: a rejected delivery, which stored no
clean table, is skipped. None of these checks stops the run; they say what changed.

Per source, on its raw extract: ``freshness`` warns when the newest delivery is older than the
contract's ``slaProperties.freshness``. It runs after each read and, between runs, the sensor
``freshness_sensor`` reports it hourly (Dagster's own freshness checks are superseded in 1.13 by
``FreshnessPolicy``, which is not an asset check and cannot show the contract's interval beside
the observed age).
"""

import time

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from analyses.contracts import SOURCES, Contract, load_contracts
from analyses.drift import (
    DriftOutcome,
    SchemaChange,
    drift_columns,
    drift_outcomes,
    freshness_timedelta,
    freshness_verdict,
    previous_delivery,
    schema_changes,
    table_schema,
)
from pipelines.partitions import deliveries
from pipelines.resources import PandasParquetIOManager

_CONTRACTS = load_contracts()
_SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN, None: dg.AssetCheckSeverity.WARN}


def _schema(path, contract: Contract) -> dict[str, str]:
    with path.open("rb") as handle:
        schema = pq.read_schema(handle)
    return table_schema(schema, lambda column: pd.read_parquet(path, columns=[column])[column], contract)


def schema_change_result(asset: str, contract: Contract, change: SchemaChange, previous: str,
                         before: dict[str, str], after: dict[str, str]) -> dg.AssetCheckResult:
    rows = [
        {"column": name, "previous": before.get(name, "—"), "current": after.get(name, "—"),
         "required": "yes" if name in contract.column_names and contract.column(name).required else "no"}
        for name in [*change.added, *change.removed, *change.retyped]
    ]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name="schema_change",
        passed=change.severity is None,
        severity=_SEVERITY[change.severity],
        description="; ".join(change.differences) or f"same columns and types as delivery {previous}",
        metadata={
            "previous_delivery": previous,
            "observed": dg.MetadataValue.int(len(change.differences)),
            "threshold": dg.MetadataValue.int(0),
            "required_columns_changed": dg.MetadataValue.int(len(change.failing)),
            "added": dg.MetadataValue.json(change.added),
            "removed": dg.MetadataValue.json(change.removed),
            "retyped": dg.MetadataValue.json({name: list(types) for name, types in change.retyped.items()}),
            "differences": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False) if rows else "none"),
            "rule": "a required column removed or retyped fails; any other added, removed or retyped column warns",
        },
    )


def drift_result(asset: str, outcome: DriftOutcome, previous: str) -> dg.AssetCheckResult:
    metric = outcome.metric
    table = outcome.table.assign(change=outcome.table["change"].map(lambda c: "" if pd.isna(c) else f"{c:+.1%}"))
    worst = outcome.table[outcome.table["group"] == outcome.worst]
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=f"drift_{metric.name}",
        passed=outcome.severity is None,
        severity=_SEVERITY[outcome.severity],
        description=outcome.summary(),
        metadata={
            "previous_delivery": previous,
            "measure": metric.measure + (f" by {', '.join(metric.by)}" if metric.by else ""),
            "years_compared": f"{outcome.years[0]}–{outcome.years[1]}" if outcome.years else "all",
            "observed": dg.MetadataValue.float(round(outcome.observed, 4)),
            "threshold": dg.MetadataValue.float(outcome.threshold),
            "warn_threshold": dg.MetadataValue.float(metric.warn_change),
            "fail_threshold": dg.MetadataValue.float(metric.fail_change),
            "worst_group": outcome.worst,
            "previous_value": dg.MetadataValue.float(float(worst["previous"].iloc[0]) if len(worst) else 0.0),
            "current_value": dg.MetadataValue.float(float(worst["current"].iloc[0]) if len(worst) else 0.0),
            "groups_beyond_threshold": dg.MetadataValue.int(int(outcome.table["verdict"].isin(["warn", "fail", "new"]).sum())),
            "groups": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".0f")),
        },
    )


def first_delivery_results(asset: str, check_names: list[str]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(asset_key=asset, check_name=name, passed=True,
                            description=f"no earlier delivery with {asset} stored: nothing to compare with",
                            metadata={"previous_delivery": "none"})
        for name in check_names
    ]


def comparison_specs(source: str) -> list[dg.AssetCheckSpec]:
    """``schema_change`` and one ``drift_<measure>`` per measure of the contract, on ``clean_<source>``."""
    contract = _CONTRACTS[source]
    asset = f"clean_{source}"
    return [
        dg.AssetCheckSpec("schema_change", asset=asset, blocking=False,
                          description=f"{source}: columns and types against the previous delivery; a required column "
                          "removed or retyped fails, other differences warn"),
        *(dg.AssetCheckSpec(f"drift_{m.name}", asset=asset, blocking=False,
                            description=f"{source}: {m.description} Against the previous delivery: warn above "
                            f"{m.warn_change:.0%}, fail above {m.fail_change:.0%} change.")
          for m in (contract.drift.metrics if contract.drift else ())),
    ]


def compare_source(source: str, delivery: str, registered: list[str], io_manager: PandasParquetIOManager, log):
    """The comparisons of one source's clean table with the previous delivery's (all passing for the first)."""
    contract = _CONTRACTS[source]
    asset = f"clean_{source}"
    previous = previous_delivery(delivery, registered, lambda key: io_manager.table_path(asset, key).exists())
    if previous is None:
        yield from first_delivery_results(asset, [spec.name for spec in comparison_specs(source)])
        return
    log.info(f"{asset}: comparing delivery {delivery} with {previous}")
    before_path, after_path = io_manager.table_path(asset, previous), io_manager.table_path(asset, delivery)
    before, after = _schema(before_path, contract), _schema(after_path, contract)
    change = schema_changes(before, after, [c.name for c in contract.columns if c.required])
    yield schema_change_result(asset, contract, change, previous, before, after)
    columns = drift_columns(contract)
    tables = [pd.read_parquet(path, columns=columns) for path in (before_path, after_path)]
    for outcome in drift_outcomes(*tables, contract):
        yield drift_result(asset, outcome, previous)


@dg.multi_asset_check(
    specs=[spec for source in SOURCES for spec in comparison_specs(source)],
    name="compare_with_previous_delivery",
    can_subset=True,
)
def compare_with_previous_delivery(context: dg.AssetCheckExecutionContext,
                                   io_manager: dg.ResourceParam[PandasParquetIOManager]):
    """One step for all sources; each source's previous table is read once."""
    selected = {key.asset_key.to_user_string() for key in context.selected_asset_check_keys}
    registered = context.instance.get_dynamic_partitions(deliveries.name)
    for source in SOURCES:
        if f"clean_{source}" in selected:
            yield from compare_source(source, context.partition_key, registered, io_manager, context.log)


def freshness_evaluation(instance: dg.DagsterInstance, source: str, now: float | None = None) -> dg.AssetCheckEvaluation:
    """Whether ``source``'s newest delivery is overdue, with its age beside the contract's interval.

    A delivery is received when its raw extract is first read (a re-run of an old delivery is not a new
    one): the check looks at the first materialisation of ``raw_<source>`` for the latest registered
    delivery that has one.
    """
    asset = dg.AssetKey(f"raw_{source}")
    allowed = freshness_timedelta(_CONTRACTS[source])
    received = None
    for key in reversed(instance.get_dynamic_partitions(deliveries.name)):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=1, ascending=True).records
        if records:
            received = (key, records[0].timestamp)
            break
    verdict = freshness_verdict(received[1] if received else None, now if now is not None else time.time(), allowed)
    return dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name="freshness",
        passed=verdict.fresh,
        severity=dg.AssetCheckSeverity.WARN,
        description=verdict.summary(source, _CONTRACTS[source].freshness),
        blocking=False,
        metadata={
            "newest_delivery": received[0] if received else "none",
            "received_at": dg.MetadataValue.timestamp(received[1]) if received else "never",
            "observed": dg.MetadataValue.float(round(verdict.age_days, 1)) if received else "never",
            "threshold": dg.MetadataValue.float(round(verdict.allowed_days, 1)),
            "unit": "days since the newest delivery was first read",
            "due_at": dg.MetadataValue.timestamp(verdict.due_at) if received else "now",
            "rule": f"slaProperties.freshness of contract {_CONTRACTS[source].id}: {_CONTRACTS[source].freshness}",
        },
    )


_FRESH_SOURCES = [source for source in SOURCES if _CONTRACTS[source].freshness_period]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec("freshness", asset=f"raw_{source}", blocking=False,
                          description=f"{source}: a new delivery is due every {_CONTRACTS[source].freshness.split(':')[0]} "
                          "(contract slaProperties.freshness); warns when the newest one is older")
        for source in _FRESH_SOURCES
    ],
    name="freshness",
    can_subset=True,
)
def freshness(context: dg.AssetCheckExecutionContext):
    selected = {key.asset_key.to_user_string() for key in context.selected_asset_check_keys}
    for source in _FRESH_SOURCES:
        if f"raw_{source}" in selected:
            evaluation = freshness_evaluation(context.instance, source)
            yield dg.AssetCheckResult(asset_key=evaluation.asset_key, check_name="freshness", passed=evaluation.passed,
                                      severity=evaluation.severity, description=evaluation.description,
                                      metadata=evaluation.metadata)


@dg.sensor(
    name="freshness_sensor",
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-evaluates every source's freshness check hourly, between runs, so an overdue delivery "
    "shows on its raw asset without anyone starting a run.",
)
def freshness_sensor(context: dg.SensorEvaluationContext):
    return dg.SensorResult(asset_events=[freshness_evaluation(context.instance, source) for source in _FRESH_SOURCES])


DELIVERY_CHECKS = [compare_with_previous_delivery, freshness]
#: Their step keys: ``make run`` prints no stage line when they succeed (failed checks come as notes).
CHECK_STEPS = frozenset(check.node_def.name for check in DELIVERY_CHECKS)
