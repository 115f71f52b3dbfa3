"""Evidence rating on the Maryland Scientific Methods Scale (SMS).

What Works Growth scores evaluations from 1 (cross-sectional correlation)
to 5 (randomised). A difference-in-differences with a justified comparison
group is level 3; it drops to level 2 (before/after with a comparison group
whose comparability is in doubt) when the parallel-trends pre-test rejects
or the supported and comparison firms do not overlap on observables.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

DESIGN_LEVEL = 3
# Stuart (2010): |SMD| above 0.25 after weighting signals residual imbalance.
MAX_ABS_SMD = 0.25
# Share of treated firms whose propensity-score bin holds no comparison firm.
MAX_UNSUPPORTED_SHARE = 0.05


@dataclass(frozen=True)
class Rating:
    level: int
    reasons: tuple[str, ...]
    pretest_p: float = float("nan")

    @property
    def label(self) -> str:
        return f"Level {self.level}"

    @property
    def explanation(self) -> str:
        # A pre-test that does not reject is no proof of parallel trends, only no evidence against them.
        if not self.reasons:
            return (f"Difference-in-differences; no evidence against parallel trends (p = {self.pretest_p:.3f}), "
                    "and supported and comparison firms overlap on observables.")
        text = "; ".join(self.reasons) + "."
        return text[0].upper() + text[1:]


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


def rate_estimate(treatment: str, outcome: str, diagnostics: dict, alpha: float = 0.05) -> Rating:
    """SMS level for the CS-DiD estimate of one service and outcome, with the reasons for any drop."""
    reasons: list[str] = []
    p_value = float("nan")
    pretests = diagnostics.get("pretests")
    if isinstance(pretests, pd.DataFrame) and not pretests.empty:
        hit = pretests[(pretests["treatment"] == treatment) & (pretests["outcome"] == outcome)]
        p_value = float(hit["p_value"].iloc[0]) if not hit.empty else float("nan")
        if p_value != p_value:
            reasons.append("no pre-trend test available")
        elif p_value < alpha:
            reasons.append(f"pre-trend test rejects parallel trends (p = {p_value:.3f})")
    else:
        reasons.append("no pre-trend test available")
    overlap = diagnostics.get("overlap")
    if isinstance(overlap, pd.DataFrame) and not overlap.empty:
        share = unsupported_share(overlap, treatment)
        if share == share and share > MAX_UNSUPPORTED_SHARE:
            reasons.append(f"poor overlap: {share:.0%} of supported firms have propensity scores "
                           "with no comparison firms")
    balance = diagnostics.get("balance")
    if isinstance(balance, pd.DataFrame) and not balance.empty:
        rows = balance[(balance["treatment"] == treatment) & balance["smd_weighted"].notna()]
        worst = rows.loc[rows["smd_weighted"].abs().idxmax()] if not rows.empty else None
        if worst is not None and abs(float(worst["smd_weighted"])) > MAX_ABS_SMD:
            reasons.append(f"covariate imbalance after weighting: {worst['covariate']} "
                           f"SMD = {float(worst['smd_weighted']):.2f}")
    return Rating(DESIGN_LEVEL - 1 if reasons else DESIGN_LEVEL, tuple(reasons), p_value)
