"""Plain-language wording of the estimates for the executive summary.

The wording is generated from the numbers so that it can never drift from
them: the direction of an effect is only stated when the 95 % interval
excludes zero; otherwise the text says that no change was detectable and
quotes the minimum detectable effect, so readers do not mistake an
underpowered comparison for evidence of no effect.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

MINUS = "\u2212"


@dataclass(frozen=True)
class OutcomeSpec:
    """How an outcome is labelled, converted to reporting units and phrased."""

    label: str
    unit: str
    unit_short: str
    decimals: int
    to_display: Callable[[float], float]
    noun: str
    more: str
    less: str

    def display(self, value: float) -> float:
        return self.to_display(value)

    @property
    def sentence_unit(self) -> str:
        """Unit as written after a number in running text ("3.0 percentage points", "12.5 %")."""
        return "%" if self.unit_short == "%" else self.unit


def _percentage_points(value: float) -> float:
    return 100.0 * value


def _log_points_to_percent(value: float) -> float:
    # log(1+EUR) coefficients are proportional changes only approximately
    # for small values; exp(b)-1 is the exact proportional change.
    return 100.0 * math.expm1(value)


def _identity(value: float) -> float:
    return value


OUTCOMES: dict[str, OutcomeSpec] = {
    "exporter": OutcomeSpec(
        label="Exporting", unit="percentage points", unit_short="pp", decimals=1,
        to_display=_percentage_points, noun="the probability of exporting",
        more="were {x} percentage points {ci} more likely to export",
        less="were {x} percentage points {ci} less likely to export",
    ),
    "enters_new_market": OutcomeSpec(
        label="Entering a new market", unit="percentage points", unit_short="pp", decimals=1,
        to_display=_percentage_points, noun="the probability of entering a new export market",
        more="were {x} percentage points {ci} more likely to enter a new export market",
        less="were {x} percentage points {ci} less likely to enter a new export market",
    ),
    "n_destinations": OutcomeSpec(
        label="Export destinations", unit="markets", unit_short="markets", decimals=2,
        to_display=_identity, noun="the number of export markets",
        more="exported to {x} more markets {ci}",
        less="exported to {x} fewer markets {ci}",
    ),
    "log_export_value": OutcomeSpec(
        label="Export value", unit="% (approx.)", unit_short="%", decimals=1,
        to_display=_log_points_to_percent, noun="the value of exports",
        more="had export values about {x} % higher {ci}",
        less="had export values about {x} % lower {ci}",
    ),
}

SERVICES: dict[str, tuple[str, str]] = {
    # key: (title for headings, phrase after "firms that received")
    "advisory": ("Advisory support", "advisory support"),
    "network": ("Network services", "network services"),
    "grant": ("Export grants", "an export grant"),
}

COMPARISONS: dict[str, str] = {
    "nevertreated": "similar firms that received no support",
    "notyettreated": "similar firms that had not yet received support",
}

HORIZON_WORDS = {0: "in the year they started", 1: "one year after starting",
                 2: "two years after starting", 3: "three years after starting",
                 4: "four years after starting", 5: "five years after starting"}


def outcome_spec(outcome: str) -> OutcomeSpec:
    try:
        return OUTCOMES[outcome]
    except KeyError:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {sorted(OUTCOMES)}") from None


def service_title(treatment: str) -> str:
    return SERVICES.get(treatment, (treatment.capitalize(), treatment))[0]


def comparison_phrase(control_group: str | None) -> str:
    return COMPARISONS.get(control_group or "nevertreated", COMPARISONS["nevertreated"])


def format_number(value: float, decimals: int, signed: bool = True) -> str:
    """Format with a typographic minus; `signed=False` prints the magnitude."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    shown = value if signed else abs(value)
    text = f"{shown:.{decimals}f}"
    if text.startswith("-"):
        # "-0.0" is not a negative number worth a minus sign
        text = text[1:] if float(text) == 0 else MINUS + text[1:]
    return text


def direction(ci_lower: float, ci_upper: float) -> int:
    """+1 / -1 when the interval excludes zero, 0 when it includes zero."""
    if ci_lower > 0:
        return 1
    if ci_upper < 0:
        return -1
    return 0


def display_interval(outcome: str, estimate: float, lower: float, upper: float) -> tuple[float, float, float]:
    spec = outcome_spec(outcome)
    return spec.display(estimate), spec.display(lower), spec.display(upper)


def effect_sentence(
    treatment: str,
    outcome: str,
    estimate: float,
    ci_lower: float,
    ci_upper: float,
    mde: float | None = None,
    control_group: str | None = "nevertreated",
    horizon: int | None = None,
    band_label: str = "95 % CI",
    subject: str | None = None,
) -> str:
    """One sentence for one estimate.

    `horizon` is the event time e for a dynamic estimate (None for the
    average over post-treatment years); `subject` replaces the default
    "Firms that received <service>" when sentences are chained.
    """
    spec = outcome_spec(outcome)
    value, lower, upper = display_interval(outcome, estimate, ci_lower, ci_upper)
    when = HORIZON_WORDS.get(horizon, f"{horizon} years after starting") if horizon is not None \
        else "on average in the years after starting"
    service = SERVICES.get(treatment, ("", treatment))[1]
    # the comparison group is named once per paragraph; chained sentences omit it
    compared = "" if subject else f", compared with {comparison_phrase(control_group)}"
    sign = direction(ci_lower, ci_upper)
    if sign == 0:
        lead = "There was" if subject else f"For firms that received {service}, there was"
        text = (f"{lead} no statistically detectable change in {spec.noun} {when}{compared} "
                f"(estimate {format_number(value, spec.decimals)} {spec.unit_short}, "
                f"{band_label} {format_number(lower, spec.decimals)} to {format_number(upper, spec.decimals)})")
        if mde is not None and not math.isnan(mde):
            text += (f"; the comparison could only reliably detect effects of about "
                     f"{format_number(abs(spec.display(mde)), spec.decimals)} {spec.sentence_unit} or larger")
        return text + "."
    # A decrease is reported as a positive magnitude ("2.0 ... less likely"),
    # so its interval is mirrored to stay in increasing order.
    low_mag, high_mag = (lower, upper) if sign > 0 else (-upper, -lower)
    ci = (f"({band_label} {format_number(low_mag, spec.decimals)} to "
          f"{format_number(high_mag, spec.decimals)})")
    phrase = (spec.more if sign > 0 else spec.less).format(
        x=format_number(abs(value), spec.decimals, signed=False), ci=ci)
    who = subject or f"Firms that received {service}"
    return f"{who} {phrase} {when}{compared}."


def _lookup(frame: pd.DataFrame | None, **keys) -> pd.Series | None:
    if frame is None or frame.empty:
        return None
    mask = pd.Series(True, index=frame.index)
    for column, value in keys.items():
        if column not in frame.columns:
            return None
        mask &= frame[column] == value
    hits = frame[mask]
    return None if hits.empty else hits.iloc[0]


def service_paragraph(
    treatment: str,
    estimates: pd.DataFrame,
    mde: pd.DataFrame | None = None,
    pretests: pd.DataFrame | None = None,
    control_group: str | None = "nevertreated",
    suppressed: set[tuple] | None = None,
    alpha: float = 0.05,
    min_firms: int = 10,
) -> str:
    """Paragraph for one service built from the CS-DiD overall (`simple`) estimates.

    `estimates` must already exclude rows that failed disclosure; the
    `suppressed` keys (treatment, outcome) are named so that readers know a
    result exists but cannot be published.
    """
    rows = estimates[(estimates["treatment"] == treatment) & (estimates["estimator"] == "cs_did")]
    simple = rows[rows["aggregation"] == "simple"]
    sentences: list[str] = []
    withheld: list[str] = []
    first = True
    for outcome in OUTCOMES:
        row = _lookup(simple, outcome=outcome)
        if row is None:
            if suppressed and (treatment, outcome) in suppressed:
                withheld.append(OUTCOMES[outcome].noun)
            continue
        mde_row = _lookup(mde, treatment=treatment, outcome=outcome, aggregation="simple")
        subject = None if first else "They"
        sentence = effect_sentence(
            treatment, outcome, row["estimate"], row["ci_lower"], row["ci_upper"],
            mde=None if mde_row is None else float(mde_row["mde"]),
            control_group=control_group, subject=subject,
        )
        if direction(row["ci_lower"], row["ci_upper"]) != 0:
            first = False
        sentences.append(sentence)
        if outcome == "exporter":
            sentences.extend(_horizon_sentence(treatment, rows, control_group))
    if not sentences and not withheld:
        return f"No estimates are available for {service_title(treatment).lower()}."
    if withheld:
        sentences.append(
            "Results for " + _join(withheld) + " are not published because they rest on fewer than "
            f"{min_firms} supported or comparison firms."
        )
    caveat = _pretrend_caveat(treatment, pretests, alpha)
    if caveat:
        sentences.append(caveat)
    return " ".join(sentences)


def _horizon_sentence(treatment: str, rows: pd.DataFrame, control_group: str | None) -> list[str]:
    """The exporter effect two years in, quoted with its simultaneous band."""
    dynamic = rows[(rows["aggregation"] == "dynamic") & (rows["outcome"] == "exporter")]
    row = _lookup(dynamic, event_time=2.0)
    if row is None:
        return []
    if direction(row["ci_lower"], row["ci_upper"]) == 0:
        spec = outcome_spec("exporter")
        value, lower, upper = display_interval("exporter", row["estimate"], row["ci_lower"], row["ci_upper"])
        return [f"Two years after starting, the difference in {spec.noun} "
                f"({format_number(value, spec.decimals)} {spec.unit_short}, 95 % simultaneous band "
                f"{format_number(lower, spec.decimals)} to {format_number(upper, spec.decimals)}) "
                "was not statistically distinguishable from zero."]
    return [effect_sentence(
        treatment, "exporter", row["estimate"], row["ci_lower"], row["ci_upper"],
        control_group=control_group, horizon=2, band_label="95 % simultaneous band",
        subject="Looking at timing, firms",
    )]


def _pretrend_caveat(treatment: str, pretests: pd.DataFrame | None, alpha: float) -> str | None:
    if pretests is None or pretests.empty:
        return None
    failing = pretests[(pretests["treatment"] == treatment) & (pretests["p_value"] < alpha)]
    if failing.empty:
        return None
    parts = [f"{outcome_spec(o).noun} (p = {p:.3f})" for o, p in zip(failing["outcome"], failing["p_value"])]
    return ("Caution: before support started, supported and comparison firms already followed "
            "different trends for " + _join(parts) + ", so those estimates carry a lower evidence rating.")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def summary_paragraphs(
    estimates: pd.DataFrame,
    diagnostics: Mapping[str, object],
    suppressed: set[tuple] | None = None,
    min_firms: int = 10,
) -> dict[str, str]:
    """One paragraph per service present in the estimates, keyed by treatment."""
    plan = diagnostics.get("plan") or {}
    control_group = plan.get("control_group", "nevertreated") if isinstance(plan, Mapping) else "nevertreated"
    alpha = float(plan.get("alpha", 0.05)) if isinstance(plan, Mapping) else 0.05
    treatments = [t for t in SERVICES if t in set(estimates["treatment"])
                  or (suppressed and any(key[0] == t for key in suppressed))]
    return {
        treatment: service_paragraph(
            treatment, estimates, mde=diagnostics.get("mde"), pretests=diagnostics.get("pretests"),
            control_group=control_group, suppressed=suppressed, alpha=alpha, min_firms=min_firms,
        )
        for treatment in treatments
    }
