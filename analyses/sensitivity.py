"""Sensitivity of every headline to violations of parallel trends (Rambachan & Roth 2023), as one table.

The evaluation keeps each pair's event studies in HonestDiD's layout (``diagnostics["event_studies"]``:
``cs_did`` with a universal base period and ``twfe``, every pre-period, post-periods ``0..H``);
:func:`sensitivity_table` runs :func:`analyses.honest_did.sensitivity_analysis` on each, for the effect on
impact (``on_impact``, e = 0) and the fixed-horizon average (``average``, e = 0..H, the headline's window),
under relative magnitudes (Mbar grid, C-LF) and smoothness (M grid, FLCI), with breakdown values.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from analyses.honest_did import EventStudy, sensitivity_analysis

SENSITIVITY_COLUMNS = ("service", "outcome", "estimator", "target", "restriction", "M", "lower", "upper", "method",
                       "breakdown")


def last_pre_periods(study: EventStudy, count: int) -> EventStudy:
    """The study with only its ``count`` pre-periods nearest the start (all when ``count`` is 0 or more than it has)."""
    drop = study.num_pre_periods - count if 0 < count < study.num_pre_periods else 0
    return EventStudy(study.betahat[drop:], study.sigma[drop:, drop:], study.event_times[drop:],
                      study.num_pre_periods - drop, study.num_post_periods)


def sensitivity_table(event_studies: pd.DataFrame, mbar=(0.5, 1.0, 1.5, 2.0), m=(), alpha: float = 0.05,
                      pre_periods: int = 0, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """``SENSITIVITY_COLUMNS`` rows for every event study of ``event_studies`` (``EVENT_STUDY_COLUMNS`` of
    ``analyses.evaluation``) that HonestDiD can take; ``m`` empty uses 0..2 standard errors of each target;
    ``pre_periods`` > 0 keeps that many pre-programme years nearest the start (:func:`last_pre_periods`).

    Studies set aside by the evaluation (``study`` None) have no rows; their reason is in the diagnostics.
    Raises ``ValueError`` if the input lacks the event-study columns.
    """
    missing = sorted({"treatment", "outcome", "estimator", "study"} - set(event_studies.columns))
    if missing:
        raise ValueError(f"evaluation_diagnostics['event_studies'] lacks column(s) {missing}")
    frames = []
    for record in event_studies.dropna(subset=["study"]).to_dict("records"):
        if progress:
            progress(f"{record['treatment']} × {record['outcome']} ({record['estimator']}): sensitivity")
        table = sensitivity_analysis(last_pre_periods(record["study"], pre_periods), Mbarvec=tuple(mbar), Mvec=list(m) or None, alpha=alpha)
        frames.append(table.assign(service=record["treatment"], outcome=record["outcome"],
                                   estimator=record["estimator"]))
    if not frames:
        return pd.DataFrame(columns=list(SENSITIVITY_COLUMNS)).astype(
            {c: "float64" for c in ("M", "lower", "upper", "breakdown")})
    return pd.concat(frames, ignore_index=True)[list(SENSITIVITY_COLUMNS)]


def breakdown_of(sensitivity: pd.DataFrame, service: str, outcome: str, estimator: str = "cs_did",
                 target: str = "average", method: str = "C-LF") -> float:
    """One breakdown value of the table (NaN when the pair has none)."""
    rows = sensitivity.loc[(sensitivity["service"] == service) & (sensitivity["outcome"] == outcome)
                           & (sensitivity["estimator"] == estimator) & (sensitivity["target"] == target)
                           & (sensitivity["method"] == method)]
    return float(rows["breakdown"].iloc[0]) if not rows.empty else math.nan
