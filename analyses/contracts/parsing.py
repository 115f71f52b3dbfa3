"""Typing text cells under a contract: numbers in either convention, two date formats, booleans, codes.

Each parser returns the typed values and a mask of cells that were given but could not be
read; empty cells are neither (they become NaN/NaT/None and are judged by ``required``).
Number parsers also return the cells whose reading depends on a number format the column
does not decide (``48.200``: 48.2 or 48200?), which are never guessed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

# A thousands group starts with 1-9: "0.500" and "0,500" can only be decimals.
_POINT_DECIMAL = r"[+-]?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+"
_COMMA_DECIMAL = r"[+-]?(?:[1-9]\d{0,2}(?:\.\d{3})+|\d+)(?:,\d+)?|[+-]?,\d+"
_SPACES = r"[\s\u00a0\u202f']"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_DOTTED_DATE = r"\d{1,2}\.\d{1,2}\.\d{4}"
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_WHOLE_NUMBER = r"\d+(?:[.,]0+)?"

NumberFormat = Literal["point", "comma"]
"""``point``: ``1,234.5`` (dot decimal, comma thousands); ``comma``: ``1.234,5`` (comma decimal, dot thousands)."""


def number_format(text: pd.Series, native: np.ndarray | None = None) -> NumberFormat | None:
    """The column's number format, decided by all its values; ``None`` when they do not decide it.

    A value is evidence only if exactly one format reads it (``1.234,5``, ``12.5``, ``1,234,567``);
    ``48.200`` (one separator, three digits after it) reads either way and is no evidence. The format
    more values show wins; none, or as many for one as for the other, decides nothing. Cells stored
    as numbers (``native``: Excel number cells, Parquet numeric columns) carry no format at all.
    """
    point_only, comma_only, _ambiguous = _separator_evidence(_compact(text), native)
    return _decide(point_only, comma_only)


def parse_number(text: pd.Series, native: np.ndarray | None = None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse numbers written as ``1234.5``, ``1,234.5``, ``1.234,5``, ``1234,5`` or ``1 234,5``.

    The decimal mark is decided per column from all its values (:func:`number_format`); a value the
    decided format cannot read is unreadable. In a column without a decided format, values that
    read only one way are read that way and those that read both ways are ``undecided``: NaN,
    neither unreadable nor guessed. ``native`` marks cells stored as numbers, read as they are.
    Returns ``(values, unreadable, undecided)``, float64 values and boolean masks on ``text.index``.
    """
    compact = _compact(text)
    given = compact.ne("")
    point_only, comma_only, ambiguous = _separator_evidence(compact, native)
    decided = _decide(point_only, comma_only)
    separated = point_only | comma_only | ambiguous
    if decided == "point":
        as_point, as_comma = point_only | ambiguous, pd.Series(False, index=text.index)
    elif decided == "comma":
        as_point, as_comma = pd.Series(False, index=text.index), comma_only | ambiguous
    else:
        as_point, as_comma = point_only, comma_only
    standard = compact.where(~separated, None)
    standard[as_point] = compact[as_point].str.replace(",", "", regex=False)
    standard[as_comma] = compact[as_comma].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    values = pd.to_numeric(standard.where(given), errors="coerce").astype("float64")
    undecided = ambiguous & ~as_point & ~as_comma
    unreadable = given & ~undecided & (values.isna() | np.isinf(values))
    return values.where(~unreadable & ~undecided), unreadable, undecided


def parse_integer(text: pd.Series, native: np.ndarray | None = None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Whole numbers, format decided as for :func:`parse_number`; ``2019.0`` (as spreadsheets write it) is accepted, ``12.5`` is not."""
    values, unreadable, undecided = parse_number(text, native)
    fractional = values.notna() & (values != np.floor(values))
    too_large = values.abs() >= 2**53
    unreadable = unreadable | fractional | too_large
    return values.where(~unreadable), unreadable, undecided


def _compact(text: pd.Series) -> pd.Series:
    """Text without the spaces, no-break spaces and apostrophes used as thousands separators."""
    return text.str.replace(_SPACES, "", regex=True)


def _decide(point_only: pd.Series, comma_only: pd.Series) -> NumberFormat | None:
    points, commas = int(point_only.sum()), int(comma_only.sum())
    if points == commas:
        return None
    return "point" if points > commas else "comma"


def _separator_evidence(compact: pd.Series, native: np.ndarray | None) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Masks of values readable only with a decimal point, only with a decimal comma, or both ways."""
    written = compact.str.contains(r"[.,]", regex=True)
    if native is not None:
        written &= ~native
    point_ok = written & compact.str.fullmatch(_POINT_DECIMAL)
    comma_ok = written & compact.str.fullmatch(_COMMA_DECIMAL)
    return point_ok & ~comma_ok, comma_ok & ~point_ok, point_ok & comma_ok


def parse_date(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Dates as ``YYYY-MM-DD`` (a time of day is ignored) or ``DD.MM.YYYY``, mixed freely."""
    stripped = text.str.strip()
    given = stripped.ne("")
    values = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    iso = stripped.str.fullmatch(_ISO_DATE)
    dotted = stripped.str.fullmatch(_DOTTED_DATE)
    values[iso] = pd.to_datetime(stripped[iso].str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    values[dotted] = pd.to_datetime(stripped[dotted], format="%d.%m.%Y", errors="coerce")
    return values, given & values.isna()


def parse_boolean(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``true/false``, ``yes/no``, ``1/0`` in any letter case."""
    lowered = text.str.strip().str.lower()
    values = lowered.map(_BOOLEANS)
    return values.astype(object).where(values.notna(), None), lowered.ne("") & values.isna()


def parse_string(text: pd.Series, normalise: str | None = None, zero_pad: int | None = None) -> tuple[pd.Series, pd.Series]:
    """Text trimmed of surrounding spaces (leading zeros kept); optionally upper/lower-cased.

    ``zero_pad`` makes a fixed-width code whole again when a spreadsheet stored it as a number:
    digits-only values shorter than the width (``1``, and ``1.0`` as a float prints) get their leading
    zeros back (``01``); other values are left for the column's rules to judge.
    """
    stripped = text.str.strip()
    if zero_pad:
        whole = stripped.str.fullmatch(_WHOLE_NUMBER)
        digits = stripped[whole].str.replace(r"[.,]0+$", "", regex=True)
        stripped[whole] = digits.where(digits.str.len() >= zero_pad, digits.str.zfill(zero_pad))
    if normalise == "upper":
        stripped = stripped.str.upper()
    elif normalise == "lower":
        stripped = stripped.str.lower()
    return stripped.where(stripped.ne(""), None), pd.Series(False, index=text.index)
