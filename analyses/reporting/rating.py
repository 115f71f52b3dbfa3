"""Evidence rating on the Maryland Scientific Methods Scale (SMS), once per service.

What Works Growth scores evaluations from 1 (cross-sectional correlation) to 5
(randomised). The rating describes the *design*, so it is given once per service
from the design's features, not per estimate from its test results:

* level 3: a staggered difference-in-differences with a justified comparison group
  (firms never supported, or not yet supported, and never firms that started with
  another service), pre-programme covariates, and evidence that supported and
  comparison firms are comparable (overlap, balance after weighting);
* level 2 when a feature is missing: no covariate adjustment, poor overlap,
  imbalance left after weighting, or a sample too small to detect medium-sized
  effects (the headline's minimum detectable effect above half a standard
  deviation of every outcome).

Pre-trend tests are *not* a reason: one rejection among many tests happens by
chance (nine tests at 5 % give a 37 % chance of at least one), and a test with
little power earns nothing by passing. The report shows them as information, with
their power.

How much to believe it also lowers the level, each finding printed, none
deciding alone: beside the design's features, the sensitivity analysis
(``diagnostics["sensitivity"]``, ``analyses.sensitivity``) and the robustness
runs (``diagnostics["robustness"]``, ``analyses.robustness``):

* conclusions (headline intervals excluding zero) that break down at a
  relative magnitude ``Mbar`` below 1, i.e. post-programme trend differences
  smaller than the largest seen before the programme would overturn them, for
  at least half of the service's conclusions (a barely significant effect is
  always fragile; one such among several is printed, not counted);
* placebos (programme starts moved earlier, pre-programme years only) whose
  intervals exclude zero, where the true effect is zero, for at least half of
  the service's outcomes (one among several happens by chance);
* a robustness run that reverses a conclusion: its estimate has the other sign
  of a significant main estimate, or it is significant with the other sign.

A run that only loses significance is not a reason (it may just have fewer
firms). What holds is printed as well (``Rating.notes``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd

from analyses.reporting.summary import format_number, outcome_spec

DESIGN_LEVEL = 3
# Stuart (2010): |SMD| above 0.25 after weighting signals residual imbalance.
MAX_ABS_SMD = 0.25
# Share of treated firms whose propensity-score bin holds no comparison firm.
MAX_UNSUPPORTED_SHARE = 0.05
# Cohen's "medium" effect: a design that cannot detect half a standard deviation on any outcome is too small.
MAX_STANDARDISED_MDE = 0.5
# Rambachan & Roth's benchmark: a conclusion should survive post-programme trend differences as large as the largest
# pre-programme one (Mbar = 1).
MIN_BREAKDOWN_MBAR = 1.0
ROBUSTNESS_COLUMNS = ["service", "outcome", "run", "description", "estimate", "ci_lower", "ci_upper", "reason"]
SENSITIVITY_COLUMNS = ["service", "outcome", "estimator", "target", "method", "breakdown"]
COMPARISON_GROUPS = {
    "nevertreated": "firms never supported",
    "notyettreated": "firms never supported or not yet supported",
}


@dataclass(frozen=True)
class Rating:
    """The SMS level of one service's design, what it rests on and why it is below `DESIGN_LEVEL`."""

    treatment: str
    level: int
    design: str
    reasons: tuple[str, ...] = ()
    #: what was checked and holds (sensitivity, placebo, robustness runs), printed beside the reasons
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"Level {self.level}"

    @property
    def explanation(self) -> str:
        text = self.design + "."
        if self.reasons:
            text += " Below level 3: " + "; ".join(self.reasons) + "."
        return text


def unsupported_share(overlap: pd.DataFrame, treatment: str) -> float:
    """Share of treated firms in propensity-score bins without any comparison firm."""
    rows = overlap[overlap["treatment"] == treatment]
    if rows.empty:
        return float("nan")
    counts = rows.pivot_table(index="bin_lower", columns="group", values="n_firms", aggfunc="sum", fill_value=0)
    if "treated" not in counts or counts["treated"].sum() == 0:
        return float("nan")
    comparison = counts["comparison"] if "comparison" in counts else 0
    unsupported = counts.loc[comparison == 0, "treated"].sum()
    return float(unsupported / counts["treated"].sum())


def _frame(diagnostics: Mapping, name: str, treatment: str) -> pd.DataFrame:
    frame = diagnostics.get(name)
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return pd.DataFrame()
    return frame[frame["treatment"] == treatment]


def _design(plan: Mapping, mde: pd.DataFrame) -> str:
    comparison = COMPARISON_GROUPS.get(plan.get("control_group", "nevertreated"), COMPARISON_GROUPS["nevertreated"])
    covariates = plan.get("covariates") or []
    adjusted = f", adjusted for {len(covariates)} pre-programme covariates" if covariates else ""
    text = (f"Staggered difference-in-differences (Callaway and Sant'Anna) against {comparison}, never firms "
            f"that started with another service{adjusted}")
    standardised = _standardised(mde).dropna()
    if not standardised.empty:
        text += (f"; minimum detectable headline effects (80 % power) of {standardised.min():.2f} to "
                 f"{standardised.max():.2f} standard deviations of the outcomes")
    return text


def _standardised(mde: pd.DataFrame) -> pd.Series:
    """The headline's minimum detectable effects in standard deviations of each outcome before support."""
    if mde.empty or "baseline_sd" not in mde:
        return pd.Series(dtype=float)
    return (mde["mde"].abs() / mde["baseline_sd"]).where(mde["baseline_sd"] > 0)


def _power_reason(mde: pd.DataFrame) -> str | None:
    """The sample is too small when the headline cannot detect medium-sized effects on any outcome."""
    standardised = _standardised(mde)
    if standardised.empty or standardised.isna().any() or not (standardised > MAX_STANDARDISED_MDE).all():
        return None
    shown = ", ".join(f"{outcome_spec(o).noun} {v:.2f}" for o, v in zip(mde["outcome"], standardised))
    return (f"too few firms to detect medium-sized effects: the minimum detectable effect exceeds "
            f"{MAX_STANDARDISED_MDE} standard deviations for every outcome ({shown})")


def _conclusion(lower: float, upper: float) -> int:
    """+1 / -1 when the interval lies above / below zero, 0 otherwise (also when missing)."""
    return 1 if lower > 0 else -1 if upper < 0 else 0


def _shown(outcome: str, value: float) -> str:
    spec = outcome_spec(outcome)
    return f"{format_number(spec.display(value), spec.decimals)} {spec.unit_short}".strip()


def _of_service(diagnostics: Mapping, name: str, treatment: str, columns: list[str]) -> pd.DataFrame:
    frame = diagnostics.get(name)
    if not isinstance(frame, pd.DataFrame) or frame.empty or not set(columns) <= set(frame.columns):
        return pd.DataFrame(columns=columns)
    return frame[frame["service"] == treatment]


def _majority(found: list, examined: int) -> bool:
    """A finding lowers the level when it concerns at least half of what was examined: with several outcomes one
    interval on the wrong side of zero happens by chance (and a barely significant effect is always fragile)."""
    return bool(found) and 2 * len(found) >= examined


def sensitivity_findings(treatment: str, diagnostics: Mapping) -> tuple[list[str], list[str]]:
    """Reasons and notes from the relative-magnitudes breakdown values of the CS-DiD headline averages."""
    rows = _of_service(diagnostics, "sensitivity", treatment, SENSITIVITY_COLUMNS)
    rows = rows[(rows["estimator"] == "cs_did") & (rows["target"] == "average") & (rows["method"] == "C-LF")]
    concluded = rows.drop_duplicates("outcome").dropna(subset=["breakdown"])  # NaN: no conclusion to break
    fragile = [(outcome_spec(o).label.lower(), b) for o, b in zip(concluded["outcome"], concluded["breakdown"])
               if b < MIN_BREAKDOWN_MBAR]
    notes = [f"the effect on {outcome_spec(o).noun} holds unless post-programme trend differences exceed "
             + ("any bound" if b == float("inf") else f"{b:.2f} times") + " the largest seen before the programme"
             for o, b in zip(concluded["outcome"], concluded["breakdown"]) if b >= MIN_BREAKDOWN_MBAR]
    if not fragile:
        return [], notes
    text = (f"fragile to differences in trends: {len(fragile)} of {len(concluded)} effects found hold only while "
            "post-programme trend differences stay below the largest seen before the programme (breakdown values "
            + ", ".join(f"{label} {b:.2f}" for label, b in fragile) + ")")
    return ([text], notes) if _majority(fragile, len(concluded)) else ([], [text + " (not the majority)", *notes])


def robustness_findings(treatment: str, diagnostics: Mapping) -> tuple[list[str], list[str]]:
    """Reasons and notes from the robustness table: placebo effects (when at least half of the placebos find one)
    and reversed conclusions (each)."""
    table = _of_service(diagnostics, "robustness", treatment, ROBUSTNESS_COLUMNS)
    main = table[table["run"] == "main"].set_index("outcome")
    runs = table[(table["run"] != "main") & table["estimate"].notna() & table["outcome"].isin(main.index)]
    reversals, placebo_effects = [], []
    for record in runs.to_dict("records"):
        outcome, noun = record["outcome"], outcome_spec(record["outcome"]).noun
        base = main.loc[outcome]
        found = _conclusion(record["ci_lower"], record["ci_upper"])
        interval = (f"{_shown(outcome, record['estimate'])} ({_shown(outcome, record['ci_lower'])} to "
                    f"{_shown(outcome, record['ci_upper'])})")
        if record["run"] == "placebo":
            if found:
                placebo_effects.append(f"on {noun}: {interval}")
            continue
        sign = 1 if base["estimate"] > 0 else -1
        concluded = _conclusion(base["ci_lower"], base["ci_upper"])
        if (concluded and record["estimate"] * concluded < 0) or found == -sign:
            reversals.append(f"a robustness run reverses the effect on {noun} ({record['description']}): {interval} "
                             f"against {_shown(outcome, base['estimate'])} in the main run")
    placebos = int((runs["run"] == "placebo").sum())
    reasons, notes = list(reversals), []
    if placebo_effects:
        text = (f"{len(placebo_effects)} of {placebos} placebos (programme starts moved earlier, where the true "
                f"effect is zero) find an effect: " + "; ".join(placebo_effects))
        if _majority(placebo_effects, placebos):
            reasons.append(text)
        else:
            notes.append(text + " (fewer than half: expected now and then by chance)")
    if len(runs) and not reversals:
        notes.append(f"no robustness run reverses a conclusion ({len(runs) - placebos} runs)"
                     + ("" if placebo_effects or not placebos else f"; no placebo finds an effect ({placebos})"))
    failed = table[(table["run"] != "main") & table["estimate"].isna()]
    notes += [f"a robustness run could not be estimated for {outcome_spec(r['outcome']).noun} ({r['description']}): "
              f"{r['reason']}"
              for r in failed.to_dict("records")]
    return reasons, notes


def rate_service(treatment: str, diagnostics: Mapping) -> Rating:
    """SMS level of the design behind every estimate for ``treatment``, with the reasons for any drop."""
    plan = diagnostics.get("plan") if isinstance(diagnostics.get("plan"), Mapping) else {}
    reasons: list[str] = []
    if not plan.get("covariates", ["unknown"]):
        reasons.append("no covariates: the comparison rests on unconditional parallel trends and comparability "
                       "with the comparison firms is not shown on observables")
    overlap = diagnostics.get("overlap")
    if isinstance(overlap, pd.DataFrame) and not overlap.empty:
        share = unsupported_share(overlap, treatment)
        if share == share and share > MAX_UNSUPPORTED_SHARE:
            reasons.append(f"poor overlap: {share:.0%} of supported firms have propensity scores "
                           "with no comparison firms")
    balance = _frame(diagnostics, "balance", treatment)
    if not balance.empty:
        rows = balance[balance["smd_weighted"].notna()]
        worst = rows.loc[rows["smd_weighted"].abs().idxmax()] if not rows.empty else None
        if worst is not None and abs(float(worst["smd_weighted"])) > MAX_ABS_SMD:
            reasons.append(f"covariate imbalance after weighting: {worst['covariate']} "
                           f"SMD = {format_number(float(worst['smd_weighted']), 2)}")
    mde = _frame(diagnostics, "mde", treatment)
    power = _power_reason(mde)
    if power:
        reasons.append(power)
    notes = []
    for findings in (sensitivity_findings, robustness_findings):
        found, holds = findings(treatment, diagnostics)
        reasons += found
        notes += holds
    return Rating(treatment, DESIGN_LEVEL - 1 if reasons else DESIGN_LEVEL, _design(plan, mde), tuple(reasons),
                  tuple(notes))
