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
    ``slope:period:t:x``), ``design`` the n x K matrix behind them (rows ``row_index`` of the input).
    """

    family: str
    cgroup: str
    coef: pd.Series
    vcov: pd.DataFrame
    cells: pd.DataFrame
    design: pd.DataFrame
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

    def __repr__(self) -> str:
        return f"EtwfeFit(family={self.family!r}, cgroup={self.cgroup!r}, {len(self.cells)} cells, n={self.n_obs})"


def _demean_two_way(x: np.ndarray, a: np.ndarray, b: np.ndarray, tol=1e-13, maxiter=10_000) -> np.ndarray:
    """Residual of ``x`` on two sets of fixed effects (alternating projections; R ``fixest::demean``)."""
    na, nb = a.max() + 1, b.max() + 1
    ca, cb = np.bincount(a, minlength=na), np.bincount(b, minlength=nb)
    resid = x.astype(float).copy()
    for _ in range(maxiter):
        before = resid.copy()
        resid -= (np.bincount(a, resid, na) / ca)[a]
        resid -= (np.bincount(b, resid, nb) / cb)[b]
        if np.max(np.abs(resid - before)) < tol * (1 + np.max(np.abs(x))):
            break
    return resid


def _full_rank_columns(x: np.ndarray) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns, earlier columns kept first (fixest's rule)."""
    keep: list[int] = []
    scale = np.sqrt((x**2).sum(axis=0))
    q = np.zeros((x.shape[0], 0))
    for j in range(x.shape[1]):
        if scale[j] == 0:
            continue
        v = x[:, j] / scale[j]
        v = v - q @ (q.T @ v)
        v = v - q @ (q.T @ v)
        norm_v = np.linalg.norm(v)
        if norm_v > 1e-9:
            keep.append(j)
            q = np.column_stack([q, v / norm_v])
    return np.array(keep, dtype=int)


def _clustered_vcov(bread: np.ndarray, scores: np.ndarray, codes: np.ndarray, n: int, k: int) -> np.ndarray:
    """CRV1: ``bread meat bread`` with fixest's ``G/(G-1) (n-1)/(n-K)``."""
    n_clusters = int(codes.max()) + 1
    sums = np.zeros((n_clusters, scores.shape[1]))
    np.add.at(sums, codes, scores)
    adjust = n_clusters / (n_clusters - 1) * (n - 1) / (n - k)
    return adjust * bread @ (sums.T @ sums) @ bread


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
        zero_cells = [i for i in range(len(cell_keys)) if not (y[row_cell == i] > 0).any()]
        if not zero_cells:
            break
        listed = ", ".join(f"({_plain(cell_keys[i][0])},{_plain(cell_keys[i][1])})" for i in zero_cells)
        notes.append(f"cells with outcome 0 in every row are not estimable by Poisson and were dropped with their "
                     f"rows: {listed}")
        frame = frame.loc[~np.isin(row_cell, zero_cells)]
    for note in notes:
        warnings.warn(note, stacklevel=2)

    y = frame[yname].to_numpy(dtype=float)
    fe_first = np.argsort([not name.startswith(("cohort:", "period:", "slope:")) for name in names], kind="stable")
    keep = np.sort(fe_first[_full_rank_columns(design[:, fe_first])])  # fixest: regressors collinear with FE go
    x = design[:, keep]
    names = [names[j] for j in keep]
    n = x.shape[0]
    n_cohorts, n_periods = frame[gname].nunique(), frame[tname].nunique()
    # fixest's K: kept regressors, FE levels less one per extra dimension, every varying-slope coefficient
    k = sum(name.startswith("cell:") for name in names) + (n_cohorts + n_periods - 1) + len(xvar) * (n_cohorts + n_periods)
    codes = pd.factorize(frame[idname], sort=True)[0]
    if family == "gaussian":
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        eta, iterations = x @ coef, 0
        bread = np.linalg.inv(x.T @ x)
        scores = x * (y - eta)[:, None]
    else:
        coef, eta, iterations = _poisson_irls(x, y, tol, maxiter)
        mu = np.exp(eta)
        bread = np.linalg.inv(x.T @ (x * mu[:, None]))
        scores = x * (y - mu)[:, None]
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
        design=pd.DataFrame(x, columns=names, index=frame.index), y=y, fitted=eta, row_group=group, row_time=time,
        row_treated=(group > 0) & (time >= group), cluster_codes=codes, n_obs=n, n_clusters=int(codes.max()) + 1,
        rank=x.shape[1], ssc_k=k, iterations=iterations, controls=xvar, notes=notes)


def _design(frame, tname, gname, xvar, cgroup):
    """Cell dummies (and their interactions with demeaned controls), cohort and period FE, varying slopes."""
    group, time = frame[gname].to_numpy(dtype=float), frame[tname].to_numpy(dtype=float)
    cohorts, gcode = np.unique(group, return_inverse=True)
    periods, tcode = np.unique(time, return_inverse=True)
    active = (group > 0) & (time >= group) if cgroup == "notyet" else (group > 0) & (time > periods[0])
    cell_keys = sorted({(g, t) for g, t in zip(group[active], time[active])})
    lookup = {key: i for i, key in enumerate(cell_keys)}
    row_cell = np.full(len(frame), -1)
    row_cell[active] = [lookup[(g, t)] for g, t in zip(group[active], time[active])]
    controls = {c: frame[c].to_numpy(dtype=float) for c in xvar}
    demeaned = {c: _demean_two_way(v, gcode, tcode) for c, v in controls.items()}
    columns, names = [], []
    for i, (g, t) in enumerate(cell_keys):
        dummy = (row_cell == i).astype(float)
        columns.append(dummy)
        names.append(f"cell:{_plain(g)}:{_plain(t)}")
        for c in xvar:
            columns.append(dummy * demeaned[c])
            names.append(f"cell:{_plain(g)}:{_plain(t)}:{c}")
    for j, g in enumerate(cohorts):
        columns.append((gcode == j).astype(float))
        names.append(f"cohort:{_plain(g)}")
    for j, t in enumerate(periods[1:], start=1):
        columns.append((tcode == j).astype(float))
        names.append(f"period:{_plain(t)}")
    for c in xvar:
        for j, g in enumerate(cohorts):
            columns.append((gcode == j) * controls[c])
            names.append(f"slope:cohort:{_plain(g)}:{c}")
        for j, t in enumerate(periods):
            columns.append((tcode == j) * controls[c])
            names.append(f"slope:period:{_plain(t)}:{c}")
    return np.column_stack(columns), names, row_cell, cell_keys


def _poisson_irls(x, y, tol, maxiter):
    """Poisson MLE by IRLS from ``mu = (y + mean y) / 2``; stops when the deviance changes by < ``tol`` (relative)."""
    mu = (y + y.mean()) / 2
    eta = np.log(mu)
    deviance_old = np.inf
    for iteration in range(1, maxiter + 1):
        z = eta + (y - mu) / mu
        sw = np.sqrt(mu)
        coef, *_ = np.linalg.lstsq(x * sw[:, None], z * sw, rcond=None)
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
    x = fit.design.to_numpy()
    untreated = x.copy()
    cell_columns = [j for j, name in enumerate(fit.design.columns) if name.startswith("cell:")]
    untreated[:, cell_columns] = 0.0
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
            gradient = (mu1 @ x[sel] - mu0 @ untreated[sel]) / sel.sum()
            log_gradient = mu1 @ x[sel] / mu1.sum() - mu0 @ untreated[sel] / mu0.sum()
            log_ratio = np.log(mu1.sum() / mu0.sum())
            log_se = float(np.sqrt(log_gradient @ vcov @ log_gradient))
            extra = {"proportional": np.expm1(log_ratio), "proportional_se": np.exp(log_ratio) * log_se,
                     "proportional_ci_lower": np.expm1(log_ratio - z * log_se),
                     "proportional_ci_upper": np.expm1(log_ratio + z * log_se),
                     "proportional_p_value": 2 * norm.sf(abs(log_ratio) / log_se)}
        else:
            estimate = np.mean(fit.fitted[sel] - eta0[sel])
            gradient = (x[sel] - untreated[sel]).mean(axis=0)
            extra = {}
        se = float(np.sqrt(gradient @ vcov @ gradient))
        row = {"estimate": estimate, "se": se, "ci_lower": estimate - z * se, "ci_upper": estimate + z * se,
               "p_value": 2 * norm.sf(abs(estimate) / se), "n_obs": int(sel.sum()), **extra}
        if _EMFX_KEY[type]:
            row = {_EMFX_KEY[type]: _plain(key), **row}
        out.append(row)
    return pd.DataFrame(out)
