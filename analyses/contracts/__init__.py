"""Data contracts: read agency files as delivered, validate them with GX, account for every row.

Pure pandas/GX code (no Dagster). Great Expectations is imported lazily by the validation step.
"""

from analyses.contracts.model import (
    SOURCES,
    ColumnSpec,
    Contract,
    ContractError,
    RowReference,
    country_codes,
    is_eu_member,
    load_contract,
    load_contracts,
    load_countries,
)
from analyses.contracts.reading import RawSource, find_source_file, read_source
from analyses.contracts.reporting import data_quality_summary, failure_summary, write_quarantine
from analyses.contracts.validation import (
    ROW_RULE_GROUPS,
    CheckOutcome,
    GXRunner,
    RuleFailure,
    ValidationResult,
    check_structure,
    row_rule_groups,
    validate_source,
    validate_sources,
)

__all__ = [
    "SOURCES",
    "ROW_RULE_GROUPS",
    "CheckOutcome",
    "ColumnSpec",
    "Contract",
    "ContractError",
    "GXRunner",
    "RawSource",
    "RowReference",
    "RuleFailure",
    "ValidationResult",
    "check_structure",
    "country_codes",
    "data_quality_summary",
    "failure_summary",
    "find_source_file",
    "is_eu_member",
    "load_contract",
    "load_contracts",
    "load_countries",
    "read_source",
    "row_rule_groups",
    "validate_source",
    "validate_sources",
    "write_quarantine",
]
