"""Accounting for every delivered row: quarantine files, the data-quality record, human summaries."""

from __future__ import annotations

from pathlib import Path

from analyses.contracts.model import SOURCES, ContractError
from analyses.contracts.reading import RawSource
from analyses.contracts.validation import ValidationResult
from analyses.csv_safety import neutralise_formulas, write_csv

CHUNK_ROWS = 100_000
"""Quarantined rows of an out-of-core source held in memory at a time while writing the CSV."""


def write_quarantine(result: ValidationResult, output_dir: Path) -> Path:
    """Write ``<output_dir>/quarantine/<source>.csv``: original text, ``source_sheet`` (workbooks),
    ``source_row``, ``quarantine_reason``.

    Always written (header only when nothing was quarantined) so a stale file never survives a rerun.
    Delivered text that a spreadsheet would run as a formula is written with a leading ``'``;
    negative numbers in the contract's number columns stay as delivered.
    """
    path = Path(output_dir) / "quarantine" / f"{result.source}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    numeric = {column.name for column in result.contract.columns if column.logical_type in ("number", "integer")}
    if result.quarantine_spool is None:
        headers = [header for header in result.quarantine.columns if header.strip().lower() in numeric]
        return write_csv(result.quarantine, path, numeric_columns=headers)
    return _write_spool(result.quarantine_spool, path, numeric)


def _write_spool(spool: Path, path: Path, numeric: set[str]) -> Path:
    """Out-of-core sources: the quarantined rows spooled to Parquet, written to the CSV in chunks (then the spool goes)."""
    import pyarrow.parquet as pq

    partial = path.with_name(path.name + ".partial")
    dataset = pq.ParquetFile(spool)
    headers = [name for name in dataset.schema_arrow.names if name.strip().lower() in numeric]
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        dataset.schema_arrow.empty_table().to_pandas().to_csv(handle, index=False)
        for batch in dataset.iter_batches(batch_size=CHUNK_ROWS):
            neutralise_formulas(batch.to_pandas(), headers).to_csv(handle, index=False, header=False)
    partial.replace(path)
    spool.unlink()
    return path


def data_quality_summary(raws: dict[str, RawSource], results: dict[str, ValidationResult]) -> dict:
    """JSON-able record per source: file fingerprint, contract version and the row accounting.

    Published as is, so it names files but holds no path of the analyst's file system.
    """
    sources = {}
    for source in [name for name in SOURCES if name in results]:
        raw, result = raws[source], results[source]
        if result.rows_in != raw.rows_delivered:
            raise RuntimeError(
                f"{raw.path.name}: the validation result counts {result.rows_in} rows delivered but the file "
                f"as read has {raw.rows_delivered} ({raw.rows_delivered - raw.blank_lines_skipped} rows + "
                f"{raw.blank_lines_skipped} blank lines); "
                "the result belongs to a different delivery"
            )
        result.check_accounting()
        sources[source] = {
            "file": raw.path.name,
            "sha256": raw.sha256,
            "format": raw.format,
            "encoding": raw.encoding,
            "delimiter": raw.delimiter,
            "contract_id": result.contract.id,
            "contract_version": result.contract.version,
            "file_modified": raw.modified.isoformat() if raw.modified else None,
            "rows_in": result.rows_in,
            "rows_clean": result.rows_clean,
            "rows_quarantined": result.rows_quarantined,
            "blank_lines_skipped": result.blank_lines_skipped,
            "quarantine_share": round(result.quarantine_share, 6),
            "quarantine_threshold": result.contract.quarantine_threshold,
            "rules": dict(result.rule_counts),
            "warnings": list(result.warnings),
            "quarantine_file": f"quarantine/{source}.csv",
        }
        if result.counted_clean is not None:  # customs transactions, summed to firm, year and destination
            sources[source].update(form=result.contract.source, rows_aggregated=len(result.clean))
    return {"sources": sources}


def failure_summary(results_or_error: dict[str, ValidationResult] | ContractError) -> str:
    """A few lines a non-programmer can act on: file, column, rule, how many rows, an example, where to look."""
    if isinstance(results_or_error, ContractError):
        error = results_or_error
        lines = [f"The delivery was rejected: {error.file or 'landing directory'} cannot be used."]
        if error.column:
            lines.append(f"  Column: {error.column}")
        lines += [f"  Rule: {error.rule}", f"  Problem: {error.detail}", "  Nothing was processed; fix the file and run again."]
        return "\n".join(lines)
    lines = []
    for source, result in results_or_error.items():
        if not result.rows_quarantined:
            continue
        share = next(check for check in result.checks if check.name == "quarantine_share")
        verdict = "REJECTED: too many rows set aside" if share.blocking else "accepted without these rows"
        lines.append(
            f"{result.file or source}: {result.rows_quarantined} of {result.rows_with_data} rows quarantined "
            f"({result.quarantine_share:.1%}, limit {result.contract.quarantine_threshold:.0%}) - {verdict}. "
            f"Rows and reasons: quarantine/{source}.csv"
        )
        for failure in result.failures:
            where = f"column {', '.join(failure.columns)}" if failure.columns else "whole row"
            lines.append(
                f"  - {where}: {failure.rows} row(s), rule '{failure.group}: {failure.rule}' "
                f"(e.g. {failure.example_value!r} in {failure.example_location})"
            )
    if _cascading(results_or_error):
        lines.append(
            "Files are listed in dependency order: rows that refer to quarantined rows of an earlier file "
            "(a quarantined firm or firm-year) are set aside too, so fix the first file first."
        )
    return "\n".join(lines) if lines else "All delivered rows passed their data contracts; nothing was quarantined."


def _cascading(results: dict[str, ValidationResult]) -> bool:
    """Whether some rows fail only because the rows they refer to were themselves quarantined."""
    return any(
        failure.referenced_source in results and results[failure.referenced_source].rows_quarantined
        for result in results.values()
        for failure in result.failures
    )
