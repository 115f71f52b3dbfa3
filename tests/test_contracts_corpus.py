"""Bad-input corpus: each case alters one file of a valid landing folder and states the exact outcome.

Blocked cases assert the structural rule, the file and the one-line message; quarantine cases assert
the row accounting (rows in = clean + quarantined + blank lines skipped), the count of every rule and the reason written
next to the original values; accepted-format cases assert the values that reach the clean tables.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyses.contracts import ContractError, failure_summary, write_quarantine
from analyses.contracts.reading import LOCATION_COLUMNS
from analyses.csv_safety import FORMULA_TRIGGERS
from tests.contract_landing import run_contracts, valid_tables, write_landing

DELIVERED = {"firms": 40, "financials": 160, "participation": 30, "exports": 80}


@dataclass
class Blocked:
    file: str | None
    rule: str
    message: str
    column: str | None = None


@dataclass
class Quarantined:
    """Expected rule counts per source (all other rules must count 0) and a reason per source.

    ``quarantined`` gives the quarantined row count where rows break several rules at once
    (otherwise it is the sum of the rule counts).
    """

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    blocking: tuple[str, ...] = ()
    delivered: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    check: Callable[[dict, dict], None] | None = None


def _undo_formula_prefix(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" and cell[1:2] in FORMULA_TRIGGERS else cell


def _csv(directory: Path, source: str, text: str) -> None:
    for stale in directory.glob(f"{source}.*"):
        stale.unlink()
    (directory / f"{source}.csv").write_text(text, encoding="utf-8")


def _table(directory: Path, source: str, table: pd.DataFrame, **to_csv) -> None:
    for stale in directory.glob(f"{source}.*"):
        stale.unlink()
    table.to_csv(directory / f"{source}.csv", index=False, **to_csv)


def _with(source: str, edit: Callable[[pd.DataFrame], pd.DataFrame | None]):
    """A case that edits one table of the valid folder and writes it back as CSV."""

    def apply(directory: Path) -> None:
        table = valid_tables()[source]
        changed = edit(table)
        _table(directory, source, table if changed is None else changed)

    return apply


def _set(source: str, row: int, column: str, value: str):
    def edit(table: pd.DataFrame) -> None:
        table.loc[row, column] = value

    return _with(source, edit)


def _assert_values(source: str, column: str, expected: list):
    def check(raws: dict, results: dict) -> None:
        assert results[source].clean[column].head(len(expected)).tolist() == expected

    return check


def _assert_tail(source: str, column: str, expected: list):
    def check(raws: dict, results: dict) -> None:
        assert results[source].clean[column].tail(len(expected)).tolist() == expected

    return check


def _assert_warning(source: str, text: str):
    def check(raws: dict, results: dict) -> None:
        assert any(text in warning for warning in results[source].warnings), results[source].warnings

    return check


def _assert_blank_lines(source: str, count: int):
    def check(raws: dict, results: dict) -> None:
        assert results[source].blank_lines_skipped == raws[source].blank_lines_skipped == count

    return check


def _assert_summary(text: str):
    def check(raws: dict, results: dict) -> None:
        assert text in failure_summary(results)

    return check


def _remove(source: str):
    def apply(directory: Path) -> None:
        (directory / f"{source}.csv").unlink()

    return apply


def _rename(source: str, new_name: str):
    def apply(directory: Path) -> None:
        (directory / f"{source}.csv").rename(directory / new_name)

    return apply


def _excel(source: str):
    def apply(directory: Path) -> None:
        (directory / f"{source}.csv").unlink()
        valid_tables()[source].to_excel(directory / f"{source}.xlsx", index=False)

    return apply


def _parquet_exports(directory: Path) -> None:
    (directory / "exports.csv").unlink()
    table = valid_tables()["exports"]
    table["year"] = table["year"].astype("int64")
    table["export_value_eur"] = table["export_value_eur"].astype("float64")
    table.to_parquet(directory / "exports.parquet", index=False)


def _semicolon_decimal_comma(directory: Path) -> None:
    table = valid_tables()["financials"]
    table["turnover_eur"] = [f"{1_250_000 + i}.{i % 100:02d}" for i in range(len(table))]
    table["turnover_eur"] = table["turnover_eur"].map(lambda v: f"{int(float(v)):,}".replace(",", ".") + "," + v.split(".")[1])
    _table(directory, "financials", table, sep=";")


def _thousands_separators(directory: Path) -> None:
    table = valid_tables()["exports"]
    table.loc[0, "export_value_eur"] = "1,234,567.89"
    table.loc[1, "export_value_eur"] = "12 500"
    _table(directory, "exports", table)


def _cp1252_firms(directory: Path) -> None:
    table = valid_tables()["firms"]
    table["name"] = [f"Müller & Söhne Nr. {i} – Café" for i in range(len(table))]
    _table(directory, "firms", table, encoding="cp1252")


def _bom_firms(directory: Path) -> None:
    _table(directory, "firms", valid_tables()["firms"], encoding="utf-8-sig")


def _mixed_dates(table: pd.DataFrame) -> None:
    table.loc[0, "start_date"] = "2018-03-01"
    table.loc[1, "start_date"] = "1.3.2018"
    table.loc[2, "start_date"] = "2018-03-01 00:00:00"
    table.loc[3, "start_date"] = "01.03.2018"


def _other_case_headers(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"firm_id": "FIRM_ID", "year": " Year "})


def _duplicate_episode(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table.iloc[[4]]], ignore_index=True)


def _conflicting_firm_year(table: pd.DataFrame) -> pd.DataFrame:
    conflict = table.iloc[[0]].assign(turnover_eur="999.00")
    return pd.concat([table, conflict], ignore_index=True)


def _duplicate_firm(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table.iloc[[39]].assign(nace2="28")], ignore_index=True)


def _customs_for_unknown_firm(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, pd.DataFrame([{"firm_id": "99999", "year": "2019", "destination": "DE", "export_value_eur": "10"}])], ignore_index=True)


def _two_negative_grants(table: pd.DataFrame) -> None:
    table.loc[[2, 5], "grant_eur"] = "-100"


def _wrong_type_throughout(table: pd.DataFrame) -> None:
    table["turnover_eur"] = "confidential"


def _ragged(directory: Path) -> None:
    text = (directory / "exports.csv").read_text()
    lines = text.splitlines()
    lines[6] += ",EXTRA,FIELDS"
    _csv(directory, "exports", "\n".join(lines) + "\n")


def _blank_lines(directory: Path) -> None:
    lines = (directory / "exports.csv").read_text().splitlines()
    _csv(directory, "exports", "\n".join(lines[:4] + ["", ",,,"] + lines[4:] + ["", ""]) + "\n")


def _decimal_comma_unquoted(directory: Path) -> None:
    lines = (directory / "financials.csv").read_text().splitlines()
    lines[3] = lines[3].replace(".50", ",50")
    _csv(directory, "financials", "\n".join(lines) + "\n")


def _trailing_delimiters(directory: Path) -> None:
    table = valid_tables()["financials"]
    lines = table.to_csv(index=False, sep=";").splitlines()
    _csv(directory, "financials", "\n".join(line + ";" for line in lines) + "\n")


def _excel_renamed_csv(directory: Path) -> None:
    buffer = io.BytesIO()
    valid_tables()["firms"].to_excel(buffer, index=False)
    (directory / "firms.csv").write_bytes(buffer.getvalue())


def _xlsx(source: str, sheets: dict[str, pd.DataFrame]) -> Callable[[Path], None]:
    """Replace a source by a workbook with the given sheets (an empty frame writes an empty sheet)."""

    def apply(directory: Path) -> None:
        for stale in directory.glob(f"{source}.*"):
            stale.unlink()
        with pd.ExcelWriter(directory / f"{source}.xlsx") as writer:
            for name, table in sheets.items():
                table.to_excel(writer, sheet_name=name, index=False, header=not table.empty)

    return apply


def _exports_on_two_sheets(spoil_second: bool = False) -> Callable[[Path], None]:
    """Exports split over two year sheets with an empty sheet between them, as agencies send customs extracts."""
    table = valid_tables()["exports"]
    first, second = table.iloc[:40].copy(), table.iloc[40:].reset_index(drop=True)
    if spoil_second:
        second.loc[2, "export_value_eur"] = "-5"
    return _xlsx("exports", {"2017-2018": first, "Notes": pd.DataFrame(), "2019-2020": second})


def _second_sheet_other_header(directory: Path) -> None:
    table = valid_tables()["exports"]
    other = table.iloc[40:].rename(columns={"export_value_eur": "value"}).assign(unit="EUR")
    _xlsx("exports", {"A": table.iloc[:40], "B": other})(directory)


def _values_in_column(source: str, column: str, values: dict[int, str], sep: str = ",") -> Callable[[Path], None]:
    """Set some cells of one column (as text) and write the table with the given delimiter."""

    def apply(directory: Path) -> None:
        table = valid_tables()[source]
        for row, value in values.items():
            table.loc[row, column] = value
        _table(directory, source, table, sep=sep)

    return apply


def _thousands_as_text_in_xlsx(directory: Path) -> None:
    """Excel numbers are unambiguous; a value typed as text '48.200' is not, and nothing else decides it."""
    table = valid_tables()["exports"]
    values = table["export_value_eur"].astype(float).astype(object)
    values[4] = "48.200"
    _xlsx("exports", {"Sheet1": table.assign(export_value_eur=values)})(directory)


def _numbers_from_xlsx_and_parquet_cells(directory: Path) -> None:
    """Native numbers (Excel cells, Parquet doubles) carry no separator evidence: 2.125 stays 2.125."""
    table = valid_tables()["participation"]
    hours = pd.to_numeric(table["advisory_hours"]).astype(object)
    hours[0] = 2.125
    _xlsx("participation", {"Sheet1": table.assign(advisory_hours=hours)})(directory)
    exports = valid_tables()["exports"].assign(export_value_eur=lambda t: t["export_value_eur"].astype(float))
    exports.loc[0, "export_value_eur"] = 1.5
    exports.loc[1, "export_value_eur"] = 48.2
    (directory / "exports.csv").unlink()
    exports.to_parquet(directory / "exports.parquet", index=False)


def _header_twice(source: str, column: str, second: str) -> Callable[[Path], None]:
    """A header naming ``column`` twice (the second spelled ``second``), in a CSV file."""

    def apply(directory: Path) -> None:
        table = valid_tables()[source]
        lines = table.assign(__copy=table[column]).to_csv(index=False).splitlines()
        lines[0] = lines[0].replace("__copy", second)
        _csv(directory, source, "\n".join(lines) + "\n")

    return apply


def _xlsx_header_twice(directory: Path) -> None:
    table = valid_tables()["exports"]
    doubled = pd.concat([table, table[["export_value_eur"]]], axis=1)
    _xlsx("exports", {"Sheet1": doubled})(directory)


def _parquet_header_twice(directory: Path) -> None:
    table = valid_tables()["exports"]
    (directory / "exports.csv").unlink()
    columns = [pa.array(table[c]) for c in table.columns] + [pa.array(table["export_value_eur"])]
    pq.write_table(pa.table(columns, names=[*table.columns, "EXPORT_VALUE_EUR"]), directory / "exports.parquet")


def _nace_as_excel_numbers(directory: Path) -> None:
    table = valid_tables()["firms"]
    _xlsx("firms", {"Sheet1": table.assign(nace2=table["nace2"].astype(int))})(directory)


def _nace_as_parquet_ints(directory: Path) -> None:
    table = valid_tables()["firms"]
    (directory / "firms.csv").unlink()
    table.assign(nace2=table["nace2"].astype("int64")).to_parquet(directory / "firms.parquet", index=False)


def _firms_delivered_in(year: int, founded: dict[int, str]) -> Callable[[Path], None]:
    """Firms whose file was written in ``year`` (its modification date), some founded later."""

    def apply(directory: Path) -> None:
        table = valid_tables()["firms"]
        for row, value in founded.items():
            table.loc[row, "founded_year"] = value
        _table(directory, "firms", table)
        stamp = pd.Timestamp(f"{year}-06-30T12:00:00Z").timestamp()
        os.utime(directory / "firms.csv", (stamp, stamp))

    return apply


def _crafted_formulas(directory: Path) -> None:
    """Delivered text that a spreadsheet would run: it must reach the quarantine file defused."""
    participation = valid_tables()["participation"]
    participation.loc[2, "programme"] = '=HYPERLINK("http://x","y")'
    participation.loc[2, "grant_eur"] = "-100"
    participation.loc[5, "firm_id"] = "@SUM(A1)"
    participation.loc[5, "programme"] = "+cmd|' /C calc'!A0"
    _table(directory, "participation", participation)


def _assert_quarantine_text(source: str, expected: dict[str, list[str]]):
    """The quarantine file as a spreadsheet would open it: these columns hold exactly these cells."""

    def check(raws: dict, results: dict) -> None:
        with tempfile.TemporaryDirectory() as output:
            written = pd.read_csv(write_quarantine(results[source], Path(output)), dtype=str, keep_default_na=False)
        for column, values in expected.items():
            assert written[column].tolist() == values, (column, written[column].tolist())

    return check


def _assert_location(source: str, locations: list[tuple[str, int]]):
    def check(raws: dict, results: dict) -> None:
        quarantine = results[source].quarantine
        assert list(zip(quarantine["source_sheet"], quarantine["source_row"])) == locations
        assert all(f"sheet '{sheet}' row {row}" in failure_summary(results) for sheet, row in locations[:1])

    return check


CASES: dict[str, tuple[Callable[[Path], None], Blocked | Quarantined]] = {
    # --- file-level failures: nothing downstream runs -----------------------------------------------
    "missing_file": (_remove("exports"), Blocked(None, "file present", "no exports.csv, exports.parquet or exports.xlsx "
                                                       "(or customs_transactions.csv, customs_transactions.csv.gz or a "
                                                       "folder customs_transactions/ of Parquet files) in")),
    "unsupported_format": (_rename("exports", "exports.json"), Blocked("exports.json", "file format", "found exports.json in")),
    "legacy_xls": (_rename("firms", "firms.xls"), Blocked("firms.xls", "file format", "expected firms.csv, firms.parquet or firms.xlsx")),
    "empty_file": (lambda d: _csv(d, "participation", ""), Blocked("participation.csv", "file not empty", "the file is empty (no header row)")),
    "header_only": (
        lambda d: _csv(d, "financials", "firm_id,year,employees,turnover_eur\n"),
        Blocked("financials.csv", "not empty", "header only: found column names but no data rows"),
    ),
    "missing_required_column": (
        _with("financials", lambda t: t.drop(columns="turnover_eur")),
        Blocked("financials.csv", "required columns", "missing turnover_eur; found columns firm_id, year, employees", "turnover_eur"),
    ),
    "wrong_column_names": (
        _with("firms", lambda t: t.rename(columns={"firm_id": "firmid", "nace2": "nace"})),
        Blocked("firms.csv", "required columns", "missing firm_id, nace2; found columns firmid, nace, region", "firm_id"),
    ),
    "column_wrong_type_throughout": (
        _with("financials", _wrong_type_throughout),
        Blocked("financials.csv", "column type", "none of the 160 values can be read as a number (e.g. 'confidential' in row 2)", "turnover_eur"),
    ),
    "tab_delimited": (
        lambda d: _table(d, "exports", valid_tables()["exports"], sep="\t"),
        Blocked("exports.csv", "delimiter", "found tab-separated columns; expected ',' or ';'"),
    ),
    "utf16_encoding": (
        lambda d: _table(d, "firms", valid_tables()["firms"], encoding="utf-16"),
        Blocked("firms.csv", "encoding", "found UTF-16 text; expected UTF-8 or Windows-1252"),
    ),
    "undecodable_bytes": (
        lambda d: (d / "firms.csv").write_bytes((d / "firms.csv").read_bytes() + b"00999,01,AT13,1999,\x81\n"),
        Blocked("firms.csv", "encoding", "is neither UTF-8 nor Windows-1252"),
    ),
    "excel_saved_as_csv": (_excel_renamed_csv, Blocked("firms.csv", "file format", "found a zip/Excel workbook saved under a .csv name")),
    "corrupt_parquet": (
        lambda d: ((d / "exports.csv").unlink(), (d / "exports.parquet").write_bytes(b"PAR1 truncated")),
        Blocked("exports.parquet", "file format", "not a readable Parquet file"),
    ),
    "ragged_csv_row": (_ragged, Blocked("exports.csv", "csv layout", "Expected 4 fields in line 7, saw 6")),
    "decimal_comma_in_comma_separated_file": (
        _decimal_comma_unquoted,
        Blocked("financials.csv", "csv layout", "Expected 4 fields in line 4, saw 5; expected the same number of fields on every line"),
    ),
    # --- row-level failures: the row is quarantined, the rest flows on -----------------------------
    "negative_export_value": (
        _set("exports", 3, "export_value_eur", "-250"),
        Quarantined({"exports": {"ranges.export_value_eur": 1}}, {"exports": "ranges: export_value_eur must be >= 0"}),
    ),
    "customs_row_for_unknown_firm": (
        _with("exports", _customs_for_unknown_firm),
        Quarantined({"exports": {"referential_integrity.firm_id": 1, "referential_integrity.firm_id+year": 1}},
                    {"exports": "referential_integrity: firm_id not in firms"}, delivered={"exports": 81}, quarantined={"exports": 1}),
    ),
    "invalid_date": (
        _set("participation", 7, "start_date", "2019-02-30"),
        Quarantined({"participation": {"types.start_date": 1}}, {"participation": "types: start_date must be a date (YYYY-MM-DD or DD.MM.YYYY)"}),
    ),
    "invalid_country_code": (
        _set("exports", 10, "destination", "UK"),
        Quarantined({"exports": {"allowed_values.destination": 1}}, {"exports": "allowed_values: destination must be a code listed in countries.csv"}),
    ),
    "duplicated_episode": (
        _with("participation", _duplicate_episode),
        Quarantined({"participation": {"uniqueness.exact_duplicate_row": 1}},
                    {"participation": "uniqueness: row is an exact duplicate of an earlier row"}, delivered={"participation": 31}),
    ),
    "conflicting_firm_year": (
        _with("financials", _conflicting_firm_year),
        Quarantined({"financials": {"uniqueness.firm_id+year": 2}}, {"financials": "uniqueness: only one row allowed per firm_id and year"},
                    delivered={"financials": 161}),
    ),
    "end_before_start": (
        _set("participation", 1, "end_date", "2018-02-01"),
        Quarantined({"participation": {"date_order.end_date": 1}}, {"participation": "date_order: end_date must not be before start_date"}),
    ),
    "export_row_without_accounts": (
        _with("financials", lambda t: t.drop(index=1)),  # firm 00000 has no accounts for 2018 but exported then
        Quarantined({"exports": {"referential_integrity.firm_id+year": 1}},
                    {"exports": "referential_integrity: no annual accounts (financials) for this firm and year"},
                    delivered={"financials": 159}),
    ),
    "export_year_outside_panel": (
        _set("exports", 0, "year", "2025"),
        Quarantined({"exports": {"panel_years.year": 1, "referential_integrity.firm_id+year": 1}},
                    {"exports": "panel_years: year outside the panel years of financials (2017-2020)"}, quarantined={"exports": 1}),
    ),
    "unknown_service": (
        _set("participation", 0, "service", "coaching"),
        Quarantined({"participation": {"allowed_values.service": 1}}, {"participation": "allowed_values: service must be one of advisory, network, grant"}),
    ),
    "text_in_number_column": (
        _set("financials", 5, "employees", "about 20"),
        Quarantined({"financials": {"types.employees": 1}}, {"financials": "types: employees must be a whole number"}),
    ),
    "empty_required_value": (
        _set("exports", 2, "destination", ""),
        Quarantined({"exports": {"completeness.destination": 1}}, {"exports": "completeness: destination must not be empty"}),
    ),
    "nace_not_a_division": (
        _set("firms", 0, "nace2", "1A"),
        # the firm is quarantined, so its accounts and customs rows no longer find it in the register
        Quarantined(
            {"firms": {"allowed_values.nace2": 1}, "financials": {"referential_integrity.firm_id": 4},
             "participation": {"referential_integrity.firm_id": 1},
             "exports": {"referential_integrity.firm_id": 2, "referential_integrity.firm_id+year": 2}},
            {"firms": "allowed_values: nace2 must match the pattern ^[0-9]{2}$", "financials": "referential_integrity: firm_id not in firms"},
            quarantined={"exports": 2},
            check=_assert_summary("(a quarantined firm or firm-year) are set aside too, so fix the first file first"),
        ),
    ),
    "duplicate_firm_id": (
        _with("firms", _duplicate_firm),
        Quarantined(
            {"firms": {"uniqueness.firm_id": 2}, "financials": {"referential_integrity.firm_id": 4},
             "exports": {"referential_integrity.firm_id": 2, "referential_integrity.firm_id+year": 2}},
            {"firms": "uniqueness: firm_id must be unique"}, delivered={"firms": 41}, quarantined={"exports": 2},
        ),
    ),
    "quarantine_share_above_threshold": (
        _with("participation", _two_negative_grants),
        Quarantined({"participation": {"ranges.grant_eur": 2}}, {"participation": "ranges: grant_eur must be >= 0"}, blocking=("participation",)),
    ),
    # --- formats agencies actually send: accepted, values exact -----------------------------------
    "ids_with_leading_zeros": (
        lambda d: None,
        Quarantined(check=lambda raws, results: (
            _assert_values("firms", "firm_id", ["00000", "00001"])(raws, results),
            _assert_values("firms", "nace2", ["01", "10"])(raws, results),
        )),
    ),
    "semicolon_and_decimal_comma": (
        _semicolon_decimal_comma,
        Quarantined(check=_assert_values("financials", "turnover_eur", [1_250_000.0, 1_250_001.01, 1_250_002.02])),
    ),
    "thousands_separators": (_thousands_separators, Quarantined(check=_assert_values("exports", "export_value_eur", [1_234_567.89, 12_500.0]))),
    "mixed_date_formats": (
        _with("participation", _mixed_dates),
        Quarantined(check=_assert_values("participation", "start_date", [pd.Timestamp("2018-03-01")] * 4)),
    ),
    "windows_1252": (
        _cp1252_firms,
        Quarantined(check=lambda raws, results: (
            _assert_values("firms", "name", ["Müller & Söhne Nr. 0 – Café"])(raws, results),
            _assert_warning("firms", "read as Windows-1252")(raws, results),
        )),
    ),
    "utf8_with_bom": (_bom_firms, Quarantined(check=lambda raws, results: _assert_values("firms", "firm_id", ["00000"])(raws, results))),
    "headers_in_other_case": (
        _with("financials", _other_case_headers),
        Quarantined(check=lambda raws, results: (
            _assert_warning("financials", "letter case/spaces: 'FIRM_ID' read as firm_id, 'Year' read as year")(raws, results),
            _assert_values("financials", "year", [2017, 2018])(raws, results),
        )),
    ),
    "blank_lines_ignored": (
        _blank_lines,
        Quarantined(delivered={"exports": 84}, check=lambda raws, results: (
            _assert_warning("exports", "4 completely empty line(s) ignored (e.g. row 5)")(raws, results),
            # rows keep the number a spreadsheet shows: data after the blank lines starts at row 7
            _assert_values("exports", "source_row", [2, 3, 4, 7])(raws, results),
            _assert_blank_lines("exports", 4)(raws, results),
        )),
    ),
    "trailing_delimiter_on_every_line": (
        _trailing_delimiters,
        Quarantined(check=lambda raws, results: (
            _assert_warning("financials", "1 empty column(s) without a name ignored")(raws, results),
            _assert_values("financials", "turnover_eur", [100000.5, 100000.5])(raws, results),
        )),
    ),
    "xlsx_first_sheet": (_excel("firms"), Quarantined(check=_assert_values("firms", "firm_id", ["00000", "00001"]))),
    "parquet": (_parquet_exports, Quarantined(check=_assert_values("exports", "year", [2018, 2020]))),
    # --- issue 8: every delivery read right ---------------------------------------------------------
    "xlsx_rows_on_two_sheets": (
        _exports_on_two_sheets(),
        Quarantined(check=lambda raws, results: (
            _assert_values("exports", "source_row", [2, 3])(raws, results),
            _assert_values("exports", "source_sheet", ["2017-2018"])(raws, results),
            _assert_warning("exports", "sheet 'Notes' is empty and was ignored")(raws, results),
            _assert_values("exports", "export_value_eur", [1000.0, 1000.0, 1001.0])(raws, results),
            _assert_tail("exports", "source_sheet", ["2019-2020"])(raws, results),
        )),
    ),
    "xlsx_bad_row_on_second_sheet": (
        _exports_on_two_sheets(spoil_second=True),
        Quarantined({"exports": {"ranges.export_value_eur": 1}}, {"exports": "ranges: export_value_eur must be >= 0"},
                    check=_assert_location("exports", [("2019-2020", 4)])),
    ),
    "xlsx_second_sheet_with_other_header": (
        _second_sheet_other_header,
        Blocked("exports.xlsx", "sheets",
                "sheet 'B' has other columns than sheet 'A' (only in 'B': value, unit; only in 'A': export_value_eur)",
                "value"),
    ),
    "xlsx_every_sheet_empty": (
        _xlsx("firms", {"Sheet1": pd.DataFrame(), "Sheet2": pd.DataFrame()}),
        Blocked("firms.xlsx", "file not empty", "every sheet read (Sheet1, Sheet2) is empty; expected a header row"),
    ),
    "ambiguous_thousands_dot_in_quoted_csv": (
        _values_in_column("exports", "export_value_eur", {4: "48.200"}),
        Quarantined({"exports": {"types.export_value_eur.number_format": 1}},
                    {"exports": "types: export_value_eur: '.' or ',' followed by exactly three digits"}),
    ),
    "ambiguous_thousands_comma_in_quoted_csv": (
        _values_in_column("exports", "export_value_eur", {4: "48,200", 9: "1,500"}),
        Quarantined({"exports": {"types.export_value_eur.number_format": 2}},
                    {"exports": "could be a decimal or a thousands separator"}),
    ),
    "ambiguous_thousands_as_text_in_xlsx": (
        _thousands_as_text_in_xlsx,
        Quarantined({"exports": {"types.export_value_eur.number_format": 1}},
                    {"exports": "types: export_value_eur: '.' or ',' followed by exactly three digits"}),
    ),
    "german_column_decides_thousands_dot": (
        _values_in_column("exports", "export_value_eur", {0: "1.234.567,89", 1: "48.200"}),
        Quarantined(check=_assert_values("exports", "export_value_eur", [1_234_567.89, 48_200.0])),
    ),
    "english_column_decides_thousands_comma": (
        _values_in_column("exports", "export_value_eur", {0: "1,234,567.89", 1: "48,200"}),
        Quarantined(check=_assert_values("exports", "export_value_eur", [1_234_567.89, 48_200.0])),
    ),
    "semicolon_file_does_not_decide_a_column": (
        # turnover shows German separators, employees only the ambiguous 1.500: decided per column, not per file
        _values_in_column("financials", "employees", {0: "1.500"}, sep=";"),
        Quarantined({"financials": {"types.employees.number_format": 1}},
                    {"financials": "types: employees: '.' or ',' followed by exactly three digits"},
                    quarantined={"exports": 0}),
    ),
    "integer_column_decided_by_its_own_values": (
        _values_in_column("financials", "employees", {0: "1.500", 1: "2.000.000"}, sep=";"),
        Quarantined(check=_assert_values("financials", "employees", [1_500, 2_000_000])),
    ),
    "native_numbers_are_not_separator_evidence": (
        _numbers_from_xlsx_and_parquet_cells,
        Quarantined(check=lambda raws, results: (
            _assert_values("participation", "advisory_hours", [2.125])(raws, results),
            _assert_values("exports", "export_value_eur", [1.5, 48.2])(raws, results),
        )),
    ),
    "duplicate_header_csv": (
        _header_twice("exports", "export_value_eur", "export_value_eur"),
        Blocked("exports.csv", "structure", "duplicate column name: export_value_eur appears in columns 4 and 5 of the header",
                "export_value_eur"),
    ),
    "duplicate_header_after_normalising_case_and_spaces": (
        _header_twice("financials", "turnover_eur", " Turnover_EUR "),
        Blocked("financials.csv", "structure",
                "duplicate column name: 'turnover_eur' (column 4) and ' Turnover_EUR ' (column 5) differ only in letter case or spaces",
                "turnover_eur"),
    ),
    "duplicate_extra_column": (
        _header_twice("firms", "region", "region"),
        Blocked("firms.csv", "structure", "duplicate column name: region appears in columns 3 and 6 of the header", "region"),
    ),
    "duplicate_header_xlsx": (
        _xlsx_header_twice,
        Blocked("exports.xlsx", "structure",
                "duplicate column name: export_value_eur appears in columns 4 and 5 of the header of sheet 'Sheet1'",
                "export_value_eur"),
    ),
    "duplicate_header_parquet": (
        _parquet_header_twice,
        Blocked("exports.parquet", "structure",
                "duplicate column name: 'export_value_eur' (column 4) and 'EXPORT_VALUE_EUR' (column 5) differ only",
                "export_value_eur"),
    ),
    "nace_without_leading_zero_is_padded": (
        _with("firms", lambda t: t.assign(nace2=t["nace2"].replace({"01": "1"}).where(t.index != 5, "1.0"))),
        Quarantined(check=lambda raws, results: (
            _assert_values("firms", "nace2", ["01", "10", "28", "62", "46", "01"])(raws, results),
            _assert_warning("firms", "nace2: 8 value(s) without leading zeros (e.g. '1' in row 2) read as 01")(raws, results),
        )),
    ),
    "nace_as_excel_numbers": (_nace_as_excel_numbers, Quarantined(check=_assert_values("firms", "nace2", ["01", "10", "28"]))),
    "nace_as_parquet_integers": (_nace_as_parquet_ints, Quarantined(check=_assert_values("firms", "nace2", ["01", "10", "28"]))),
    "nace_longer_than_its_width": (
        _set("firms", 39, "nace2", "0046"),
        Quarantined({"firms": {"allowed_values.nace2": 1}, "financials": {"referential_integrity.firm_id": 4},
                     "exports": {"referential_integrity.firm_id": 2, "referential_integrity.firm_id+year": 2}},
                    {"firms": "allowed_values: nace2 must match the pattern ^[0-9]{2}$"}, quarantined={"exports": 2}),
    ),
    "region_not_a_nuts2_code": (
        _set("firms", 39, "region", "AT99"),
        Quarantined({"firms": {"allowed_values.region": 1}, "financials": {"referential_integrity.firm_id": 4},
                     "exports": {"referential_integrity.firm_id": 2, "referential_integrity.firm_id+year": 2}},
                    {"firms": "allowed_values: region must be a code listed in nuts2_2021.csv"}, quarantined={"exports": 2}),
    ),
    "region_in_lower_case": (_set("firms", 0, "region", " at13 "), Quarantined(check=_assert_values("firms", "region", ["AT13"]))),
    "founded_after_the_delivery_year": (
        _firms_delivered_in(2021, {38: "2021", 39: "2022"}),
        Quarantined({"firms": {"ranges.founded_year": 1}, "financials": {"referential_integrity.firm_id": 4},
                     "exports": {"referential_integrity.firm_id": 2, "referential_integrity.firm_id+year": 2}},
                    {"firms": "ranges: founded_year must be between 1800 and 2021 (2021 = delivery year"},
                    quarantined={"exports": 2}),
    ),
    "formulas_in_delivered_text_are_defused": (
        _crafted_formulas,
        Quarantined({"participation": {"ranges.grant_eur": 1, "referential_integrity.firm_id": 1}},
                    blocking=("participation",),
                    check=_assert_quarantine_text("participation", {
                        "firm_id": ["00002", "'@SUM(A1)"],
                        "programme": ["'=HYPERLINK(\"http://x\",\"y\")", "'+cmd|' /C calc'!A0"],
                        "grant_eur": ["-100", "15000"],
                    })),
    ),
}


def test_corpus_has_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_case(name: str, tmp_path: Path):
    alter, expected = CASES[name]
    landing = write_landing(tmp_path / "landing")
    alter(landing)
    if isinstance(expected, Blocked):
        with pytest.raises(ContractError) as caught:
            run_contracts(landing)
        error = caught.value
        assert (error.file, error.rule, error.column) == (expected.file, expected.rule, expected.column)
        assert expected.message in str(error)
        assert "\n" not in str(error)
        summary = failure_summary(error)
        assert expected.message in summary and (expected.file or "landing directory") in summary
        return

    raws, results = run_contracts(landing)
    delivered = {**DELIVERED, **expected.delivered}
    blocking = set()
    for source, result in results.items():
        counts = {rule: count for rule, count in result.rule_counts.items() if count}
        assert counts == expected.counts.get(source, {}), source
        assert result.rows_in == delivered[source] == len(raws[source].frame) + result.blank_lines_skipped
        assert result.rows_quarantined == expected.quarantined.get(source, sum(counts.values()))
        assert result.rows_clean == result.rows_in - result.rows_quarantined - result.blank_lines_skipped
        share = next(check for check in result.checks if check.name == "quarantine_share")
        if share.blocking:
            blocking.add(source)
            assert (share.passed, share.severity) == (False, "ERROR")
        else:
            assert share.severity == "WARN" and share.passed == (not counts)
        path = write_quarantine(result, tmp_path / "output")
        written = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert len(written) == result.rows_quarantined
        assert sum(len(reason.split("; ")) for reason in written["quarantine_reason"]) == sum(counts.values())
        if source in expected.reasons:
            assert all(expected.reasons[source] in reason for reason in written["quarantine_reason"])
        if counts:
            # the rows as delivered, found by their location (sheet and row); defused formulas read back as typed
            frame = raws[source].frame
            location = [column for column in LOCATION_COLUMNS if column in frame.columns]
            originals = frame.astype({"source_row": str}).set_index(location).loc[
                pd.MultiIndex.from_frame(written[location]) if len(location) > 1 else written["source_row"]
            ]
            as_typed = written.drop(columns=[*location, "quarantine_reason"]).map(_undo_formula_prefix)
            assert as_typed.to_numpy().tolist() == originals.to_numpy().tolist()
    assert blocking == set(expected.blocking)
    if expected.counts:
        summary = failure_summary(results)
        for source in expected.counts:
            assert f"{results[source].file}: " in summary and f"quarantine/{source}.csv" in summary
    if expected.check:
        expected.check(raws, results)
