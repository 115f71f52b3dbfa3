"""The report's "How support works" section: mechanism estimates as tables, figures and plain sentences.

Input: the mechanism families' rows as published (``analyses.mechanisms.families.MECHANISM_COLUMNS``, after
disclosure control: withheld rows are absent). Every sentence is generated from the numbers, as the headline's
are (``analyses.reporting.summary``): an effect or a difference is stated only when its interval excludes zero
(or its test rejects at the plan's level, Holm/Romano-Wolf-adjusted within the family where that p-value
exists); nothing is said about a mechanism the numbers do not support.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses.reporting.settings import HEADLINE
from analyses.reporting.summary import (
    OUTCOMES, SERVICES, Intervals, OutcomeSpec, direction, format_number, service_title,
)


def _share(label: str, definition: str) -> OutcomeSpec:
    """A 0/1 mechanism outcome, in percentage points."""
    return OutcomeSpec(label=label, unit="percentage points", unit_short="pp", decimals=1,
                       to_display=lambda v: 100.0 * v, noun=label.lower(), more="", less="", definition=definition)


def _count(label: str, definition: str) -> OutcomeSpec:
    return OutcomeSpec(label=label, unit="destinations", unit_short="destinations", decimals=2,
                       to_display=lambda v: v, noun=label.lower(), more="", less="", definition=definition)


def _percent(label: str, definition: str, convert) -> OutcomeSpec:
    return OutcomeSpec(label=label, unit="%", unit_short="%", decimals=1, to_display=convert, noun=label.lower(),
                       more="", less="", definition=definition)


#: Outcomes only the mechanism models use, with the headline's ``OutcomeSpec`` shape (labels, units, display).
MECHANISM_OUTCOMES: dict[str, OutcomeSpec] = {
    "sustained_exporter": _share("Sustained exporting", "1 if the firm exported in each of the last three years."),
    **{f"spell_survives_{k}": _share(
        f"Export spell still running after {k} year{'s' if k > 1 else ''}",
        f"1 if the firm started exporting {k} year{'s' if k > 1 else ''} before and exported every year since.")
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

#: Dose of each service's first episode: label, unit of the slope, and how many raw units the slope is per.
DOSE_UNITS = {"advisory": ("Advisory hours in the first episode", "hour", 1.0),
              "network": ("Network events in the first episode", "event", 1.0),
              "grant": ("Grant in the first episode (EUR thousand)", "EUR 1,000", 1000.0)}

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
        shown = [spec.display(row[c]) if _finite(row[c]) else np.nan for c in ("estimate", "ci_lower", "ci_upper")]
        decimals = _decimals(row, spec)
        return cls(label=label, outcome=spec.label, estimate=format_number(shown[0], decimals),
                   ci=f"{format_number(shown[1], decimals)} to {format_number(shown[2], decimals)}",
                   p=_p(row["p_value"]), p_adjusted=_p(row["p_value_adjusted"]), n_treated=f"{int(row['n_treated']):,}",
                   n_control=f"{int(row['n_control']):,}", direction=_direction(row))


def _decimals(row: dict, spec: OutcomeSpec) -> int:
    """A slope per unit of dose is small: two more decimals than the outcome's."""
    return spec.decimals + (2 if row.get("aggregation") == "dose_slope" else 0)


def per_dose_unit(rows: pd.DataFrame) -> pd.DataFrame:
    """``dose_slope`` rows rescaled to the slope per reported unit of dose (``DOSE_UNITS``: per EUR 1,000)."""
    per = rows["treatment"].map(lambda t: DOSE_UNITS.get(t, ("", "", 1.0))[2]).where(
        rows["aggregation"] == "dose_slope", 1.0)
    return rows.assign(**{c: rows[c] * per for c in ("estimate", "std_error", "ci_lower", "ci_upper")})


def in_sentence(label: str) -> str:
    """A label inside a sentence: "Exporting" -> "exporting", but "EU destinations" and "Non-EU ..." keep
    their acronym ("non-EU destinations")."""
    if label[:2].isupper():
        return label
    return label[0].lower() + label[1:]


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
    p = row["p_value_adjusted"] if _finite(row["p_value_adjusted"]) else row["p_value"]
    return _finite(p) and p < alpha


def _amount(row: dict, spec: OutcomeSpec, ci_words: str) -> str:
    shown = [spec.display(row[c]) for c in ("estimate", "ci_lower", "ci_upper")]
    decimals = _decimals(row, spec)
    return (f"{format_number(shown[0], decimals)} {spec.sentence_unit} "
            f"({ci_words} {format_number(shown[1], decimals)} to {format_number(shown[2], decimals)})")


def _supported(rows: pd.DataFrame, describe, ci_words: str) -> list[str]:
    """Phrases for the rows whose interval excludes zero."""
    return [describe(r, mechanism_outcome(r["outcome"]), ci_words) for r in rows.to_dict("records") if _direction(r)]


def _change(row: dict) -> str:
    return "higher" if row["estimate"] > 0 else "lower"


def summary_sentences(rows: pd.DataFrame, intervals: Intervals) -> list[dict]:
    """One plain sentence per mechanism the published numbers support (none for the others).

    Returns ``[{"mechanism": title, "text": sentence}]`` in the order bundles, sequences, dose, subgroups,
    markets, value, persistence.
    """
    words, alpha, out = intervals.ci_words, intervals.alpha, []

    def add(title: str, phrases: list[str], opening: str, closing: str = "") -> None:
        if phrases:
            out.append({"mechanism": title, "text": f"{opening} {_join(phrases)}{closing}."})

    add("Bundles", _supported(_overall(rows, "bundles"), lambda r, s, w: (
        f"{treatment_title(r['treatment']).lower()}: {in_sentence(s.label)} {_amount(r, s, w)} {_change(r)}"), words),
        "Firms that started with two services within a year fared differently from similar unsupported firms:")
    add("Sequences", _supported(_overall(rows, "sequences"), lambda r, s, w: (
        f"{treatment_title(r['treatment']).lower()} changed {in_sentence(s.label)} by {_amount(r, s, w)}"), words),
        "Among firms that had started with one service, adding a second one later made a further difference:")
    add("Dose", _supported(per_dose_unit(_overall(rows, "dose", "dose_slope")), _dose_phrase, words),
        "The effect changed with the size of the first dose, for", "; this comparison of doses rests on a stronger "
        "assumption than the other results")
    tests = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == "subgroup_difference")]
    add("For whom", [_difference_phrase(rows, r) for r in tests.to_dict("records") if _rejects(r, alpha)],
        "The effect differed between groups of firms (test of difference, adjusted for the number of tests):")
    add("Markets", _supported(_overall(rows, "markets"), lambda r, s, w: (
        f"{service_title(r['treatment']).lower()} changed {in_sentence(s.label)} by {_amount(r, s, w)}"), words),
        "In EU and non-EU markets:")
    value = _overall(rows, "value", "simple")
    add("Value", _supported(value[value["outcome"] == "export_value_eur"], lambda r, s, w: (
        f"{service_title(r['treatment']).lower()}: {_amount(r, s, w)}"), words),
        "Export value, counting firms that did not export as zero, changed in proportion for")
    add("Persistence", _supported(_overall(rows, "persistence"), lambda r, s, w: (
        f"{service_title(r['treatment']).lower()} changed {in_sentence(s.label)} by {_amount(r, s, w)}"), words),
        "Persistence of exporting changed:")
    return out


def _dose_phrase(row: dict, spec: OutcomeSpec, ci_words: str) -> str:
    """``row``: a ``dose_slope`` row rescaled by ``per_dose_unit``."""
    return (f"{service_title(row['treatment']).lower()} ({in_sentence(spec.label)}: {_amount(row, spec, ci_words)} per "
            f"additional {DOSE_UNITS[row['treatment']][1]})")


def _difference_phrase(rows: pd.DataFrame, test: dict) -> str:
    values = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == HEADLINE) & rows["event_time"].isna()
                  & (rows["treatment"] == test["treatment"]) & (rows["outcome"] == test["outcome"])
                  & rows["subgroup"].str.startswith(test["subgroup"] + "=")]
    spec = mechanism_outcome(test["outcome"])
    parts = [f"{subgroup_title(v['subgroup']).lower()} {format_number(spec.display(v['estimate']), spec.decimals)} "
             f"{spec.unit_short}" for v in values.sort_values("estimate", ascending=False).to_dict("records")]
    return (f"for {service_title(test['treatment']).lower()}, the effect on {in_sentence(spec.label)} differed by "
            f"{SUBGROUP_NAMES.get(test['subgroup'], test['subgroup']).lower()} ({', '.join(parts)})")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "; ".join(items[:-1]) + "; and " + items[-1]


def mechanism_section(rows: pd.DataFrame, intervals: Intervals) -> dict:
    """View model of the "How support works" section from the published mechanism rows (may be empty)."""
    from analyses.reporting.mechanism_plots import dose_plot, forest_plot

    rows = rows.reset_index(drop=True)
    section = {"available": not rows.empty, "dose_warning": DOSE_WARNING, "families": sorted(set(rows["family"]))}
    section["bundles"] = _effects(_overall(rows, "bundles"), lambda r: treatment_title(r["treatment"]))
    section["sequences"] = _effects(_overall(rows, "sequences"), lambda r: treatment_title(r["treatment"]))
    section["dose"] = _effects(
        per_dose_unit(pd.concat([_overall(rows, "dose", a) for a in ("dose_level", "dose_slope")])),
        lambda r: f"{service_title(r['treatment'])}: " + (
            "average effect (ATT)" if r["aggregation"] == "dose_level"
            else f"average slope per {DOSE_UNITS[r['treatment']][1]} of dose (ACRT)"))
    curves = rows[(rows["family"] == "dose") & (rows["aggregation"] == "dose_level") & rows["dose"].notna()]
    section["dose_plots"] = [dose_plot(curve, treatment, outcome, DOSE_UNITS[treatment][0], DOSE_UNITS[treatment][2],
                                       intervals)
                             for (treatment, outcome), curve in curves.groupby(["treatment", "outcome"], sort=False)
                             if outcome == curves["outcome"].iloc[0]]
    subgroup_rows = _overall(rows, "subgroups")
    subgroup_rows = subgroup_rows[subgroup_rows["subgroup"] != ""]
    tests = rows[(rows["family"] == "subgroups") & (rows["aggregation"] == "subgroup_difference")]
    section["subgroup_plots"] = [forest_plot(frame, tests[tests["outcome"] == outcome], outcome, intervals)
                                 for outcome, frame in subgroup_rows.groupby("outcome", sort=False)]
    section["subgroups"] = _effects(subgroup_rows, lambda r: f"{service_title(r['treatment'])}: "
                                                             f"{subgroup_title(r['subgroup'])}")
    section["subgroup_tests"] = [{
        "label": f"{service_title(r['treatment'])}: {SUBGROUP_NAMES.get(r['subgroup'], r['subgroup'])}",
        "outcome": mechanism_outcome(r["outcome"]).label,
        "difference": (format_number(mechanism_outcome(r["outcome"]).display(r["estimate"]),
                                     mechanism_outcome(r["outcome"]).decimals) if _finite(r["estimate"]) else "\u2013"),
        "p": _p(r["p_value"]), "p_adjusted": _p(r["p_value_adjusted"]),
        "verdict": "differ" if _rejects(r, intervals.alpha) else "no detectable difference"}
        for r in tests.to_dict("records")]
    section["markets"] = _effects(_overall(rows, "markets"), lambda r: service_title(r["treatment"]))
    section["value"] = _effects(_overall(rows, "value", "simple"),
                                lambda r: f"{service_title(r['treatment'])}: {VALUE_MARGINS[r['outcome']]}")
    section["persistence"] = _effects(_overall(rows, "persistence"), lambda r: service_title(r["treatment"]))
    section["summary"] = summary_sentences(rows, intervals)
    return section
