"""The report's "How support works" section: mechanism estimates as tables, figures and plain sentences.

Input: the mechanism families' rows as published (``analyses.mechanisms.families.MECHANISM_COLUMNS``, after
disclosure control), and the withheld ones as rows without numbers (:func:`withheld_rows`), which the tables and
the forest plot show as withheld. Every sentence is generated from the published numbers, as the headline's are
(``analyses.reporting.summary``): an effect is stated only when its interval excludes zero and its family's
adjusted p-value (Holm/Romano-Wolf within the family, where it exists) rejects at the plan's level, a difference
only when its adjusted test rejects; nothing is said about a mechanism the numbers do not support.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses.reporting.settings import HEADLINE
from analyses.reporting.summary import (
    NUMBER_WORDS, OUTCOMES, SERVICES, Intervals, OutcomeSpec, direction, format_number, service_title,
)


def in_sentence(label: str) -> str:
    """A label inside a sentence: "Exporting" -> "exporting", but "EU destinations" and "Non-EU ..." keep
    their acronym ("non-EU destinations")."""
    if label[:2].isupper():
        return label
    return label[0].lower() + label[1:]


def _share(label: str, definition: str, noun: str) -> OutcomeSpec:
    """A 0/1 mechanism outcome, in percentage points."""
    return OutcomeSpec(label=label, unit="percentage points", unit_short="pp", decimals=1,
                       to_display=lambda v: 100.0 * v, noun=noun, more="", less="", definition=definition)


def _count(label: str, definition: str) -> OutcomeSpec:
    return OutcomeSpec(label=label, unit="destinations", unit_short="destinations", decimals=2,
                       to_display=lambda v: v, noun=f"the number of {in_sentence(label)}", more="", less="",
                       definition=definition)


def _percent(label: str, definition: str, convert) -> OutcomeSpec:
    return OutcomeSpec(label=label, unit="%", unit_short="%", decimals=1, to_display=convert,
                       noun=in_sentence(label), more="", less="", definition=definition)


def _years(k: int) -> str:
    return f"{k} year{'s' if k > 1 else ''}"


#: Outcomes only the mechanism models use, with the headline's ``OutcomeSpec`` shape (labels, units, display;
#: ``noun`` is the outcome inside a summary sentence).
MECHANISM_OUTCOMES: dict[str, OutcomeSpec] = {
    "sustained_exporter": _share("Sustained exporting", "1 if the firm exported in each of the last three years.",
                                 "the probability of exporting three years running"),
    **{f"spell_survives_{k}": _share(
        f"Export spell still running after {_years(k)}",
        f"1 if the firm started exporting {_years(k)} before and exported every year since.",
        f"the probability that a new export spell lasts {_years(k)}")
       for k in (1, 2, 3)},
    "n_eu_destinations": _count("EU destinations", "Number of EU member states the firm exported to in the year."),
    "n_non_eu_destinations": _count("Non-EU destinations",
                                    "Number of countries outside the EU the firm exported to in the year."),
    "export_value_eur": _percent("Export value (zeros included)",
                                 "Export value in euros, 0 for firms that did not export; Poisson model, "
                                 "effect as a proportional change.", lambda v: 100.0 * v),
    "log_export_value_if_exporting": _percent(
        "Export value of exporting firms", "log export value in euros, only firm-years with exports.",
        lambda v: 100.0 * math.expm1(v)),
}

#: Dose of each service's first episode: axis label, unit of the slope, how many raw units the slope and the axis
#: are per, and the unit after a dose in a caption ("12.5 advisory hours").
DOSE_UNITS = {"advisory": ("Advisory hours in the first episode", "hour", 1.0, "advisory hours"),
              "network": ("Network events in the first episode", "event", 1.0, "network events"),
              "grant": ("Grant in the first episode (EUR thousand)", "EUR 1,000", 1000.0, "EUR 1,000 of grant")}

#: Logical limits of an effect in reporting units, by ``OutcomeSpec.unit_short``: a change in a share (0/1
#: outcome) lies between -100 and +100 percentage points; counts and proportional changes have no upper limit.
EFFECT_BOUNDS = {"pp": (-100.0, 100.0)}

#: Display order of the values of a pre-programme grouping (the plan orders the groupings and the services): size
#: classes by size; a yes/no grouping "no" first, as its test's difference is first minus second value in sorted
#: order (``analyses.mechanisms.subgroups``), so Table M5's "first minus second group" reads off Table M4.
SUBGROUP_VALUE_ORDER = {"in_cluster": ("0", "False", "1", "True"), "size_class": ("micro", "small", "medium"),
                        "exported_before": ("0", "1")}
_DEFAULT_GROUPINGS = ("in_cluster", "size_class", "exported_before", "region")

#: The value family's three rows per service, in the words the report uses.
VALUE_MARGINS = {"export_value_eur": "proportional effect on export value, zeros included",
                 "exporter": "extensive margin (exporting or not)",
                 "log_export_value_if_exporting": "intensive margin among exporting firm-years (descriptive)"}

DOSE_WARNING = ("Comparing doses (the slope, or the effect at two doses) needs a stronger assumption than the "
                "other results: that firms did not choose their dose because of what they expected to gain from "
                "it (strong parallel trends, Callaway, Goodman-Bacon and Sant'Anna 2024). Without it the curve "
                "mixes the effect of a larger dose with differences between the firms that chose it.")


def mechanism_outcome(outcome: str) -> OutcomeSpec:
    """Label, unit and display conversion of a headline or mechanism outcome."""
    spec = OUTCOMES.get(outcome) or MECHANISM_OUTCOMES.get(outcome)
    if spec is None:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted({*OUTCOMES, *MECHANISM_OUTCOMES})}")
    return spec


def is_known_treatment(treatment) -> bool:
    """A service, a bundle (``a+b``, alphabetical) or a sequence (``a>b``) of two different services."""
    if treatment in SERVICES:
        return True
    for separator in ("+", ">"):
        parts = str(treatment).split(separator)
        if len(parts) == 2 and parts[0] != parts[1] and set(parts) <= set(SERVICES):
            return separator == ">" or parts == sorted(parts)
    return False


def treatment_title(treatment: str) -> str:
    """"Advisory support", "Advisory support and network services together", "Network services after advisory support"."""
    if "+" in treatment:
        first, second = treatment.split("+")
        return f"{service_title(first)} and {SERVICES[second][1]} together"
    if ">" in treatment:
        first, second = treatment.split(">")
        return f"{service_title(second)} added after {SERVICES[first][1]}"
    return service_title(treatment)


def subgroup_title(subgroup: str) -> str:
    """``in_cluster=1`` -> "In a cluster or hub"; ``size_class=micro`` -> "Micro firms"."""
    name, _, value = subgroup.partition("=")
    names = {"in_cluster": {"1": "In a cluster or hub", "0": "Outside clusters and hubs",
                            "True": "In a cluster or hub", "False": "Outside clusters and hubs"},
             "exported_before": {"1": "Exported before support", "0": "Did not export before support"},
             "size_class": {"micro": "Micro firms (under 10 employees)", "small": "Small firms (10\u201349)",
                            "medium": "Medium and larger firms (50+)"}}
    if name in names and value in names[name]:
        return names[name][value]
    if name == "region":
        return f"Region {value}"
    return SUBGROUP_NAMES.get(name, name.replace("_", " ").capitalize()) + (f": {value}" if value else "")


SUBGROUP_NAMES = {"in_cluster": "Cluster or hub membership", "size_class": "Size class",
                  "exported_before": "Exporting before support", "region": "Region"}


@dataclass(frozen=True)
class Effect:
    """One published row in reporting units, with the words the report needs."""

    label: str
    outcome: str
    estimate: str
    ci: str
    p: str
    p_adjusted: str
    n_treated: str
    n_control: str
    direction: int

    @classmethod
    def of(cls, row: dict, label: str, spec: OutcomeSpec) -> Effect:
        outcome = f"{spec.label} ({row_unit(row, spec)})"
        if row.get("withheld"):
            return cls(label=label, outcome=outcome, estimate=row["withheld"], ci="", p="", p_adjusted="",
                       n_treated="", n_control="", direction=0)
        shown = [spec.display(row[c]) if _finite(row[c]) else np.nan for c in ("estimate", "ci_lower", "ci_upper")]
        decimals = _decimals(row, spec)
        return cls(label=label, outcome=outcome, estimate=format_number(shown[0], decimals),
                   ci=f"{format_number(shown[1], decimals)} to {format_number(shown[2], decimals)}",
                   p=_p(row["p_value"]), p_adjusted=_p(row["p_value_adjusted"]), n_treated=f"{int(row['n_treated']):,}",
                   n_control=f"{int(row['n_control']):,}", direction=_direction(row))


def row_unit(row: dict, spec: OutcomeSpec) -> str:
    """Unit of a row's estimate in the tables: the outcome's ("pp", "%", "destinations"), per unit of dose for a
    ``dose_slope`` ("pp per EUR 1,000")."""
    if row.get("aggregation") == "dose_slope" and row.get("treatment") in DOSE_UNITS:
        return f"{spec.unit_short} per {DOSE_UNITS[row['treatment']][1]}"
    return spec.unit_short


def effect_bounds(spec: OutcomeSpec) -> tuple[float, float] | None:
    """``EFFECT_BOUNDS`` of an outcome in reporting units, or None when its effect is unbounded."""
    return EFFECT_BOUNDS.get(spec.unit_short)


def order_subgroups(rows: pd.DataFrame, plan: Mapping | None = None) -> pd.DataFrame:
    """Subgroup rows in the one order the table and the forest plot share: the plan's services (``services``),
    then its groupings (``families.subgroups``), then each grouping's values (``SUBGROUP_VALUE_ORDER``: micro,
    small, medium; no before yes), anything else after in alphabetical order."""
    plan = plan or {}
    services = list(plan.get("services") or SERVICES)
    families = plan.get("families") if isinstance(plan.get("families"), Mapping) else {}
    groupings = list(families.get("subgroups") or _DEFAULT_GROUPINGS)

    def rank(order: list, value) -> tuple:
        return (order.index(value), "") if value in order else (len(order), str(value))

    def key(row: dict) -> tuple:
        name, _, value = row["subgroup"].partition("=")
        return (rank(services, row["treatment"]), rank(groupings, name),
                rank(list(SUBGROUP_VALUE_ORDER.get(name, ())), value))

    order = sorted(range(len(rows)), key=lambda i: key(rows.iloc[i]))
    return rows.iloc[order]


def median_first_doses(panel: pd.DataFrame) -> dict[str, float]:
    """Median first-episode dose (raw units: hours, events, euros) of the firms that started with each service,
    from the panel's ``{service}_first_dose`` and ``first_service``; services without those columns are left out.
    The dose curves quote their effect at the grid dose nearest to it."""
    if "firm_id" not in panel.columns:
        return {}
    firms = panel.drop_duplicates("firm_id")
    medians = {}
    for service in SERVICES:
        column = f"{service}_first_dose"
        if column not in firms.columns:
            continue
        starters = firms[firms["first_service"] == service] if "first_service" in firms.columns else firms
        doses = pd.to_numeric(starters[column], errors="coerce")
        doses = doses[doses > 0]
        if len(doses):
            medians[service] = float(doses.median())
    return medians


def _decimals(row: dict, spec: OutcomeSpec) -> int:
    """A slope per unit of dose is small: two more decimals than the outcome's."""
    return spec.decimals + (2 if row.get("aggregation") == "dose_slope" else 0)


def per_dose_unit(rows: pd.DataFrame) -> pd.DataFrame:
    """``dose_slope`` rows rescaled to the slope per reported unit of dose (``DOSE_UNITS``: per EUR 1,000)."""
    per = rows["treatment"].map(lambda t: DOSE_UNITS.get(t, ("", "", 1.0, ""))[2]).where(
        rows["aggregation"] == "dose_slope", 1.0)
    return rows.assign(**{c: rows[c] * per for c in ("estimate", "std_error", "ci_lower", "ci_upper")})


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _p(value) -> str:
    if not _finite(value):
        return "\u2013"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _direction(row: dict) -> int:
    return direction(row["ci_lower"], row["ci_upper"]) if _finite(row["ci_lower"]) and _finite(row["ci_upper"]) else 0


def _overall(rows: pd.DataFrame, family: str, aggregation: str = HEADLINE) -> pd.DataFrame:
    return rows[(rows["family"] == family) & (rows["aggregation"] == aggregation) & rows["event_time"].isna()
                & rows["dose"].isna()]


def _effects(rows: pd.DataFrame, label) -> list[Effect]:
    return [Effect.of(r, label(r), mechanism_outcome(r["outcome"])) for r in rows.to_dict("records")]


def _rejects(row: dict, alpha: float) -> bool:
    """The test of a row rejects: its adjusted p-value where the family has one, else its own."""
    p = _tested_p(row)
    return _finite(p) and p < alpha


#: Longest executive-summary sentence (words, the interval's words included): one finding per mechanism. Typical
#: sentences have 20 to 32; the longest (a grant's dose slope on a long-named outcome) reach 43.
MAX_SUMMARY_WORDS = 45


def _amount(row: dict, spec: OutcomeSpec, ci_words: str) -> str:
    """"4.0 percentage points (95 % confidence interval 1.6 to 6.4)", as magnitudes: the verb carries the sign
    (the interval excludes zero, so both bounds have the estimate's sign)."""
    shown = sorted(abs(spec.display(row[c])) for c in ("ci_lower", "ci_upper"))
    decimals = _decimals(row, spec)
    size = lambda value: format_number(value, decimals, signed=False)  # noqa: E731
    return (f"{size(spec.display(row['estimate']))} {spec.sentence_unit} "
            f"({ci_words} {size(shown[0])} to {size(shown[1])})")


def _raised(row: dict) -> str:
    return "raised" if row["estimate"] > 0 else "lowered"


def _supported(row: dict, alpha: float) -> bool:
    """The interval excludes zero and the family's adjusted p-value, where the family has one, rejects: a result
    that does not survive the family's correction for multiple tests is not stated in the summary."""
    adjusted = row["p_value_adjusted"]
    return _direction(row) != 0 and not (_finite(adjusted) and adjusted >= alpha)


def _strength(row: dict) -> float:
    """How far the interval lies from zero, in half-widths (|z| without needing the standard error)."""
    return abs(row["ci_upper"] + row["ci_lower"]) / max(row["ci_upper"] - row["ci_lower"], 1e-300)


def _others(count: int) -> str:
    if not count:
        return ""
    results = "results" if count > 1 else "result"
    return f"; {NUMBER_WORDS.get(count, str(count))} more detectable {results} in \u201cHow support works\u201d"


def summary_sentences(rows: pd.DataFrame, intervals: Intervals) -> list[dict]:
    """One short plain sentence per mechanism the published numbers support (none for the others).

    A result is supported when its interval excludes zero and its family's adjusted p-value (where there is one)
    is below the plan's alpha. Each sentence states the mechanism's most clearly supported result (the interval
    farthest from zero in half-widths; for "for whom" the rejecting test of difference with the smallest adjusted
    p-value) with its interval, and counts the other supported results of that mechanism, which the section
    lists; at most ``MAX_SUMMARY_WORDS`` words. Returns ``[{"mechanism": title, "text": sentence}]`` in the order bundles,
    sequences, dose, subgroups, markets, value, persistence.
    """
    words, out = intervals.ci_words, []

    def add(title: str, candidates: pd.DataFrame, describe, closing: str = "") -> None:
        supported = [r for r in candidates.to_dict("records") if _supported(r, intervals.alpha)]
        if supported:
            lead = max(supported, key=_strength)
            text = describe(lead, mechanism_outcome(lead["outcome"]))
            out.append({"mechanism": title, "text": f"{text}{_others(len(supported) - 1)}{closing}."})

    def effect(subject):
        return lambda r, s: f"{subject(r)} {_raised(r)} {s.noun} by {_amount(r, s, words)}"

    add("Bundles of services", _overall(rows, "bundles"),
        effect(lambda r: "Starting with " + " and ".join(SERVICES[t][1] for t in r["treatment"].split("+"))
               + " within a year"))
    add("Adding a second service", _overall(rows, "sequences"),
        effect(lambda r: "Adding {1} after {0}".format(*(SERVICES[t][1] for t in r["treatment"].split(">")))))
    add("Size of support (dose)", per_dose_unit(_overall(rows, "dose", "dose_slope")),
        effect(lambda r: f"Each additional {DOSE_UNITS[r['treatment']][1]} of {SERVICES[r['treatment']][1]}"),
        "; dose comparisons need stronger assumptions")
    _add_difference(out, rows, intervals.alpha)
    add("Which markets", _overall(rows, "markets"), effect(lambda r: service_title(r["treatment"])))
    value = _overall(rows, "value", "simple")
    add("How much (export value)", value[value["outcome"] == "export_value_eur"],
        lambda r, s: f"{service_title(r['treatment'])} {_raised(r)} export value (non-exporters counted as zero) by "
                     f"{_amount(r, s, words)}")
    add("For how long", _overall(rows, "persistence"), effect(lambda r: service_title(r["treatment"])))
    return out


def _add_difference(out: list[dict], rows: pd.DataFrame, alpha: float) -> None:
    """The "for whom" sentence: the rejecting test of difference with the smallest (adjusted) p-value, with its
    groups' highest and lowest effect."""
    tests = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == "subgroup_difference")]
    rejecting = [r for r in tests.to_dict("records") if _rejects(r, alpha)]
    if not rejecting:
        return
    lead = min(rejecting, key=_tested_p)
    values = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == HEADLINE) & rows["event_time"].isna()
                  & (rows["treatment"] == lead["treatment"]) & (rows["outcome"] == lead["outcome"])
                  & rows["subgroup"].str.startswith(lead["subgroup"] + "=")].sort_values("estimate", ascending=False)
    spec = mechanism_outcome(lead["outcome"])
    show = lambda v: (f"{subgroup_title(v['subgroup']).split(' (')[0].lower()} "  # noqa: E731
                      f"{format_number(spec.display(v['estimate']), spec.decimals)} {spec.unit_short}")
    spread = f" ({show(values.iloc[0])}, {show(values.iloc[-1])})" if len(values) >= 2 else ""
    text = (f"For {SERVICES[lead['treatment']][1]}, the effect on {spec.noun} differed by "
            f"{SUBGROUP_NAMES.get(lead['subgroup'], lead['subgroup']).lower()}{spread}")
    out.append({"mechanism": "For whom", "text": f"{text}{_others(len(rejecting) - 1)}."})


def _tested_p(row: dict) -> float:
    return row["p_value_adjusted"] if _finite(row["p_value_adjusted"]) else row["p_value"]


def _test_row(row: dict, alpha: float) -> dict:
    """A row of the table of tests of difference; a withheld test says so instead of its numbers."""
    spec = mechanism_outcome(row["outcome"])
    shown = {"label": f"{service_title(row['treatment'])}: {SUBGROUP_NAMES.get(row['subgroup'], row['subgroup'])}",
             "outcome": f"{spec.label} ({row_unit(row, spec)})", "joint": False}
    if row["withheld"]:
        return {**shown, "difference": row["withheld"], "p": "", "p_adjusted": "", "verdict": ""}
    joint = not _finite(row["estimate"])
    difference = "\u2013" if joint else format_number(spec.display(row["estimate"]), spec.decimals)
    return {**shown, "difference": difference, "p": _p(row["p_value"]), "p_adjusted": _p(row["p_value_adjusted"]),
            "verdict": "differ" if _rejects(row, alpha) else "no detectable difference", "joint": joint,
            "grouping": SUBGROUP_NAMES.get(row["subgroup"], row["subgroup"]).lower()}


def withheld_rows(suppressed: pd.DataFrame | None, min_firms: int) -> pd.DataFrame:
    """Mechanism estimates disclosure control withheld, as rows without numbers whose ``withheld`` column says why
    in the report's words ("withheld (fewer than 10 firms)"; a secondary suppression protects such a group).

    ``suppressed``: ``DisclosureResult.suppressed_estimates`` (``ESTIMATE_KEYS`` and ``reason``); headline rows are
    left out (the headline table marks its own).
    """
    from analyses.reporting.settings import HEADLINE_FAMILY

    if suppressed is None or suppressed.empty:
        return pd.DataFrame(columns=["withheld"])
    rows = suppressed.loc[suppressed["family"] != HEADLINE_FAMILY].drop(columns="reason").assign(
        event_time=lambda d: pd.to_numeric(d["event_time"]), dose=lambda d: pd.to_numeric(d["dose"]),
        estimate=np.nan, std_error=np.nan, ci_lower=np.nan, ci_upper=np.nan, p_value=np.nan,
        p_value_adjusted=np.nan, n_treated=np.nan, n_control=np.nan)
    secondary = suppressed.loc[rows.index, "reason"].str.startswith("secondary")
    rows["withheld"] = np.where(secondary, "withheld (protects another group)",
                                f"withheld (fewer than {min_firms} firms)")
    return rows


def mechanism_section(rows: pd.DataFrame, intervals: Intervals, withheld: pd.DataFrame | None = None,
                      plan: Mapping | None = None, median_doses: Mapping[str, float] | None = None) -> dict:
    """View model of the "How support works" section from the published mechanism rows (may be empty).

    ``withheld`` (:func:`withheld_rows`) are shown in the tables and the forest plot as withheld, with the reason,
    instead of vanishing; the sentences and curves read the published rows only. ``plan`` (``diagnostics["plan"]``)
    orders services and groupings and gives the dose grid's quantiles (``families.dose_grid``);
    ``median_doses`` (:func:`median_first_doses`) is where each dose curve is quoted.
    """
    from analyses.reporting.mechanism_plots import dose_plot, forest_plot

    published = rows.reset_index(drop=True)
    rows = published.assign(withheld="")
    if withheld is not None and len(withheld):
        rows = pd.concat([rows, withheld], ignore_index=True)
    section = {"available": not rows.empty, "dose_warning": DOSE_WARNING, "families": sorted(set(rows["family"]))}
    section["bundles"] = _effects(_overall(rows, "bundles"), lambda r: treatment_title(r["treatment"]))
    section["sequences"] = _effects(_overall(rows, "sequences"), lambda r: treatment_title(r["treatment"]))
    section["dose"] = _effects(
        per_dose_unit(pd.concat([_overall(rows, "dose", a) for a in ("dose_level", "dose_slope")])),
        lambda r: f"{service_title(r['treatment'])}: " + (
            "average effect (ATT)" if r["aggregation"] == "dose_level"
            else f"average slope per {DOSE_UNITS[r['treatment']][1]} of dose (ACRT)"))
    curves = published[(published["family"] == "dose") & (published["aggregation"] == "dose_level")
                       & published["dose"].notna()]
    families = (plan or {}).get("families")
    grid = tuple((families if isinstance(families, Mapping) else {}).get("dose_grid") or (0.05, 0.95))
    section["dose_plots"] = [dose_plot(curve, treatment, outcome, intervals, (median_doses or {}).get(treatment), grid)
                             for (treatment, outcome), curve in curves.groupby(["treatment", "outcome"], sort=False)
                             if outcome == curves["outcome"].iloc[0]]
    subgroup_rows = _overall(rows, "subgroups")
    subgroup_rows = order_subgroups(subgroup_rows[subgroup_rows["subgroup"] != ""], plan)
    tests = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == "subgroup_difference")]
    section["subgroup_plots"] = [forest_plot(frame, tests[tests["outcome"] == outcome], outcome, intervals)
                                 for outcome, frame in subgroup_rows.groupby("outcome", sort=False)]
    section["subgroups"] = _effects(subgroup_rows, lambda r: f"{service_title(r['treatment'])}: "
                                                             f"{subgroup_title(r['subgroup'])}")
    section["subgroup_tests"] = [_test_row(r, intervals.alpha) for r in tests.to_dict("records")]
    section["joint_groupings"] = sorted({t["grouping"] for t in section["subgroup_tests"] if t["joint"]})
    section["markets"] = _effects(_overall(rows, "markets"), lambda r: service_title(r["treatment"]))
    section["value"] = _effects(_overall(rows, "value", "simple"),
                                lambda r: f"{service_title(r['treatment'])}: {VALUE_MARGINS[r['outcome']]}")
    section["persistence"] = _effects(_overall(rows, "persistence"), lambda r: service_title(r["treatment"]))
    section["summary"] = summary_sentences(published, intervals)
    return section
