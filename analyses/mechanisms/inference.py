"""Joint inference across estimates: stacked influence functions, tests of differences, multiple testing.

Estimates from different samples (subgroups, services, outcomes) share firms -- a shared comparison
group, or the same firms under several outcomes -- so their errors are correlated. ``JointInfluence``
stacks each estimate's influence function on the union of firms (rescaled to the union's size, R
``did``'s convention: ``estimate - truth ~ mean(IF)``), so differences and families are tested with the
right covariance, analytic or from one multiplier bootstrap that draws one multiplier per firm for every
estimate (``analyses.did.bootstrap``).

Multiple testing within a pre-registered family: Romano & Wolf (2005, 2016) step-down adjusted p-values
from those joint bootstrap draws (``romano_wolf``), Holm (1979) where no draws exist (``holm``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2, norm

from analyses.did.bootstrap import multiplier_bootstrap


@dataclass
class JointInfluence:
    """Estimates with their unit-level influence functions, to be stacked on the union of units."""

    names: list[str] = field(default_factory=list)
    estimates: list[float] = field(default_factory=list)
    _parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (unit ids, IF scaled by own n)

    def add(self, name: str, estimate: float, inf_func: np.ndarray, unit_ids: np.ndarray) -> None:
        """``inf_func``: length-``len(unit_ids)`` influence function with ``estimate - truth ~ mean(inf_func)``."""
        inf_func, unit_ids = np.asarray(inf_func, float), np.asarray(unit_ids)
        if inf_func.shape != unit_ids.shape:
            raise ValueError(f"{name}: influence function has {inf_func.shape} values for {unit_ids.shape} units")
        self.names.append(name)
        self.estimates.append(float(estimate))
        self._parts.append((unit_ids, inf_func / len(unit_ids)))

    def influence(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(inf_func, unit_ids)`` of one estimate, as added."""
        ids, scaled = self._parts[self.names.index(name)]
        return scaled * len(ids), ids

    def matrix(self) -> np.ndarray:
        """``N x k`` influence functions on the union of the ``N`` units (zero where a unit is not in a sample)."""
        union = np.unique(np.concatenate([ids for ids, _ in self._parts]))
        out = np.zeros((len(union), len(self._parts)))
        for j, (ids, scaled) in enumerate(self._parts):
            out[np.searchsorted(union, ids), j] = scaled * len(union)
        return out

    def covariance(self) -> np.ndarray:
        inf = self.matrix()
        return inf.T @ inf / inf.shape[0] ** 2

    def wald_equal(self, alp: float = 0.05) -> dict:
        """Wald test that all estimates are equal (``k - 1`` df); for two, also their difference and its interval."""
        est, cov = np.asarray(self.estimates), self.covariance()
        k = len(est)
        if k < 2:
            raise ValueError("a test of difference needs at least two estimates")
        contrast = np.hstack([np.ones((k - 1, 1)), -np.eye(k - 1)])  # first minus each other
        diff = contrast @ est
        stat = float(diff @ np.linalg.pinv(contrast @ cov @ contrast.T) @ diff)
        out = {"wald": stat, "df": k - 1, "p_value": float(chi2.sf(stat, k - 1))}
        if k == 2:
            se = float(np.sqrt(contrast[0] @ cov @ contrast[0]))
            z = norm.ppf(1 - alp / 2)
            out.update(difference=float(diff[0]), se=se, ci_lower=float(diff[0] - z * se),
                       ci_upper=float(diff[0] + z * se))
        return out

    def bootstrap_t(self, biters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One multiplier bootstrap for all estimates: ``(t observed, t draws biters x k, bootstrap se)``."""
        inf = self.matrix()
        boot = multiplier_bootstrap(inf, int(biters), rng)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.estimates) / boot.se, boot.draws / boot.sigma, boot.se


def romano_wolf(t_observed: np.ndarray, t_draws: np.ndarray) -> np.ndarray:
    """Romano-Wolf step-down adjusted p-values (two-sided) from bootstrap draws of the t-statistics.

    ``t_draws``: ``biters x k`` draws of the centred statistics (estimate's draw over its bootstrap scale), as
    ``JointInfluence.bootstrap_t`` returns. The hypothesis with the ``r``-th largest ``|t|`` gets
    ``max over s <= r of P(max over the hypotheses ranked s.. of |t*| >= |t_(s)|)``, floored at ``1 / (B + 1)``
    (``B`` draws): a bootstrap of ``B`` draws cannot tell p-values below that apart, so none is reported as
    exactly 0. NaN statistics stay NaN.
    """
    t_observed = np.abs(np.asarray(t_observed, float))
    draws = np.abs(np.asarray(t_draws, float))
    adjusted = np.full(len(t_observed), np.nan)
    valid = np.flatnonzero(np.isfinite(t_observed) & np.all(np.isfinite(draws), axis=0))
    order = valid[np.argsort(-t_observed[valid], kind="stable")]
    # max over the hypotheses ranked r and below, for every draw: a reversed running maximum
    tail_max = np.maximum.accumulate(draws[:, order[::-1]], axis=1)[:, ::-1]
    raw = (tail_max >= t_observed[order][None, :]).mean(axis=0)
    adjusted[order] = np.maximum(np.maximum.accumulate(raw), 1.0 / (draws.shape[0] + 1))
    return adjusted


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN, adjusted over the finite ones)."""
    p = np.asarray(p_values, float)
    adjusted = np.full(len(p), np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


