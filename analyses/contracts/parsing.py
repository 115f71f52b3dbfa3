"""Typing text cells under a contract: numbers with decimal commas, two date formats, booleans.

Each parser returns the typed values and a mask of cells that were given but could not be
read; empty cells are neither (they become NaN/NaT/None and are judged by ``required``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_DOT_DECIMAL = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+"
_COMMA_DECIMAL = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?|[+-]?,\d+"
_SPACES = r"[\s\u00a0\u202f']"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_DOTTED_DATE = r"\d{1,2}\.\d{1,2}\.\d{4}"
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_number(text: pd.Series, comma_is_decimal_by_default: bool) -> tuple[pd.Series, pd.Series]:
    """Parse numbers written as ``1234.5``, ``1,234.5``, ``1.234,5``, ``1234,5`` or ``1 234,5``.

    The decimal mark is decided per column (the convention that reads more of its values),
    falling back to the file's convention (``;``-separated files use decimal commas).
    """
    compact = text.str.replace(_SPACES, "", regex=True)
    given = compact.ne("")
    separated = compact.str.contains(r"[.,]", regex=True)
    candidates = compact[separated]
    dot_ok = candidates.str.fullmatch(_DOT_DECIMAL)
    comma_ok = candidates.str.fullmatch(_COMMA_DECIMAL)
    comma_wins = comma_ok.sum() > dot_ok.sum() or (
        comma_ok.sum() == dot_ok.sum() and comma_is_decimal_by_default
    )
    if comma_wins:
        converted = candidates.where(comma_ok).str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        converted = candidates.where(dot_ok).str.replace(",", "", regex=False)
    standard = compact.copy()
    standard[separated] = converted
    values = pd.to_numeric(standard.where(given), errors="coerce").astype("float64")
    unreadable = given & (values.isna() | np.isinf(values))
    return values.where(~unreadable), unreadable


def parse_integer(text: pd.Series, comma_is_decimal_by_default: bool) -> tuple[pd.Series, pd.Series]:
    """Whole numbers; ``2019.0`` (as spreadsheets write it) is accepted, ``12.5`` is not."""
    values, unreadable = parse_number(text, comma_is_decimal_by_default)
    fractional = values.notna() & (values != np.floor(values))
    too_large = values.abs() >= 2**53
    unreadable = unreadable | fractional | too_large
    return values.where(~unreadable), unreadable


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


def parse_string(text: pd.Series, normalise: str | None) -> tuple[pd.Series, pd.Series]:
    """Text trimmed of surrounding spaces (leading zeros kept); optionally upper/lower-cased."""
    stripped = text.str.strip()
    if normalise == "upper":
        stripped = stripped.str.upper()
    elif normalise == "lower":
        stripped = stripped.str.lower()
    return stripped.where(stripped.ne(""), None), pd.Series(False, index=text.index)
