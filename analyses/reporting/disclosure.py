"""Statistical disclosure control for everything the report publishes.

Firm-level export data is confidential, so before anything is written:

* every estimate rests on at least `min_firms` treated and comparison firms;
* every descriptive cell rests on at least `min_firms` contributing firms,
  and magnitude cells pass the dominance rules (largest firm <= 50 %, two
  largest <= 67 % of the cell total);
* cells that fail are suppressed, and further cells are suppressed
  (secondary suppression) so that no suppressed value can be recovered
  from a published total or an overall estimate;
* firm counts cannot be differenced: within a family of published estimate
  rows (same treatment, outcome, estimator and aggregation: the event times,
  cohorts or calendar years of one analysis), no two `n_treated` (or
  `n_control`) values may differ by 1 to `min_firms - 1` firms, which would
  reveal a group that small (e.g. 214 firms at e = -1 and 217 at e = 0: a
  3-firm cohort). Such a family's column is rounded down to a multiple of
  `min_firms`, after which every difference is 0 or at least `min_firms`;
* a subgroup's values (``in_cluster=0`` and ``in_cluster=1``) partition the supported firms, so the
  headline and all but one value would reveal the last one: when one value of a subgroup is withheld, the
  other values of that analysis and the test of their difference are withheld too;
* no firm identifier appears in the published text.

Rounding rather than suppression for the differencing rule: the rule sees
only counts, not whether one row's firms contain another's, so it also
flags harmless pairs (two cohorts of 16 and 19 firms). Each row still rests
on at least `min_firms` firms and the estimates of different event times,
cohorts or years are averages over different cells, so they cannot be
subtracted into a small group's effect; only the counts can. Rounding the
counts closes that, keeps every estimate, and rounding *down* keeps "at
least `min_firms` firms" true. Suppressing rows instead would withhold safe
estimates and need chains of further suppressions. The evaluation's cohort
floor (`settings.cohort_floor`) is the first line: no cohort smaller than
the minimum is estimated, so this rule bites for counts that are not sums
of whole cohorts (TWFE event times in an unbalanced register, new models).

Each rule application is one row of `DisclosureResult.checks`, which is the
evidence the Dagster asset check attaches to the report.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from analyses.reporting.settings import EXTRA_DEFAULTS, HEADLINE_FAMILY, ReportSettings

# One published row: the first five identify a headline estimate; mechanism rows add their subgroup, dose and
# model family (``analyses.reporting.settings.MECHANISM_EXTRA_COLUMNS``).
ESTIMATE_KEYS = ["treatment", "outcome", "estimator", "aggregation", "event_time", "subgroup", "dose", "family"]
# Rows of one family can be set side by side and their counts subtracted.
FAMILY_KEYS = ["treatment", "outcome", "estimator", "aggregation", "subgroup", "family"]
COUNT_COLUMNS = ("n_treated", "n_control")
ROUNDED_COLUMNS = FAMILY_KEYS + ["column", "reason"]
CHECK_COLUMNS = ["check", "cell", "value", "threshold", "outcome"]
# cell_total is the sum of the firm contributions behind a magnitude cell
# (for a mean it differs from the published value); NaN for counts.
CELL_COLUMNS = ["table", "row", "column", "value", "n_firms", "largest", "second_largest",
                "cell_total", "magnitude", "is_total", "follows"]
# Aggregations whose rows combine into the overall estimate with published
# weights, so one suppressed row could be backed out of the others.
ADDITIVE_AGGREGATIONS = ("group", "calendar")
SUPPRESSED_MARK = "[c]"


def _number_or_none(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _text_or(value, default: str) -> str:
    return default if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" \
        else str(value)


def estimate_key(row: Mapping) -> tuple:
    """Hashable key of an estimate row (``ESTIMATE_KEYS``); NaN event times and doses become None, and a row
    without the mechanism columns (or with them empty, as read back from a CSV) is a headline row."""
    return (row["treatment"], row["outcome"], row["estimator"], row["aggregation"],
            _number_or_none(row["event_time"]), _text_or(row.get("subgroup"), ""),
            _number_or_none(row.get("dose")), _text_or(row.get("family"), HEADLINE_FAMILY))


def with_extra_columns(estimates: pd.DataFrame) -> pd.DataFrame:
    """``estimates`` with the mechanism columns, headline defaults where absent or empty (``EXTRA_DEFAULTS``)."""
    out = estimates.copy()
    for column, default in EXTRA_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
        elif isinstance(default, str):
            out[column] = out[column].fillna(default).replace("", default).astype(str)
    return out


def _cell_name(key: tuple) -> str:
    treatment, outcome, estimator, aggregation, event_time, subgroup, dose, family = key
    suffix = ("" if event_time is None else f"/{event_time:g}") + (f"/{subgroup}" if subgroup else "") \
        + ("" if dose is None else f"/dose={dose:g}") + ("" if family == HEADLINE_FAMILY else f" ({family})")
    return f"estimate {treatment}/{outcome}/{estimator}/{aggregation}{suffix}"


def _family_name(family: tuple) -> str:
    """``treatment/outcome/estimator/aggregation``, then the subgroup and model family of a mechanism row."""
    shown = [str(part) for part in family[:4]] + [str(part) for part in family[4:] if part not in ("", HEADLINE_FAMILY)]
    return "/".join(shown)


@dataclass
class DisclosureResult:
    """Outcome of the disclosure rules.

    `checks` has one row per rule and cell with `outcome` in
    {pass, suppressed, secondary, coarsened, fail}. Suppression is the
    remedy, not a failure: `passed` is False only when something that
    breaks a rule would still be published. `rounded_counts` lists the
    estimate families whose `column` (n_treated or n_control) is published
    rounded down to a multiple of `settings.min_firms`.
    """

    checks: pd.DataFrame
    suppressed_estimates: pd.DataFrame
    suppressed_cells: pd.DataFrame
    settings: ReportSettings = field(default_factory=ReportSettings)
    rounded_counts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ROUNDED_COLUMNS))

    @property
    def passed(self) -> bool:
        return not (self.checks["outcome"] == "fail").any()

    def suppressed_keys(self) -> set[tuple]:
        return {estimate_key(row) for row in self.suppressed_estimates.to_dict("records")}

    def is_cell_suppressed(self, table: str, row: str, column: str) -> bool:
        cells = self.suppressed_cells
        return bool(((cells["table"] == table) & (cells["row"] == row) & (cells["column"] == column)).any())

    def with_checks(self, more: pd.DataFrame) -> "DisclosureResult":
        checks = [frame for frame in (self.checks, more) if not frame.empty]
        return DisclosureResult(pd.concat(checks, ignore_index=True) if checks else self.checks,
                                self.suppressed_estimates, self.suppressed_cells, self.settings, self.rounded_counts)

    def metadata(self) -> dict:
        """JSON-able summary for Dagster asset-check metadata."""
        counts = self.checks.groupby("outcome").size().to_dict() if not self.checks.empty else {}
        failures = self.checks[self.checks["outcome"] == "fail"]
        return {
            "passed": bool(self.passed),
            "min_firms": int(self.settings.min_firms),
            "dominance_top1": float(self.settings.dominance_top1),
            "dominance_top2": float(self.settings.dominance_top2),
            "n_checks": int(len(self.checks)),
            "outcomes": {str(k): int(v) for k, v in counts.items()},
            "n_suppressed_estimates": int(len(self.suppressed_estimates)),
            "n_suppressed_cells": int(len(self.suppressed_cells)),
            "n_rounded_counts": int(len(self.rounded_counts)),
            "suppressed_estimates": [
                f"{_cell_name(estimate_key(r))}: {r['reason']}" for r in self.suppressed_estimates.to_dict("records")
            ][:200],
            "suppressed_cells": [
                f"{r['table']}[{r['row']}, {r['column']}]: {r['reason']}" for r in self.suppressed_cells.to_dict("records")
            ][:200],
            "rounded_counts": [
                f"estimates {_family_name(tuple(r[k] for k in FAMILY_KEYS))}: {r['column']} {r['reason']}"
                for r in self.rounded_counts.to_dict("records")
            ][:200],
            "failures": [f"{r['check']} {r['cell']}: {r['value']} vs {r['threshold']}"
                         for r in failures.to_dict("records")][:200],
        }


def _check(check: str, cell: str, value, threshold, outcome: str) -> dict:
    return {"check": check, "cell": cell, "value": value, "threshold": threshold, "outcome": outcome}


def _estimate_checks(estimates: pd.DataFrame, settings: ReportSettings) -> tuple[list[dict], dict[tuple, str]]:
    checks: list[dict] = []
    suppressed: dict[tuple, str] = {}
    for row in estimates.to_dict("records"):
        key = estimate_key(row)
        name = _cell_name(key)
        for column, label in (("n_treated", "treated"), ("n_control", "comparison")):
            count = int(row[column])
            ok = count >= settings.min_firms
            checks.append(_check(f"min_{label}_firms", name, count, settings.min_firms,
                                 "pass" if ok else "suppressed"))
            if not ok and key not in suppressed:
                suppressed[key] = f"fewer than {settings.min_firms} {label} firms ({count})"
    checks.extend(_secondary_estimates(estimates, suppressed))
    checks.extend(_subgroup_partitions(estimates, suppressed))
    return checks, suppressed


def _subgroup_partitions(estimates: pd.DataFrame, suppressed: dict[tuple, str]) -> list[dict]:
    """Withhold every value of a subgroup (and their difference test) once one value is withheld."""
    checks = []
    rows = estimates.loc[estimates["subgroup"].str.contains("=", regex=False)]
    name = rows["subgroup"].str.split("=").str[0]
    for (treatment, outcome, family, _), part in rows.groupby(["treatment", "outcome", "family", name], sort=False):
        keys = [estimate_key(r) for r in part.to_dict("records")]
        hidden = [k for k in keys if k in suppressed]
        if not hidden:
            continue
        test = estimates.loc[(estimates["aggregation"] == "subgroup_difference") & (estimates["treatment"] == treatment)
                             & (estimates["outcome"] == outcome) & (estimates["family"] == family)
                             & (estimates["subgroup"] == hidden[0][5].split("=")[0])]
        for victim in [k for k in keys if k not in suppressed] + [estimate_key(r) for r in test.to_dict("records")]:
            if victim not in suppressed:
                suppressed[victim] = f"secondary suppression: protects {_cell_name(hidden[0])}"
                checks.append(_check("secondary_suppression", _cell_name(victim), 1, 2, "secondary"))
    return checks


def _secondary_estimates(estimates: pd.DataFrame, suppressed: dict[tuple, str]) -> list[dict]:
    """Keep at least two rows suppressed in any cohort/calendar set that has one."""
    checks = []
    subset = estimates[estimates["aggregation"].isin(ADDITIVE_AGGREGATIONS)]
    for _, rows in subset.groupby(["treatment", "outcome", "estimator", "aggregation"]):
        keys = [estimate_key(r) for r in rows.to_dict("records")]
        hidden = [k for k in keys if k in suppressed]
        if len(hidden) != 1:
            continue
        candidates = rows.assign(_key=keys)
        candidates = candidates[~candidates["_key"].isin(hidden)].sort_values("n_treated")
        if candidates.empty:
            continue
        victim = candidates.iloc[0]["_key"]
        suppressed[victim] = f"secondary suppression: protects {_cell_name(hidden[0])}"
        checks.append(_check("secondary_suppression", _cell_name(victim), 1, 2, "secondary"))
    return checks


def closest_counts(published: pd.DataFrame) -> list[dict]:
    """Per estimate family and count column, the two rows whose distinct counts are closest.

    `published` holds the rows as published (index labels identify them).
    Returns one dict per family and column with at least two distinct
    counts: `family` (tuple of FAMILY_KEYS), `column`, `gap` (firms, > 0) and
    `rows` (the two index labels). Any pair closer than the disclosure
    minimum shows up here, because the closest pair is adjacent once the
    distinct counts are sorted.
    """
    found = []
    for family, rows in with_extra_columns(published).groupby(FAMILY_KEYS, sort=False):
        for column in COUNT_COLUMNS:
            first = rows[column].astype("int64").reset_index().drop_duplicates(column).sort_values(column)
            if len(first) < 2:
                continue
            gaps = first[column].diff().to_numpy()[1:]
            at = int(np.argmin(gaps))
            labels = first.iloc[[at, at + 1], 0].tolist()
            found.append({"family": family, "column": column, "gap": int(gaps[at]), "rows": sorted(labels)})
    return found


def _differencing(published: pd.DataFrame, settings: ReportSettings) -> tuple[list[dict], pd.DataFrame]:
    """Checks and the families whose count column must be rounded (see the module docstring)."""
    checks, rounded = [], []
    for close in closest_counts(published):
        ok = close["gap"] >= settings.min_firms
        checks.append(_check(f"differencing_{close['column']}", f"estimates {_family_name(close['family'])}",
                             close["gap"], settings.min_firms, "pass" if ok else "coarsened"))
        if not ok:
            rounded.append({**dict(zip(FAMILY_KEYS, close["family"])), "column": close["column"],
                            "reason": f"rounded down to a multiple of {settings.min_firms} "
                                      f"(two published rows differ by {close['gap']} firms)"})
    return checks, pd.DataFrame(rounded, columns=ROUNDED_COLUMNS)


def _cell_label(cell: Mapping) -> str:
    return f"{cell['table']}[{cell['row']}, {cell['column']}]"


def _primary_cell_checks(cells: pd.DataFrame, settings: ReportSettings) -> tuple[list[dict], dict[int, str]]:
    checks: list[dict] = []
    reasons: dict[int, str] = {}
    for index, cell in cells.iterrows():
        label = _cell_label(cell)
        n_firms = int(cell["n_firms"])
        empty = n_firms == 0 and float(cell["value"]) == 0.0
        enough = n_firms >= settings.min_firms or empty
        checks.append(_check("min_firms", label, n_firms, settings.min_firms, "pass" if enough else "suppressed"))
        if not enough:
            reasons[index] = f"fewer than {settings.min_firms} firms ({n_firms})"
        if not bool(cell["magnitude"]) or empty:
            continue
        total = float(cell["cell_total"])
        top1 = float(cell["largest"]) / total if total > 0 else 0.0
        top2 = (float(cell["largest"]) + float(cell["second_largest"])) / total if total > 0 else 0.0
        for rule, share, limit in (("dominance_top1", top1, settings.dominance_top1),
                                   ("dominance_top2", top2, settings.dominance_top2)):
            ok = share <= limit
            checks.append(_check(rule, label, round(share, 4), limit, "pass" if ok else "suppressed"))
            if not ok and index not in reasons:
                reasons[index] = f"{rule.replace('_', ' ')}: {share:.0%} of the cell total > {limit:.0%}"
    return checks, reasons


def _propagate(cells: pd.DataFrame, reasons: dict[int, str]) -> tuple[list[dict], bool]:
    """Apply `follows` links and secondary suppression once; report whether anything changed."""
    checks: list[dict] = []
    changed = False
    # links: a mean is suppressed with its total (total = mean x count)
    key_to_index = {(c["table"], c["row"], c["column"]): i for i, c in cells.iterrows()}
    for index, cell in cells.iterrows():
        leader = cell["follows"]
        if not leader or index in reasons:
            continue
        leader_index = key_to_index.get((leader, cell["row"], cell["column"]))
        if leader_index is not None and leader_index in reasons:
            reasons[index] = f"linked: {leader} cell is suppressed"
            checks.append(_check("linked_suppression", _cell_label(cell), 1, 0, "secondary"))
            changed = True
    # secondary suppression: no total relation may contain exactly one hidden cell
    for (table, column), relation in cells.groupby(["table", "column"]):
        if not relation["is_total"].any():
            continue
        hidden = [i for i in relation.index if i in reasons]
        if len(hidden) != 1:
            continue
        candidates = relation[~relation.index.isin(hidden) & ~relation["is_total"].astype(bool)]
        if candidates.empty:
            candidates = relation[~relation.index.isin(hidden)]
        if candidates.empty:
            continue
        # suppressing a structural zero protects nothing, so prefer non-empty cells
        order = candidates.assign(_empty=candidates["value"] == 0).sort_values(["_empty", "value", "n_firms"])
        victim = order.index[0]
        reasons[victim] = f"secondary suppression: protects {_cell_label(cells.loc[hidden[0]])}"
        checks.append(_check("secondary_suppression", _cell_label(cells.loc[victim]), 1, 2, "secondary"))
        changed = True
    return checks, changed


def check_cells(cells: pd.DataFrame, settings: ReportSettings) -> tuple[list[dict], pd.DataFrame]:
    """Primary and secondary suppression of descriptive cells (see `describe_panel`)."""
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise ValueError(f"descriptive cells are missing columns {missing}; build them with describe_panel()")
    cells = cells.reset_index(drop=True)
    checks, reasons = _primary_cell_checks(cells, settings)
    for _ in range(len(cells) + 1):
        more, changed = _propagate(cells, reasons)
        checks.extend(more)
        if not changed:
            break
    suppressed = pd.DataFrame(
        [{"table": cells.at[i, "table"], "row": cells.at[i, "row"], "column": cells.at[i, "column"],
          "reason": reason} for i, reason in sorted(reasons.items())],
        columns=["table", "row", "column", "reason"],
    )
    return checks, suppressed


def check_disclosure(estimates: pd.DataFrame, descriptives: pd.DataFrame | None,
                     settings: ReportSettings = ReportSettings()) -> DisclosureResult:
    """Apply the publication rules to estimates and descriptive cells.

    `descriptives` is the long cell table produced by `describe_panel` (and
    `cohort_cells`); pass None or an empty frame when no descriptives are
    published.
    """
    estimates = with_extra_columns(estimates)
    checks, suppressed = _estimate_checks(estimates, settings)
    published = estimates.loc[_kept(estimates, suppressed)]
    differencing_checks, rounded = _differencing(published, settings)
    cell_checks: list[dict] = []
    suppressed_cells = pd.DataFrame(columns=["table", "row", "column", "reason"])
    if descriptives is not None and not descriptives.empty:
        cell_checks, suppressed_cells = check_cells(descriptives, settings)
    suppressed_estimates = pd.DataFrame(
        [dict(zip(ESTIMATE_KEYS, key), reason=reason) for key, reason in suppressed.items()],
        columns=ESTIMATE_KEYS + ["reason"],
    )
    return DisclosureResult(pd.DataFrame(checks + differencing_checks + cell_checks, columns=CHECK_COLUMNS),
                            suppressed_estimates, suppressed_cells, settings, rounded)


def _kept(estimates: pd.DataFrame, suppressed) -> np.ndarray:
    """Boolean mask of the rows not suppressed (an array, so that no rows at all keeps the columns)."""
    return np.array([estimate_key(row) not in suppressed for row in estimates.to_dict("records")], dtype=bool)


def drop_suppressed(estimates: pd.DataFrame, disclosure: DisclosureResult | None) -> pd.DataFrame:
    """The estimates as published: suppressed rows dropped, differencing-prone counts rounded down."""
    estimates = with_extra_columns(estimates)
    if disclosure is None:
        return estimates
    hidden = disclosure.suppressed_keys()
    published = estimates.loc[_kept(estimates, hidden)].copy()
    base = disclosure.settings.min_firms
    for rule in disclosure.rounded_counts.to_dict("records"):
        family = np.logical_and.reduce([published[key] == rule[key] for key in FAMILY_KEYS])
        published.loc[family, rule["column"]] = published.loc[family, rule["column"]] // base * base
    return published


# --- descriptive cells ------------------------------------------------------

GROUP_LABELS = {"advisory": "Advisory support", "network": "Network services",
                "grant": "Export grants", "none": "No support"}
TOTAL_ROW = "All firms"


def year_bands(years: Iterable[int], width: int = 3) -> list[tuple[int, int]]:
    """Consecutive bands of `width` years; a short last band joins the one before."""
    ordered = sorted(set(int(y) for y in years))
    if not ordered:
        return []
    start, end = ordered[0], ordered[-1]
    bands = [(lo, min(lo + width - 1, end)) for lo in range(start, end + 1, width)]
    if len(bands) > 1 and bands[-1][1] - bands[-1][0] + 1 < max(2, width - 1):
        last = bands.pop()
        bands[-1] = (bands[-1][0], last[1])
    return bands


def _band_label(band: tuple[int, int]) -> str:
    return f"{band[0]}\u2013{band[1]}" if band[0] != band[1] else str(band[0])


def describe_panel(panel: pd.DataFrame, band_width: int = 3) -> pd.DataFrame:
    """Descriptive cells by group and year band, each a per-year average over the band's years.

    Bands can differ in length (the last takes the remainder), so a sum over a band would jump by
    construction: firms, exporting firms and export value are averaged per year (firm-years / years,
    value / years), and the mean export value is per exporting firm-year. ``n_firms`` counts the
    distinct firms behind a cell (the disclosure minimum). Firm contributions are summed within each
    cell so the dominance rules can be applied; only the two largest contributions leave this
    function, and only to the disclosure check, never to the report.
    """
    required = ["firm_id", "year", "exporter", "export_value_eur", "first_service"]
    missing = [c for c in required if c not in panel.columns]
    if missing:
        raise ValueError(f"panel is missing columns {missing} needed for the descriptive tables")
    cells: list[dict] = []
    frame = panel[required].copy()
    frame["export_value_eur"] = frame["export_value_eur"].fillna(0.0)
    for band in year_bands(frame["year"], band_width):
        in_band = frame[frame["year"].between(*band)]
        column = _band_label(band)
        n_years = in_band["year"].nunique()
        groups = [(GROUP_LABELS.get(g, str(g)), in_band[in_band["first_service"] == g], False)
                  for g in GROUP_LABELS] + [(TOTAL_ROW, in_band, True)]
        for label, rows, is_total in groups:
            cells.extend(_group_cells(rows, label, column, is_total, n_years))
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


def _group_cells(rows: pd.DataFrame, label: str, column: str, is_total: bool, n_years: int) -> list[dict]:
    per_firm = rows.groupby("firm_id").agg(value=("export_value_eur", "sum"), exported=("exporter", "max"))
    n_firms = len(per_firm)
    n_exporters = int((per_firm["exported"] > 0).sum())
    years = max(n_years, 1)
    contributions = np.sort(per_firm["value"].to_numpy(dtype=float))[::-1]
    positive = contributions[contributions > 0]
    total = float(positive.sum())
    largest = float(positive[0]) if positive.size else 0.0
    second = float(positive[1]) if positive.size > 1 else 0.0
    exporter_years = int((rows["export_value_eur"] > 0).sum())
    mean = total / exporter_years if exporter_years else 0.0
    base = {"row": label, "column": column, "is_total": is_total}
    return [
        {**base, "table": "firms", "value": len(rows) / years, "n_firms": n_firms, "largest": np.nan,
         "second_largest": np.nan, "magnitude": False, "follows": "", "cell_total": np.nan},
        {**base, "table": "exporters", "value": int((rows["exporter"] > 0).sum()) / years, "n_firms": n_exporters,
         "largest": np.nan, "second_largest": np.nan, "magnitude": False, "follows": "", "cell_total": np.nan},
        {**base, "table": "total_export_value", "value": total / years, "n_firms": int(positive.size),
         "largest": largest, "second_largest": second, "magnitude": True, "follows": "", "cell_total": total},
        # a mean is not additive, so it is not part of a total relation
        {**base, "is_total": False, "table": "mean_export_value", "value": mean, "n_firms": int(positive.size),
         "largest": largest, "second_largest": second, "magnitude": True, "follows": "total_export_value",
         "cell_total": total},
    ]


def cohort_cells(cohorts: pd.DataFrame) -> pd.DataFrame:
    """Cohort sizes as descriptive cells: rows are cohorts, columns services, plus a total row."""
    cells = []
    for treatment, rows in cohorts.groupby("treatment", sort=False):
        for cohort, n in zip(rows["cohort"], rows["n_firms"]):
            cells.append({"table": "cohorts", "row": str(int(cohort)), "column": str(treatment), "value": int(n),
                          "n_firms": int(n), "largest": np.nan, "second_largest": np.nan, "magnitude": False,
                          "is_total": False, "follows": "", "cell_total": np.nan})
        total = int(rows["n_firms"].sum())
        cells.append({"table": "cohorts", "row": "All cohorts", "column": str(treatment), "value": total,
                      "n_firms": total, "largest": np.nan, "second_largest": np.nan, "magnitude": False,
                      "is_total": True, "follows": "", "cell_total": np.nan})
    return pd.DataFrame(cells, columns=CELL_COLUMNS)


# --- propensity-score overlap ----------------------------------------------

def coarsen_overlap(overlap: pd.DataFrame, min_firms: int) -> tuple[pd.DataFrame, list[dict]]:
    """Merge neighbouring histogram bins until each non-empty bar holds >= `min_firms` firms.

    A bar with two or three firms would locate individual firms' scores, so
    small bins are pooled with their neighbours; empty bins stay visible
    because gaps are what an overlap plot is for.
    """
    merged_rows: list[dict] = []
    checks: list[dict] = []
    for (treatment, group), rows in overlap.sort_values("bin_lower").groupby(["treatment", "group"], sort=False):
        bars: list[dict] = []
        pending: dict | None = None   # a too-small bar still collecting firms
        gap: list[dict] = []          # empty bins seen while a bar is pending
        for row in rows.to_dict("records"):
            span = {"bin_lower": row["bin_lower"], "bin_upper": row["bin_upper"], "n_firms": int(row["n_firms"])}
            if span["n_firms"] == 0:
                (gap if pending is not None else bars).append(span)
                continue
            if pending is None:
                pending = span
            else:
                # empty bins inside a pooled bar would pinpoint its few firms
                pending = {"bin_lower": pending["bin_lower"], "bin_upper": span["bin_upper"],
                           "n_firms": pending["n_firms"] + span["n_firms"]}
                gap = []
            if pending["n_firms"] >= min_firms:
                bars.append(pending)
                pending = None
        if pending is not None:
            # the small remainder joins the last bar with firms, across any empty bins
            while bars and bars[-1]["n_firms"] == 0:
                gap.insert(0, bars.pop())
            if bars:
                last = bars.pop()
                pending = {"bin_lower": last["bin_lower"], "bin_upper": pending["bin_upper"],
                           "n_firms": last["n_firms"] + pending["n_firms"]}
            if pending["n_firms"] >= min_firms:
                bars.append(pending)
        bars.extend(gap)
        total = int(rows["n_firms"].sum())
        outcome = "pass" if len(bars) == len(rows) else ("coarsened" if bars else "suppressed")
        checks.append(_check("overlap_min_firms_per_bin", f"overlap {treatment}/{group}",
                             total, min_firms, outcome))
        merged_rows.extend({"treatment": treatment, "group": group, **bar} for bar in bars)
    return pd.DataFrame(merged_rows, columns=["treatment", "group", "bin_lower", "bin_upper", "n_firms"]), checks


# --- identifiers in published text -----------------------------------------

_DATA_URI = re.compile(r"data:[a-z/+.-]+;base64,[A-Za-z0-9+/=\s]+")
_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")


def scannable_ids(firm_ids: Iterable) -> set[str]:
    """Identifiers distinctive enough to search for in text.

    Short all-digit ids (e.g. 17) are indistinguishable from ordinary
    numbers in a report, so they are left out of the text scan; the
    published columns are checked separately.
    """
    ids = {str(i) for i in firm_ids if i is not None and str(i) != "nan"}
    return {i for i in ids if not i.isdigit() or len(i) >= 6}


def redact_identifiers(text: str, firm_ids: Iterable) -> str:
    """Replace firm identifiers in free text (e.g. upstream data-quality warnings) with a neutral mark."""
    targets = scannable_ids(firm_ids)
    return _TOKEN.sub(lambda match: "[firm]" if match.group(0) in targets else match.group(0), text)


def scan_for_identifiers(texts: Mapping[str, str], firm_ids: Iterable) -> pd.DataFrame:
    """One check row per published text: how many firm identifiers it contains (must be 0)."""
    targets = scannable_ids(firm_ids)
    rows = []
    for name, text in texts.items():
        tokens = set(_TOKEN.findall(_DATA_URI.sub(" ", text)))
        found = sorted(tokens & targets)
        rows.append(_check("no_firm_identifiers", name, len(found), 0, "pass" if not found else "fail"))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def _published_table_checks(published: pd.DataFrame, name: str, settings: ReportSettings,
                            first_line: int) -> list[dict]:
    """No identifier columns, enough firms behind every row, no counts that can be differenced.

    `published` is the table as read back (default index); rows are named
    by file line (CSV, header = line 1) or row number (Parquet).
    """
    rows = []
    unit = "line" if first_line > 1 else "row"
    for forbidden in ("firm_id", "firm_name", "name"):
        present = forbidden in published.columns
        rows.append(_check("no_identifier_columns", f"{name}:{forbidden}", int(present), 0,
                           "fail" if present else "pass"))
    for line, record in enumerate(published.to_dict("records"), start=first_line):
        for column in COUNT_COLUMNS:
            ok = int(record[column]) >= settings.min_firms
            rows.append(_check(f"published_min_{column}", f"{name} {unit} {line}",
                               int(record[column]), settings.min_firms, "pass" if ok else "fail"))
    for close in closest_counts(published):
        first, second = (label + first_line for label in close["rows"])
        ok = close["gap"] >= settings.min_firms
        rows.append(_check(f"published_differencing_{close['column']}",
                           f"{name} {_family_name(close['family'])} {unit}s {first} and {second}",
                           close["gap"], settings.min_firms, "pass" if ok else "fail"))
    return rows


def _published_run_checks(published: pd.DataFrame, name: str, settings: ReportSettings) -> list[dict]:
    """Robustness runs (``robustness.csv``): every estimated row on enough firms, and no two runs of one service and
    outcome whose counts differ by fewer than `min_firms` firms (rows without an estimate say why, with no counts)."""
    rows = []
    estimated = published[published["estimate"].notna()]
    for line, record in estimated.iterrows():
        for column in COUNT_COLUMNS:
            ok = int(record[column]) >= settings.min_firms
            rows.append(_check(f"published_min_{column}", f"{name} line {line + 2}", int(record[column]),
                               settings.min_firms, "pass" if ok else "fail"))
    for (service, outcome), family in estimated.groupby(["service", "outcome"], sort=False):
        for column in COUNT_COLUMNS:
            gaps = np.diff(np.sort(family[column].to_numpy()))
            gap = int(gaps[gaps > 0].min()) if (gaps > 0).any() else 0
            ok = gap == 0 or gap >= settings.min_firms
            rows.append(_check(f"published_differencing_{column}", f"{name} {service}/{outcome}", gap,
                               settings.min_firms, "pass" if ok else "fail"))
    return rows


def check_published_files(output_dir: Path, firm_ids: Iterable,
                          settings: ReportSettings = ReportSettings()) -> DisclosureResult:
    """Re-check the written artefacts: the asset check on the report calls this.

    Reads `estimates.csv`, `estimates.parquet`, `sensitivity.csv`, `robustness.csv` and the HTML back from disk,
    so it verifies what was actually published rather than what was
    intended. The PDF is rendered from the same HTML; its text is not
    re-read because no PDF text reader is among the dependencies.
    """
    output_dir = Path(output_dir)
    rows: list[dict] = []
    texts: dict[str, str] = {}
    csv_path = output_dir / "estimates.csv"
    if csv_path.exists():
        # CSV lines are counted as an editor shows them: the header is line 1
        rows += _published_table_checks(pd.read_csv(csv_path), "estimates.csv", settings, first_line=2)
        texts["estimates.csv"] = csv_path.read_text(encoding="utf-8")
    parquet_path = output_dir / "estimates.parquet"
    if parquet_path.exists():
        published = pd.read_parquet(parquet_path)
        rows += _published_table_checks(published, "estimates.parquet", settings, first_line=0)
        # identifiers are searched in the values, which the binary file does not show as text
        texts["estimates.parquet"] = published.to_csv(index=False)
    for name in ("sensitivity.csv", "robustness.csv"):
        path = output_dir / name
        if path.exists():
            texts[name] = path.read_text(encoding="utf-8")
            if name == "robustness.csv":
                rows += _published_run_checks(pd.read_csv(path), name, settings)
    html_path = output_dir / "impact_report.html"
    if html_path.exists():
        texts["impact_report.html"] = html_path.read_text(encoding="utf-8")
    checks = pd.concat([pd.DataFrame(rows, columns=CHECK_COLUMNS), scan_for_identifiers(texts, firm_ids)],
                       ignore_index=True)
    return DisclosureResult(checks, pd.DataFrame(columns=ESTIMATE_KEYS + ["reason"]),
                            pd.DataFrame(columns=["table", "row", "column", "reason"]), settings)
