"""Synthetic staggered-adoption panels with known treatment effects.

Used by the cross-checks, the Monte Carlo coverage test, the TWFE-bias demonstration
and the benchmark: effects are heterogeneous across cohorts and grow with exposure,
which is exactly the setting where two-way fixed effects is biased and the
Callaway-Sant'Anna estimator is not.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def heterogeneous_dynamic_effect(cohort: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Effect growing with exposure ``e >= 0`` and larger for early cohorts."""
    return (1.0 + 0.5 * exposure) * (1.0 + 0.5 / cohort)


def simulate_staggered_panel(
    n_units: int,
    n_periods: int,
    cohorts: Sequence[int],
    cohort_probs: Sequence[float] | None = None,
    effect: Callable[[np.ndarray, np.ndarray], np.ndarray] = heterogeneous_dynamic_effect,
    selection_on_x: float = 0.0,
    covariate_trend: float = 0.0,
    quadratic_trend: float = 0.0,
    noise_sd: float = 1.0,
    missing_share: float = 0.0,
    seed=None,
) -> pd.DataFrame:
    """Long panel with columns ``unit, period, y, first_treat, x1, x2, true_effect``.

    Periods are ``1..n_periods``; ``first_treat`` is 0 for never-treated units.
    ``cohort_probs`` gives P(cohort) for ``[0] + cohorts`` (never-treated first).
    With ``selection_on_x`` > 0 units with high ``x1`` are treated more often and,
    with ``covariate_trend`` != 0, their outcomes trend differently: parallel trends
    then hold only conditional on ``x1``.  ``quadratic_trend`` adds a trend in ``x1**2``, so
    an outcome model linear in ``x1`` is misspecified while the propensity score of every
    cohort against the never-treated stays exactly logit-linear in ``x1`` (the setting in
    which only the doubly robust estimator stays consistent).  ``missing_share`` drops that
    share of rows at random to make an unbalanced panel.
    """
    rng = np.random.default_rng(seed)
    labels = np.array([0, *cohorts])
    probs = np.full(len(labels), 1.0 / len(labels)) if cohort_probs is None else np.asarray(cohort_probs, float)
    if len(probs) != len(labels) or not np.isclose(probs.sum(), 1.0):
        raise ValueError("cohort_probs must have one probability per cohort plus never-treated, summing to 1")
    x1 = rng.normal(size=n_units)
    x2 = rng.integers(0, 3, size=n_units)
    tilt = np.exp(selection_on_x * np.outer(x1, labels > 0))
    unit_probs = probs * tilt
    unit_probs /= unit_probs.sum(axis=1, keepdims=True)
    cohort = labels[(unit_probs.cumsum(axis=1) < rng.random(n_units)[:, None]).sum(axis=1)]

    unit = np.repeat(np.arange(1, n_units + 1), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    g = np.repeat(cohort, n_periods)
    exposure = period - g
    treated_now = (g > 0) & (exposure >= 0)
    true_effect = np.where(treated_now, effect(np.where(g > 0, g, 1), np.maximum(exposure, 0)), 0.0)
    unit_effect = np.repeat(rng.normal(size=n_units) + 0.5 * x1 + 0.2 * x2, n_periods)
    x1_long = np.repeat(x1, n_periods)
    y = (unit_effect + 0.3 * period + covariate_trend * x1_long * period + quadratic_trend * x1_long**2 * period
         + true_effect + rng.normal(scale=noise_sd, size=n_units * n_periods))
    frame = pd.DataFrame({"unit": unit, "period": period, "y": y, "first_treat": g,
                          "x1": x1_long, "x2": np.repeat(x2, n_periods),
                          "true_effect": true_effect})
    if missing_share > 0:
        frame = frame.loc[rng.random(len(frame)) >= missing_share].reset_index(drop=True)
    return frame
