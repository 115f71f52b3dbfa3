"""Reading landing files exactly as delivered: every cell as text, nothing dropped silently.

Agencies send CSV with ``,`` or ``;``, UTF-8 (with or without BOM) or Windows-1252, Excel
workbooks (every sheet with data, all with the same header) and Parquet. Everything is read as
text so that quarantined rows can be written back with their original values; typing happens
later, under the contract's rules. Cells the file stored as numbers (Excel number cells, Parquet
numeric columns) are remembered, because their text has no locale: ``2.125`` there is 2.125.
Headers are read as written, so a column named twice (also only apart from letter case or
surrounding spaces) stops the run instead of being renamed silently.
"""

from __future__ import annotations

import hashlib
import io
import numbers
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.contracts.model import FORMS, TRANSACTIONS_FORM, Contract, ContractError

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".xlsx")
LOCATION_COLUMNS = ("source_sheet", "source_row")
"""Where a row was delivered: the workbook sheet (Excel only) and the spreadsheet row number (header = 1)."""
RESERVED_COLUMNS = (*LOCATION_COLUMNS, "quarantine_reason")
_SNIFF_BYTES = 64 * 1024


@dataclass
class RawSource:
    """One delivered file: its fingerprint, how it was decoded, and every cell as text.

    ``blank_lines_skipped`` counts the completely empty data lines dropped while reading, so
    the row accounting can show that every delivered line ended somewhere. ``frame`` ends with
    the :data:`LOCATION_COLUMNS` (``source_sheet`` only for workbooks). ``native_numbers`` maps a
    column to the mask of its cells the file stored as numbers; ``modified`` is the file's
    modification time (UTC), whose year is the delivery year.
    """

    source: str
    path: Path
    sha256: str
    format: str
    encoding: str | None
    delimiter: str | None
    frame: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    blank_lines_skipped: int = 0
    parse_cache: dict = field(default_factory=dict, repr=False, compare=False)
    native_numbers: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    modified: datetime | None = None

    def __getstate__(self) -> dict:
        """Pickle without the typed-column cache (it is rebuilt on demand, and large)."""
        return {**self.__dict__, "parse_cache": {}}

    @property
    def rows_delivered(self) -> int:
        """Data lines in the file as delivered: the rows read plus the blank lines skipped."""
        return len(self.frame) + self.blank_lines_skipped

    @property
    def data_columns(self) -> list[str]:
        """The delivered columns, without the pipeline's location columns."""
        return [column for column in self.frame.columns if column not in LOCATION_COLUMNS]

    @property
    def delivery_year(self) -> int | None:
        """Calendar year (UTC) of the file's modification date: no delivered fact can lie after it."""
        return self.modified.year if self.modified else None

    def location(self, position: int) -> str:
        """``row 7`` or ``sheet '2019' row 7``: where the row at ``position`` of ``frame`` was delivered."""
        row = self.frame.iloc[position]
        return location_text(row.get("source_sheet"), int(row["source_row"]))


def location_text(sheet: str | None, row: int) -> str:
    """How messages name a delivered row: ``row 7``, or ``sheet '2019' row 7`` in a workbook."""
    return f"sheet {sheet!r} row {row}" if sheet is not None else f"row {row}"


@dataclass
class _Sheet:
    """One table as stored: header cells as written, data cells as text, number cells marked, first row number."""

    name: str | None
    header: list[str]
    cells: pd.DataFrame
    native: pd.DataFrame | None
    first_row: int = 2


def transactions_form(path: Path) -> str | None:
    """The form a landing path delivers: ``customs_transactions`` for that file or folder, else ``None``."""
    name = Path(path).name.lower()
    return TRANSACTIONS_FORM if name.split(".", 1)[0] == TRANSACTIONS_FORM else None


def _form_candidates(landing_dir: Path, source: str) -> list[Path]:
    """``customs_transactions.csv``, ``.csv.gz`` or a ``customs_transactions/`` folder, for the sources that have that form."""
    forms = FORMS.get(source, ())
    return sorted(
        path for path in landing_dir.iterdir()
        if path.name.lower() in {name for form in forms for name in (f"{form}.csv", f"{form}.csv.gz", form)}
        and (path.is_file() or path.is_dir())
    )


def find_source_file(landing_dir: Path, source: str) -> Path:
    """The single ``<source>.csv|.parquet|.xlsx`` in ``landing_dir`` (for ``exports`` also the
    ``customs_transactions`` form: ``.csv``, ``.csv.gz`` or a folder of Parquet files); anything else is an error."""
    landing_dir = Path(landing_dir)
    if not landing_dir.is_dir():
        raise ContractError("file present", f"landing directory {landing_dir} does not exist")
    candidates = sorted(p for p in landing_dir.iterdir() if p.is_file() and p.stem.lower() == source)
    supported = [p for p in candidates if p.suffix.lower() in SUPPORTED_SUFFIXES] + _form_candidates(landing_dir, source)
    expected = f"{source}.csv, {source}.parquet or {source}.xlsx" + "".join(
        f" (or {form}.csv, {form}.csv.gz or a folder {form}/ of Parquet files)" for form in FORMS.get(source, ())
    )
    if len(supported) > 1:
        raise ContractError(
            "file present",
            f"found {len(supported)} files for {source} ({', '.join(p.name for p in supported)}) in {landing_dir}; "
            "expected exactly one",
        )
    if supported:
        return supported[0]
    if candidates:
        raise ContractError(
            "file format",
            f"found {', '.join(p.name for p in candidates)} in {landing_dir}; expected {expected}",
            file=candidates[0].name,
        )
    raise ContractError("file present", f"no {expected} in {landing_dir}")


def read_source(path: Path, contract: Contract) -> RawSource:
    """Read one landing file as text; raise :class:`ContractError` if it cannot be read at all."""
    path = Path(path)
    if not path.is_file():
        raise ContractError("file present", f"{path} does not exist", file=path.name)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ContractError(
            "file format", f"found a {suffix or 'suffix-less'} file; expected .csv, .parquet or .xlsx", file=path.name
        )
    data = path.read_bytes()
    if not data.strip():
        raise ContractError(
            "file not empty",
            f"the file is empty (no header row); expected a header with {', '.join(contract.column_names)}",
            file=path.name,
        )
    warnings: list[str] = []
    encoding = delimiter = None
    if suffix == ".csv":
        text, encoding = _decode(data, path.name, warnings)
        delimiter = _detect_delimiter(text, path.name)
        sheets = [_read_csv_text(text, delimiter, path.name)]
    elif suffix == ".xlsx":
        sheets = _read_xlsx(data, contract.sheet, path.name, warnings)
    else:
        sheets = [_read_parquet(data, path.name)]
    finished = [_finish(sheet, path.name, warnings) for sheet in sheets]
    frame, native = _combine_sheets(finished, sheets, path.name)
    return RawSource(
        source=contract.source,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        format=suffix.lstrip("."),
        encoding=encoding,
        delimiter=delimiter,
        frame=frame,
        warnings=warnings,
        blank_lines_skipped=sum(blank for _frame, _native, blank in finished),
        native_numbers={column: mask.to_numpy() for column, mask in native.items() if mask.any()},
        modified=datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc),
    )


def _decode(data: bytes, name: str, warnings: list[str]) -> tuple[str, str]:
    """UTF-8 (BOM or not) first, then Windows-1252 with a warning; anything else is refused."""
    head = data[:_SNIFF_BYTES]
    if head.startswith(b"PK\x03\x04"):
        raise ContractError("file format", "found a zip/Excel workbook saved under a .csv name; expected a text CSV", file=name)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ContractError("encoding", "found UTF-16 text; expected UTF-8 or Windows-1252", file=name)
    if b"\x00" in head:
        raise ContractError("file format", "found binary content (NUL bytes); expected a text CSV", file=name)
    has_bom = data.startswith(b"\xef\xbb\xbf")
    try:
        return data[3:].decode("utf-8") if has_bom else data.decode("utf-8"), "utf-8-sig" if has_bom else "utf-8"
    except UnicodeDecodeError as error:
        bad_offset = error.start
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise ContractError(
            "encoding",
            f"byte {data[bad_offset]:#04x} at offset {bad_offset} is neither UTF-8 nor Windows-1252; "
            "expected UTF-8 or Windows-1252 text",
            file=name,
        ) from None
    warnings.append(f"not UTF-8 (invalid byte at offset {bad_offset}); read as Windows-1252 - please export as UTF-8")
    return text, "cp1252"


def _detect_delimiter(text: str, name: str) -> str:
    """``;`` or ``,`` by counting them in the header line; tabs and pipes are refused."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    if counts[best] and best not in (",", ";"):
        found = "tab" if best == "\t" else "'|'"
        raise ContractError("delimiter", f"found {found}-separated columns; expected ',' or ';' as delimiter", file=name)
    return best if counts[best] else ","


def _read_csv_text(text: str, delimiter: str, name: str) -> _Sheet:
    try:
        table = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,  # the header row as written: pandas would rename a repeated name
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as error:
        raise ContractError(
            "csv layout",
            f"{str(error).strip()}; expected the same number of fields on every line "
            "(a value containing the delimiter, such as a decimal comma in a ','-separated file, must be quoted)",
            file=name,
        ) from None
    except pd.errors.EmptyDataError:
        raise ContractError("file not empty", "no header row found; expected a header row", file=name) from None
    return _Sheet(None, table.iloc[0].tolist(), table.iloc[1:].reset_index(drop=True), None)


def _read_xlsx(data: bytes, sheet: str | int | None, name: str, warnings: list[str]) -> list[_Sheet]:
    """The contract's sheet, or else every sheet with a header; empty sheets are skipped with a warning."""
    try:
        book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    except Exception as error:  # openpyxl raises many types for corrupt workbooks
        raise ContractError("file format", f"not a readable .xlsx workbook ({type(error).__name__}: {error})", file=name) from None
    if isinstance(sheet, str) and sheet not in book.sheet_names:
        raise ContractError(
            "sheet", f"no sheet {sheet!r}; the workbook has {', '.join(book.sheet_names)}", file=name
        )
    if isinstance(sheet, int) and not 0 <= sheet < len(book.sheet_names):
        raise ContractError("sheet", f"no sheet number {sheet}; the workbook has {len(book.sheet_names)} sheet(s)", file=name)
    wanted = book.sheet_names if sheet is None else [sheet if isinstance(sheet, str) else book.sheet_names[sheet]]
    sheets = []
    for sheet_name in wanted:
        grid = book.parse(sheet_name, header=None, dtype=object, keep_default_na=False, na_filter=False)
        filled = ~grid.map(lambda value: value is None or (isinstance(value, str) and not value.strip()))
        rows_with_cells = np.flatnonzero(filled.any(axis=1).to_numpy())
        if not len(rows_with_cells):
            warnings.append(f"sheet {sheet_name!r} is empty and was ignored")
            continue
        top = int(rows_with_cells[0])  # rows above the header that hold nothing are not data
        body = grid.iloc[top + 1:].reset_index(drop=True)
        sheets.append(_Sheet(
            sheet_name,
            [_excel_cell_text(cell) for cell in grid.iloc[top]],
            body.map(_excel_cell_text),
            body.map(lambda value: isinstance(value, numbers.Number) and not isinstance(value, bool)),
            first_row=top + 2,
        ))
    if not sheets:
        raise ContractError(
            "file not empty", f"every sheet read ({', '.join(map(str, wanted))}) is empty; expected a header row", file=name
        )
    return sheets


def _excel_cell_text(value) -> str:
    """Excel dates arrive as ``YYYY-MM-DD 00:00:00``; drop the midnight time so they read as dates."""
    text = "" if value is None else str(value)
    return text[:10] if len(text) == 19 and text.endswith(" 00:00:00") else text


def _read_parquet(data: bytes, name: str) -> _Sheet:
    """Columns by position (names as stored, even repeated), pandas index columns left out."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(io.BytesIO(data)).read()
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise ContractError("file format", f"not a readable Parquet file ({type(error).__name__}: {error})", file=name) from None
    index_columns = {column for column in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(column, str)}
    positions = [i for i, column in enumerate(table.schema.names) if column not in index_columns]
    typed = {i: table.column(i).to_pandas() for i in positions}
    return _Sheet(
        None,
        [table.schema.names[i] for i in positions],
        pd.DataFrame({i: _as_text(column) for i, column in typed.items()}),
        pd.DataFrame({i: column.notna() & _is_number(column) for i, column in typed.items()}),
    )


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _as_text(column: pd.Series) -> pd.Series:
    """Render a typed Parquet column the way a CSV export would have written it."""
    if pd.api.types.is_datetime64_any_dtype(column):
        at_midnight = column.dropna().dt.normalize().eq(column.dropna()).all()
        text = column.dt.strftime("%Y-%m-%d" if at_midnight else "%Y-%m-%dT%H:%M:%S")
    else:
        text = column.astype("string")
    return text.fillna("").astype(object)


def _check_header(written: list[str], name: str, sheet: str | None) -> None:
    """Every column named once (letter case and surrounding spaces ignored, as columns are matched); none reserved."""
    where = f" of sheet {sheet!r}" if sheet is not None else ""
    positions: dict[str, list[int]] = {}
    for position, header in enumerate(written, 1):
        if header.strip():
            positions.setdefault(header.strip().lower(), []).append(position)
    for key, found in positions.items():
        if key in RESERVED_COLUMNS:
            raise ContractError("structure", f"column name {written[found[0] - 1].strip()!r} is reserved for the pipeline's own use", file=name)
        if len(found) < 2:
            continue
        spellings = [written[position - 1] for position in found]
        if len(set(spellings)) == 1:
            detail = f"{spellings[0].strip()} appears in columns {_and(map(str, found))} of the header{where}"
        else:
            named = _and(f"{spelling!r} (column {position})" for spelling, position in zip(spellings, found))
            detail = f"{named}{where} differ only in letter case or spaces"
        raise ContractError(
            "structure", f"duplicate column name: {detail}; expected each column name once", file=name, column=spellings[0].strip()
        )


def _and(items) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else items[0]


def _finish(sheet: _Sheet, name: str, warnings: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Name the columns, add the row's location and drop fully blank lines (counted).

    Returns the text frame, the matching number-cell mask (named the same) and the blank lines dropped.
    """
    written = ["" if header is None else str(header) for header in sheet.header]
    _check_header(written, name, sheet.name)
    names = [header.strip() for header in written]
    frame = sheet.cells.set_axis(names, axis=1)
    native = (
        sheet.native.set_axis(names, axis=1) if sheet.native is not None
        else pd.DataFrame(False, index=frame.index, columns=names)
    )
    unnamed = [position for position, column in enumerate(names) if not column]
    with_data = [position for position in unnamed if frame.iloc[:, position].astype(str).str.strip().ne("").any()]
    where = f" of sheet {sheet.name!r}" if sheet.name is not None else ""
    if with_data:
        raise ContractError(
            "structure",
            f"found {len(with_data)} column(s) with values but no name in the header row{where}; expected every column named",
            file=name,
        )
    if unnamed:
        warnings.append(f"{len(unnamed)} empty column(s) without a name ignored{where} (e.g. a delimiter at the end of each line)")
        named = [position for position in range(len(names)) if position not in unnamed]
        frame, native = frame.iloc[:, named], native.iloc[:, named]
    frame = frame.reset_index(drop=True).astype(object)
    native = native.reset_index(drop=True).astype(bool)
    data_columns = list(frame.columns)
    if sheet.name is not None:
        frame.insert(len(frame.columns), "source_sheet", sheet.name)
    frame.insert(len(frame.columns), "source_row", pd.RangeIndex(sheet.first_row, sheet.first_row + len(frame), dtype="int64"))
    if len(frame) and data_columns:
        blank = frame[data_columns].eq("").all(axis=1)
        if blank.any():
            first = location_text(sheet.name, int(frame.loc[blank, "source_row"].iloc[0]))
            warnings.append(f"{int(blank.sum())} completely empty line(s) ignored (e.g. {first})")
            return frame.loc[~blank].reset_index(drop=True), native.loc[~blank].reset_index(drop=True), int(blank.sum())
    return frame, native, 0


def _combine_sheets(
    finished: list[tuple[pd.DataFrame, pd.DataFrame, int]], sheets: list[_Sheet], name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One table from sheets with the same header (columns matched as by name, letter case and spaces ignored)."""
    frame, native, _blank = finished[0]
    columns = [column for column in frame.columns if column not in LOCATION_COLUMNS]
    by_key = {column.lower(): column for column in columns}
    frames, natives = [frame], [native]
    for sheet, (other, other_native, _blank) in zip(sheets[1:], finished[1:]):
        other_columns = [column for column in other.columns if column not in LOCATION_COLUMNS]
        keys = {column.lower(): column for column in other_columns}
        if keys.keys() != by_key.keys():
            only_other = [keys[key] for key in keys if key not in by_key]
            only_first = [by_key[key] for key in by_key if key not in keys]
            differences = "; ".join(
                f"only in {label!r}: {', '.join(found)}" for label, found in ((sheet.name, only_other), (sheets[0].name, only_first)) if found
            )
            raise ContractError(
                "sheets",
                f"sheet {sheet.name!r} has other columns than sheet {sheets[0].name!r} ({differences}); expected every sheet "
                "with data to have the same header row, or the sheet to read named in the contract (customProperties: sheet)",
                file=name, column=(only_other or only_first)[0],
            )
        renamed = {column: by_key[column.lower()] for column in other_columns}
        frames.append(other.rename(columns=renamed)[frame.columns])
        natives.append(other_native.rename(columns=renamed)[columns])
    if len(frames) == 1:
        return frame, native
    return pd.concat(frames, ignore_index=True), pd.concat(natives, ignore_index=True)
