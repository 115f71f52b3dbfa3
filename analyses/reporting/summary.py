"""Plain-language wording of the estimates for the executive summary.

The wording is generated from the numbers so that it can never drift from
them: the direction of an effect is only stated when its interval (at the
plan's confidence level) excludes zero; otherwise the text says that no
change was detectable and quotes the minimum detectable effect, so readers
do not mistake an underpowered comparison for evidence of no effect.

The treated firms of a service are the firms whose *first* support was that
service (they may have received other services later), hence "firms that
started with advisory support".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import pandas as pd

from analyses.reporting.settings import HEADLINE

MINUS = "\u2212"
# Event times from which an effect counts as persistent rather than short-run.
PERSISTENCE_FROM = 3


@dataclass(frozen=True)
class Intervals:
    """How intervals are labelled.

    The level follows the plan's alpha; event-study bands are simultaneous
    (uniform over event times) only when the multiplier bootstrap ran, and
    pointwise otherwise, so the label must say which one the reader sees.
    """

    alpha: float = 0.05
    uniform_bands: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"diagnostics['plan']['alpha'] must be in (0, 1), got {self.alpha}")

    @classmethod
    def from_plan(cls, plan: Mapping | None) -> "Intervals":
        plan = plan if isinstance(plan, Mapping) else {}
        iterations = plan.get("bootstrap_iterations")
        return cls(alpha=float(plan.get("alpha", 0.05)), uniform_bands=iterations is None or int(iterations) > 0)

    @property
    def level(self) -> str:
        """"95 %" for alpha 0.05, "90 %" for 0.10, "97.5 %" for 0.025."""
        return f"{round(100 * (1 - self.alpha), 6):g} %"

    @property
    def ci(self) -> str:
        return f"{self.level} CI"

    @property
    def band(self) -> str:
        """Label of a dynamic (event-time) interval."""
        return f"{self.level} simultaneous band" if self.uniform_bands else f"{self.level} pointwise CI"

    @property
    def band_plural(self) -> str:
        return "uniform bands" if self.uniform_bands else "pointwise intervals"

    @property
    def ci_words(self) -> str:
        """`ci` in plain words, for the executive summary (readers who do not know "CI")."""
        return f"{self.level} confidence interval"

    @property
    def band_words(self) -> str:
        """`band` in plain words: a uniform band covers every year's effect at once."""
        return f"{self.level} confidence band for all years jointly" if self.uniform_bands else self.ci_words


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
    #: what the outcome measures, for the methods annex; ``{k}`` is the plan's ``lookback_years``
    definition: str = ""

    def display(self, value: float) -> float:
        return self.to_display(value)

    @property
    def sentence_unit(self) -> str:
        """Unit as written after a number in running text ("3.0 percentage points", "12.5 %")."""
        return "%" if self.unit_short == "%" else self.unit


def _percentage_points(value: float) -> float:
    return 100.0 * value


def _identity(value: float) -> float:
    return value


_NEW_MARKET = "not served in the previous {k} years; firm-years with fewer than {k} earlier years of customs data are left out"


def _entry(label: str, noun: str, verb: str, definition: str) -> OutcomeSpec:
    """A 0/1 outcome reported in percentage points."""
    return OutcomeSpec(
        label=label, unit="percentage points", unit_short="pp", decimals=1, to_display=_percentage_points,
        noun=noun, more=f"were {{x}} percentage points {{ci}} more likely to {verb}",
        less=f"were {{x}} percentage points {{ci}} less likely to {verb}", definition=definition,
    )


OUTCOMES: dict[str, OutcomeSpec] = {
    "exporter": _entry("Exporting", "the probability of exporting", "export",
                       "1 if the firm exported anything in the year (customs data), else 0."),
    "enters_new_market": _entry(
        "Entering a new market", "the probability of entering a new export market", "enter a new export market",
        "1 if the firm exported to a destination " + _NEW_MARKET + "."),
    "starts_exporting": _entry(
        "Starting to export", "the probability of starting to export", "start exporting",
        "1 if the firm exported after {k} years without exports; firm-years with fewer than {k} earlier years of "
        "customs data are left out."),
    "new_destination": _entry(
        "Adding a destination", "the probability that an exporter adds a new destination",
        "add a new export destination",
        "1 if a firm that exported the year before exported to a destination " + _NEW_MARKET + "."),
    "new_eu_destination": _entry(
        "Adding an EU destination", "the probability that an exporter adds a new EU destination",
        "add a new EU destination",
        "As adding a destination, for EU members of that year (the United Kingdom through 2020)."),
    "new_non_eu_destination": _entry(
        "Adding a non-EU destination", "the probability that an exporter adds a new non-EU destination",
        "add a new non-EU destination",
        "As adding a destination, for countries outside the EU in that year (the United Kingdom from 2021)."),
    "n_destinations": OutcomeSpec(
        label="Export destinations", unit="markets", unit_short="markets", decimals=2,
        to_display=_identity, noun="the number of export markets",
        more="exported to {x} more markets {ci}",
        less="exported to {x} fewer markets {ci}",
        definition="Number of countries the firm exported to in the year.",
    ),
}

#: plain names of the covariates, for tables and figures; the codes appear only in the methods annex
VARIABLE_LABELS: dict[str, str] = {
    "log_employees": "Employees (log)",
    "log_turnover": "Turnover (log)",
    "firm_age": "Firm age (years)",
    "in_cluster": "Member of a cluster or hub",
    "exporter": "Exporter",
    "exported_last_year": "Exported the year before",
    "years_exported_last3": "Years with exports, previous three",
    # t-2..t, read in the base year g-1 as a covariate: the years with exports in g-3..g-1
    "years_exported_3y": "Years with exports in the three years before",
}
_SNAPSHOT_SUFFIX = "_first"


def known_label(code: str) -> str | None:
    """The plain name ``VARIABLE_LABELS`` or ``OUTCOMES`` give a panel column (a ``*_first`` snapshot by its
    measure's name), or None when neither names it."""
    base = code[: -len(_SNAPSHOT_SUFFIX)] if code.endswith(_SNAPSHOT_SUFFIX) else code
    return VARIABLE_LABELS.get(base) or (OUTCOMES[base].label if base in OUTCOMES else None)


def variable_label(code: str) -> str:
    """Plain name of a panel column for readers ("Employees (log), first panel year" for
    ``log_employees_first``); an unknown code gets its words, never the code itself."""
    snapshot = code.endswith(_SNAPSHOT_SUFFIX)
    base = code[: -len(_SNAPSHOT_SUFFIX)] if snapshot else code
    label = known_label(base)
    if label is None:
        words = base.split("_")
        logged = words[0] == "log" and len(words) > 1
        words = words[1:] if logged else words
        label = " ".join(words).capitalize() + (" (log)" if logged else "")
    return f"{label}, first panel year" if snapshot else label


SERVICES: dict[str, tuple[str, str]] = {
    # key: (title for headings, phrase after "firms that started with")
    "advisory": ("Advisory support", "advisory support"),
    "network": ("Network services", "network services"),
    "grant": ("Export grants", "an export grant"),
}

COMPARISONS: dict[str, str] = {
    "nevertreated": "similar firms that received no support",
    "notyettreated": "similar firms that had not yet received support",
}

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}


def years_after(horizon: int) -> str:
    """"two years after starting"; "in the year they started" for e = 0."""
    if horizon == 0:
        return "in the year they started"
    count = NUMBER_WORDS.get(horizon, str(horizon))
    return f"{count} year{'s' if horizon != 1 else ''} after starting"


def window_words(horizon: int, start: str = "the year they started") -> str:
    """Event times 0..horizon in words: "the year they started and the three years after"."""
    if horizon == 0:
        return start
    after = "the year after" if horizon == 1 else f"the {NUMBER_WORDS.get(horizon, str(horizon))} years after"
    return f"{start} and {after}"


def years_window(horizon: int) -> str:
    """The headline's average in a sentence: "on average over the year they started and the three years after"."""
    return years_after(0) if horizon == 0 else f"on average over {window_words(horizon)}"


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


def is_estimable(*values: float) -> bool:
    """False when any of the numbers (estimate, standard error, bounds) is missing or NaN."""
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


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
    std_error: float | None = None,
    window: int | None = None,
) -> str:
    """One sentence for one estimate.

    `horizon` is the event time e for a dynamic estimate; `window` the H of
    an average over event times 0..H (the headline); with neither, the
    average over all post-treatment years; `subject` replaces the default
    "Firms that started with <service>" when sentences are chained. An
    estimate without an interval (NaN standard error) could not be
    estimated, and the sentence says so instead of quoting "n/a".
    """
    spec = outcome_spec(outcome)
    value, lower, upper = display_interval(outcome, estimate, ci_lower, ci_upper)
    if horizon is not None:
        when = years_after(int(horizon))
    else:
        when = years_window(int(window)) if window is not None else "on average in the years after starting"
    service = SERVICES.get(treatment, ("", treatment))[1]
    given = [estimate, ci_lower, ci_upper] + ([] if std_error is None else [std_error])
    if not is_estimable(*map(float, given)):
        who = "for them" if subject else f"for firms that started with {service}"
        return f"The effect on {spec.noun} {when} could not be estimated {who} (no standard error)."
    # the comparison group is named once per paragraph; chained sentences omit it
    compared = "" if subject else f", compared with {comparison_phrase(control_group)}"
    sign = direction(ci_lower, ci_upper)
    if sign == 0:
        lead = "There was" if subject else f"For firms that started with {service}, there was"
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
    who = subject or f"Firms that started with {service}"
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
    intervals: Intervals = Intervals(),
    min_firms: int = 10,
    not_estimable: pd.DataFrame | None = None,
    horizon: int = 3,
    support: pd.DataFrame | None = None,
) -> str:
    """Paragraph for one service built from the CS-DiD headline (`HEADLINE` rows without event time).

    `estimates` must already exclude rows that failed disclosure; the
    `suppressed` keys (treatment, outcome) are named so that readers know a
    result exists but cannot be published, and the `not_estimable` pairs so
    that a missing outcome is never silently skipped; a service-wide entry
    (empty outcome) says why nothing could be estimated. `horizon` is the
    headline's H; `support` (the evaluation's `cohorts_behind`) gives the
    cohorts behind long-run event times.
    """
    whole = _lookup(not_estimable, treatment=treatment, outcome="")
    if whole is not None:
        return f"Nothing could be estimated for {service_title(treatment).lower()}: {whole['reason']}."
    rows = estimates[(estimates["treatment"] == treatment) & (estimates["estimator"] == "cs_did")]
    headline = rows[(rows["aggregation"] == HEADLINE) & rows["event_time"].isna()]
    sentences: list[str] = []
    withheld: list[str] = []
    failed: list[str] = []
    first = True
    for outcome in OUTCOMES:
        row = _lookup(headline, outcome=outcome)
        if row is None:
            if suppressed and (treatment, outcome) in suppressed:
                withheld.append(OUTCOMES[outcome].noun)
            elif _lookup(not_estimable, treatment=treatment, outcome=outcome) is not None:
                failed.append(OUTCOMES[outcome].noun)
            continue
        mde_row = _lookup(mde, treatment=treatment, outcome=outcome, aggregation=HEADLINE)
        subject = None if first else "They"
        sentence = effect_sentence(
            treatment, outcome, row["estimate"], row["ci_lower"], row["ci_upper"],
            mde=None if mde_row is None else float(mde_row["mde"]),
            control_group=control_group, band_label=intervals.ci_words, subject=subject, std_error=row["std_error"],
            window=horizon,
        )
        if _readable(row) and direction(row["ci_lower"], row["ci_upper"]) != 0:
            first = False
        sentences.append(sentence)
        if outcome == "exporter":
            sentences.extend(_horizon_sentence(treatment, rows, control_group, intervals))
            sentences.extend(_persistence_sentence(treatment, rows, outcome, intervals, min_firms, support))
    if not sentences and not withheld and not failed:
        return f"No estimates are available for {service_title(treatment).lower()}."
    if failed:
        sentences.append(f"The effect{'s' if len(failed) > 1 else ''} on {_join(failed)} could not be estimated "
                         "(see the methods annex).")
    if withheld:
        sentences.append(
            "Results for " + _join(withheld) + " are not published because they rest on fewer than "
            f"{min_firms} supported or comparison firms."
        )
    caveat = _pretrend_caveat(treatment, pretests, intervals.alpha)
    if caveat:
        sentences.append(caveat)
    return " ".join(sentences)


def _readable(row: pd.Series) -> bool:
    """An estimate with a standard error and both interval bounds."""
    return is_estimable(*(float(row[c]) for c in ("estimate", "std_error", "ci_lower", "ci_upper")))


def _undetectable(outcome: str, row: pd.Series, band_label: str) -> str:
    """"1.2 pp, 95 % simultaneous band −0.8 to 3.2" for an interval that includes zero."""
    spec = outcome_spec(outcome)
    value, lower, upper = display_interval(outcome, row["estimate"], row["ci_lower"], row["ci_upper"])
    return (f"{format_number(value, spec.decimals)} {spec.unit_short}, {band_label} "
            f"{format_number(lower, spec.decimals)} to {format_number(upper, spec.decimals)}")


def _horizon_sentence(treatment: str, rows: pd.DataFrame, control_group: str | None,
                      intervals: Intervals) -> list[str]:
    """The exporter effect two years in, quoted with its event-time band."""
    dynamic = rows[(rows["aggregation"] == "dynamic") & (rows["outcome"] == "exporter")]
    row = _lookup(dynamic, event_time=2.0)
    if row is None:
        return []
    if _readable(row) and direction(row["ci_lower"], row["ci_upper"]) == 0:
        return [f"Two years after starting, the difference in {outcome_spec('exporter').noun} "
                f"({_undetectable('exporter', row, intervals.band_words)}) was not statistically distinguishable from zero."]
    return [effect_sentence(
        treatment, "exporter", row["estimate"], row["ci_lower"], row["ci_upper"],
        control_group=control_group, horizon=2, band_label=intervals.band_words,
        subject="Looking at timing, firms", std_error=row["std_error"],
    )]


def _span(first: int, last: int) -> str:
    """"from three to ten years after starting" (or one horizon when they coincide)."""
    if first == last:
        return years_after(first)
    return f"from {NUMBER_WORDS.get(first, first)} to {years_after(last)}"


def resting_on(row: pd.Series, support: pd.DataFrame | None) -> str:
    """"resting on 40 firms in 1 cohort" for an estimate row; long-run event times rest on few cohorts."""
    firms = f"{int(row['n_treated']):,} firms"
    hit = _lookup(support, treatment=row["treatment"], outcome=row["outcome"], estimator=row["estimator"],
                  aggregation=row["aggregation"], event_time=row["event_time"])
    if hit is None:
        return f"resting on {firms}"
    cohorts = int(hit["n_cohorts"])
    return f"resting on {firms} in {cohorts} cohort{'s' if cohorts != 1 else ''}"


def _persistence_sentence(treatment: str, rows: pd.DataFrame, outcome: str, intervals: Intervals,
                          min_firms: int, support: pd.DataFrame | None = None) -> list[str]:
    """Whether the effect lasts: every event time from PERSISTENCE_FROM on with enough firms, latest quoted.

    An average over those event times would need their covariance, which
    the published rows do not carry, so each event time is read on its own
    interval and the latest one is quoted, with the firms and cohorts it
    rests on; the direction is only claimed where an interval excludes zero.
    """
    dynamic = rows[(rows["aggregation"] == "dynamic") & (rows["outcome"] == outcome)].sort_values("event_time")
    late = dynamic[(dynamic["event_time"] >= PERSISTENCE_FROM) & (dynamic["n_treated"] >= min_firms)]
    late = late[[_readable(row) for _, row in late.iterrows()]]
    if late.empty:
        return []
    signs = [direction(lo, hi) for lo, hi in zip(late["ci_lower"], late["ci_upper"])]
    latest = late.iloc[-1]
    first_e, last_e = int(late["event_time"].iloc[0]), int(latest["event_time"])
    noun = outcome_spec(outcome).noun
    resting = resting_on(latest, support)
    latest_effect = effect_sentence(treatment, outcome, latest["estimate"], latest["ci_lower"], latest["ci_upper"],
                                    horizon=last_e, band_label=intervals.band_words, subject="firms")[:-1] + f" ({resting})."
    if all(sign == 0 for sign in signs):
        early = dynamic[(dynamic["event_time"] >= 0) & (dynamic["event_time"] < PERSISTENCE_FROM)]
        was_detectable = any(direction(lo, hi) != 0 for lo, hi in zip(early["ci_lower"], early["ci_upper"]))
        return [f"From {years_after(first_e)} on, the difference in {noun} was "
                f"{'no longer' if was_detectable else 'not'} statistically detectable in any year up to "
                f"{years_after(last_e)} (latest: {_undetectable(outcome, latest, intervals.band_words)}; {resting})."]
    if len(set(signs)) == 1:
        return [f"The difference stayed statistically detectable in every year {_span(first_e, last_e)}; "
                + latest_effect]
    if signs[-1] == 0:
        latest_text = (f"{years_after(last_e)}, it was not distinguishable from zero "
                       f"({_undetectable(outcome, latest, intervals.band_words)}; {resting}).")
    else:
        latest_text = latest_effect
    detectable = sum(sign != 0 for sign in signs)
    return [f"From {years_after(first_e)} on, the difference in {noun} was statistically detectable in "
            f"{detectable} of {len(signs)} years; " + latest_text]


def _pretrend_caveat(treatment: str, pretests: pd.DataFrame | None, alpha: float) -> str | None:
    """Pre-tests that reject, as information (no rating follows from one test; see `rating`)."""
    if pretests is None or pretests.empty:
        return None
    failing = pretests[(pretests["treatment"] == treatment) & (pretests["p_value"] < alpha)]
    if failing.empty:
        return None
    parts = [f"{outcome_spec(o).noun} (p = {p:.3f})" for o, p in zip(failing["outcome"], failing["p_value"])]
    tested = int(pretests["p_value"].notna().sum())
    return ("Before support started, supported and comparison firms already followed different trends for "
            + _join(parts) + f", so those estimates may partly reflect that trend; of the {tested} pre-trend tests "
            f"in this report about {tested * alpha:.1f} would reject by chance alone (see the diagnostics).")


def comparison_sentence(outcome: str, cs: float, no_covariates: float, twfe: float) -> str:
    """Why two-way fixed effects differs from Callaway–Sant'Anna, read from the three headline numbers.

    The gap TWFE − CS splits into (CS without covariates − CS), the covariate adjustment, and
    (TWFE − CS without covariates), which is how TWFE weights cohorts and years (already-treated
    firms as comparisons, so cohort heterogeneity and effects that change over time). A part counts
    as "mostly" the reason when it is at least two thirds of the two parts' absolute sum; the gap
    counts as nil when it rounds to zero in reporting units.
    """
    spec = outcome_spec(outcome)
    show = lambda value: f"{format_number(spec.display(value), spec.decimals)} {spec.unit_short}"  # noqa: E731
    size = lambda value: f"{format_number(abs(spec.display(value)), spec.decimals)} {spec.unit_short}"  # noqa: E731
    stated = f"TWFE {show(twfe)} against CS-DiD {show(cs)} (without covariates {show(no_covariates)})"
    gap = twfe - cs
    if format_number(abs(spec.display(gap)), spec.decimals) == format_number(0.0, spec.decimals):
        return f"{stated}: the two estimators agree."
    covariates, weighting = no_covariates - cs, twfe - no_covariates
    share = abs(covariates) / (abs(covariates) + abs(weighting))
    if share >= 2 / 3:
        return f"{stated}: the gap of {size(gap)} is mostly covariate adjustment, which TWFE does not make."
    if share <= 1 / 3:
        return (f"{stated}: the gap of {size(gap)} is not covariate adjustment but how TWFE weights cohorts and "
                "years (it uses firms already supported as comparisons), which matters under cohort heterogeneity "
                "or effects that change over time.")
    return (f"{stated}: both covariate adjustment ({size(covariates)}) and how TWFE weights cohorts and years "
            f"({size(weighting)}) contribute to the gap of {size(gap)}.")


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
    """One paragraph per service present in the estimates (or withheld / not estimable), keyed by treatment."""
    plan = diagnostics.get("plan") or {}
    control_group = plan.get("control_group", "nevertreated") if isinstance(plan, Mapping) else "nevertreated"
    intervals = Intervals.from_plan(plan)
    horizon = int(plan.get("headline_horizon", 3)) if isinstance(plan, Mapping) else 3
    not_estimable = diagnostics.get("not_estimable")
    mentioned = set(estimates["treatment"]) | {key[0] for key in suppressed or ()}
    if isinstance(not_estimable, pd.DataFrame):
        mentioned |= set(not_estimable["treatment"])
    return {
        treatment: service_paragraph(
            treatment, estimates, mde=diagnostics.get("mde"), pretests=diagnostics.get("pretests"),
            control_group=control_group, suppressed=suppressed, intervals=intervals, min_firms=min_firms,
            not_estimable=not_estimable if isinstance(not_estimable, pd.DataFrame) else None,
            horizon=horizon, support=diagnostics.get("cohorts_behind"),
        )
        for treatment in SERVICES if treatment in mentioned
    }
