"""Customs transactions out of core: stage, type, validate and aggregate shipments in DuckDB.

The ``customs_transactions`` form of the exports source (one row per shipment, hundreds of
millions of rows) never enters pandas. :func:`stage_transactions` loads the delivery (CSV, gzip
CSV or a folder of Parquet files) into a DuckDB database in the delivery's restricted folder,
every cell as text, identifiers already pseudonymised, each row with its file and line.
:func:`validate_transactions` compiles the same contract rules the pandas engine runs with Great
Expectations (:func:`analyses.contracts.validation._row_rules`) into SQL, counts failures per rule,
spools quarantined rows to Parquet (written to the quarantine CSV in chunks) and returns the
firm-year-destination table (``firm_id, year, destination, export_value_eur, transactions``): the
only table pandas sees. DuckDB spills to disk under a memory limit, so memory stays bounded.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analyses.contracts.model import Contract, ContractError
from analyses.contracts.parsing import _COMMA_DECIMAL, _DOTTED_DATE, _ISO_DATE, _POINT_DECIMAL, _WHOLE_NUMBER
from analyses.contracts.reading import _check_header, _detect_delimiter

MEMORY_LIMIT = "1500MB"
"""DuckDB's working memory; beyond it joins, sorts and aggregations spill to the delivery's folder."""
_CHUNK = 1 << 22
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "UTINYINT",
                  "USMALLINT", "UINTEGER", "UBIGINT")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_DUCKDB_LINE = re.compile(r"CSV Error on Line: (\d+)")
_COLUMN_COUNTS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
#: the transactions' columns behind each column of the exports table they are summed into
AGGREGATE = {"firm_id": "firm_id", "year": "date", "destination": "destination", "export_value_eur": "value_eur"}


@dataclass
class TransactionSource:
    """A staged transactions delivery: where it came from, where DuckDB holds it, how it was read.

    ``columns`` are the delivered headers (staged as ``c0, c1, …``); ``native`` the headers a Parquet
    file stored as numbers; ``number_formats`` the decimal convention decided per number column;
    ``problems`` the structural failures found while staging (``structure`` check).
    """

    source: str
    contract: Contract
    path: Path
    sha256: str
    format: str
    encoding: str | None
    delimiter: str | None
    database: Path
    columns: list[str]
    rows_read: int
    blank_lines_skipped: int
    modified: datetime | None
    native: tuple[str, ...] = ()
    number_formats: dict[str, str | None] = field(default_factory=dict)
    problems: list[ContractError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_delivered(self) -> int:
        return self.rows_read + self.blank_lines_skipped

    @property
    def data_columns(self) -> list[str]:
        return list(self.columns)

    @property
    def delivery_year(self) -> int | None:
        return self.modified.year if self.modified else None

    def header_of(self) -> dict[str, str]:
        """Contract column -> staged column (``c3``), matching letter case and spaces loosely."""
        by_key = {header.strip().lower(): f"c{i}" for i, header in enumerate(self.columns)}
        return {name: by_key[name.lower()] for name in self.contract.column_names if name.lower() in by_key}


def connect(database: Path, read_only: bool = False):
    """A DuckDB connection with bounded memory, spilling beside ``database`` (the restricted folder)."""
    import duckdb

    con = duckdb.connect(str(database), read_only=read_only)
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = '{_sql_text(str(Path(database).parent / 'duckdb_spill'))}'")
    con.execute("SET preserve_insertion_order = true")
    return con


def stage_transactions(
    path: Path, contract: Contract, database: Path, pseudonyms: Callable[[Iterable[str]], dict[str, str]] | None = None
) -> tuple[TransactionSource, dict[str, str]]:
    """Load a transactions delivery into ``database`` (table ``typed``: text, typed values, flags) and check its structure.

    ``pseudonyms`` maps distinct identifiers to pseudonyms; the contract's ``pseudonymise``
    columns are replaced while loading, so the database never holds a delivered identifier.
    Returns the staged source and the identifier -> pseudonym mapping used. Raises
    :class:`ContractError` for a file that cannot be read at all.
    """
    path, database = Path(path), Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise ContractError("file present", "the folder holds no .parquet files; expected a folder of Parquet files", file=path.name)
        sha256 = hashlib.sha256("\n".join(f"{f.name}:{_hash(f)[0]}" for f in files).encode("utf-8")).hexdigest()
        modified = max(f.stat().st_mtime for f in files)
        encoding = delimiter = None
        form, blank_lines, warnings = "parquet", [], []
    else:
        if path.name.lower().endswith(".csv.gz"):
            form = "csv.gz"
        elif path.suffix.lower() == ".csv":
            form = "csv"
        else:
            raise ContractError("file format", "expected customs_transactions.csv, .csv.gz or a folder of Parquet files", file=path.name)
        sha256, lines, blank_lines, valid_utf8, head = _hash(path, scan_lines=True)
        modified = path.stat().st_mtime
        if not head.strip():
            raise ContractError("file not empty", f"the file is empty (no header row); expected {', '.join(contract.column_names)}", file=path.name)
        warnings = [] if valid_utf8 else ["not UTF-8; read as Latin-1 (Windows-1252) - please export as UTF-8"]
        encoding = "utf-8" if valid_utf8 else "latin-1"
        delimiter = _detect_delimiter(head.decode(encoding), path.name)
    con = connect(database)
    mapping: dict[str, str] = {}
    try:
        if form == "parquet":
            columns, native = _stage_parquet(con, files, contract, pseudonyms, mapping, path.name)
        else:
            columns = _csv_header(head.decode(encoding).lstrip("\ufeff"), delimiter, path.name)
            native = ()
            _stage_csv(con, path, columns, contract, delimiter, encoding, blank_lines, pseudonyms, mapping)
        rows = con.execute("SELECT count(*) FROM staged").fetchone()[0]
        if form != "parquet" and rows + len(blank_lines) != lines - 1:
            raise ContractError(
                "csv layout",
                f"{lines - 1} lines after the header but {rows} rows and {len(blank_lines)} empty lines read; expected one "
                "shipment per line (no line break inside a quoted value)",
                file=path.name,
            )
        blank_rows = _drop_blank_rows(con, len(columns))
        raw = TransactionSource(
            source="exports", contract=contract, path=path, sha256=sha256, format=form, encoding=encoding,
            delimiter=delimiter, database=database, columns=columns, rows_read=rows - blank_rows,
            blank_lines_skipped=len(blank_lines) + blank_rows,
            modified=datetime.fromtimestamp(modified, tz=timezone.utc), native=native, warnings=warnings,
        )
        raw.number_formats = _number_formats(con, raw)
        # typed once, under the decided number formats: every later pass reads values and flags, not text
        con.execute(f"CREATE TABLE typed AS {_typed_sql(raw)}")
        con.execute("DROP TABLE staged")
        raw.problems = _structure_problems(con, raw)
    finally:
        con.close()
    return raw, mapping


def _hash(path: Path, scan_lines: bool = False):
    """SHA-256 of the file as delivered; with ``scan_lines`` also (of the text, gunzipped) the line count,
    the 1-based numbers of empty lines, whether it is valid UTF-8 and its first line, in one pass."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if not scan_lines:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
            return (digest.hexdigest(),)
        text = gzip.open(handle) if path.name.lower().endswith(".gz") else None
        reader = text or handle
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")()
        valid, lines, blanks, carry, head = True, 0, [], b"", b""
        for chunk in iter(lambda: reader.read(_CHUNK), b""):
            if text is None:
                digest.update(chunk)
            if valid:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    valid = False
            buffer = carry + chunk
            end = buffer.rfind(b"\n") + 1
            complete, carry = buffer[:end], buffer[end:]
            if not head:
                head = (complete or carry).split(b"\n", 1)[0]
            blanks += [lines + complete.count(b"\n", 0, start) + 1 for start in _empty_line_starts(complete)]
            lines += complete.count(b"\n")
        lines += 1 if carry.strip(b"\r") else 0
        if text is not None:
            handle.seek(0)
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest(), lines, [line for line in blanks if line > 1], valid, head


def _empty_line_starts(complete: bytes) -> list[int]:
    """Offsets of the empty lines (``\\n`` or ``\\r\\n`` alone) in text that starts a line and ends with a line break."""
    starts = [match.start() + 1 for match in re.finditer(rb"\n(?=\r?\n)", complete)]
    if re.match(rb"\r?\n", complete):
        starts.insert(0, 0)
    return starts


def _csv_header(first_line: str, delimiter: str, name: str) -> list[str]:
    import csv

    header = next(csv.reader([first_line.rstrip("\r")], delimiter=delimiter))
    _check_header(header, name, None)
    if any(not column.strip() for column in header):
        raise ContractError("structure", "a column of the header row has no name; expected every column named", file=name)
    return [column.strip() for column in header]


def _pseudonymised(con, source: str, columns: list[str], contract: Contract, pseudonyms, mapping) -> tuple[list[str], str]:
    """Projections ``c<i>`` (as text) of ``source`` and the joins that put pseudonyms in place of the
    contract's identifier columns: their distinct values are keyed once in Python (a few per firm,
    however many shipments) and joined back, so no identifier is ever written."""
    masked = {column.name.lower() for column in contract.columns if column.pseudonymise} if pseudonyms else set()
    projections, joins = [], []
    for i, header in enumerate(columns):
        cell = f'CAST(t."{_sql_name(header)}" AS VARCHAR)'
        if header.strip().lower() not in masked:
            projections.append(f"{cell} AS c{i}")
            continue
        distinct = [row[0] for row in con.execute(f"SELECT DISTINCT {cell} FROM {source} t").fetchall()]
        keyed = pseudonyms([value for value in distinct if value is not None])  # blank cells stay as delivered
        mapping.update({identifier.strip(): pseudonym for identifier, pseudonym in keyed.items()})
        table = f"pseudonyms_{i}"
        con.register(table, pd.DataFrame({"id": list(keyed), "pseudonym": list(keyed.values())}, dtype=object))
        joins.append(f"LEFT JOIN {table} ON {table}.id = {cell}")
        projections.append(f"coalesce({table}.pseudonym, {cell}) AS c{i}")
    return projections, " ".join(joins)


def _stage_csv(con, path, columns, contract, delimiter, encoding, blank_lines, pseudonyms, mapping) -> None:
    types = "{" + ", ".join(f"'{_sql_text(column)}': 'VARCHAR'" for column in columns) + "}"
    reader = (
        f"read_csv('{_sql_text(str(path))}', columns = {types}, header = true, delim = '{delimiter}', quote = '\"', "
        f"escape = '\"', auto_detect = false, strict_mode = true, null_padding = true, encoding = '{encoding}')"
    )
    # data row n (1-based, in file order) sits on line n + 1 + the empty lines before it
    thresholds = [line - 2 - k for k, line in enumerate(sorted(blank_lines))]
    shift = f"list_count(list_filter({thresholds}::BIGINT[], lambda x: x < t.__n))" if thresholds else "0"
    try:
        projections, joins = _pseudonymised(con, reader, columns, contract, pseudonyms, mapping)
        # DuckDB's streaming row_number() OVER () numbers rows in scan order (insertion order is preserved)
        con.execute(
            f"CREATE TABLE staged AS SELECT {', '.join(projections)}, NULL::VARCHAR AS source_file, "
            f"t.__n + 1 + {shift} AS source_row FROM (SELECT row_number() OVER () AS __n, * FROM {reader}) t {joins}"
        )
    except Exception as error:  # duckdb.InvalidInputException; its text quotes the line, which may hold identifiers
        line, counts = _DUCKDB_LINE.search(str(error)), _COLUMN_COUNTS.search(str(error))
        detail = f"line {line.group(1)} cannot be read" if line else "the file cannot be read as CSV"
        if counts:
            detail += f" (expected {counts.group(1)} fields, found {counts.group(2)})"
        raise ContractError(
            "csv layout", f"{detail}; expected the same number of fields on every line (a value containing the "
            "delimiter, such as a decimal comma in a ','-separated file, must be quoted)", file=path.name,
        ) from None


def _stage_parquet(con, files, contract, pseudonyms, mapping, name) -> tuple[list[str], tuple[str, ...]]:
    listed = "[" + ", ".join(f"'{_sql_text(str(f))}'" for f in files) + "]"
    try:
        schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet({listed}, union_by_name = true)").fetchall()
    except Exception as error:  # duckdb.IOException / InvalidInputException for corrupt files
        raise ContractError("file format", f"not a readable Parquet dataset ({type(error).__name__})", file=name) from None
    columns = [row[0] for row in schema]
    _check_header(columns, name, None)
    native = tuple(column for column, kind, *_ in schema if str(kind).split("(")[0] in _NUMERIC_TYPES)
    reader = f"read_parquet({listed}, union_by_name = true, filename = true, file_row_number = true)"
    projections, joins = _pseudonymised(con, reader, columns, contract, pseudonyms, mapping)
    con.execute(
        f"CREATE TABLE staged AS SELECT {', '.join(projections)}, parse_filename(t.filename) AS source_file, "
        f"t.file_row_number + 2 AS source_row FROM {reader} t {joins}"
    )
    return columns, native


def _drop_blank_rows(con, n_columns: int) -> int:
    """Rows whose every cell is empty are blank lines (``,,,,``): counted and dropped, as the pandas reader does."""
    blank = " AND ".join(f"{_strip(f'c{i}')} = ''" for i in range(n_columns))
    return con.execute(f"DELETE FROM staged WHERE {blank}").fetchone()[0]


def _strip(expression: str) -> str:
    """Text without surrounding spaces (DuckDB's plain ``trim``: several times faster than a character list)."""
    return f"trim(coalesce({expression}, ''))"


def _number_formats(con, raw: TransactionSource) -> dict[str, str | None]:
    """Decimal point or comma per number column, from all its values (as :func:`analyses.contracts.parsing.number_format`)."""
    header_of = raw.header_of()
    wanted = [c.name for c in raw.contract.columns if c.logical_type in ("number", "integer") and c.name in header_of
              and raw.columns[int(header_of[c.name][1:])] not in raw.native]
    if not wanted:
        return {}
    counts = []
    for name in wanted:
        compact = _compact(header_of[name])
        point, comma = _point_ok(compact), _comma_ok(compact)
        counts += [f"count(*) FILTER ({point} AND NOT {comma})", f"count(*) FILTER ({comma} AND NOT {point})"]
    found = con.execute(f"SELECT {', '.join(counts)} FROM staged").fetchone()
    formats = {}
    for k, name in enumerate(wanted):
        points, commas = found[2 * k], found[2 * k + 1]
        formats[name] = None if points == commas else ("point" if points > commas else "comma")
    return formats


def _has_separator(compact: str) -> str:
    return f"(contains({compact}, '.') OR contains({compact}, ','))"


def _compact(column: str) -> str:
    return f"regexp_replace(coalesce({column}, ''), '[\\s\\x{{00A0}}\\x{{202F}}'']', '', 'g')"


def _point_ok(compact: str) -> str:
    return f"({_has_separator(compact)} AND regexp_full_match({compact}, '{_POINT_DECIMAL}'))"


def _comma_ok(compact: str) -> str:
    return f"({_has_separator(compact)} AND regexp_full_match({compact}, '{_COMMA_DECIMAL}'))"


def _typed_sql(raw: TransactionSource) -> str:
    """One row per staged row: location, the delivered text (``c<i>``) and, per contract column,
    the typed value ``"v:<name>"``, unreadable flag ``"u:<name>"`` and undecided flag ``"d:<name>"``.

    Built in layers (text trimmed or compacted, then pattern flags, then values) so each regular
    expression runs once per cell.
    """
    header_of = raw.header_of()
    texts, flags, parts = [], [], ["source_file", "source_row", *(f"c{i}" for i in range(len(raw.columns)))]
    for column in raw.contract.columns:
        if column.name not in header_of:
            continue
        cell, name = header_of[column.name], column.name
        t = f'"t:{name}"'
        number = column.logical_type in ("number", "integer")
        native = number and raw.columns[int(cell[1:])] in raw.native
        texts.append(f"{_compact(cell) if number else _strip(cell)} AS {t}")
        undecided = "false"
        if column.logical_type == "string":
            value = t
            if column.zero_pad:
                flags += [f"regexp_full_match({t}, '{_WHOLE_NUMBER}') AS \"w:{name}\"", f"regexp_replace({t}, '[.,]0+$', '') AS \"g:{name}\""]
                digits = f'"g:{name}"'
                value = (f'CASE WHEN "w:{name}" AND length({digits}) < {column.zero_pad} THEN lpad({digits}, {column.zero_pad}, \'0\') '
                         f'WHEN "w:{name}" THEN {digits} ELSE {t} END')
            if column.normalise:
                value = f"{column.normalise}({value})"
            value, unreadable = f"nullif({value}, '')", "false"
        elif column.logical_type == "date":
            flags += [f"regexp_full_match({t}, '{_ISO_DATE}') AS \"i:{name}\"", f"regexp_full_match({t}, '{_DOTTED_DATE}') AS \"o:{name}\""]
            value = (f'CASE WHEN "i:{name}" THEN try_strptime(substr({t}, 1, 10), \'%Y-%m-%d\')::DATE '
                     f'WHEN "o:{name}" THEN try_strptime({t}, \'%d.%m.%Y\')::DATE END')
            unreadable = f"({t} <> '' AND ({value}) IS NULL)"
        elif column.logical_type == "boolean":
            value = f"CASE WHEN lower({t}) IN {_TRUE} THEN true WHEN lower({t}) IN {_FALSE} THEN false END"
            unreadable = f"({t} <> '' AND ({value}) IS NULL)"
        else:
            if native:
                flags.append(f'TRY_CAST({cell} AS DOUBLE) AS "x:{name}"')
            else:
                flags += [f'{_point_ok(t)} AS "p:{name}"', f'{_comma_ok(t)} AS "m:{name}"']
            value, unreadable, undecided = _number_sql(raw.number_formats.get(name), name, native, column.logical_type == "integer")
        parts += [f'{value} AS "v:{name}"', f'{unreadable} AS "u:{name}"', f'{undecided} AS "d:{name}"']
    texts_sql = f"SELECT *, {', '.join(texts)} FROM staged" if texts else "SELECT * FROM staged"
    flags_sql = f"SELECT *, {', '.join(flags)} FROM ({texts_sql})" if flags else texts_sql
    return f"SELECT {', '.join(parts)} FROM ({flags_sql})"


def _number_sql(decided: str | None, name: str, native: bool, whole: bool) -> tuple[str, str, str]:
    """Value, unreadable and undecided SQL for a number column (compacted text ``"t:<name>"``, pattern
    flags ``"p:"``/``"m:"`` or, for a column stored as numbers, ``"x:"``), under its decided decimal convention."""
    t, point, comma = f'"t:{name}"', f'"p:{name}"', f'"m:{name}"'
    if native:
        number, undecided = f'"x:{name}"', "false"
    else:
        as_point = point if decided == "point" else "false" if decided == "comma" else f"({point} AND NOT {comma})"
        as_comma = comma if decided == "comma" else "false" if decided == "point" else f"({comma} AND NOT {point})"
        standard = (f"CASE WHEN {as_point} THEN replace({t}, ',', '') WHEN {as_comma} THEN "
                    f"replace(replace({t}, '.', ''), ',', '.') WHEN {point} OR {comma} THEN NULL ELSE {t} END")
        number = f"TRY_CAST({standard} AS DOUBLE)"
        undecided = f"({point} AND {comma})" if decided is None else "false"
    finite = f"CASE WHEN isfinite({number}) THEN {number} END"
    bad = f"({t} <> '' AND NOT {undecided} AND ({finite}) IS NULL)"
    if whole:
        bad = f"({bad} OR coalesce(({finite}) <> floor({finite}) OR abs({finite}) >= 9007199254740992, false))"
    return f"CASE WHEN NOT {bad} AND NOT {undecided} THEN {finite} END", bad, undecided


def _structure_problems(con, raw: TransactionSource) -> list[ContractError]:
    """Missing required columns, no data rows, a typed column unreadable in every row (as the pandas engine)."""
    from analyses.contracts.validation import _TYPE_PHRASES

    name, header_of, problems = raw.path.name, raw.header_of(), []
    missing = [column for column in raw.contract.column_names if column not in header_of]
    if missing:
        problems.append(ContractError(
            "required columns", f"missing {', '.join(missing)}; found columns {', '.join(raw.columns) or '(none)'}; "
            f"expected {', '.join(raw.contract.column_names)}", file=name, column=missing[0]))
        return problems
    if not raw.rows_read:
        problems.append(ContractError("not empty", "header only: found column names but no data rows; expected at least one data row", file=name))
        return problems
    typed = [c for c in raw.contract.columns if c.logical_type != "string"]
    counts = ", ".join(f'count(*) FILTER ({_strip(header_of[c.name])} <> \'\'), count(*) FILTER ("u:{c.name}")' for c in typed)
    found = con.execute(f"SELECT {counts} FROM typed").fetchone() if typed else ()
    for k, column in enumerate(typed):
        given, bad = found[2 * k], found[2 * k + 1]
        if given and bad == given:
            problems.append(ContractError(
                "column type", f"none of the {given} values can be read as {_TYPE_PHRASES[column.logical_type]}; "
                f"expected {_TYPE_PHRASES[column.logical_type]}", file=name, column=column.name))
    return problems


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _sql_name(text: str) -> str:
    return text.replace('"', '""')


def _literal(value) -> str:
    """A Python value of a compiled rule as a SQL literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp):
        return f"DATE '{value.date().isoformat()}'"
    if isinstance(value, (int, float)):
        return repr(value)
    return f"'{_sql_text(str(value))}'"


def failing_sql(rule) -> str:
    """The SQL condition under which a row fails a compiled contract rule (null values pass, as in GX)."""
    arguments, expectation = dict(rule.arguments), rule.expectation
    condition = ""
    if "row_condition" in arguments:
        flag, wanted = arguments.pop("row_condition")
        condition = f' AND "{flag}" = {_literal(wanted)}'
    column = f'"{arguments.get("column")}"'
    if expectation == "ExpectColumnValuesToBeInSet":
        values = ", ".join(_literal(value) for value in arguments["value_set"])
        # a long list (country codes) as a subquery: DuckDB then probes a hash set instead of comparing each value
        listed = f"SELECT unnest([{values}])" if len(arguments["value_set"]) > 8 else values
        test = f"coalesce(NOT ({column} IN ({listed})), false)"
    elif expectation == "ExpectColumnValuesToNotBeNull":
        test = f"{column} IS NULL"
    elif expectation == "ExpectColumnValuesToBeBetween":
        bounds = [f"{column} < {_literal(arguments['min_value'])}" if arguments.get("min_value") is not None else None,
                  f"{column} > {_literal(arguments['max_value'])}" if arguments.get("max_value") is not None else None]
        test = f"coalesce({' OR '.join(bound for bound in bounds if bound)}, false)"
    elif expectation == "ExpectColumnValuesToMatchRegex":
        test = f"coalesce(NOT regexp_matches({column}, {_literal(arguments['regex'])}), false)"
    elif expectation == "ExpectColumnValuesToBeNull":
        test = f"{column} IS NOT NULL"
    else:
        raise ContractError("contract file", f"rule {rule.id} ({expectation}) is not available for customs transactions")
    return f"({test}{condition})"


def validate_transactions(raw: TransactionSource, references: dict[str, pd.DataFrame]):
    """Run the contract's row rules in DuckDB; return a ``ValidationResult`` whose ``clean`` is the
    firm-year-destination table and whose quarantined rows wait in a Parquet spool for
    :func:`analyses.contracts.reporting.write_quarantine` (``rows_in = rows_clean + rows_quarantined +
    blank_lines_skipped`` counts transactions)."""
    from analyses.contracts.validation import (
        RuleFailure, ValidationResult, _group_outcome, _row_rules, _share_outcome, row_rule_groups,
    )

    contract = raw.contract
    rules = _row_rules(contract, references, raw.delivery_year)
    flags = [f'{failing_sql(rule)} AS "f{k}"' for k, rule in enumerate(rules)]
    failed = " OR ".join(f'"f{k}"' for k in range(len(rules))) or "false"
    header_of, spool = raw.header_of(), raw.database.parent / "quarantine_spool.parquet"
    con = connect(raw.database)
    try:
        frame_sql = _validation_sql(con, raw, references)
        con.execute(f"CREATE TEMP VIEW checked AS SELECT *, {failed} AS __failed FROM (SELECT *, {', '.join(flags) or 'false AS f'} FROM ({frame_sql}))")
        groups = row_rule_groups(contract)[:-1]
        order = "struct_pack(f := coalesce(source_file, ''), r := source_row)"
        measures = ["count(*) FILTER (__failed)"]
        measures += [f'count(*) FILTER ("f{k}")' for k in range(len(rules))]
        flag_names = [f'"f{k}"' for k in range(len(rules))]
        measures += [
            "count(*) FILTER (" + " OR ".join(flag for flag, rule in zip(flag_names, rules) if rule.group == group) + ")"
            for group in groups
        ]
        measures += [f"arg_min(struct_pack(file := source_file, row := source_row, value := {_example(rule, header_of, raw)}), {order}) "
                     f'FILTER ("f{k}")' for k, rule in enumerate(rules)]
        found = con.execute(f"SELECT {', '.join(measures)} FROM checked").fetchone()
        quarantined, rule_counts = found[0], dict(zip((rule.id for rule in rules), found[1:1 + len(rules)]))
        group_counts = dict(zip(groups, found[1 + len(rules):1 + len(rules) + len(groups)]))
        examples = found[1 + len(rules) + len(groups):]
        reason = "concat_ws('; ', " + ", ".join(
            f"CASE WHEN \"f{k}\" THEN {_literal(f'{rule.group}: {rule.text}')} END" for k, rule in enumerate(rules)
        ) + ")" if rules else "''"
        located = (["source_file"] if raw.format == "parquet" else []) + ["source_row"]
        delivered = [f'c{i} AS "{_sql_name(header)}"' for i, header in enumerate(raw.columns)]
        con.execute(
            f"COPY (SELECT {', '.join(delivered + located)}, {reason} AS quarantine_reason FROM checked WHERE __failed "
            f"ORDER BY source_file, source_row) TO '{_sql_text(str(spool))}' (FORMAT parquet)"
        )
        sums = ", ".join(
            f'year("{source}")::BIGINT AS {target}' if contract.column(source).logical_type == "date"
            else f'sum("{source}") AS {target}' if contract.column(source).logical_type == "number"
            else f'"{source}" AS {target}'
            for target, source in AGGREGATE.items()
        )
        clean = con.execute(
            f"SELECT {sums}, count(*) AS transactions FROM checked WHERE NOT __failed GROUP BY ALL ORDER BY ALL"
        ).df()
    finally:
        con.close()
    clean = clean.astype({"firm_id": object, "destination": object, "year": "int64", "export_value_eur": "float64",
                          "transactions": "int64"})
    clean.attrs.update(contract_id=contract.id, contract_version=contract.version)
    failures = [
        RuleFailure(rule.id, rule.group, rule.text, rule.columns, int(rule_counts[rule.id]), str(example["value"]),
                    int(example["row"]), rule.referenced_source, example_file=example["file"])
        for rule, example in zip(rules, examples) if rule_counts[rule.id]
    ]
    result = ValidationResult(
        source=raw.source, contract=contract, clean=clean, quarantine=pd.DataFrame(),
        rule_counts={key: int(value) for key, value in rule_counts.items()}, checks=[], rows_in=raw.rows_delivered,
        blank_lines_skipped=raw.blank_lines_skipped, warnings=list(raw.warnings), file=raw.path.name, failures=failures,
        counted_clean=raw.rows_read - int(quarantined), counted_quarantined=int(quarantined), quarantine_spool=spool,
    )
    result.checks = [
        *(_group_outcome(contract, group, rules, result.rule_counts, int(group_counts[group]), failures, raw.source)
          for group in groups),
        _share_outcome(result),
    ]
    result.check_accounting()
    return result


def _example(rule, header_of: dict[str, str], raw: TransactionSource) -> str:
    """The delivered text a failure summary quotes: the rule's column, ``a=…, b=…`` for several."""
    cells = [header_of[column] for column in rule.columns] or ["c0"]
    if len(cells) == 1:
        return f"coalesce({cells[0]}, '')"
    return "concat_ws(', ', " + ", ".join(
        f"{_literal(raw.columns[int(cell[1:])] + '=')} || coalesce({cell}, '')" for cell in cells
    ) + ")"


def _validation_sql(con, raw: TransactionSource, references: dict[str, pd.DataFrame]) -> str:
    """The frame the rules read, named as the pandas engine names it (``<col>``, ``<col>__readable``,
    ``__typed``, ``__decided``, ``__known``, ``<a>+<b>__known``), with the delivered text and location."""
    from analyses.contracts.validation import _DUPLICATE_FLAG, _reference_table, _reference_values

    contract = raw.contract
    delivered = [f"c{i}" for i in range(len(raw.columns))]
    parts, joins = ["t.source_file", "t.source_row", *(f"t.{cell}" for cell in delivered)], []
    for column in contract.columns:
        name = column.name
        parts.append(f't."v:{name}" AS "{name}"')
        if column.logical_type != "string":
            parts += [f'NOT t."u:{name}" AS "{name}__readable"', f'(NOT t."u:{name}" AND NOT t."d:{name}") AS "{name}__typed"']
            if column.logical_type in ("number", "integer"):
                parts.append(f'NOT t."d:{name}" AS "{name}__decided"')
        if column.references:
            table = f"reference_{len(joins)}"
            known = _reference_values(references, column.references, contract).dropna().unique()
            con.register(table, pd.DataFrame({"k0": pd.Series(known, dtype=object)}))
            joins.append(f'LEFT JOIN {table} ON {table}.k0 = t."v:{name}"')
            parts.append(f'(t."v:{name}" IS NULL OR {table}.k0 IS NOT NULL) AS "{name}__known"')
    for reference in contract.row_references:
        table = f"reference_{len(joins)}"
        existing = _reference_table(references, reference.source, contract)[list(reference.reference_columns)].drop_duplicates()
        existing.columns = [f"k{k}" for k in range(len(reference.columns))]
        con.register(table, existing.reset_index(drop=True))
        on = []
        for k, column in enumerate(reference.columns):
            left = f't."v:{column}"'
            if contract.column(column).logical_type == "date" and pd.api.types.is_integer_dtype(existing[f"k{k}"]):
                left = f"year({left})"  # a shipment's date matches the accounts of its calendar year
            on.append(f"{table}.k{k} = {left}")
        joins.append(f"LEFT JOIN {table} ON {' AND '.join(on)}")
        missing = " OR ".join(f't."v:{column}" IS NULL' for column in reference.columns)
        parts.append(f'({missing} OR {table}.k0 IS NOT NULL) AS "{reference.rule_name}__known"')
    if contract.no_exact_duplicates:
        parts.append(f'row_number() OVER (PARTITION BY {", ".join(f"t.{c}" for c in delivered)} '
                     f'ORDER BY t.source_file, t.source_row) > 1 AS "{_DUPLICATE_FLAG}"')
    return f"SELECT {', '.join(parts)} FROM typed t {' '.join(joins)}"
