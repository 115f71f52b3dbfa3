"""Ingestion stage: read each landing file of one delivery exactly as delivered and check its structure.

The raw assets keep every cell as text (and the file's hash, format and encoding) so that the
contract stage can quarantine rows with their original values. The file is the one registered
for the run's delivery (partition): its hash must still match, so a file changed after the run
started cannot slip into it. A structural failure (missing
required column, empty file, a column wrong-typed throughout) fails the blocking ``structure``
check and nothing downstream runs; an unreadable file fails the asset with a one-line message.
"""

import dagster as dg

from analyses.contracts import SOURCES, ContractError, check_structure, load_contract, read_source
from analyses.deliveries import UnknownDelivery, changed_since_registration
from assets.metadata import check_result, frame_metadata
from pipelines.partitions import deliveries
from pipelines.resources import WarehouseDirectory


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
    def raw_source(context: dg.AssetExecutionContext, warehouse: WarehouseDirectory):
        contract = load_contract(source)
        try:
            delivery = warehouse.deliveries.get(context.partition_key)
            raw = read_source(delivery.path(source), contract)
        except (ContractError, UnknownDelivery) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        changed = changed_since_registration(delivery, source, raw.sha256)
        if changed:
            raise dg.Failure(description=changed, allow_retries=False)
        for warning in raw.warnings:
            context.log.warning(f"{raw.path.name}: {warning}")
        yield dg.Output(
            raw,
            metadata={
                **frame_metadata(raw.frame.drop(columns="source_row")),
                "path": dg.MetadataValue.path(str(raw.path)),
                "sha256": raw.sha256,
                "format": raw.format,
                **{name: str(value) for name, value in (("encoding", raw.encoding), ("delimiter", raw.delimiter)) if value},
                "contract": f"{contract.id} v{contract.version}",
            },
        )
        yield check_result(check_structure(raw, contract))

    return raw_source


raw_source_assets = [build_raw_source_asset(source) for source in SOURCES]
