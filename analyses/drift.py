"""What changed between two deliveries of a source: its columns, its volume, its content.

A data engineer compares each new delivery with the *previous* one: the latest delivery registered
before it that has the same table stored (:func:`previous_delivery`). Three questions, each an asset
check in the Dagster UI:

* **schema change** (:func:`schema_changes`): columns added, removed or read as another type. A
  column the contract requires that disappears or changes type fails; any other difference warns.
* **volume and content drift** (:func:`drift_outcomes`): the measures of the contract's
  ``deliveryDrift`` section (rows, firms, firms per year, export value per year, participants per
  service and year …), compared on the years both deliveries span, against the contract's thresholds.
* **freshness** (:func:`freshness_timedelta`): how long a source may go without a new delivery.

Pure pandas/pyarrow; no Dagster import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
import pyarrow as pa

from analyses.contracts.model import Contract, DriftMetric
from analyses.contracts.reading import LOCATION_COLUMNS

#: Days per unit of a contract's ``slaProperties.freshness`` (a month is a twelfth of a Julian year).
_DAYS_PER_UNIT = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}

#: How a text column reads, tried in this order; the first pattern every non-empty value matches wins.
_TEXT_TYPES = (
    ("integer", re.compile(r"[+-]?\d+")),
    ("number", re.compile(r"[+-]?(\d[\d.,]*|[.,]\d+)")),
    ("date", re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}\.\d{2}\.\d{4}")),
    ("boolean", re.compile(r"(?i)true|false|yes|no")),
)
YEAR = "year"


def previous_delivery(delivery: str, registered: Sequence[str], has_table: Callable[[str], bool]) -> str | None:
    """The delivery to compare ``delivery`` with, or ``None`` for the first one.

    ``registered`` lists delivery keys in the order they were first registered (Dagster keeps its
    dynamic partitions in that order); the previous delivery is the latest one registered before
    ``delivery`` for which ``has_table(key)`` is true (its table was materialised). A delivery not in
    ``registered`` is compared with the latest registered one that has the table.
    """
    earlier = list(registered[: registered.index(delivery)] if delivery in registered else registered)
    return next((key for key in reversed(earlier) if key != delivery and has_table(key)), None)


# --- schema -------------------------------------------------------------------------------------------


def arrow_logical_type(data_type: pa.DataType) -> str:
    """The contract's vocabulary (``integer``, ``number``, ``date``, ``boolean``, ``string``) for a Parquet type."""
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return "number"
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type):
        return "date"
    return "string"


def text_logical_type(values: pd.Series) -> str:
    """How the delivered text of an extra (non-contract) column reads: the narrowest type all non-empty values fit.

    Extra columns are kept as text, so a column delivered as codes (``1``, ``2``) one time and as
    words the next keeps the same storage type; this tells the two apart. All-empty reads as ``empty``.
    """
    text = values.dropna().astype(str).str.strip()
    text = text[text.ne("")]
    if text.empty:
        return "empty"
    for name, pattern in _TEXT_TYPES:
        if text.map(lambda value, p=pattern: p.fullmatch(value) is not None).all():
            return name
    return "string"


def table_schema(schema: pa.Schema, extra_values: Callable[[str], pd.Series], contract: Contract) -> dict[str, str]:
    """Column → logical type of a stored clean table (location columns left out).

    Contract columns take the type they are stored as; extra columns, stored as text, the type
    their values read as (``extra_values(column)`` returns them).
    """
    known = set(contract.column_names)
    types = {}
    for name, data_type in zip(schema.names, schema.types):
        if name in LOCATION_COLUMNS:
            continue
        logical = arrow_logical_type(data_type)
        types[name] = text_logical_type(extra_values(name)) if name not in known and logical == "string" else logical
    return types


@dataclass
class SchemaChange:
    """Differences between the previous and the current delivery's columns.

    ``added``/``removed`` map column → type; ``retyped`` maps column → (previous, current). ``failing``
    lists the differences that touch a column the contract requires.
    """

    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    failing: list[str] = field(default_factory=list)

    @property
    def differences(self) -> list[str]:
        """One plain line per difference, e.g. ``removed legal_form (string)``."""
        return (
            [f"added {name} ({kind})" for name, kind in self.added.items()]
            + [f"removed {name} ({kind})" for name, kind in self.removed.items()]
            + [f"retyped {name}: {old} → {new}" for name, (old, new) in self.retyped.items()]
        )

    @property
    def severity(self) -> str | None:
        """``ERROR`` when a required column was removed or retyped, ``WARN`` for other differences, else ``None``."""
        return "ERROR" if self.failing else "WARN" if self.differences else None


def schema_changes(previous: dict[str, str], current: dict[str, str], required: Iterable[str]) -> SchemaChange:
    """Compare two ``column → logical type`` schemas; a column that reads ``empty`` in either is not retyped."""
    required = set(required)
    change = SchemaChange(
        added={name: kind for name, kind in current.items() if name not in previous},
        removed={name: kind for name, kind in previous.items() if name not in current},
        retyped={
            name: (previous[name], kind)
            for name, kind in current.items()
            if name in previous and kind != previous[name] and "empty" not in (kind, previous[name])
        },
    )
    change.failing = [
        line for line, name in [(f"removed {n} ({k})", n) for n, k in change.removed.items()]
        + [(f"retyped {n}: {old} → {new}", n) for n, (old, new) in change.retyped.items()]
        if name in required
    ]
    return change


# --- volume and content -------------------------------------------------------------------------------


def drift_columns(contract: Contract) -> list[str]:
    """The columns the drift measures read (to load no more of a stored table than needed)."""
    drift = contract.drift
    if drift is None:
        return []
    wanted = {drift.year_column} if drift.year_column else set()
    for metric in drift.metrics:
        wanted |= {c for c in (metric.column, *metric.by) if c and c != YEAR}
    return sorted(wanted)


def _with_year(frame: pd.DataFrame, year_column: str | None) -> pd.DataFrame:
    if not year_column:
        return frame
    values = frame[year_column]
    year = values.dt.year if pd.api.types.is_datetime64_any_dtype(values) else pd.to_numeric(values)
    return frame.assign(**{YEAR: year.astype("Int64")})


def measure(frame: pd.DataFrame, metric: DriftMetric) -> pd.DataFrame:
    """``metric`` on ``frame`` (its year column added): the ``by`` columns and ``value``, one row per group."""
    kind = metric.measure.split(" ", 1)[0]
    if not metric.by:
        value = len(frame) if kind == "rows" else getattr(frame[metric.column], "nunique" if kind == "distinct" else "sum")()
        return pd.DataFrame({"value": [float(value)]})
    grouped = frame.groupby(list(metric.by), dropna=False)
    values = grouped.size() if kind == "rows" else getattr(grouped[metric.column], "nunique" if kind == "distinct" else "sum")()
    return values.astype(float).rename("value").reset_index()


@dataclass
class DriftOutcome:
    """One drift measure of one source, judged against the contract's thresholds.

    ``table`` has a row per group: ``group``, ``previous``, ``current``, ``change`` (relative to the
    previous delivery; NaN for a group that is new) and ``verdict`` (``ok``, ``warn``, ``fail``,
    ``new`` or ``not judged`` below ``min_previous``). ``observed`` is the largest absolute relative
    change among judged groups; ``worst`` names its group.
    """

    metric: DriftMetric
    table: pd.DataFrame
    years: tuple[int, int] | None
    observed: float
    worst: str
    severity: str | None

    @property
    def threshold(self) -> float:
        """The threshold the observed change is held against: fail's when it fails, else warn's."""
        return self.metric.fail_change if self.severity == "ERROR" else self.metric.warn_change

    def summary(self) -> str:
        name = self.metric.name.replace("_", " ")
        span = f" in {self.years[0]}–{self.years[1]}" if self.years else ""
        if self.table.empty:
            return f"{name}: nothing to compare{span}"
        verdict = {"ERROR": "beyond the fail threshold", "WARN": "beyond the warn threshold", None: "within thresholds"}
        return (f"{name}{span}: largest change {self.observed:+.1%} ({self.worst}), "
                f"{verdict[self.severity]} (warn above {self.metric.warn_change:.0%}, fail above {self.metric.fail_change:.0%})")


def overlapping_years(previous: pd.DataFrame, current: pd.DataFrame) -> tuple[int, int] | None:
    """From the later first year to the earlier last year of two tables with a ``year`` column; ``None`` if disjoint."""
    years = [frame[YEAR].dropna() for frame in (previous, current)]
    if any(y.empty for y in years):
        return None
    first, last = max(int(y.min()) for y in years), min(int(y.max()) for y in years)
    return (first, last) if first <= last else None


def drift_outcomes(previous: pd.DataFrame, current: pd.DataFrame, contract: Contract) -> list[DriftOutcome]:
    """Every ``deliveryDrift`` measure of ``contract``, previous against current delivery.

    For a source with a ``yearColumn`` both tables are cut to the years both span
    (:func:`overlapping_years`) and every year in between is compared, so a year missing from the
    current delivery shows as a 100 % drop while a year added at either end is not a change. A
    group only in the current delivery is ``new`` (warns); one only in the previous drops by 100 %.
    """
    drift = contract.drift
    if drift is None:
        return []
    previous, current = _with_year(previous, drift.year_column), _with_year(current, drift.year_column)
    years = None
    if drift.year_column:
        years = overlapping_years(previous, current)
        if years is None:
            previous, current = previous.iloc[0:0], current.iloc[0:0]
        else:
            previous, current = (f[f[YEAR].between(*years).fillna(False)] for f in (previous, current))
    return [_judge(metric, measure(previous, metric), measure(current, metric), years) for metric in drift.metrics]


def _judge(metric: DriftMetric, before: pd.DataFrame, after: pd.DataFrame, years: tuple[int, int] | None) -> DriftOutcome:
    by = list(metric.by)
    if by:
        table = before.merge(after, on=by, how="outer", suffixes=("_previous", "_current"))
        if years and YEAR in by:  # every year of the span gets a row, also one that neither delivery has
            others = [column for column in by if column != YEAR]
            grid = (table[others].drop_duplicates() if others else pd.DataFrame(index=[0])).merge(
                pd.DataFrame({YEAR: range(years[0], years[1] + 1)}), how="cross")
            table = grid.merge(table.astype({YEAR: "int64"}), on=by, how="outer")
        table = table.rename(columns={"value_previous": "previous", "value_current": "current"}).sort_values(by)
    else:
        table = pd.DataFrame({"previous": before["value"], "current": after["value"]})
    table[["previous", "current"]] = table[["previous", "current"]].fillna(0.0)
    change = (table["current"] - table["previous"]) / table["previous"].where(table["previous"] > 0)
    verdict = pd.Series("ok", index=table.index, dtype=object)
    verdict[change.abs() > metric.warn_change] = "warn"
    verdict[change.abs() > metric.fail_change] = "fail"
    verdict[(table["previous"] == 0) & (table["current"] > 0)] = "new"
    verdict[(table["previous"] > 0) & (table["previous"] < metric.min_previous)] = "not judged"
    groups = [", ".join(f"{column} {value}" for column, value in zip(by, key)) or "all"
              for key in (zip(*(table[column].tolist() for column in by)) if by else [()] * len(table))]
    frame = pd.DataFrame({"group": groups, "previous": table["previous"].to_numpy(), "current": table["current"].to_numpy(),
                          "change": change.to_numpy(), "verdict": verdict.to_numpy()})
    judged = frame.loc[frame["verdict"].isin(["ok", "warn", "fail"]), "change"].dropna()
    worst = judged.abs().idxmax() if not judged.empty else None
    severity = "ERROR" if frame["verdict"].eq("fail").any() else "WARN" if frame["verdict"].isin(["warn", "new"]).any() else None
    return DriftOutcome(metric=metric, table=frame, years=years,
                        observed=float(judged[worst]) if worst is not None else 0.0,
                        worst=frame.at[worst, "group"] if worst is not None else "—", severity=severity)


def freshness_timedelta(contract: Contract) -> timedelta | None:
    """The contract's ``slaProperties.freshness`` as a time span (a month is 365.25/12 days); ``None`` when unset."""
    if contract.freshness_period is None:
        return None
    value, unit = contract.freshness_period
    return timedelta(days=value * _DAYS_PER_UNIT[unit])


@dataclass(frozen=True)
class FreshnessVerdict:
    """Age of a source's newest delivery against the contract's interval (days); ``due_at`` in epoch seconds."""

    age_days: float
    allowed_days: float
    due_at: float | None

    @property
    def fresh(self) -> bool:
        return self.due_at is not None and self.age_days <= self.allowed_days

    def summary(self, source: str, rule: str) -> str:
        if self.due_at is None:
            return f"{source}: no delivery read yet (expected: {rule})"
        state = "overdue" if not self.fresh else "fresh"
        return (f"{source}: {state}: newest delivery {self.age_days:.0f} days old, a new one is due every "
                f"{self.allowed_days:.0f} days ({rule})")


def freshness_verdict(received_at: float | None, now: float, allowed: timedelta) -> FreshnessVerdict:
    """Compare the time the newest delivery was received (epoch seconds; ``None``: never) with ``now``."""
    allowed_days = allowed.total_seconds() / 86400
    if received_at is None:
        return FreshnessVerdict(age_days=float("inf"), allowed_days=allowed_days, due_at=None)
    return FreshnessVerdict(age_days=(now - received_at) / 86400, allowed_days=allowed_days,
                            due_at=received_at + allowed.total_seconds())
