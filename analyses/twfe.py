"""Two-way fixed-effects (TWFE) comparison estimators: static DiD and event study.

Unit and time effects are absorbed by the within transformation -- exact two-way
demeaning on balanced panels, alternating projections (iterated unit/time demeaning)
on unbalanced ones -- never by unit dummy columns, so memory stays O(rows).

Standard errors are clustered by unit with R ``fixest``'s default small-sample
corrections (``ssc(adj = TRUE, fixef.K = "nested", cluster.adj = TRUE)``):
``G/(G-1) * (N-1)/(N-K)``, where ``K`` counts the regressors plus the period effects
(``periods``) but not the unit effects, which are nested in the unit clusters (the
reference level fixest drops among the two sets of effects is the nested one).  This is
what ``feols(y ~ x | unit + period, cluster = ~unit)`` reports, so the event-study
covariance can be handed to R HonestDiD's examples unchanged; it is smaller than
Stata ``areg``'s, which also counts the unit effects.

TWFE is the benchmark the report compares against: with staggered adoption and
heterogeneous, dynamic effects it mixes already-treated units into the comparison
group and is biased (Goodman-Bacon 2021; Sun & Abraham 2021), which
``analyses.did`` avoids.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.stats import norm

from analyses.did.prepare import check_timing_codes, complete_rows

_Z95 = norm.ppf(0.975)


@dataclass(repr=False)
class TwfeStaticResult:
    att: float
    se: float
    ci_lower: float
    ci_upper: float
    pvalue: float
    n_obs: int
    n_units: int

    def summary(self) -> str:
        return (f"TWFE static DiD: ATT = {self.att:.4f} (unit-clustered SE {self.se:.4f}), 95% CI "
                f"[{self.ci_lower:.4f}, {self.ci_upper:.4f}], p = {self.pvalue:.4f}; "
                f"{self.n_obs} observations, {self.n_units} units")

    def __repr__(self) -> str:
        return f"TwfeStaticResult(att={self.att:.6g}, se={self.se:.6g})"


@dataclass(repr=False)
class TwfeEventStudyResult:
    table: pd.DataFrame  # event_time, att, se, ci_lower, ci_upper (reference period att = 0, se NaN)
    ref_e: int | float  # in the units of tname; a float only on a fractional time scale
    n_obs: int
    n_units: int
    covariance: np.ndarray  # of the estimated event-time coefficients (reference excluded)

    def summary(self) -> str:
        lines = [f"TWFE event study (reference event time {self.ref_e}; unit-clustered SEs; "
                 f"{self.n_obs} observations, {self.n_units} units)",
                 f"{'event_time':>10} {'Estimate':>10} {'Std. Error':>11}   [95% Conf. Int.]"]
        for row in self.table.itertuples(index=False):
            lines.append(f"{row.event_time:>10g} {row.att:>10.4f} {row.se:>11.4f}   "
                         f"[{row.ci_lower:>8.4f}, {row.ci_upper:>8.4f}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"TwfeEventStudyResult({len(self.table)} event times, ref_e={self.ref_e})"


def two_way_demean(values: np.ndarray, unit: np.ndarray, period: np.ndarray,
                   tol: float = 1e-13, max_iter: int = 10_000) -> np.ndarray:
    """Residualise the columns of ``values`` on unit and period effects.

    Balanced panels use the closed form ``x - x_i. - x_.t + x_..``; otherwise the
    method of alternating projections is iterated until the largest update is below
    ``tol`` times the column scale.
    """
    values = np.asarray(values, dtype=float)
    matrix = values.reshape(len(values), -1).copy()
    rows = np.arange(len(matrix))
    # group-mean operators as sparse (groups x rows) matrices: one sparse product per projection
    means = {}
    for name, codes in (("unit", unit), ("period", period)):
        counts = np.bincount(codes)
        means[name] = sparse.csr_matrix((1.0 / np.maximum(counts, 1)[codes], (codes, rows)),
                                        shape=(counts.size, len(matrix)))

    def group_means(name, codes):
        return (means[name] @ matrix)[codes]

    if len(matrix) == means["unit"].shape[0] * means["period"].shape[0]:
        result = matrix - group_means("unit", unit) - group_means("period", period) + matrix.mean(axis=0)
        return result.reshape(values.shape)
    scale = np.maximum(np.abs(matrix).max(axis=0), 1.0)
    for _ in range(max_iter):
        unit_part = group_means("unit", unit)
        matrix -= unit_part
        period_part = group_means("period", period)
        matrix -= period_part
        if np.max((np.abs(unit_part) + np.abs(period_part)).max(axis=0) / scale) < tol:
            return matrix.reshape(values.shape)
    raise RuntimeError(f"alternating projections did not converge in {max_iter} iterations")


def _prepare(data, yname, tname, idname, gname, xformla):
    """Arrays for the regressions; rows with missing or non-finite values are dropped as in ``analyses.did``."""
    missing = [c for c in (yname, tname, idname, gname) if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found in data")
    frame = data.reset_index(drop=True)
    check_timing_codes(frame, gname, tname, idname)
    rhs = "0" if xformla is None else xformla.split("~", 1)[1] + " - 1"
    frame, design = complete_rows(frame, rhs, [yname], idname, [])
    covariates, covariate_names = design.to_numpy(dtype=float), list(design.columns)
    y = frame[yname].to_numpy(dtype=float)
    unit = pd.factorize(frame[idname], sort=True)[0]
    period_values = frame[tname].to_numpy(dtype=float)
    period = pd.factorize(period_values, sort=True)[0]
    cohort = frame[gname].fillna(0).to_numpy(dtype=float)
    cohort = np.where(cohort > period_values.max(), 0, cohort)  # treated after the sample: never treated
    return y, unit, period, period_values, cohort, covariates, covariate_names


def _clustered_ols(y, regressors, unit, n_periods):
    """OLS of demeaned ``y`` on demeaned regressors; unit-clustered covariance as ``fixest`` computes it."""
    n_obs, k = regressors.shape
    coef, _, rank, _ = np.linalg.lstsq(regressors, y, rcond=None)
    if rank < k:
        raise ValueError("TWFE regressors are collinear after absorbing unit and time effects "
                         "(e.g. no never-treated units and no binned endpoints); restrict min_e/max_e")
    bread = np.linalg.inv(regressors.T @ regressors)
    contributions = regressors * (y - regressors @ coef)[:, None]
    # per-unit score sums; bincount is much faster than np.add.at on long panels
    scores = np.column_stack([np.bincount(unit, weights=column, minlength=unit.max() + 1)
                              for column in contributions.T])
    n_clusters = len(scores)
    k_total = k + n_periods  # unit effects are nested in the clusters: fixest's fixef.K = "nested"
    correction = n_clusters / (n_clusters - 1) * (n_obs - 1) / (n_obs - k_total)
    covariance = correction * bread @ (scores.T @ scores) @ bread
    return coef, covariance


def twfe_static(data: pd.DataFrame, yname: str, tname: str, idname: str, gname: str,
                xformla: str | None = None) -> TwfeStaticResult:
    """``y_it = a_i + b_t + beta * 1{treated and t >= g} (+ x_it'gamma) + e_it``; returns beta."""
    y, unit, period, period_values, cohort, covariates, _ = _prepare(data, yname, tname, idname, gname, xformla)
    treated_now = ((cohort > 0) & (period_values >= cohort)).astype(float)
    regressors = two_way_demean(np.column_stack([treated_now, covariates]), unit, period)
    coef, covariance = _clustered_ols(two_way_demean(y, unit, period), regressors, unit, period.max() + 1)
    att, se = float(coef[0]), float(np.sqrt(covariance[0, 0]))
    return TwfeStaticResult(att=att, se=se, ci_lower=att - _Z95 * se, ci_upper=att + _Z95 * se,
                            pvalue=float(2 * norm.sf(abs(att / se))), n_obs=len(y), n_units=int(unit.max() + 1))


def twfe_event_study(data: pd.DataFrame, yname: str, tname: str, idname: str, gname: str,
                     min_e: int | None = None, max_e: int | None = None, ref_e: int | None = None,
                     xformla: str | None = None) -> TwfeEventStudyResult:
    """Dynamic TWFE with one dummy per event time ``t - g`` present in the data (reference ``ref_e`` omitted).

    Event times are in the units of ``tname`` and only those that occur get a dummy, so
    irregular or biennial grids (2000, 2002, ...) are identified; the reference defaults to
    the latest pre-treatment event time present (``-1`` on a yearly grid, ``-2`` on a
    biennial one).  Event times outside ``[min_e, max_e]`` are binned into the endpoints,
    the usual convention that keeps the specification identified; never-treated units
    have no event-time dummy.  Raises ``ValueError`` if ``ref_e`` is not an event time present.
    """
    y, unit, period, period_values, cohort, covariates, _ = _prepare(data, yname, tname, idname, gname, xformla)
    treated = cohort > 0
    event = np.where(treated, period_values - cohort, np.nan)
    observed = event[treated]
    low = observed.min() if min_e is None else min_e
    high = observed.max() if max_e is None else max_e
    binned = np.clip(event, low, high)
    present = np.unique(binned[treated])
    if ref_e is None:
        pre = present[present < 0]
        if pre.size == 0:
            raise ValueError("no pre-treatment event time in the data: every treated unit is first observed "
                             "after treatment starts, so the event study has no reference period")
        ref_e = pre.max()
    if ref_e not in present:
        raise ValueError(f"ref_e={_plain_number(ref_e)} is not an event time present in the data "
                         f"(present: [{', '.join(_plain_number(e) for e in present)}])")
    event_times = present[present != ref_e]
    dummies = np.column_stack([(binned == e).astype(float) for e in event_times])
    regressors = two_way_demean(np.column_stack([dummies, covariates]), unit, period)
    coef, covariance = _clustered_ols(two_way_demean(y, unit, period), regressors, unit, period.max() + 1)
    k = len(event_times)
    reference_position = int(np.searchsorted(present, ref_e))
    att = np.insert(coef[:k], reference_position, 0.0)
    se = np.insert(np.sqrt(np.diag(covariance)[:k]), reference_position, np.nan)
    whole = np.all(present == np.round(present))
    table = pd.DataFrame({"event_time": present.astype(np.int64) if whole else present, "att": att, "se": se,
                          "ci_lower": att - _Z95 * se, "ci_upper": att + _Z95 * se})
    return TwfeEventStudyResult(table=table, ref_e=int(ref_e) if whole else float(ref_e), n_obs=len(y),
                                n_units=int(unit.max() + 1), covariance=covariance[:k, :k])


def _plain_number(value) -> str:
    return f"{float(value):g}"
