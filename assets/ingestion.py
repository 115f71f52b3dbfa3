"""Ingestion stage: read each landing file of one delivery exactly as delivered and check its structure.

The raw assets keep every cell as text (and the file's hash, format and encoding) so that the
contract stage can quarantine rows with their original values. The file is the one registered
for the run's delivery (partition): its hash must still match, so a file changed after the run
started cannot slip into it. A structural failure (missing
required column, empty file, a column wrong-typed throughout) fails the blocking ``structure``
check and nothing downstream runs; an unreadable file fails the asset with a one-line message.

Firm identifiers (the contracts' ``pseudonymise`` columns) are replaced here by their keyed
pseudonyms, so nothing stored or logged downstream holds one. Exports delivered as customs
transactions are staged into DuckDB in the delivery's restricted folder instead of being read
into memory (the asset then holds where they are and how they were read).
"""

import dagster as dg

from analyses.contracts import SOURCES, ContractError, check_structure, load_contract, read_source
from analyses.contracts.reading import transactions_form
from analyses.contracts.transactions import stage_transactions
from analyses.deliveries import UnknownDelivery, changed_since_registration
from analyses.pseudonyms import PseudonymKeyError, write_linkage
from assets.metadata import check_result, frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource, PseudonymKey, WarehouseDirectory


def build_raw_source_asset(source: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{source}",
        group_name="ingestion",
        io_manager_key="object_io_manager",
        partitions_def=deliveries,
        check_specs=[
            dg.AssetCheckSpec(
                "structure",
                asset=f"raw_{source}",
                blocking=True,
                description=f"{source}: readable, not empty, required columns present and typed",
            )
        ],
        description=f"The `{source}` extract as delivered: every cell as text, with file hash and encoding.",
        kinds={"pandas"},
    )
    def raw_source(
        context: dg.AssetExecutionContext, warehouse: WarehouseDirectory, pseudonyms: PseudonymKey,
        plan: EvaluationPlanResource,
    ):
        try:
            pseudonymiser, note = pseudonyms.pseudonymiser(warehouse)
            delivery = warehouse.deliveries.get(context.partition_key)
            path = delivery.path(source)
            form = transactions_form(path)
            contract = load_contract(form or source)
            if form:
                database = warehouse.deliveries.folder(context.partition_key) / f"{form}.duckdb"
                raw, mapping = stage_transactions(path, contract, database, pseudonymiser.mapping)
            else:
                raw = read_source(path, contract)
                mapping = _pseudonymise(raw, contract, pseudonymiser)
        except (ContractError, UnknownDelivery, PseudonymKeyError) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        if note:
            context.log.warning(note)
        changed = changed_since_registration(delivery, source, raw.sha256)
        if changed:
            raise dg.Failure(description=changed, allow_retries=False)
        if plan.load().linkage_table:
            linkage = write_linkage(mapping, pseudonyms.linkage_path(context.partition_key, source))
            context.log.info(f"{source}: linkage table of {len(mapping)} firm identifiers written to the vault ({linkage})")
        for warning in raw.warnings:
            context.log.warning(f"{raw.path.name}: {warning}")
        table = (
            {"dagster/row_count": raw.rows_read, "staged_in": dg.MetadataValue.path(str(raw.database))} if form
            else frame_metadata(raw.frame.drop(columns="source_row"))
        )
        yield dg.Output(
            raw,
            metadata={
                **table,
                "pseudonymised_identifiers": len(mapping),
                "path": dg.MetadataValue.path(str(raw.path)),
                "sha256": raw.sha256,
                "format": raw.format,
                **{name: str(value) for name, value in (("encoding", raw.encoding), ("delimiter", raw.delimiter)) if value},
                "contract": f"{contract.id} v{contract.version}",
                **({"form": form} if form else {}),
            },
        )
        yield check_result(check_structure(raw, contract))

    return raw_source


def _pseudonymise(raw, contract, pseudonymiser) -> dict[str, str]:
    """Replace the identifier columns of a delivered table by their pseudonyms; the identifier -> pseudonym mapping."""
    mapping = {}
    by_key = {header.strip().lower(): header for header in raw.data_columns}
    for column in contract.columns:
        header = by_key.get(column.name.lower())
        if column.pseudonymise and header is not None:
            raw.frame[header], replaced = pseudonymiser.replace(raw.frame[header])
            raw.native_numbers.pop(header, None)  # a pseudonym is text, whatever the file stored
            mapping.update(replaced)
    return mapping


raw_source_assets = [build_raw_source_asset(source) for source in SOURCES]
