"""Contract stage: validate all four sources against their data contracts, together.

One step validates every source because the cross-source rules (every firm known to the
register, years inside the accounts' panel years) need the clean register and accounts. Each
clean table carries one asset check per rule group; ``quarantine_share`` blocks everything
downstream when more rows than the contract allows had to be set aside. Quarantined rows are
firm-level data: they go to the delivery's restricted folder beside the warehouse; the row
accounting (``data_quality.json``) is staged for publication with the run's other outputs.
"""

import json

import dagster as dg

from analyses.contracts import (
    ROW_RULE_GROUPS,
    SOURCES,
    CheckOutcome,
    ContractError,
    data_quality_summary,
    failure_summary,
    load_contract,
    load_contracts,
    row_rule_groups,
    validate_sources,
    write_quarantine,
)
from analyses.contracts.model import FORMS
from assets.metadata import check_result, frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import OutputDirectory, WarehouseDirectory

_CONTRACTS = load_contracts()
#: check names per source: the rule groups of its contract and of the contracts of its other forms
_GROUPS = {
    source: [
        group for group in (*ROW_RULE_GROUPS, "quarantine_share")
        if any(group in row_rule_groups(load_contract(name)) for name in (source, *FORMS.get(source, ())))
    ]
    for source in SOURCES
}


@dg.multi_asset(
    group_name="contracts",
    partitions_def=deliveries,
    ins={f"raw_{source}": dg.AssetIn() for source in SOURCES},
    outs={
        **{
            f"clean_{source}": dg.AssetOut(
                description=f"`{source}` rows that satisfy contract {_CONTRACTS[source].id} "
                f"v{_CONTRACTS[source].version}, typed. Not stored when the delivery is rejected.",
                kinds={"pandas", "parquet"},
                is_required=False,
            )
            for source in SOURCES
        },
        "data_quality": dg.AssetOut(
            io_manager_key="object_io_manager",
            description="Rows delivered, clean and quarantined per source, with counts per rule "
            "(also written to <output>/data_quality.json).",
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            group,
            asset=f"clean_{source}",
            blocking=group == "quarantine_share",
            description=f"{source}: {group.replace('_', ' ')} rules of the data contract",
        )
        for source in SOURCES
        for group in _GROUPS[source]
    ],
)
def validated_sources(
    context: dg.AssetExecutionContext, output_dir: OutputDirectory, warehouse: WarehouseDirectory, **raws
):
    """Split every delivered row into the clean table or the quarantine file, losing none."""
    raw_by_source = {source: raws[f"raw_{source}"] for source in SOURCES}
    try:
        results = validate_sources(raw_by_source, _CONTRACTS)
    except ContractError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    # One account of everything set aside, so that a cascade (rows referring to quarantined firms)
    # is explained once, from the file that caused it.
    explanation = failure_summary(results)
    staging = output_dir.staging(context.run.run_id, warehouse)
    restricted = warehouse.deliveries.folder(context.partition_key)
    for source, result in results.items():
        quarantine_path = write_quarantine(result, restricted)
        rejected = any(not o.passed and o.blocking and o.severity == "ERROR" for o in result.checks)
        if rejected:
            context.log.error(f"{source}: delivery rejected, clean table not stored\n{explanation}")
        else:
            yield dg.Output(
                result.clean,
                output_name=f"clean_{source}",
                metadata={
                    **frame_metadata(result.clean),
                    "rows_in": result.rows_in,
                    "rows_quarantined": result.rows_quarantined,
                    **({"transactions_clean": result.rows_clean} if result.counted_clean is not None else {}),
                    "quarantine_file": dg.MetadataValue.path(str(quarantine_path)),
                    "contract_version": result.contract.version,
                },
            )
        for outcome in result.checks:
            explained = outcome.name == "quarantine_share" and result.rows_quarantined > 0
            yield check_result(outcome, summary=explanation if explained else None)
        for group in _GROUPS[source]:
            if group not in {outcome.name for outcome in result.checks}:  # a rule group the delivered form's contract lacks
                yield check_result(CheckOutcome(
                    source, group, True, False, "WARN",
                    f"contract {result.contract.id} v{result.contract.version} has no {group.replace('_', ' ')} rules", 0, 0,
                ))
    summary = data_quality_summary(raw_by_source, results)
    summary_path = staging / "data_quality.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    context.log.info(f"data quality record staged in {summary_path}; quarantined rows in {restricted / 'quarantine'}")
    yield dg.Output(
        summary,
        output_name="data_quality",
        metadata={
            "staged_at": dg.MetadataValue.path(str(summary_path)),
            "rows": dg.MetadataValue.md(_quality_markdown(summary)),
        },
    )


def _quality_markdown(summary: dict) -> str:
    lines = ["| source | contract | rows in | clean | quarantined |", "|---|---|---:|---:|---:|"]
    for source, entry in summary["sources"].items():
        lines.append(
            f"| {source} | v{entry['contract_version']} | {entry['rows_in']} | {entry['rows_clean']} "
            f"| {entry['rows_quarantined']} |"
        )
    return "\n".join(lines)
