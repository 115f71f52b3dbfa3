"""Data contracts as data: the YAML files in ``data_contracts/`` turned into typed objects.

The YAML follows the shape of the Open Data Contract Standard v3 (``schema[].properties``,
``logicalType``, ``logicalTypeOptions``, ``quality``, ``relationships``, ``slaProperties``,
``customProperties``) so that evaluators can read it and tools can map it; this module is
the only place that knows that layout.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

SOURCES = ("firms", "financials", "participation", "exports")
"""The four landing files, in dependency order (firms are the reference for all others)."""

TRANSACTIONS_FORM = "customs_transactions"
"""The second accepted form of ``exports``: shipment-level customs transactions, aggregated out of core."""
FORMS = {"exports": (TRANSACTIONS_FORM,)}
"""Other forms a source may be delivered in, each with its own contract named like the form."""

DEFAULT_CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "data_contracts"
LOGICAL_TYPES = ("string", "integer", "number", "date", "boolean")
DEFAULT_QUARANTINE_THRESHOLD = 0.05


class ContractError(ValueError):
    """A structural failure: the input cannot be used at all. ``str()`` is one human line."""

    def __init__(self, rule: str, detail: str, file: str | None = None, column: str | None = None):
        self.file = file
        self.column = column
        self.rule = rule
        self.detail = " ".join(detail.split())  # one line, whatever the underlying library said
        where = ", ".join(part for part in (file, f"column {column}" if column else None) if part)
        super().__init__(f"{where}: {rule}: {self.detail}" if where else f"{rule}: {self.detail}")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract: its type and the row rules its values must satisfy.

    ``zero_pad`` (YAML ``logicalTypeOptions.zeroPadTo``) is the width of a fixed-width code whose
    leading zeros a spreadsheet may have dropped; ``not_after_delivery_year``
    (``logicalTypeOptions.notAfterDeliveryYear``) caps a year column at the delivery year.
    """

    name: str
    logical_type: str
    required: bool = True
    unique: bool = False
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    valid_values: tuple[str, ...] | None = None
    valid_values_source: str | None = None
    normalise: str | None = None
    references: str | None = None
    within_panel_years_of: str | None = None
    examples: tuple[str, ...] = ()
    zero_pad: int | None = None
    not_after_delivery_year: bool = False
    #: an identifier replaced by its keyed pseudonym at ingestion (property ``customProperties: pseudonymise``)
    pseudonymise: bool = False


@dataclass(frozen=True)
class RowReference:
    """A composite foreign key: each row's ``columns`` must match ``reference_columns`` of a clean row of ``source``.

    ``reason`` is the quarantine reason a person reads; ``description`` explains the rule in the dictionary.
    """

    columns: tuple[str, ...]
    source: str
    reference_columns: tuple[str, ...]
    reason: str
    description: str = ""

    @property
    def rule_name(self) -> str:
        return "+".join(self.columns)


@dataclass(frozen=True)
class DriftMetric:
    """One measure compared between a delivery and the previous one (``customProperties.deliveryDrift``).

    ``measure`` is ``rows``, ``distinct <column>`` or ``sum <column>``; ``by`` lists the columns it is
    grouped by (``year`` is the contract's ``year_column`` read as a calendar year). A relative change
    beyond ``warn_change`` warns and beyond ``fail_change`` fails; groups with fewer than
    ``min_previous`` in the previous delivery are shown but not judged (small counts move a lot).
    """

    name: str
    measure: str
    by: tuple[str, ...] = ()
    warn_change: float = 0.10
    fail_change: float = 0.25
    min_previous: float = 0
    description: str = ""

    @property
    def column(self) -> str | None:
        """The column a ``distinct``/``sum`` measure reads; ``None`` for ``rows``."""
        return self.measure.split(" ", 1)[1] if " " in self.measure else None


@dataclass(frozen=True)
class DeliveryDrift:
    """How a source may change from one delivery to the next before someone should look."""

    year_column: str | None
    metrics: tuple[DriftMetric, ...]
    description: str = ""


@dataclass(frozen=True)
class Contract:
    """A versioned contract for one landing source."""

    id: str
    version: str
    source: str
    title: str
    owner: str
    description: str
    columns: list[ColumnSpec]
    quarantine_threshold: float = DEFAULT_QUARANTINE_THRESHOLD
    freshness: str = ""
    usage: str = ""
    limitations: str = ""
    unique_combinations: list[tuple[str, ...]] = field(default_factory=list)
    not_before: list[tuple[str, str]] = field(default_factory=list)
    no_exact_duplicates: bool = True
    row_references: list[RowReference] = field(default_factory=list)
    sheet: str | int | None = None
    path: Path | None = None
    #: every ``customProperties`` entry by name (thresholds the code reads, e.g. export coverage)
    custom_properties: dict = field(default_factory=dict)
    #: ``slaProperties.freshness`` as (value, unit), e.g. ``(3, "months")``: how often the source is delivered
    freshness_period: tuple[float, str] | None = None
    #: thresholds of the checks against the previous delivery (``customProperties.deliveryDrift``)
    drift: DeliveryDrift | None = None

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> ColumnSpec:
        return next(column for column in self.columns if column.name == name)


def _fail(path: Path, detail: str) -> ContractError:
    return ContractError("contract file", detail, file=str(path))


def _parse_column(path: Path, prop: dict) -> ColumnSpec:
    name = prop.get("name")
    logical_type = prop.get("logicalType")
    if not name or logical_type not in LOGICAL_TYPES:
        raise _fail(path, f"property {name!r} needs a name and a logicalType among {', '.join(LOGICAL_TYPES)}")
    options = prop.get("logicalTypeOptions") or {}
    valid_values, valid_values_source = None, None
    for rule in prop.get("quality") or []:
        if rule.get("rule") != "validValues":
            raise _fail(path, f"property {name}: unknown quality rule {rule.get('rule')!r}")
        if "validValues" in rule:
            valid_values = tuple(str(value) for value in rule["validValues"])
        else:
            valid_values_source = f"{rule['referenceFile']}#{rule['referenceColumn']}"
    references, panel = None, None
    for relation in prop.get("relationships") or []:
        if relation.get("type") == "foreignKey":
            references = relation["to"]
        elif relation.get("type") == "withinPanelYears":
            panel = relation["to"]
        else:
            raise _fail(path, f"property {name}: unknown relationship type {relation.get('type')!r}")
    normalise = prop.get("normalise")
    if normalise not in (None, "upper", "lower"):
        raise _fail(path, f"property {name}: normalise must be upper or lower, not {normalise!r}")
    zero_pad = options.get("zeroPadTo")
    if zero_pad is not None and (logical_type != "string" or not isinstance(zero_pad, int) or zero_pad < 1):
        raise _fail(path, f"property {name}: zeroPadTo needs a string column and a whole number of digits, not {zero_pad!r}")
    not_after_delivery_year = bool(options.get("notAfterDeliveryYear", False))
    custom = {entry.get("property"): entry.get("value") for entry in prop.get("customProperties") or []}
    if not_after_delivery_year and logical_type != "integer":
        raise _fail(path, f"property {name}: notAfterDeliveryYear applies to integer (year) columns only")
    return ColumnSpec(
        name=name,
        logical_type=logical_type,
        required=bool(prop.get("required", False)),
        unique=bool(prop.get("unique", False)),
        description=" ".join(str(prop.get("description", "")).split()),
        minimum=options.get("minimum"),
        maximum=options.get("maximum"),
        pattern=options.get("pattern"),
        valid_values=valid_values,
        valid_values_source=valid_values_source,
        normalise=normalise,
        references=references,
        within_panel_years_of=panel,
        examples=tuple(str(example) for example in prop.get("examples", [])),
        zero_pad=zero_pad,
        not_after_delivery_year=not_after_delivery_year,
        pseudonymise=bool(custom.get("pseudonymise", False)),
    )


def _parse_row_reference(path: Path, relation: dict) -> RowReference:
    """A table-level ``foreignKey`` relationship from several columns to one other source."""
    columns, targets = relation.get("from") or [], relation.get("to") or []
    if relation.get("type") != "foreignKey" or not isinstance(columns, list) or not isinstance(targets, list):
        raise _fail(path, "a table relationship must be a foreignKey with 'from' and 'to' lists")
    sources = {str(target).split(".", 1)[0] for target in targets}
    if len(columns) != len(targets) or len(sources) != 1 or not all("." in str(target) for target in targets):
        raise _fail(path, f"relationship from {columns} to {targets}: 'to' must name as many <source>.<column> as 'from' has columns, all in one source")
    if not relation.get("reason"):
        raise _fail(path, f"relationship from {columns} needs a 'reason' (the quarantine reason a person reads)")
    return RowReference(
        columns=tuple(columns),
        source=sources.pop(),
        reference_columns=tuple(str(target).split(".", 1)[1] for target in targets),
        reason=" ".join(str(relation["reason"]).split()),
        description=" ".join(str(relation.get("description", "")).split()),
    )


_DRIFT_MEASURES = ("rows", "distinct", "sum")
_FRESHNESS_UNITS = ("days", "months", "years")


def _parse_drift(path: Path, entry: dict | None, columns: set[str]) -> DeliveryDrift | None:
    """``customProperties.deliveryDrift``: the year column and the measures compared between deliveries."""
    if entry is None:
        return None
    value = entry.get("value") or {}
    year_column = value.get("yearColumn")
    if year_column is not None and year_column not in columns:
        raise _fail(path, f"deliveryDrift: yearColumn {year_column!r} is not a column of the contract")
    metrics = []
    for item in value.get("metrics") or []:
        name, measure = item.get("name"), str(item.get("measure", ""))
        kind, _, column = measure.partition(" ")
        if not name or kind not in _DRIFT_MEASURES or (kind == "rows") != (not column):
            raise _fail(path, f"deliveryDrift metric {name!r}: measure must be rows, distinct <column> or sum <column>, not {measure!r}")
        by = tuple(item.get("by") or ())
        unknown = [c for c in (column, *by) if c and c not in columns and not (c == "year" and year_column)]
        if unknown:
            raise _fail(path, f"deliveryDrift metric {name}: unknown column(s) {', '.join(unknown)}")
        warn, fail = float(item.get("warnChange", 0.10)), float(item.get("failChange", 0.25))
        if not 0 <= warn <= fail:
            raise _fail(path, f"deliveryDrift metric {name}: need 0 <= warnChange <= failChange, got {warn} and {fail}")
        metrics.append(DriftMetric(
            name=name, measure=measure, by=by, warn_change=warn, fail_change=fail,
            min_previous=float(item.get("minPrevious", 0)), description=" ".join(str(item.get("description", "")).split()),
        ))
    return DeliveryDrift(year_column, tuple(metrics), " ".join(str(entry.get("description", "")).split()))


def _freshness_period(path: Path, freshness: dict) -> tuple[float, str] | None:
    if not freshness:
        return None
    if freshness.get("unit") not in _FRESHNESS_UNITS or not isinstance(freshness.get("value"), (int, float)):
        raise _fail(path, f"slaProperties freshness needs a number value and a unit among {', '.join(_FRESHNESS_UNITS)}")
    return float(freshness["value"]), freshness["unit"]


def load_contract(source: str, contracts_dir: Path | None = None) -> Contract:
    """Read ``<contracts_dir>/<source>.yaml`` into a :class:`Contract` (defaults to the repo's)."""
    path = Path(contracts_dir or DEFAULT_CONTRACTS_DIR) / f"{source}.yaml"
    if not path.is_file():
        raise ContractError("contract file", f"no contract for source {source!r} (looked for {path})")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [key for key in ("id", "version", "schema") if key not in document]
    if missing:
        raise _fail(path, f"missing top-level key(s) {', '.join(missing)}")
    (table,) = document["schema"]
    custom_entries = {entry["property"]: entry for entry in document.get("customProperties") or []}
    custom = {name: entry.get("value") for name, entry in custom_entries.items()}
    sla = {entry["property"]: entry for entry in document.get("slaProperties") or []}
    freshness = sla.get("freshness", {})
    description = document.get("description") or {}
    unique_combinations, not_before, no_exact_duplicates = [], [], False
    for rule in table.get("quality") or []:
        kind = rule.get("rule")
        if kind == "uniqueCombination":
            unique_combinations.append(tuple(rule["columns"]))
        elif kind == "notBefore":
            not_before.append((rule["column"], rule["other"]))
        elif kind == "noExactDuplicateRows":
            no_exact_duplicates = True
        else:
            raise _fail(path, f"unknown table quality rule {kind!r}")
    contract = Contract(
        id=str(document["id"]),
        version=str(document["version"]),
        source=table.get("physicalName", source),
        title=str(document.get("name", source)),
        owner=str(document.get("owner", "")),
        description=" ".join(str(description.get("purpose", "")).split()),
        usage=" ".join(str(description.get("usage", "")).split()),
        limitations=" ".join(str(description.get("limitations", "")).split()),
        columns=[_parse_column(path, prop) for prop in table["properties"]],
        quarantine_threshold=float(custom.get("quarantineThreshold", DEFAULT_QUARANTINE_THRESHOLD)),
        freshness=(
            f"{freshness['value']} {freshness['unit']}: {freshness.get('description', '')}".strip()
            if freshness
            else ""
        ),
        unique_combinations=unique_combinations,
        not_before=not_before,
        no_exact_duplicates=no_exact_duplicates,
        row_references=[_parse_row_reference(path, relation) for relation in table.get("relationships") or []],
        sheet=custom.get("sheet"),
        path=path,
        custom_properties=custom,
        freshness_period=_freshness_period(path, freshness),
        drift=_parse_drift(path, custom_entries.get("deliveryDrift"), {p.get("name") for p in table["properties"]}),
    )
    if contract.source != source:
        raise _fail(path, f"schema physicalName {contract.source!r} does not match source {source!r}")
    names = set(contract.column_names)
    for first, second in contract.not_before:
        if {first, second} - names:
            raise _fail(path, f"notBefore rule names unknown column(s) {first}, {second}")
    for combination in contract.unique_combinations:
        if set(combination) - names:
            raise _fail(path, f"uniqueCombination names unknown column(s) {combination}")
    for reference in contract.row_references:
        if set(reference.columns) - names:
            raise _fail(path, f"relationship names unknown column(s) {reference.columns}")
    return contract


def load_contracts(contracts_dir: Path | None = None) -> dict[str, Contract]:
    """All four contracts, in :data:`SOURCES` order."""
    return {source: load_contract(source, contracts_dir) for source in SOURCES}


@lru_cache(maxsize=4)
def _countries(path: Path) -> tuple[tuple[str, str, int | None, int | None], ...]:
    with path.open(encoding="utf-8", newline="") as handle:
        return tuple(
            (
                row["iso2"],
                row["name"],
                int(row["eu_member_from"]) if row["eu_member_from"] else None,
                int(row["eu_member_until"]) if row["eu_member_until"] else None,
            )
            for row in csv.DictReader(handle)
        )


def load_countries(contracts_dir: Path | None = None):
    """The ISO 3166-1 alpha-2 reference list with EU membership years, as a DataFrame.

    ``eu_member_from`` is the year of accession; ``eu_member_until`` the year of leaving
    (the country counts as non-EU from that year on, e.g. GB from 2021: the single market ended on 31 December 2020); empty means never/still.
    """
    import pandas as pd

    rows = _countries(Path(contracts_dir or DEFAULT_CONTRACTS_DIR) / "countries.csv")
    frame = pd.DataFrame(rows, columns=["iso2", "name", "eu_member_from", "eu_member_until"])
    for column in ("eu_member_from", "eu_member_until"):
        frame[column] = frame[column].astype("Int64")
    return frame


def is_eu_member(iso2: str, year: int, contracts_dir: Path | None = None) -> bool:
    """Whether ``iso2`` belonged to the EU in calendar ``year`` (GB: up to 2020; HR: from 2013)."""
    rows = _countries(Path(contracts_dir or DEFAULT_CONTRACTS_DIR) / "countries.csv")
    code = iso2.strip().upper()
    for iso, _name, member_from, member_until in rows:
        if iso == code:
            return member_from is not None and member_from <= year and (member_until is None or year < member_until)
    raise ValueError(f"{iso2!r} is not an ISO 3166-1 alpha-2 code in countries.csv")


def country_codes(contracts_dir: Path | None = None) -> frozenset[str]:
    """All officially assigned ISO 3166-1 alpha-2 codes from the reference list."""
    return frozenset(row[0] for row in _countries(Path(contracts_dir or DEFAULT_CONTRACTS_DIR) / "countries.csv"))
