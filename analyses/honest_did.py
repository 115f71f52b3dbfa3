"""Sensitivity of event-study conclusions to violations of parallel trends (Rambachan & Roth 2023).

The event-study coefficients ``beta = tau + delta`` mix the effect ``tau`` (zero before the
programme) with a difference in trends ``delta``.  Parallel trends says ``delta_post = 0``; this
module replaces it by a set of allowed ``delta`` and reports confidence sets for a target
``theta = l' tau_post`` that are valid for every ``delta`` in the set:

* relative magnitudes ``Delta^RM(Mbar)``: no post-programme change in the trend difference
  (first difference of ``delta``) is larger than ``Mbar`` times the largest one seen before the
  programme.  Inference: the conditional / least-favourable hybrid test of Andrews, Roth & Pakes
  (2023) ("C-LF"), inverted on a grid of ``theta`` and united over the polyhedral pieces of
  ``Delta^RM`` (the pre-period difference ``s`` that is largest, and its sign);
* smoothness ``Delta^SD(M)``: the slope of the trend difference changes by at most ``M`` per
  period (second differences of ``delta`` within ``[-M, M]``).  Inference: the optimal
  fixed-length confidence interval ("FLCI", Armstrong & Kolesar 2018) among affine estimators
  ``a' beta_pre + l' beta_post``.

Periods follow R HonestDiD: ``betahat`` holds the ``num_pre_periods`` pre-programme coefficients
then the ``num_post_periods`` post-programme ones, consecutive, with the reference period (``e = -1``,
normalised to 0) left out between them; ``sigma`` is their covariance.

Why implemented here and how
----------------------------
R ``HonestDiD`` cannot run in the Python product, and the maintained Python port (``moderndid``'s
``honest_did``) needs Python 3.12 and cvxpy; the product runs on Python 3.11 with scipy, so the
methods are written on numpy/scipy from the papers (the R package and ``moderndid`` were read to
match numbers, no code was taken):

* C-LF: the ARP test statistic is the linear programme ``eta = min_nu max_j (y_j - X_j nu)/sd_j``.
  Its dual optimum lies on a vertex of the fixed polytope ``{g >= 0, sd'g = 1, X'g = 0}``, so the
  vertices are enumerated once per restriction piece and ``eta``, the conditioning vertex and the
  truncation bounds ``(v_lo, v_up)`` become exact vectorised maxima/minima over them.  This is the
  same test as R's simplex-plus-bisection route, computed exactly, and fast enough to run the
  least-favourable critical value's 1,000 simulated draws and the 1,000-point grid for every piece
  (HiGHS LPs would need one solve per draw and grid point).  The number of vertices grows like
  ``C(2 T, T)`` in the number of post periods ``T``; more than 12 post periods are refused.
  The least-favourable critical value is simulated as in R, but with 10,000 seeded draws instead
  of R's 1,000: R's value carries Monte Carlo noise that moves interval ends by a grid step; with
  10,000 draws the R README's TWFE example is reproduced to 4e-5 on R's grid.
* FLCI: the worst-case bias of ``v' beta`` over ``Delta^SD(M)`` is ``M * ||G' v||_1`` when ``v`` is
  orthogonal to a linear trend (``G`` maps second differences to ``delta``), infinite otherwise;
  the half-length ``h * q_{1-alpha}(|N(bias/h, 1)|)`` with ``h = sd(v' betahat)`` is jointly convex,
  so it is minimised with scipy's SLSQP over the pre-period weights (absolute values split into
  auxiliary variables).  The folded-normal quantile is solved exactly (R simulates it).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import null_space
from scipy.optimize import brentq, minimize
from scipy.special import ndtr, ndtri
from scipy.stats import norm, truncnorm

_MAX_POST_PERIODS = 12
_TIDY_COLUMNS = ["restriction", "M", "lower", "upper", "method"]
RESTRICTIONS = {"C-LF": "relative_magnitude", "FLCI": "smoothness"}


def _check_inputs(betahat, sigma, num_pre_periods, num_post_periods, l_vec):
    betahat = np.asarray(betahat, dtype=float).ravel()
    sigma = np.asarray(sigma, dtype=float)
    n = num_pre_periods + num_post_periods
    if num_pre_periods < 1 or num_post_periods < 1:
        raise ValueError(f"need at least one pre- and one post-period (got {num_pre_periods} and {num_post_periods})")
    if betahat.size != n:
        raise ValueError(f"betahat has {betahat.size} coefficients but num_pre_periods + num_post_periods = {n}")
    if sigma.shape != (n, n):
        raise ValueError(f"sigma has shape {sigma.shape}, expected ({n}, {n}) to match betahat")
    if not (np.all(np.isfinite(betahat)) and np.all(np.isfinite(sigma))):
        raise ValueError("betahat and sigma must be finite (an event time without a standard error cannot enter)")
    if not np.allclose(sigma, sigma.T, rtol=1e-8, atol=1e-14 * np.abs(sigma).max()):
        raise ValueError("sigma is not symmetric")
    if np.linalg.eigvalsh(sigma).min() < -1e-10 * np.abs(sigma).max():
        raise ValueError("sigma is not positive semi-definite")
    l_vec = np.eye(num_post_periods)[0] if l_vec is None else np.asarray(l_vec, dtype=float).ravel()
    if l_vec.size != num_post_periods:
        raise ValueError(f"l_vec has {l_vec.size} weights but there are {num_post_periods} post-periods")
    return betahat, (sigma + sigma.T) / 2, l_vec


def original_ci(betahat, sigma, num_pre_periods, num_post_periods, l_vec=None, alpha=0.05) -> tuple[float, float]:
    """The usual ``l' betahat_post +- z_{1-alpha/2} sd`` interval (parallel trends assumed)."""
    betahat, sigma, l_vec = _check_inputs(betahat, sigma, num_pre_periods, num_post_periods, l_vec)
    post = slice(num_pre_periods, None)
    estimate, sd = l_vec @ betahat[post], np.sqrt(l_vec @ sigma[post, post] @ l_vec)
    z = norm.ppf(1 - alpha / 2)
    return float(estimate - z * sd), float(estimate + z * sd)


# --- relative magnitudes, conditional / least-favourable hybrid ------------------------------------

def _rm_constraints(num_pre, num_post, mbar, s, positive):
    """Rows of ``A delta <= 0`` for the piece of Delta^RM where pre-difference ``s`` (1..num_pre,
    counted from the earliest) is the largest, with the given sign; post-period rows only (R's
    ``postPeriodMomentsOnly``).  Columns: pre then post coefficients (reference dropped)."""
    width = num_pre + num_post + 1  # with the reference period at position num_pre
    largest = np.zeros(width)
    largest[s - 1:s + 1] = [-1.0, 1.0]
    if not positive:
        largest = -largest
    rows = []
    for t in range(num_pre, num_pre + num_post):  # first differences delta_{t+1} - delta_t after the reference
        difference = np.zeros(width)
        difference[t:t + 2] = [-1.0, 1.0]
        rows += [difference - mbar * largest, -difference - mbar * largest]
    matrix = np.delete(np.array(rows), num_pre, axis=1)
    return matrix[np.abs(matrix).sum(axis=1) > 1e-10]


def _dual_vertices(sd, X):
    """Vertices of ``{g >= 0, sd' g = 1, X' g = 0}`` (rows of the returned array)."""
    W = np.column_stack([sd, X])
    m, k1 = W.shape
    if np.linalg.matrix_rank(W) < k1:
        raise ValueError("the restriction's moments are collinear; cannot form the conditional test")
    supports = np.array(list(itertools.combinations(range(m), k1)))
    blocks = W[supports].transpose(0, 2, 1)  # (n_supports, k1, k1): W_S'
    determinants = np.abs(np.linalg.det(blocks))
    usable = determinants > 1e-12 * np.abs(W).max() ** k1
    rhs = np.zeros(k1)
    rhs[0] = 1.0
    weights = np.linalg.solve(blocks[usable], np.broadcast_to(rhs, (usable.sum(), k1))[..., None])[..., 0]
    feasible = np.all(weights >= -1e-10 * np.abs(weights).max(axis=1, keepdims=True), axis=1)
    vertices = np.zeros((feasible.sum(), m))
    np.put_along_axis(vertices, supports[usable][feasible], np.clip(weights[feasible], 0, None), axis=1)
    return np.unique(np.round(vertices, 12), axis=0)


def _arp_accepts(Y, a, X, sigma_y, thetas, alpha, kappa, draws):
    """Acceptance of ``theta`` by the LF-hybrid ARP test of ``E[Y - a theta - X nu] <= 0`` (some ``nu``)."""
    sd = np.sqrt(np.diag(sigma_y))
    vertices = _dual_vertices(sd, X)
    if len(vertices) == 0:  # the statistic is unbounded below: nothing is rejected
        return np.ones(len(thetas), dtype=bool)
    root = np.linalg.cholesky(sigma_y + 1e-14 * np.abs(sigma_y).max() * np.eye(len(sd)))
    lf_cv = np.quantile((vertices @ (root @ draws[:, :len(sd)].T)).max(axis=0), 1 - kappa)
    size = (alpha - kappa) / (1 - kappa)
    y = Y[:, None] - np.outer(a, thetas)  # moments x grid
    values = vertices @ y
    best = values.argmax(axis=0)
    eta = values[best, np.arange(len(thetas))]
    gamma = vertices[best]  # grid x moments
    variance = np.einsum("gi,ij,gj->g", gamma, sigma_y, gamma)
    accept = eta <= lf_cv  # first stage: the least-favourable test
    degenerate = variance < np.finfo(float).eps
    accept &= ~(degenerate & (eta > 0))
    slope = (vertices @ sigma_y @ gamma.T) / np.where(degenerate, 1.0, variance)  # vertices x grid
    intercept = values - slope * eta
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = intercept / (1 - slope)
    vlo = np.where(slope < 1 - 1e-10, ratio, -np.inf).max(axis=0)
    vup = np.where(slope > 1 + 1e-10, ratio, np.inf).min(axis=0)
    scale = np.sqrt(np.where(degenerate, 1.0, variance))
    zlo, zup, stat = vlo / scale, np.minimum(vup, lf_cv) / scale, eta / scale
    conditional = ~degenerate & accept & (zlo <= stat) & (stat <= zup)
    critical = np.maximum(0.0, truncnorm.ppf(1 - size, zlo[conditional], zup[conditional]))
    accept[np.flatnonzero(conditional)[stat[conditional] > critical]] = False
    return accept


def _rm_accept_grid(betahat, sigma, num_pre, num_post, l_vec, mbar, grid, alpha, draws):
    post = slice(num_pre, None)
    basis = null_space(l_vec[None, :])
    unit = l_vec / (l_vec @ l_vec)
    accept = np.zeros(len(grid), dtype=bool)
    for s in range(1, num_pre + 1):
        for positive in (True, False):
            A = _rm_constraints(num_pre, num_post, mbar, s, positive)
            sigma_y = A @ sigma @ A.T
            accept |= _arp_accepts(A @ betahat, A[:, post] @ unit, A[:, post] @ basis, sigma_y, grid,
                                   alpha, alpha / 10, draws)
    return accept


def _rm_interval(betahat, sigma, num_pre, num_post, l_vec, mbar, alpha, grid_points, grid_lb, grid_ub, draws):
    post = slice(num_pre, None)
    center = l_vec @ betahat[post]
    sd_theta = np.sqrt(l_vec @ sigma[post, post] @ l_vec)
    largest_pre = np.abs(np.diff(np.append(betahat[:num_pre], 0.0))).max()
    half = mbar * (np.arange(1, num_post + 1) @ np.abs(l_vec)) * largest_pre + 20 * sd_theta
    lb = center - half if grid_lb is None else grid_lb
    ub = center + half if grid_ub is None else grid_ub
    for _ in range(6):
        grid = np.linspace(lb, ub, grid_points)
        accept = _rm_accept_grid(betahat, sigma, num_pre, num_post, l_vec, mbar, grid, alpha, draws)
        if not accept.any():
            return np.nan, np.nan
        open_end = accept[0] or accept[-1]
        if not open_end or (grid_lb is not None and grid_ub is not None):
            break
        lb, ub = center - 2 * (center - lb), center + 2 * (ub - center)
    else:
        warnings.warn(f"relative-magnitudes interval for Mbar={mbar:g} is open at the end of the grid", stacklevel=3)
    return float(grid[accept].min()), float(grid[accept].max())


# --- smoothness, fixed-length confidence interval ---------------------------------------------------

def _folded_normal_quantile(bias, alpha):
    """``q`` with ``P(|N(bias, 1)| <= q) = 1 - alpha`` and its derivative in ``bias``."""
    bias = abs(bias)
    # scipy.special's ndtr/ndtri are what norm.cdf/ppf evaluate, without their per-call overhead (this runs
    # inside brentq inside SLSQP: it was half the sensitivity analysis's time)
    def coverage_gap(x):
        return ndtr(x - bias) - ndtr(-x - bias) - (1 - alpha)

    low, high = bias + ndtri(1 - alpha), bias + ndtri(1 - alpha / 2)
    q = low if coverage_gap(low) >= 0 else brentq(coverage_gap, low, high, xtol=1e-15)
    left, right = np.exp(-0.5 * (q - bias) ** 2), np.exp(-0.5 * (q + bias) ** 2)  # normal density ratio
    return q, (left - right) / (left + right)


def _second_difference_map(num_pre, num_post):
    """``G``: delta over the periods (pre, post; reference 0 and first post-difference fixed at 0)
    as a linear function of the second differences centred at periods ``-num_pre+1 .. num_post-1``."""
    times = np.arange(-num_pre, num_post + 1)
    centres = times[1:-1]
    columns = []
    for j in range(len(centres)):
        c = np.zeros(len(centres))
        c[j] = 1.0
        path = dict.fromkeys((0, 1), 0.0)
        for t in range(1, num_post):
            path[t + 1] = 2 * path[t] - path[t - 1] + c[t + num_pre - 1]
        for t in range(0, -num_pre, -1):
            path[t - 1] = 2 * path[t] - path[t + 1] + c[t + num_pre - 1]
        columns.append([path[t] for t in times if t != 0])
    return np.array(columns).T


def _flci(betahat, sigma, num_pre, num_post, l_vec, m, alpha):
    scale = np.sqrt(l_vec @ sigma[num_pre:, num_pre:] @ l_vec)
    sigma_s, m_s = sigma / scale**2, m / scale
    t_pre, t_post = np.arange(-num_pre, 0.0), np.arange(1.0, num_post + 1)
    a0 = -(t_post @ l_vec) * t_pre / (t_pre @ t_pre)  # one set of pre-weights cancelling a linear trend
    basis = null_space(t_pre[None, :])  # pre x (pre-1)
    G = _second_difference_map(num_pre, num_post)
    n_z, n_u = basis.shape[1], G.shape[1]

    def vector(z):
        return np.concatenate([a0 + basis @ z, l_vec])

    def objective(x):
        z, u = x[:n_z], x[n_z:]
        v = vector(z)
        h = np.sqrt(v @ sigma_s @ v)
        q, dq = _folded_normal_quantile(m_s * u.sum() / h, alpha)
        ratio = m_s * u.sum() / h
        dh = basis.T @ (sigma_s @ v)[:num_pre] / h
        return h * q, np.concatenate([(q - ratio * dq) * dh, np.full(n_u, m_s * dq)])

    GT = G.T  # second differences x periods
    const = GT[:, num_pre:] @ l_vec + GT[:, :num_pre] @ a0
    Gz = GT[:, :num_pre] @ basis
    # u >= G'v and u >= -G'v, linear in (z, u)
    A_ineq = np.vstack([np.hstack([-Gz, np.eye(n_u)]), np.hstack([Gz, np.eye(n_u)])])
    b_ineq = np.concatenate([-const, const])
    # start from the minimum-variance trend-cancelling weights (the optimum when M = 0)
    Spp, Spl = sigma_s[:num_pre, :num_pre], sigma_s[:num_pre, num_pre:] @ l_vec
    z0 = (np.linalg.lstsq(basis.T @ Spp @ basis, -basis.T @ (Spp @ a0 + Spl), rcond=None)[0]
          if n_z else np.zeros(0))
    x0 = np.concatenate([z0, np.abs(const + Gz @ z0) + 1e-9])
    if m_s == 0:
        x = x0
    else:
        result = minimize(objective, x0, jac=True, method="SLSQP",
                          constraints=[{"type": "ineq", "fun": lambda x: A_ineq @ x + b_ineq, "jac": lambda x: A_ineq}],
                          options={"ftol": 1e-14, "maxiter": 1000})
        if not result.success and result.status != 8:  # 8: cannot improve further (at the optimum to precision)
            raise RuntimeError(f"FLCI optimisation failed for M={m:g}: {result.message}")
        x = result.x
    v = vector(x[:n_z])
    half = objective(x)[0] * scale if m_s else norm.ppf(1 - alpha / 2) * np.sqrt(v @ sigma @ v)
    center = v @ betahat
    return float(center - half), float(center + half)


# --- public interface --------------------------------------------------------------------------------

def honest_did(betahat, sigma, num_pre_periods: int, num_post_periods: int, method: str = "C-LF",
               Mbarvec=None, Mvec=None, l_vec=None, alpha: float = 0.05, grid_points: int = 1000,
               grid_lb: float | None = None, grid_ub: float | None = None, lf_draws: int = 10_000,
               seed: int = 0) -> pd.DataFrame:
    """Robust confidence sets for ``theta = l_vec' tau_post`` (R ``HonestDiD``'s sensitivity results).

    ``method="C-LF"``: relative magnitudes ``Delta^RM(Mbar)`` for each ``Mbar`` in ``Mbarvec``
    (default 0, 0.5, ..., 2; R's ``createSensitivityResults_relativeMagnitudes``), intervals from a
    ``grid_points`` grid (default centred on the estimate, widened by ``Mbar`` times the largest
    pre-period difference plus 20 standard errors, and doubled while the set touches an end).
    ``method="FLCI"``: smoothness ``Delta^SD(M)`` for each ``M`` in ``Mvec`` (in outcome units per
    period squared; default 10 values from 0 to 4 standard errors of ``theta``; R's
    ``createSensitivityResults``).  Needs ``num_pre_periods >= 2`` for C-LF.

    ``betahat``: pre then post event-study coefficients without the reference period; ``sigma``
    their covariance; ``l_vec`` post-period weights (default the effect on impact).
    Returns a DataFrame with columns restriction, M, lower, upper, method (lower/upper NaN when the
    set is empty).  Raises ``ValueError`` on inconsistent shapes, a non-PSD ``sigma`` or a bad method.
    """
    betahat, sigma, l_vec = _check_inputs(betahat, sigma, num_pre_periods, num_post_periods, l_vec)
    if method not in RESTRICTIONS:
        raise ValueError(f"method must be 'C-LF' (relative magnitudes) or 'FLCI' (smoothness), not {method!r}")
    rows = []
    if method == "C-LF":
        if num_pre_periods < 2:
            raise ValueError("relative magnitudes need at least 2 pre-periods")
        if num_post_periods > _MAX_POST_PERIODS:
            raise ValueError(f"C-LF is limited to {_MAX_POST_PERIODS} post-periods (got {num_post_periods}); "
                             f"restrict the event study's horizon")
        draws = np.random.default_rng(seed).standard_normal((lf_draws, 2 * num_post_periods))
        for mbar in np.linspace(0, 2, 5) if Mbarvec is None else Mbarvec:
            lower, upper = _rm_interval(betahat, sigma, num_pre_periods, num_post_periods, l_vec, float(mbar),
                                        alpha, grid_points, grid_lb, grid_ub, draws)
            rows.append((RESTRICTIONS[method], float(mbar), lower, upper, method))
    else:
        if Mvec is None:
            sd_theta = np.sqrt(l_vec @ sigma[num_pre_periods:, num_pre_periods:] @ l_vec)
            Mvec = np.linspace(0, 4 * sd_theta, 10)
        for m in Mvec:
            if m < 0:
                raise ValueError(f"M must be >= 0 (got {m})")
            lower, upper = _flci(betahat, sigma, num_pre_periods, num_post_periods, l_vec, float(m), alpha)
            rows.append((RESTRICTIONS[method], float(m), lower, upper, method))
    return pd.DataFrame(rows, columns=_TIDY_COLUMNS)


# --- event studies of this code base ---------------------------------------------------------------

@dataclass(repr=False)
class EventStudy:
    """Event-study coefficients in HonestDiD's layout: pre-periods then post-periods, reference left out."""

    betahat: np.ndarray
    sigma: np.ndarray
    event_times: np.ndarray  # of the entries of betahat
    num_pre_periods: int
    num_post_periods: int

    def __repr__(self) -> str:
        return f"EventStudy(pre={self.num_pre_periods}, post={self.num_post_periods})"

    def __eq__(self, other) -> bool:
        # element-wise: the generated __eq__ would compare arrays to an ambiguous truth value
        return isinstance(other, EventStudy) and all(
            np.array_equal(getattr(self, name), getattr(other, name), equal_nan=True)
            for name in ("betahat", "sigma", "event_times", "num_pre_periods", "num_post_periods"))


def _event_study(event_times, att, sigma, horizon, source):
    event_times = np.asarray(event_times, dtype=float)
    keep = (event_times != -1) & (event_times <= (np.inf if horizon is None else horizon))
    event_times, att, sigma = event_times[keep], np.asarray(att, dtype=float)[keep], sigma[np.ix_(keep, keep)]
    pre, post = event_times[event_times < 0], event_times[event_times >= 0]
    expected = np.concatenate([np.arange(pre.min(), -1), np.arange(0, post.max() + 1)]) if pre.size and post.size else None
    if expected is None or len(expected) != len(event_times) or np.any(expected != event_times):
        raise ValueError(f"{source}: HonestDiD needs consecutive yearly event times around the reference e = -1, "
                         f"with at least one before and one after; got {event_times.tolist()}")
    if not np.all(np.isfinite(att)) or not np.all(np.isfinite(np.diag(sigma))):
        raise ValueError(f"{source}: an event time has no estimate or standard error")
    return EventStudy(att, sigma, event_times.astype(int), int(pre.size), int(post.size))


def event_study_from_aggte(result, horizon: int | None = None) -> EventStudy:
    """Coefficients and influence-function covariance ``V = S'S / n^2`` (S: cluster sums of the
    influence functions, as ``analyses.did`` computes standard errors) of ``aggte(type="dynamic")``
    on ``att_gt(base_period="universal")``; post-periods ``0..horizon`` (all when None)."""
    from analyses.did.bootstrap import cluster_sums

    if result.type != "dynamic" or result.source.base_period != "universal":
        raise ValueError("sensitivity needs aggte(type='dynamic') on att_gt(base_period='universal'), got "
                         f"type={result.type!r}, base_period={result.source.base_period!r}")
    sums = cluster_sums(result.inf_func, result.source.panel.cluster_codes)
    sigma = sums.T @ sums / result.inf_func.shape[0] ** 2
    return _event_study(result.table.event_time, result.table.att, sigma, horizon, "aggte(type='dynamic')")


def event_study_from_twfe(result, horizon: int | None = None) -> EventStudy:
    """Coefficients and fixest-equal clustered covariance of ``analyses.twfe.twfe_event_study`` (reference -1)."""
    if result.ref_e != -1:
        raise ValueError(f"TWFE event study: the reference period must be e = -1 (got {result.ref_e})")
    full = np.full((len(result.table), len(result.table)), np.nan)
    inner = np.flatnonzero(result.table.event_time.to_numpy() != -1)
    full[np.ix_(inner, inner)] = result.covariance
    return _event_study(result.table.event_time, result.table.att, full, horizon, "TWFE event study")


def _excludes_zero(lower, upper):
    return bool(np.isfinite(lower) and (lower > 0 or upper < 0))


def breakdown_value(betahat, sigma, num_pre_periods: int, num_post_periods: int, method: str = "C-LF",
                    l_vec=None, alpha: float = 0.05, tol: float | None = None, **options) -> float:
    """Largest ``Mbar`` (C-LF) or ``M`` (FLCI) at which the robust interval still excludes 0.

    Bisection (the sets grow with M); accurate to ``tol`` (default 0.01 for Mbar, 1% of the standard
    error of ``theta`` for M) and rounded down.  NaN when the usual interval already contains 0
    (no conclusion to break); ``inf`` if it still excludes 0 at 1,000 times the usual scale.
    """
    betahat, sigma, l_vec = _check_inputs(betahat, sigma, num_pre_periods, num_post_periods, l_vec)
    if not _excludes_zero(*original_ci(betahat, sigma, num_pre_periods, num_post_periods, l_vec, alpha)):
        return np.nan
    sd_theta = np.sqrt(l_vec @ sigma[num_pre_periods:, num_pre_periods:] @ l_vec)
    unit = 1.0 if method == "C-LF" else sd_theta
    tol = (0.01 if method == "C-LF" else 0.01 * sd_theta) if tol is None else tol
    key = "Mbarvec" if method == "C-LF" else "Mvec"

    def holds(m):
        row = honest_did(betahat, sigma, num_pre_periods, num_post_periods, method=method, l_vec=l_vec,
                         alpha=alpha, **{key: [m]}, **options).iloc[0]
        return _excludes_zero(row.lower, row.upper)

    if not holds(0.0):
        return 0.0
    low, high = 0.0, unit
    while holds(high):
        low, high = high, 2 * high
        if high > 1000 * unit:
            return np.inf
    while high - low > tol:
        middle = (low + high) / 2
        low, high = (middle, high) if holds(middle) else (low, middle)
    return float(np.floor(low / tol) * tol)


def sensitivity_analysis(study: EventStudy, Mbarvec=(0.5, 1.0, 1.5, 2.0), Mvec=None, alpha: float = 0.05,
                         **options) -> pd.DataFrame:
    """Robust intervals for the effect on impact (``on_impact``, e = 0) and the average over the
    post-periods (``average``), under both restrictions, beside the usual interval.

    ``Mvec`` defaults to 0..2 standard errors of the target in 5 steps.  Columns: target, restriction
    (``none`` for the usual interval), M, lower, upper, method (``original``, ``C-LF``, ``FLCI``),
    breakdown (per target and restriction, see ``breakdown_value``).
    """
    args = (study.betahat, study.sigma, study.num_pre_periods, study.num_post_periods)
    targets = {"on_impact": np.eye(study.num_post_periods)[0],
               "average": np.full(study.num_post_periods, 1.0 / study.num_post_periods)}
    frames = []
    for target, l_vec in targets.items():
        lower, upper = original_ci(*args, l_vec=l_vec, alpha=alpha)
        frames.append(pd.DataFrame([("none", 0.0, lower, upper, "original")], columns=_TIDY_COLUMNS)
                      .assign(target=target, breakdown=np.nan))
        sd_theta = np.sqrt(l_vec @ study.sigma[study.num_pre_periods:, study.num_pre_periods:] @ l_vec)
        grids = {"C-LF": {"Mbarvec": list(Mbarvec)},
                 "FLCI": {"Mvec": list(np.linspace(0, 2 * sd_theta, 5) if Mvec is None else Mvec)}}
        if study.num_pre_periods < 2:
            del grids["C-LF"]
        for method, grid in grids.items():
            table = honest_did(*args, method=method, l_vec=l_vec, alpha=alpha, **grid, **options)
            breakdown = breakdown_value(*args, method=method, l_vec=l_vec, alpha=alpha, **options)
            frames.append(table.assign(target=target, breakdown=breakdown))
    return pd.concat(frames, ignore_index=True)[["target"] + _TIDY_COLUMNS + ["breakdown"]]


def robustness_sentence(service: str, breakdown: float) -> str:
    """One plain sentence on how far the headline conclusion survives (relative-magnitudes breakdown value)."""
    if np.isnan(breakdown):
        return (f"For {service}, the estimate is not distinguishable from zero even if trends were parallel, "
                f"so there is no conclusion to test for robustness.")
    if breakdown == 0:
        return (f"For {service}, the conclusion is fragile: it no longer holds if trends after the programme may "
                f"differ at all from those of the comparison firms.")
    if np.isinf(breakdown):
        return f"For {service}, the conclusion holds however much trends after the programme may differ."
    return (f"For {service}, the conclusion holds unless post-programme trend differences are more than "
            f"{breakdown:.2g} times the largest seen before the programme.")
