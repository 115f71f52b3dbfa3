"""CSV files that are safe to open in a spreadsheet: delivered text cannot run as a formula.

Agencies open the quarantine files and ``estimates.csv`` in Excel or LibreOffice, which run a
cell starting with ``=``, ``+``, ``-`` or ``@`` (and, in some versions, after a tab or carriage
return) as a formula: a crafted firm name ``=HYPERLINK(...)`` would become a live link, worse
ones can start programs. Following the OWASP rule on CSV injection, such text cells get a leading
``'``, which spreadsheets show as text and do not evaluate. Numbers stay numbers: typed numeric
columns are not touched, and in columns the caller names numeric, a cell that is a plain number
(``-250``, ``-1.234,50``, ``-1e3``) keeps its sign. Pure pandas, no Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""

_PLAIN_NUMBER = r"[+-]?(?:\d[\d.,\s\u00a0\u202f']*|[.,]\d+)(?:[eE][+-]?\d+)?"


def neutralise_formulas(frame: pd.DataFrame, numeric_columns: Iterable[str] = ()) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells starting with a :data:`FORMULA_TRIGGERS` character begin with ``'``.

    Columns of a numeric dtype are returned unchanged; in ``numeric_columns`` (text holding
    numbers, such as a quarantined row's original ``export_value_eur``) plain numbers are kept.
    """
    numeric = set(numeric_columns)
    safe = frame.copy()
    for column in safe.columns:
        values = safe[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        text = values.astype("string")
        risky = text.str.startswith(FORMULA_TRIGGERS).fillna(False)
        if column in numeric:
            risky &= ~text.str.fullmatch(_PLAIN_NUMBER).fillna(False)
        if risky.any():
            safe[column] = values.astype(object).where(~risky, "'" + text[risky].astype(object))
    return safe


def write_csv(frame: pd.DataFrame, path: Path, numeric_columns: Iterable[str] = (), **to_csv) -> Path:
    """Write ``frame`` as UTF-8 CSV (no index) after :func:`neutralise_formulas`; returns ``path``.

    Every CSV the product writes goes through here. ``to_csv`` passes options such as ``float_format``.
    """
    path = Path(path)
    neutralise_formulas(frame, numeric_columns).to_csv(path, index=False, encoding="utf-8", **to_csv)
    return path
