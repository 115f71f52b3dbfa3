"""Ingestion stage: read each landing file exactly as delivered and check its structure.

The raw assets keep every cell as text (and the file's hash, format and encoding) so that the
contract stage can quarantine rows with their original values. A structural failure (missing
required column, empty file, a column wrong-typed throughout) fails the blocking ``structure``
check and nothing downstream runs; an unreadable file fails the asset with a one-line message.
"""

import dagster as dg

from analyses.contracts import SOURCES, ContractError, check_structure, find_source_file, load_contract, read_source
from assets.metadata import check_result, frame_metadata
from pipelines.resources import LandingDirectory


def build_raw_source_asset(source: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{source}",
        group_name="ingestion",
        io_manager_key="object_io_manager",
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
    def raw_source(context: dg.AssetExecutionContext, landing: LandingDirectory):
        contract = load_contract(source)
        try:
            raw = read_source(find_source_file(landing.root, source), contract)
        except ContractError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        for warning in raw.warnings:
            context.log.warning(f"{raw.path.name}: {warning}")
        yield dg.Output(
            raw,
            metadata={
                **frame_metadata(raw.frame.drop(columns="source_row")),
                "path": dg.MetadataValue.path(str(raw.path)),
                "sha256": raw.sha256,
                "format": raw.format,
                "encoding": str(raw.encoding),
                "delimiter": str(raw.delimiter),
                "contract": f"{contract.id} v{contract.version}",
            },
        )
        yield check_result(check_structure(raw, contract))

    return raw_source


raw_source_assets = [build_raw_source_asset(source) for source in SOURCES]
