"""Extended two-way fixed effects (Wooldridge 2021, 2023): staggered DiD by OLS or Poisson (PPML).

``etwfe`` builds R ``etwfe``'s regression (McDermott's package, on ``fixest``): one treatment dummy per
treated cohort x period cell, each interacted with the controls demeaned on cohort and period
(``x_dm``), cohort and period fixed effects with cohort- and period-varying slopes of the controls
(``fe = "vs"``), errors clustered by unit. ``cgroup="notyet"`` (R's default) has cells only for
post-treatment periods, so not-yet-treated periods of later cohorts are comparisons too;
``cgroup="never"`` has a cell for every period but the first of each treated cohort (pre-treatment
cells are placebo tests), so only never-treated firms are the comparison.

``family="poisson"`` is Wooldridge's (2023) staggered PPML: the conditional mean is
``exp(cohort + period + cells)``, fitted by iteratively reweighted least squares to a tight
tolerance; it keeps zeros (non-exporters) in the outcome, so it measures the effect on export value
without a log of zero, and its parallel trends are in ratios, not differences.

``emfx`` aggregates like R ``etwfe::emfx``: the average over treated post-treatment observations of
the effect of switching their treatment dummy on (marginaleffects' average comparison), overall
(``simple``), by event time, cohort or calendar period; delta-method standard errors from the
clustered covariance. For Poisson it also reports the proportional effect
``sum(mu1) / sum(mu0) - 1`` (``exp(b) - 1`` for a single cell without controls) with an interval from
the delta method on its log, so it stays above -1.

Covariance: CRV1 with fixest's (and pyfixest's) small-sample factors ``G / (G - 1) * (n - 1) / (n - K)``,
``K`` counted as fixest does: the regressors, the fixed-effect levels less one per extra dimension, and
every varying-slope coefficient (none of these fixed effects is nested in the firm clusters).
Checked against R ``etwfe`` 0.5 (OLS, ``tests/reference/etwfe_mpdta_expected.md``) and
``pyfixest.fepois`` (Poisson).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.stats import norm

from analyses.did.prepare import _plain, check_timing_codes

FAMILIES = ("gaussian", "poisson")
CGROUPS = ("notyet", "never")
_EMFX_KEY = {"simple": None, "event": "event_time", "group": "group", "calendar": "time"}


@dataclass(repr=False)
class EtwfeFit:
    """A fitted extended TWFE model.

    ``cells``: ``group, time, estimate, se, n_obs`` per cohort x period coefficient (the coefficients of
    the treatment dummies, R's ``.Dtreat:first.treat::g:year::t``); ``coef``/``vcov`` every coefficient
    (columns named ``cell:g:t``, ``cell:g:t:x``, ``cohort:g``, ``period:t``, ``slope:cohort:g:x``,
    ``slope:period:t:x``); ``matrix`` the sparse n x K design behind them, ``design`` the same as a
    DataFrame indexed by the input rows used (for cross-checks on small data).
    """

    family: str
    cgroup: str
    coef: pd.Series
    vcov: pd.DataFrame
    cells: pd.DataFrame
    matrix: sp.csr_matrix
    row_index: pd.Index
    y: np.ndarray
    fitted: np.ndarray  # linear predictor
    row_group: np.ndarray
    row_time: np.ndarray
    row_treated: np.ndarray  # the rows emfx averages over (treated cohort, t >= g)
    cluster_codes: np.ndarray
    n_obs: int
    n_clusters: int
    rank: int  # columns of the design
    ssc_k: int  # parameters counted in the small-sample factor (fixest's K)
    iterations: int
    controls: tuple
    notes: list = field(default_factory=list)

    @property
    def design(self) -> pd.DataFrame:
        return pd.DataFrame(self.matrix.toarray(), columns=self.coef.index, index=self.row_index)

    def __repr__(self) -> str:
        return f"EtwfeFit(family={self.family!r}, cgroup={self.cgroup!r}, {len(self.cells)} cells, n={self.n_obs})"


def _demean_two_way(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Residual of ``x`` on two sets of fixed effects (exact least squares; R ``fixest::demean``'s target)."""
    dummies = sp.hstack([_indicators(a), _indicators(b)[:, 1:]]).tocsr()
    gram = (dummies.T @ dummies).toarray()
    coef = np.linalg.lstsq(gram, dummies.T @ x, rcond=None)[0]
    return x - dummies @ coef


def _indicators(codes: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), codes.max() + 1))


def _full_rank_columns(gram: np.ndarray, order: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Columns (in ``order`` of preference) that are linearly independent of those kept before them.

    Incremental Cholesky of the Gram matrix: a column whose squared residual on the kept ones is below
    ``tol`` times its squared norm is dropped (fixest's rule: earlier regressors, and fixed effects, win).
    """
    keep: list[int] = []
    factor = np.zeros((0, 0))
    for j in order:
        if gram[j, j] <= 0:
            continue
        cross = gram[keep, j]
        proj = solve_triangular(factor, cross, lower=True) if keep else np.zeros(0)
        residual = gram[j, j] - proj @ proj
        if residual > tol * gram[j, j]:
            size = len(keep)
            grown = np.zeros((size + 1, size + 1))
            grown[:size, :size] = factor
            grown[size, :size] = proj
            grown[size, size] = np.sqrt(residual)
            factor = grown
            keep.append(j)
    return np.array(keep, dtype=int)


def _clustered_vcov(bread: np.ndarray, scores: np.ndarray, codes: np.ndarray, n: int, k: int) -> np.ndarray:
    """CRV1: ``bread meat bread`` with fixest's ``G/(G-1) (n-1)/(n-K)``."""
    n_clusters = int(codes.max()) + 1
    sums = _indicators(codes).T @ scores  # clusters x K (sparse)
    meat = (sums.T @ sums).toarray() if sp.issparse(sums) else sums.T @ sums
    adjust = n_clusters / (n_clusters - 1) * (n - 1) / (n - k)
    return adjust * bread @ meat @ bread


def etwfe(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    gname: str,
    idname: str,
    xvar: tuple[str, ...] | list[str] = (),
    family: str = "gaussian",
    cgroup: str = "notyet",
    tol: float = 1e-10,
    maxiter: int = 100,
) -> EtwfeFit:
    """Fit R ``etwfe(fml = y ~ x, tvar, gvar, data, vcov = ~id, family, cgroup)`` with ``fe = "vs"``.

    ``data``: long panel (balanced or not), ``gname`` first treated period (0 or NaN = never treated),
    ``xvar`` time-invariant or varying controls (numeric columns). Rows with a missing outcome or control
    are dropped with a warning. Units treated in or before the first period are dropped (no pre-period).
    Poisson needs ``y >= 0``; cells whose outcome is 0 in every row cannot be estimated (the MLE is at
    minus infinity) and are dropped with their rows, with a warning. Raises ``ValueError`` naming the column
    and rule for bad input, ``RuntimeError`` when IRLS does not converge in ``maxiter`` steps.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if cgroup not in CGROUPS:
        raise ValueError(f"cgroup must be one of {CGROUPS}, got {cgroup!r}")
    xvar = tuple(xvar)
    missing = [c for c in (yname, tname, gname, idname, *xvar) if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found in data (available: {list(data.columns)})")
    for column in (yname, tname, gname, *xvar):
        if not pd.api.types.is_numeric_dtype(data[column]):
            raise ValueError(f"column '{column}' must be numeric, got dtype {data[column].dtype}")
    check_timing_codes(data, gname, tname, idname)
    notes: list[str] = []
    frame = data[[yname, tname, gname, idname, *xvar]].copy()
    frame[gname] = frame[gname].fillna(0)
    bad = ~np.isfinite(frame[[yname, *xvar]].to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        notes.append(f"dropped {int(bad.sum())} rows with a missing or non-finite '{yname}' or control")
        frame = frame.loc[~bad]
    if family == "poisson" and (frame[yname] < 0).any():
        row = frame.index[frame[yname] < 0][0]
        raise ValueError(f"Poisson outcome '{yname}' must be >= 0; row {row} has {_plain(frame.loc[row, yname])}")
    first, last = frame[tname].min(), frame[tname].max()
    frame.loc[frame[gname] > last, gname] = 0  # treated after the sample: never treated
    at_start = (frame[gname] > 0) & (frame[gname] <= first)
    if at_start.any():
        notes.append(f"dropped {frame.loc[at_start, idname].nunique()} units treated in or before the first period "
                     f"{_plain(first)} (no pre-treatment period)")
        frame = frame.loc[~at_start]
    if not (frame[gname] == 0).any():
        if cgroup == "never":
            raise ValueError(f"cgroup='never' needs never-treated units ('{gname}' = 0); there are none")
        latest = frame[gname].max()
        notes.append(f"no never-treated units: as R etwfe, the last cohort ({_plain(latest)}) is the reference and "
                     f"periods from {_plain(latest)} on are dropped")
        frame = frame.loc[frame[tname] < latest]
        frame.loc[frame[gname] == latest, gname] = 0

    while True:
        design, names, row_cell, cell_keys = _design(frame, tname, gname, xvar, cgroup)
        if family != "poisson":
            break
        y = frame[yname].to_numpy(dtype=float)
        active = row_cell >= 0
        positive = np.bincount(row_cell[active], weights=(y[active] > 0), minlength=len(cell_keys))
        zero_cells = list(np.flatnonzero(positive == 0))
        if not zero_cells:
            break
        listed = ", ".join(f"({_plain(cell_keys[i][0])},{_plain(cell_keys[i][1])})" for i in zero_cells)
        notes.append(f"cells with outcome 0 in every row are not estimable by Poisson and were dropped with their "
                     f"rows: {listed}")
        frame = frame.loc[~np.isin(row_cell, zero_cells)]
    for note in notes:
        warnings.warn(note, stacklevel=2)

    y = frame[yname].to_numpy(dtype=float)
    gram = (design.T @ design).toarray()
    fe_first = np.argsort([not name.startswith(("cohort:", "period:", "slope:")) for name in names], kind="stable")
    keep = np.sort(_full_rank_columns(gram, fe_first))  # fixest: regressors collinear with the FE are dropped
    x = design[:, keep].tocsr()
    names = [names[j] for j in keep]
    n = x.shape[0]
    n_cohorts, n_periods = frame[gname].nunique(), frame[tname].nunique()
    # fixest's K: kept regressors, FE levels less one per extra dimension, every varying-slope coefficient
    k = sum(name.startswith("cell:") for name in names) + (n_cohorts + n_periods - 1) + len(xvar) * (n_cohorts + n_periods)
    codes = pd.factorize(frame[idname], sort=True)[0]
    if family == "gaussian":
        coef, weight, iterations = _weighted_solve(x, y, np.ones(n)), np.ones(n), 0
        eta = x @ coef
    else:
        coef, eta, iterations = _poisson_irls(x, y, tol, maxiter)
        weight = np.exp(eta)
    bread = np.linalg.inv((x.T @ x.multiply(weight[:, None])).toarray())
    scores = x.multiply((y - np.exp(eta) if family == "poisson" else y - eta)[:, None]).tocsr()
    vcov = _clustered_vcov(bread, scores, codes, n, k)
    coef_s = pd.Series(coef, index=names)
    vcov_df = pd.DataFrame(vcov, index=names, columns=names)
    cell_rows = []
    for i, (g, t) in enumerate(cell_keys):
        name = f"cell:{_plain(g)}:{_plain(t)}"
        if name in coef_s:
            cell_rows.append((g, t, coef_s[name], np.sqrt(vcov_df.loc[name, name]), int((row_cell == i).sum())))
    cells = pd.DataFrame(cell_rows, columns=["group", "time", "estimate", "se", "n_obs"])
    group, time = frame[gname].to_numpy(dtype=float), frame[tname].to_numpy(dtype=float)
    return EtwfeFit(
        family=family, cgroup=cgroup, coef=coef_s, vcov=vcov_df, cells=cells,
        matrix=x, row_index=frame.index, y=y, fitted=eta, row_group=group, row_time=time,
        row_treated=(group > 0) & (time >= group), cluster_codes=codes, n_obs=n, n_clusters=int(codes.max()) + 1,
        rank=x.shape[1], ssc_k=k, iterations=iterations, controls=xvar, notes=notes)


def _design(frame, tname, gname, xvar, cgroup):
    """Cell dummies (and their interactions with demeaned controls), cohort and period FE, varying slopes."""
    group, time = frame[gname].to_numpy(dtype=float), frame[tname].to_numpy(dtype=float)
    cohorts, gcode = np.unique(group, return_inverse=True)
    periods, tcode = np.unique(time, return_inverse=True)
    active = (group > 0) & (time >= group) if cgroup == "notyet" else (group > 0) & (time > periods[0])
    pair = gcode * len(periods) + tcode
    used, row_cell_active = np.unique(pair[active], return_inverse=True)
    cell_keys = [(cohorts[code // len(periods)], periods[code % len(periods)]) for code in used]
    row_cell = np.full(len(frame), -1)
    row_cell[active] = row_cell_active
    controls = {c: frame[c].to_numpy(dtype=float) for c in xvar}
    demeaned = {c: _demean_two_way(v, gcode, tcode) for c, v in controls.items()}
    rows = np.arange(len(frame))
    blocks, names = [], []

    def add(mask_rows, column_of_row, n_columns, values, labels):
        blocks.append(sp.csr_matrix((values, (rows[mask_rows], column_of_row)), shape=(len(frame), n_columns)))
        names.extend(labels)

    cell_labels = [f"cell:{_plain(g)}:{_plain(t)}" for g, t in cell_keys]
    n_cells, width = len(cell_keys), 1 + len(xvar)
    on = row_cell >= 0
    add(on, row_cell[on] * width, n_cells * width, np.ones(on.sum()),
        [label + suffix for label in cell_labels for suffix in ["", *(f":{c}" for c in xvar)]])
    for j, c in enumerate(xvar, start=1):  # interactions sit beside their cell's dummy
        blocks[-1] = blocks[-1] + sp.csr_matrix((demeaned[c][on], (rows[on], row_cell[on] * width + j)),
                                                shape=(len(frame), n_cells * width))
    everywhere = np.ones(len(frame), dtype=bool)
    add(everywhere, gcode, len(cohorts), np.ones(len(frame)), [f"cohort:{_plain(g)}" for g in cohorts])
    later = tcode > 0
    add(later, tcode[later] - 1, len(periods) - 1, np.ones(later.sum()), [f"period:{_plain(t)}" for t in periods[1:]])
    for c in xvar:
        add(everywhere, gcode, len(cohorts), controls[c], [f"slope:cohort:{_plain(g)}:{c}" for g in cohorts])
        add(everywhere, tcode, len(periods), controls[c], [f"slope:period:{_plain(t)}:{c}" for t in periods])
    return sp.hstack(blocks).tocsc(), names, row_cell, cell_keys


def _weighted_solve(x: sp.csr_matrix, z: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted least squares by the normal equations (Cholesky of the K x K ``X'WX``)."""
    xw = x.multiply(weight[:, None]).tocsr()
    return cho_solve(cho_factor((x.T @ xw).toarray()), xw.T @ z)


def _poisson_irls(x, y, tol, maxiter):
    """Poisson MLE by IRLS from ``mu = (y + mean y) / 2``; stops when the deviance changes by < ``tol`` (relative)."""
    mu = (y + y.mean()) / 2
    eta = np.log(mu)
    deviance_old = np.inf
    for iteration in range(1, maxiter + 1):
        coef = _weighted_solve(x, eta + (y - mu) / mu, mu)
        eta = x @ coef
        mu = np.exp(eta)
        with np.errstate(divide="ignore", invalid="ignore"):
            deviance = 2 * np.sum(np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu))
        if abs(deviance - deviance_old) / (abs(deviance) + 0.1) < tol:
            return coef, eta, iteration
        deviance_old = deviance
    raise RuntimeError(f"Poisson IRLS did not converge in {maxiter} iterations (relative deviance change >= {tol})")


def emfx(fit: EtwfeFit, type: str = "simple", alp: float = 0.05) -> pd.DataFrame:
    """Average treatment effects on the treated as R ``etwfe::emfx(type=...)``: ``simple``, ``event``, ``group``, ``calendar``.

    Averages over the treated post-treatment rows (cohort g, period t >= g) the difference between the
    prediction with and without the treatment dummies (levels of the outcome); delta-method standard errors.
    Returns one row per event time / cohort / period (or one for ``simple``): the key column (``event_time``,
    ``group`` or ``time``; none for simple), ``estimate, se, ci_lower, ci_upper, p_value, n_obs`` and, for
    Poisson, ``proportional`` (``sum mu1 / sum mu0 - 1``) with ``proportional_se`` (delta method),
    ``proportional_ci_lower``, ``proportional_ci_upper`` (from the interval of the log ratio),
    ``proportional_p_value``.
    """
    if type not in _EMFX_KEY:
        raise ValueError(f"type must be one of {list(_EMFX_KEY)}, got {type!r}")
    x = fit.matrix.tocsr()
    cell_columns = np.array([name.startswith("cell:") for name in fit.coef.index])
    untreated = (x @ sp.diags((~cell_columns).astype(float))).tocsr()
    eta0 = untreated @ fit.coef.to_numpy()
    z = norm.ppf(1 - alp / 2)
    rows = fit.row_treated
    keys = {"simple": np.zeros(len(rows)), "event": fit.row_time - fit.row_group, "group": fit.row_group,
            "calendar": fit.row_time}[type]
    vcov = fit.vcov.to_numpy()
    out = []
    for key in np.unique(keys[rows]):
        sel = rows & (keys == key)
        if fit.family == "poisson":
            mu1, mu0 = np.exp(fit.fitted[sel]), np.exp(eta0[sel])
            estimate = np.mean(mu1 - mu0)
            treated_sum, untreated_sum = x[sel].T @ mu1, untreated[sel].T @ mu0
            gradient = (treated_sum - untreated_sum) / sel.sum()
            log_gradient = treated_sum / mu1.sum() - untreated_sum / mu0.sum()
            log_ratio = np.log(mu1.sum() / mu0.sum())
            log_se = float(np.sqrt(log_gradient @ vcov @ log_gradient))
            extra = {"proportional": np.expm1(log_ratio), "proportional_se": np.exp(log_ratio) * log_se,
                     "proportional_ci_lower": np.expm1(log_ratio - z * log_se),
                     "proportional_ci_upper": np.expm1(log_ratio + z * log_se),
                     "proportional_p_value": 2 * norm.sf(abs(log_ratio) / log_se)}
        else:
            estimate = np.mean(fit.fitted[sel] - eta0[sel])
            gradient = np.asarray((x[sel] - untreated[sel]).mean(axis=0)).ravel()
            extra = {}
        se = float(np.sqrt(gradient @ vcov @ gradient))
        row = {"estimate": estimate, "se": se, "ci_lower": estimate - z * se, "ci_upper": estimate + z * se,
               "p_value": 2 * norm.sf(abs(estimate) / se), "n_obs": int(sel.sum()), **extra}
        if _EMFX_KEY[type]:
            row = {_EMFX_KEY[type]: _plain(key), **row}
        out.append(row)
    return pd.DataFrame(out)
