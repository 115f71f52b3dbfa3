"""Multiplier bootstrap and standard errors from influence functions (R ``did::mboot``).

R ``did`` draws Rademacher multipliers (+1/-1 with probability 1/2; BMisc's
``multiplier_bootstrap``), scales the bootstrap draws by ``sqrt(n)``, takes the
standard error as the normalised inter-quartile range of the draws and the uniform
critical value as the ``1 - alp`` quantile of the sup-t statistic.  Draws are made in
chunks so memory stays bounded at ``chunk x n`` multipliers.

The multiplier products run in single precision: on mean-zero influence functions the
rounding error is below 1e-5 of a draw's spread, far under the Monte Carlo error of a
999-draw bootstrap (about 3 % of a standard error), and float32 BLAS makes the bootstrap
about four times faster on large panels.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

_IQR_TO_SD = norm.ppf(0.75) - norm.ppf(0.25)
_MULTIPLIER_BYTES = 64 * 1024 * 1024  # float32 multipliers held at once


def cluster_sums(inf_func: np.ndarray, cluster_codes: np.ndarray | None) -> np.ndarray:
    """Sum unit-level influence functions within clusters (identity when unclustered)."""
    if cluster_codes is None:
        return inf_func
    n_clusters = int(cluster_codes.max()) + 1
    sums = np.zeros((n_clusters, inf_func.shape[1]))
    np.add.at(sums, cluster_codes, inf_func)
    return sums


def analytic_se(inf_func: np.ndarray, cluster_codes: np.ndarray | None = None) -> np.ndarray:
    """``sqrt(sum_c S_c^2) / n``: R's ``sqrt(mean(IF^2)/n)`` when every unit is its own cluster."""
    inf_func = np.atleast_2d(inf_func.T).T
    n = inf_func.shape[0]
    sums = cluster_sums(inf_func, cluster_codes)
    return np.sqrt(np.sum(sums**2, axis=0)) / n


@dataclass
class BootstrapDraws:
    draws: np.ndarray  # biters x k, on the sqrt(n)-scaled statistic
    sigma: np.ndarray  # normalised IQR per column (NaN where degenerate)
    se: np.ndarray


def multiplier_bootstrap(
    inf_func: np.ndarray,
    biters: int,
    rng: np.random.Generator,
    cluster_codes: np.ndarray | None = None,
    progress: bool = False,
    label: str = "bootstrap",
) -> BootstrapDraws:
    """Rademacher multiplier bootstrap of the columns of an ``n x k`` influence-function matrix."""
    inf_func = np.atleast_2d(inf_func.T).T
    n, k = inf_func.shape
    rows = cluster_sums(inf_func, cluster_codes)
    n_rows = rows.shape[0]
    finite_columns = np.all(np.isfinite(rows), axis=0)
    rows = np.where(finite_columns, rows, 0.0)
    column_totals = rows.sum(axis=0)
    rows_single = rows.astype(np.float32)
    draws = np.empty((biters, k))
    chunk = max(1, min(biters, _MULTIPLIER_BYTES // (4 * n_rows)))
    for start in range(0, biters, chunk):
        stop = min(biters, start + chunk)
        n_bits = (stop - start) * n_rows  # one random bit per multiplier: far cheaper than integer draws
        bits = np.unpackbits(np.frombuffer(rng.bytes((n_bits + 7) // 8), dtype=np.uint8), count=n_bits)
        signs = bits.reshape(stop - start, n_rows).astype(np.float32)
        # Rademacher U = 2B - 1, so U @ X = 2 (B @ X) - colsum(X)
        draws[start:stop] = (2.0 * (signs @ rows_single).astype(np.float64) - column_totals) / np.sqrt(n_rows)
        if progress:
            print(f"\r{label}: {stop}/{biters} draws", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    draws[:, ~finite_columns] = np.nan
    usable = finite_columns & np.any(draws != 0, axis=0)
    sigma = np.full(k, np.nan)
    if usable.any():
        q75 = np.quantile(draws[:, usable], 0.75, axis=0, method="inverted_cdf")
        q25 = np.quantile(draws[:, usable], 0.25, axis=0, method="inverted_cdf")
        sigma[usable] = (q75 - q25) / _IQR_TO_SD
    sigma[~(sigma > 0)] = np.nan
    se = sigma * np.sqrt(n_rows) / n
    return BootstrapDraws(draws=draws, sigma=sigma, se=se)


def uniform_critical_value(boot: BootstrapDraws, columns: np.ndarray | slice, alp: float) -> tuple[float, bool]:
    """Sup-t critical value for a simultaneous band over ``columns``.

    Returns ``(critical value, is_uniform)``; falls back to the pointwise normal
    quantile with a warning exactly where R ``did`` does (non-finite value, or a
    band narrower than the pointwise one).
    """
    pointwise = norm.ppf(1 - alp / 2)
    draws = boot.draws[:, columns]
    sigma = boot.sigma[columns]
    valid = np.isfinite(sigma)
    if not valid.any():
        warnings.warn("Simultaneous critical value is NA (standard errors are NA); reporting pointwise intervals.")
        return pointwise, False
    sup_t = np.max(np.abs(draws[:, valid] / sigma[valid]), axis=1)
    sup_t = sup_t[np.isfinite(sup_t)]
    crit = float(np.quantile(sup_t, 1 - alp, method="inverted_cdf")) if sup_t.size else np.nan
    if not np.isfinite(crit):
        warnings.warn("Simultaneous critical value is NA; reporting pointwise intervals.")
        return pointwise, False
    if crit < pointwise:
        warnings.warn("Simultaneous band is narrower than the pointwise one; reporting pointwise intervals.")
        return pointwise, False
    if crit >= 7:
        warnings.warn("Simultaneous critical value is arguably too large (>= 7) to be reliable; groups may be very small.")
    return crit, True
