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

Hook for the sensitivity analysis: a ``diagnostics["robustness"]`` table
(``treatment, check, reason``; one row per failed robustness check) lowers the
service to level 2 with each ``reason`` listed. Nothing else needs to change.
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
ROBUSTNESS_COLUMNS = ["treatment", "check", "reason"]
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
    reasons += [str(reason) for reason in _frame(diagnostics, "robustness", treatment).get("reason", [])]
    return Rating(treatment, DESIGN_LEVEL - 1 if reasons else DESIGN_LEVEL, _design(plan, mde), tuple(reasons))
