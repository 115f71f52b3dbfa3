"""Generate the human-readable data dictionary (Markdown) from the data contracts.

Run ``python -m analyses.contracts.dictionary > data_contracts/DATA_DICTIONARY.md``
(``make data-dictionary``); a test keeps the committed file in step with the contracts.
"""

from __future__ import annotations

import csv
import sys

from analyses.contracts.model import (
    DEFAULT_CONTRACTS_DIR,
    FORMS,
    ColumnSpec,
    Contract,
    country_codes,
    load_contract,
    load_contracts,
)

_TYPE_NAMES = {
    "string": "text",
    "integer": "whole number (thousands separators allowed, decided per column)",
    "number": "number (decimal point or comma, decided per column; thousands separators allowed)",
    "date": "date (YYYY-MM-DD or DD.MM.YYYY)",
    "boolean": "yes/no (true/false, yes/no, 1/0)",
}


def _rules(column: ColumnSpec) -> str:
    rules = []
    if column.pseudonymise:
        rules.append("replaced at ingestion by its keyed pseudonym (HMAC-SHA256): stored, logged and published only as `p` + 24 hex digits")
    if column.unique:
        rules.append("unique")
    if column.minimum is not None:
        rules.append(f"≥ {column.minimum:g}")
    if column.maximum is not None:
        rules.append(f"≤ {column.maximum:g}")
    if column.not_after_delivery_year:
        rules.append("≤ the delivery year (year of the file's last-modification date)")
    if column.zero_pad:
        rules.append(f"digits-only values shorter than {column.zero_pad} get leading zeros (`1` or `1.0` → `{'1'.zfill(column.zero_pad)}`)")
    if column.pattern:
        rules.append(f"pattern `{column.pattern}`")
    if column.valid_values:
        rules.append("one of " + ", ".join(f"`{value}`" for value in column.valid_values))
    if column.valid_values_source:
        rules.append(f"code listed in `{column.valid_values_source.split('#')[0]}`")
    if column.normalise:
        rules.append(f"read as {column.normalise} case")
    if column.references:
        rules.append(f"must exist in `{column.references}`")
    if column.within_panel_years_of:
        rules.append(f"year inside the panel years of `{column.within_panel_years_of}`")
    return "; ".join(rules) or "—"


def _codes(file_name: str, column: str) -> list[str]:
    with (DEFAULT_CONTRACTS_DIR / file_name).open(encoding="utf-8", newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def _section(contract: Contract) -> list[str]:
    lines = [
        f"## `{contract.source}` — {contract.title}",
        "",
        f"- **Contract:** `{contract.id}`, version **{contract.version}** (`data_contracts/{contract.source}.yaml`)",
        f"- **Owner:** {contract.owner}",
        f"- **Freshness:** {contract.freshness or '—'}"
        + (f" (the `freshness` check of `raw_{contract.source}` warns when the newest delivery is older)" if contract.freshness else ""),
        f"- **Quarantine threshold:** {contract.quarantine_threshold:.0%} of delivered rows "
        "(above it the whole delivery is rejected)",
        "",
        contract.description,
        "",
    ]
    if contract.usage:
        lines += [f"*Use in the evaluation:* {contract.usage}", ""]
    if contract.limitations:
        lines += [f"*Limitations:* {contract.limitations}", ""]
    lines += [
        "| Column | Type | Must be filled | Rules | Meaning | Examples |",
        "|---|---|---|---|---|---|",
    ]
    for column in contract.columns:
        examples = ", ".join(f"`{example}`" for example in column.examples if example) or "—"
        lines.append(
            f"| `{column.name}` | {_TYPE_NAMES[column.logical_type]} | {'yes' if column.required else 'no'} "
            f"| {_rules(column)} | {column.description} | {examples} |"
        )
    lines += _drift_lines(contract)
    table_rules = []
    if contract.no_exact_duplicates:
        table_rules.append("A row repeated identically is a delivery error: the first copy is kept, the others quarantined.")
    for combination in contract.unique_combinations:
        table_rules.append(
            f"Only one row per {' and '.join(f'`{c}`' for c in combination)}: conflicting rows are all quarantined."
        )
    for later, earlier in contract.not_before:
        table_rules.append(f"`{later}` must not be before `{earlier}`.")
    for reference in contract.row_references:
        pairs = " and ".join(f"`{c}`" for c in reference.columns)
        targets = ", ".join(f"`{reference.source}.{c}`" for c in reference.reference_columns)
        table_rules.append(
            f"{pairs} together must match a clean row of {targets}; otherwise the row is quarantined as "
            f"\"{reference.reason}\". {reference.description}".rstrip()
        )
    if table_rules:
        lines += ["", "Row rules across columns:", ""] + [f"- {rule}" for rule in table_rules]
    lines.append("")
    return lines


def _drift_lines(contract: Contract) -> list[str]:
    """The ``deliveryDrift`` thresholds: what a new delivery may change against the previous one."""
    if contract.drift is None or not contract.drift.metrics:
        return []
    lines = ["", "Checks against the previous delivery: " + contract.drift.description, "",
             "| Check | Measure | By | Warn above | Fail above | Groups not judged below | Meaning |",
             "|---|---|---|---|---|---|---|"]
    for metric in contract.drift.metrics:
        year = f"year (of `{contract.drift.year_column}`)" if contract.drift.year_column else "year"
        by = ", ".join(year if c == "year" else f"`{c}`" for c in metric.by) or "—"
        lines.append(
            f"| `drift_{metric.name}` | `{metric.measure}` | {by} | {metric.warn_change:.0%} | {metric.fail_change:.0%} "
            f"| {f'{metric.min_previous:g}' if metric.min_previous else '—'} | {metric.description} |"
        )
    return lines


def render(contracts: dict[str, Contract] | None = None) -> str:
    """The whole dictionary as Markdown."""
    contracts = contracts or load_contracts()
    lines = [
        "# Data dictionary",
        "",
        "<!-- Generated by `python -m analyses.contracts.dictionary` from data_contracts/*.yaml; do not edit by hand. -->",
        "",
        "The agency delivers four files in one landing folder, each as `.csv` (`,` or `;` separated, UTF-8 or "
        "Windows-1252), `.xlsx` (every sheet with data, all with the same header row; empty sheets are ignored) or "
        "`.parquet`: "
        + ", ".join(f"`{source}`" for source in contracts)
        + ". Extra columns are kept. Every delivered row ends up either in the clean tables used by the "
        "evaluation or in `quarantine/<source>.csv` with the reason; `data_quality.json` accounts for both.",
        "",
        "A file that cannot be read, has no data rows, lacks a column below, names a column twice (also when "
        "the names differ only in letter case or surrounding spaces), has sheets with different header rows or "
        "has a column that cannot be read as its type in any row is rejected as a whole. A single row that breaks "
        "a rule is set aside (quarantined, with its sheet and row number) and the rest goes on, unless more rows "
        "than the threshold are set aside.",
        "",
        "Numbers: whether `.` or `,` is the decimal mark is decided for each column from all its values "
        "(`1.234.567,89` shows a decimal comma, `1,234,567.89` or `12.5` a decimal point; the convention more "
        "values show wins). A value such as `48.200` or `1,500` reads both ways; in a column whose other values do "
        "not decide the convention it is quarantined (rule `types.<column>.number_format`), never guessed. Cells "
        "that Excel or Parquet stored as numbers are read as stored.",
        "",
        "To change a rule, edit the contract in `data_contracts/<source>.yaml`, raise its `version` (the version "
        "is recorded in `data_quality.json` and in the report) and regenerate this page with `make data-dictionary`. "
        "Versions are semantic: the **major** number changes when the file layout agencies deliver changes (a "
        "required column added, removed, renamed or retyped), the **minor** number when a row rule is added, "
        "tightened or relaxed (the same file may then have other rows quarantined), the **patch** number for "
        "wording only.",
        "",
    ]
    for contract in contracts.values():
        lines += _section(contract)
    lines += [
        "## Exports as customs transactions",
        "",
        "Instead of `exports`, the landing folder may hold shipment-level customs transactions: a file "
        "`customs_transactions.csv` or `customs_transactions.csv.gz` (`,` or `;` separated, UTF-8, one shipment per "
        "line), or a folder `customs_transactions/` of Parquet files (the name tells the form; both forms at once are "
        "refused). DuckDB reads them out of core into the delivery's restricted folder (identifiers already "
        "pseudonymised), runs the rules below in SQL, writes quarantined shipments to `quarantine/exports.csv` in chunks "
        "(with `source_row`, and `source_file` for a Parquet folder) and sums the clean ones to one row per firm, year "
        "(of `date`) and destination: `firm_id`, `year`, `destination`, `export_value_eur` (sum of `value_eur`) and "
        "`transactions` (shipments). That table takes the place of the exports file; `data_quality.json` counts "
        "shipments (`rows_in = rows_clean + rows_quarantined + blank_lines_skipped`) and adds `form` and "
        "`rows_aggregated`.",
        "",
    ]
    for forms in FORMS.values():
        for form in forms:
            lines += _section(load_contract(form))
    lines += _panel_section()
    lines += [
        "## Reference list: `countries.csv`",
        "",
        f"{len(country_codes())} officially assigned ISO 3166-1 alpha-2 codes with their English names and EU "
        "membership: `eu_member_from` is the year of accession, `eu_member_until` the year from which the "
        "country no longer counts as a member. The United Kingdom has 2021: it left the EU on 31 January 2020 "
        "but stayed in the single market and customs union until 31 December 2020, so its exports count as EU "
        "through 2020. Used to check destinations and to split exports into EU and non-EU.",
        "",
        "## Reference list: `nuts2_2021.csv`",
        "",
        f"{len(_codes('nuts2_2021.csv', 'nuts2'))} NUTS-2 codes of the NUTS 2021 classification (Eurostat): the 242 "
        "regions of the EU-27 and the statistical regions of the EFTA and candidate countries, with their "
        "country code and name. Used to check `firms.region`. Written by hand without access to Eurostat's "
        "file; see `nuts2_2021.PROVENANCE.md` for how it was checked and what to compare it with.",
        "",
    ]
    return "\n".join(lines)


def _panel_section() -> list[str]:
    """The firm-year panel's columns (``analyses.panel.PANEL_COLUMNS``): what the evaluation estimates on."""
    from analyses.panel import LOOKBACK_YEARS, PANEL_COLUMNS

    return [
        "## The firm-year panel (`firm_year_panel`)",
        "",
        "Not a delivery contract: the table `analyses/panel.py` builds from the four clean tables, one row per "
        "firm and accounts year. The evaluation plan picks its `outcomes` and `covariates` from these columns. "
        f"k is the plan's `lookback_years` (default {LOOKBACK_YEARS}); \"served\" means a positive summed export "
        "value. Export columns are missing in years the customs extract does not cover.",
        "",
        "| column | definition |",
        "|---|---|",
        *(f"| `{column}` | {definition} |" for column, definition in PANEL_COLUMNS.items()),
        "",
    ]


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
