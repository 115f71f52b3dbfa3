"""Reading landing files exactly as delivered: every cell as text, nothing dropped silently.

Agencies send CSV with ``,`` or ``;``, UTF-8 (with or without BOM) or Windows-1252, Excel
workbooks and Parquet. Everything is read as text so that quarantined rows can be written
back with their original values; typing happens later, under the contract's rules.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analyses.contracts.model import Contract, ContractError

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".xlsx")
RESERVED_COLUMNS = ("source_row", "quarantine_reason")
_SNIFF_BYTES = 64 * 1024


@dataclass
class RawSource:
    """One delivered file: its fingerprint, how it was decoded, and every cell as text.

    ``blank_lines_skipped`` counts the completely empty data lines dropped while reading, so
    the row accounting can show that every delivered line ended somewhere.
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

    def __getstate__(self) -> dict:
        """Pickle without the typed-column cache (it is rebuilt on demand, and large)."""
        return {**self.__dict__, "parse_cache": {}}

    @property
    def rows_delivered(self) -> int:
        """Data lines in the file as delivered: the rows read plus the blank lines skipped."""
        return len(self.frame) + self.blank_lines_skipped


def find_source_file(landing_dir: Path, source: str) -> Path:
    """The single ``<source>.csv|.parquet|.xlsx`` in ``landing_dir``; anything else is an error."""
    landing_dir = Path(landing_dir)
    if not landing_dir.is_dir():
        raise ContractError("file present", f"landing directory {landing_dir} does not exist")
    candidates = sorted(p for p in landing_dir.iterdir() if p.is_file() and p.stem.lower() == source)
    supported = [p for p in candidates if p.suffix.lower() in SUPPORTED_SUFFIXES]
    expected = f"{source}.csv, {source}.parquet or {source}.xlsx"
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
        frame = _read_csv_text(text, delimiter, path.name)
    elif suffix == ".xlsx":
        frame = _read_xlsx(data, contract.sheet, path.name)
    else:
        frame = _read_parquet(data, path.name)
    frame, blank_lines = _finish(frame, path.name, warnings)
    return RawSource(
        source=contract.source,
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        format=suffix.lstrip("."),
        encoding=encoding,
        delimiter=delimiter,
        frame=frame,
        warnings=warnings,
        blank_lines_skipped=blank_lines,
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


def _read_csv_text(text: str, delimiter: str, name: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
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


def _read_xlsx(data: bytes, sheet: str | int | None, name: str) -> pd.DataFrame:
    try:
        book = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    except Exception as error:  # openpyxl raises many types for corrupt workbooks
        raise ContractError("file format", f"not a readable .xlsx workbook ({type(error).__name__}: {error})", file=name) from None
    wanted = 0 if sheet is None else sheet
    if isinstance(wanted, str) and wanted not in book.sheet_names:
        raise ContractError(
            "sheet", f"no sheet {wanted!r}; the workbook has {', '.join(book.sheet_names)}", file=name
        )
    frame = book.parse(wanted, dtype=str, keep_default_na=False, na_filter=False)
    return frame.map(_excel_cell_text) if len(frame) else frame


def _excel_cell_text(value) -> str:
    """Excel dates arrive as ``YYYY-MM-DD 00:00:00``; drop the midnight time so they read as dates."""
    text = "" if value is None else str(value)
    return text[:10] if len(text) == 19 and text.endswith(" 00:00:00") else text


def _read_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        typed = pd.read_parquet(io.BytesIO(data))
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise ContractError("file format", f"not a readable Parquet file ({type(error).__name__}: {error})", file=name) from None
    return pd.DataFrame({str(column): _as_text(typed[column]) for column in typed.columns}, index=typed.index)


def _as_text(column: pd.Series) -> pd.Series:
    """Render a typed Parquet column the way a CSV export would have written it."""
    if pd.api.types.is_datetime64_any_dtype(column):
        at_midnight = column.dropna().dt.normalize().eq(column.dropna()).all()
        text = column.dt.strftime("%Y-%m-%d" if at_midnight else "%Y-%m-%dT%H:%M:%S")
    else:
        text = column.astype("string")
    return text.fillna("").astype(object)


def _finish(frame: pd.DataFrame, name: str, warnings: list[str]) -> tuple[pd.DataFrame, int]:
    """Name columns as text, add the spreadsheet row number and drop fully blank lines (counted)."""
    frame.columns = [str(column).strip() for column in frame.columns]
    reserved = [column for column in frame.columns if column.lower() in RESERVED_COLUMNS]
    if reserved:
        raise ContractError("structure", f"column name {reserved[0]!r} is reserved for the pipeline's own use", file=name)
    unnamed = [column for column in frame.columns if column.startswith("Unnamed: ") or not column]
    with_data = [column for column in unnamed if frame[column].astype(str).str.strip().ne("").any()]
    if with_data:
        raise ContractError(
            "structure",
            f"found {len(with_data)} column(s) with values but no name in the header row; expected every column named",
            file=name,
        )
    if unnamed:
        warnings.append(f"{len(unnamed)} empty column(s) without a name ignored (e.g. a delimiter at the end of each line)")
        frame = frame.drop(columns=unnamed)
    frame = frame.reset_index(drop=True).astype(object)
    frame.insert(len(frame.columns), "source_row", pd.RangeIndex(2, len(frame) + 2, dtype="int64"))
    data_columns = frame.columns[:-1]
    if len(frame) and len(data_columns):
        blank = frame[data_columns].eq("").all(axis=1)
        if blank.any():
            warnings.append(f"{int(blank.sum())} completely empty line(s) ignored (e.g. row {int(frame.loc[blank, 'source_row'].iloc[0])})")
            return frame.loc[~blank].reset_index(drop=True), int(blank.sum())
    return frame, 0
