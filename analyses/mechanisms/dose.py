"""Difference-in-differences with a continuous dose (Callaway, Goodman-Bacon & Sant'Anna 2024).

``cont_did`` follows R ``contdid::cont_did`` (ported to Python as moderndid 0.4.1), parametric
dose estimator: for every cohort ``g`` and period ``t`` the change in the outcome from the base
period, ``dY``, of cohort ``g``'s treated units is regressed on a B-spline of their dose (degree
``degree``, ``num_knots`` interior knots at quantiles of the positive doses, boundary knots at the
cohort's smallest and largest dose, extrapolated polynomially beyond them); the comparison units'
mean ``dY`` (never treated, or not yet treated) is the untreated trend. Then

* ``ATT(d | g,t) = fitted dY at d - mean comparison dY`` and ``ACRT(d | g,t)`` = its derivative;
* the binarised ``ATT(g,t)`` (mean treated minus mean comparison ``dY``) and ``ACRT(g,t)``, the
  derivative averaged over the cohort's doses;
* ``aggregation="dose"`` (R's): post-treatment cells averaged with the weights of R ``did``'s group
  aggregation -- each cohort's cells equally, cohorts by their share of units -- giving the curves
  ATT(d), ACRT(d) and the overall ATT^o and ACRT^o;
* ``aggregation="eventstudy"``: the binarised ATT(g,t) (``level``) and ACRT(g,t) (``slope``) by
  event time ``e = t - g``, cohort-share weighted, and their average over ``e >= 0``.

Inference: unit-level influence functions (the regression's through its score and bread, the
comparison mean's, and the estimated cohort shares' (R ``did``'s ``wif``; contdid holds the
shares fixed, so standard errors differ slightly, point estimates not)), one Rademacher multiplier
bootstrap (``analyses.did.bootstrap``) for every reported number, uniform (sup-t) bands over the
dose grid for each curve and over the event times.

Identification: ATT(d) and the binarised effects need parallel trends for the untreated outcome
(standard PT); comparing doses -- ACRT(d), ACRT^o, or any difference ATT(d1) - ATT(d2) -- needs
**strong parallel trends** (no selection into dose on the gains), see ``PARALLEL_TRENDS_WARNING``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline
from scipy.stats import norm

from analyses.did.bootstrap import multiplier_bootstrap, uniform_critical_value
from analyses.did.prepare import _plain, prepare_panel

PARALLEL_TRENDS_WARNING = (
    "Comparing doses (ACRT(d), ACRT^o, or ATT at one dose versus another) requires the stronger "
    "parallel-trends assumption of Callaway, Goodman-Bacon & Sant'Anna (2024): firms choosing different "
    "doses would have had the same average gains at every dose. Standard parallel trends identifies only "
    "ATT(d) for the firms that chose dose d and the overall ATT."
)
GRID_SIZE = 50  # moderndid's default grid: 50 equally spaced doses over the positive doses


@dataclass(repr=False)
class ContDidResult:
    """Tidy tables of ``cont_did``.

    ``dose``: one row per grid dose: ``dose, att_d, att_d_se, att_d_ci_lower, att_d_ci_upper, acrt_d,
    acrt_d_se, acrt_d_ci_lower, acrt_d_ci_upper`` (uniform bands, critical values ``att_d_crit_val``,
    ``acrt_d_crit_val``). ``overall``: rows ``ATT`` and ``ACRT`` (``parameter, estimate, se, ci_lower,
    ci_upper, p_value``, pointwise). ``event_study``: ``target`` (``level``/``slope``), ``event_time``
    (empty = average over e >= 0), ``estimate, se, ci_lower, ci_upper`` (uniform band over the event times
    of each target; the average pointwise). ``cells``: ``group, time, att, acrt, n_treated, n_control``.
    """

    dose: pd.DataFrame
    overall: pd.DataFrame
    event_study: pd.DataFrame
    cells: pd.DataFrame
    att_d_crit_val: float
    acrt_d_crit_val: float
    n_treated: int
    n_control: int
    degree: int
    knots: np.ndarray
    control_group: str
    alp: float
    biters: int
    overall_inf_func: np.ndarray  # n_units x 2 (ATT^o, ACRT^o), for tests of differences
    unit_ids: np.ndarray
    warning: str = PARALLEL_TRENDS_WARNING
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        att, acrt = self.overall.estimate
        return f"ContDidResult(ATT^o={att:.6g}, ACRT^o={acrt:.6g}, {self.n_treated} treated units)"


def _spline_basis(x: np.ndarray, boundary: tuple[float, float], knots: np.ndarray, degree: int):
    """B-spline basis without its first column (R ``splines2::bSpline``) and its derivative, extrapolated."""
    t = np.concatenate([[boundary[0]] * (degree + 1), knots, [boundary[1]] * (degree + 1)])
    n_basis = len(t) - degree - 1
    spline = BSpline(t, np.eye(n_basis), degree, extrapolate=True)
    return spline(x)[:, 1:], spline.derivative(1)(x)[:, 1:]


def _share_average(values: np.ndarray, inf_funcs: np.ndarray, cohorts: np.ndarray, unit_cohort: np.ndarray):
    """Cohort-share weighted average of per-cohort values (cohorts x k) and its influence function (n x k).

    Includes the influence of the estimated shares ``P(G = g)`` (R ``did``'s ``wif``).
    """
    member = (unit_cohort[:, None] == cohorts[None, :]).astype(float)  # n x cohorts
    share = member.mean(axis=0)
    weight = share / share.sum()
    estimate = weight @ values
    share_if = (member - share) / share.sum() - np.outer((member - share).sum(axis=1), share / share.sum() ** 2)
    return estimate, np.tensordot(inf_funcs, weight, axes=([0], [0])) + share_if @ values


@dataclass
class _Cell:
    group: float
    time: float
    att: float
    acrt: float
    att_if: np.ndarray  # n
    acrt_if: np.ndarray  # n
    att_d: np.ndarray | None  # grid
    acrt_d: np.ndarray | None
    att_d_if: np.ndarray | None  # n x grid
    acrt_d_if: np.ndarray | None
    n_treated: int
    n_control: int


def _cell(dy, treated, control, dose, grid, knots, degree, with_curve):
    """One (g,t) cell: binarised ATT, ACRT and (post-treatment cells) the dose curves, with influence functions."""
    n = len(dy)
    n1, n0 = int(treated.sum()), int(control.sum())
    d, y1 = dose[treated], dy[treated]
    control_mean = dy[control].mean()
    control_if = np.zeros(n)
    control_if[control] = -(n / n0) * (dy[control] - control_mean)
    att = y1.mean() - control_mean
    att_if = control_if.copy()
    att_if[treated] += (n / n1) * (y1 - y1.mean())
    basis, deriv = _spline_basis(d, (d.min(), d.max()), knots, degree)
    design = np.column_stack([np.ones(n1), basis])
    if n1 <= design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
        raise np.linalg.LinAlgError(f"{n1} treated units with {len(np.unique(d))} distinct doses cannot fit a "
                                    f"B-spline with {design.shape[1]} coefficients")
    coef, *_ = np.linalg.lstsq(design, y1, rcond=None)
    bread = np.linalg.inv(design.T @ design / n1)
    score_bread = ((y1 - design @ coef)[:, None] * design) @ bread  # n1 x coefficients: influence of coef
    slopes = deriv @ coef[1:]
    acrt = slopes.mean()
    acrt_if = np.zeros(n)
    acrt_if[treated] = (n / n1) * (slopes - acrt + score_bread @ np.concatenate([[0.0], deriv.mean(axis=0)]))
    curves = (None,) * 4
    if with_curve:
        grid_basis, grid_deriv = _spline_basis(grid, (d.min(), d.max()), knots, degree)
        grid_design = np.column_stack([np.ones(len(grid)), grid_basis])
        att_d_if = np.repeat(control_if[:, None], len(grid), axis=1)
        att_d_if[treated] += (n / n1) * score_bread @ grid_design.T
        acrt_d_if = np.zeros((n, len(grid)))
        acrt_d_if[treated] = (n / n1) * score_bread[:, 1:] @ grid_deriv.T
        curves = (grid_design @ coef - control_mean, grid_deriv @ coef[1:], att_d_if, acrt_d_if)
    return att, acrt, att_if, acrt_if, curves, n1, n0


def _unit_dose(data, idname, dname, unit_ids):
    """One dose per unit (constant over time, as contdid requires); 0 for never-treated units."""
    if dname not in data.columns:
        raise ValueError(f"dose column '{dname}' not found in data (available: {list(data.columns)})")
    if not pd.api.types.is_numeric_dtype(data[dname]):
        raise ValueError(f"dose column '{dname}' must be numeric, got dtype {data[dname].dtype}")
    per_unit = data.groupby(idname)[dname].agg(["min", "max"])
    varying = per_unit.index[per_unit["min"] != per_unit["max"]]
    if len(varying):
        raise ValueError(f"dose '{dname}' must be constant within each unit (the first episode's dose, also in "
                         f"pre-treatment periods); {idname}={_plain(varying[0])!r} and {len(varying) - 1} other unit(s) vary")
    negative = per_unit.index[per_unit["min"] < 0]
    if len(negative):
        raise ValueError(f"dose '{dname}' must be >= 0; {idname}={_plain(negative[0])!r} has {per_unit.loc[negative[0], 'min']}")
    return per_unit["min"].reindex(unit_ids).to_numpy(dtype=float)


def cont_did(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    dname: str,
    control_group: str = "notyettreated",
    base_period: str = "varying",
    anticipation: int = 0,
    degree: int = 3,
    num_knots: int = 0,
    dvals: np.ndarray | None = None,
    biters: int = 999,
    alp: float = 0.05,
    cband: bool = True,
    clustervars: str | None = None,
    random_state=None,
) -> ContDidResult:
    """Dose-response DiD on a balanced panel (R ``contdid::cont_did`` vocabulary and defaults).

    ``data``: long panel, one row per unit and period; ``gname`` the first treated period (0 or NaN =
    never treated, as R ``did``), ``dname`` the dose, constant within unit (its episode's dose), > 0 for
    treated units; treated units with dose 0 are dropped with a warning. ``dvals``: doses at which to
    evaluate the curves (default: 50 equally spaced from the smallest to the largest positive dose).
    Returns a :class:`ContDidResult`; ``result.warning`` is the strong-parallel-trends caveat that must
    accompany any comparison across doses. Raises ``ValueError`` for missing columns, a dose varying within
    a unit, negative doses, unbalanced panels (not supported, as R contdid) and cohorts too small for the spline.
    """
    if degree < 1 or int(degree) != degree:
        raise ValueError(f"degree must be a whole number >= 1, got {degree}")
    if num_knots < 0 or int(num_knots) != num_knots:
        raise ValueError(f"num_knots must be a whole number >= 0, got {num_knots}")
    frame = data
    if dname in data.columns:
        zero_dose = (data[gname].fillna(0) > 0) & (data[dname] <= 0)
        if zero_dose.any():
            frame = data.loc[~zero_dose]
            warnings.warn(f"dropped {data.loc[zero_dose, idname].nunique()} units with a treatment date but dose 0 "
                          f"in '{dname}' (as R contdid)", stacklevel=2)
    panel = prepare_panel(frame, yname, tname, idname, gname, None, control_group, anticipation, None,
                          clustervars, False)
    notes = list(panel.notes)
    cohort, tlist, n = panel.unit_cohort, panel.tlist, len(panel.unit_ids)
    dose = np.where(cohort > 0, _unit_dose(frame, idname, dname, panel.unit_ids), 0.0)
    positive = dose[np.isin(cohort, panel.glist)]
    knots = np.quantile(positive, np.linspace(0, 1, num_knots + 2)[1:-1]) if num_knots else np.array([])
    grid = np.linspace(positive.min(), positive.max(), GRID_SIZE) if dvals is None else np.asarray(dvals, float)
    position = {t: i for i, t in enumerate(tlist)}
    cohort_pos = np.array([position.get(g, np.inf) if g > 0 else np.inf for g in cohort])
    y = panel.outcome_wide

    cells: list[_Cell] = []
    for g in panel.glist:
        gi = position[g]
        for ti in range(len(tlist)):
            pre = ti < gi - anticipation
            base = ti - 1 if (pre and base_period == "varying") else gi - anticipation - 1
            if base < 0 or ti == base:
                continue
            treated = cohort == g
            control = cohort == 0 if control_group == "nevertreated" else cohort_pos > max(ti, base) + anticipation
            control &= ~treated
            try:
                att, acrt, att_if, acrt_if, curves, n1, n0 = _cell(
                    y[:, ti] - y[:, base], treated, control, dose, grid, knots, degree, with_curve=ti >= gi)
            except np.linalg.LinAlgError as error:
                notes.append(f"cell ({g:g},{tlist[ti]:g}) not estimable: {error}")
                warnings.warn(notes[-1], stacklevel=2)
                continue
            cells.append(_Cell(g, tlist[ti], att, acrt, att_if, acrt_if, *curves, n1, n0))
    post = [c for c in cells if c.time >= c.group]
    if not post:
        raise ValueError("no post-treatment cell could be estimated")

    # dose aggregation (R did's group weights): each cohort's post cells equally, then cohort shares
    post_cohorts = np.unique([c.group for c in post])
    per_cohort, per_cohort_if = [], []
    for g in post_cohorts:
        mine = [c for c in post if c.group == g]
        per_cohort.append(np.concatenate([np.mean([c.att_d for c in mine], axis=0), np.mean([c.acrt_d for c in mine], axis=0),
                                          [np.mean([c.att for c in mine]), np.mean([c.acrt for c in mine])]]))
        per_cohort_if.append(np.mean([np.column_stack([c.att_d_if, c.acrt_d_if, c.att_if, c.acrt_if]) for c in mine],
                                     axis=0))
    dose_est, dose_if = _share_average(np.array(per_cohort), np.array(per_cohort_if), post_cohorts, cohort)

    # event study: binarised ATT(g,t) (level) and ACRT(g,t) (slope) by e = t - g
    event = np.array([position[c.time] - position[c.group] for c in cells])
    events = np.unique(event)
    es_est, es_if = [], []
    for e in events:
        mine = [c for c, ce in zip(cells, event) if ce == e]
        est, inf = _share_average(np.array([[c.att, c.acrt] for c in mine]),
                                  np.array([np.column_stack([c.att_if, c.acrt_if]) for c in mine]),
                                  np.array([c.group for c in mine]), cohort)
        es_est.append(est)
        es_if.append(inf)
    es_est, es_if = np.array(es_est), np.stack(es_if, axis=1)  # events x 2, n x events x 2
    post_events = events >= 0
    es_avg, es_avg_if = es_est[post_events].mean(axis=0), es_if[:, post_events].mean(axis=1)

    k = len(grid)
    columns = np.column_stack([dose_if, es_if[:, :, 0], es_if[:, :, 1], es_avg_if])
    rng = np.random.default_rng(random_state)
    boot = multiplier_bootstrap(columns, int(biters), rng, panel.cluster_codes)
    se = boot.se
    pointwise = norm.ppf(1 - alp / 2)

    def band(cols):
        if not cband or len(range(*cols.indices(columns.shape[1]))) < 2:
            return pointwise
        return uniform_critical_value(boot, cols, alp)[0]

    m = len(events)
    crit_att, crit_acrt = band(slice(0, k)), band(slice(k, 2 * k))
    crit_level, crit_slope = band(slice(2 * k + 2, 2 * k + 2 + m)), band(slice(2 * k + 2 + m, 2 * k + 2 + 2 * m))
    att_d, acrt_d = dose_est[:k], dose_est[k:2 * k]
    att_se, acrt_se = se[:k], se[k:2 * k]
    dose_table = pd.DataFrame({
        "dose": grid, "att_d": att_d, "att_d_se": att_se, "att_d_ci_lower": att_d - crit_att * att_se,
        "att_d_ci_upper": att_d + crit_att * att_se, "acrt_d": acrt_d, "acrt_d_se": acrt_se,
        "acrt_d_ci_lower": acrt_d - crit_acrt * acrt_se, "acrt_d_ci_upper": acrt_d + crit_acrt * acrt_se})
    overall_est, overall_se = dose_est[2 * k:], se[2 * k:2 * k + 2]
    overall = _interval_table(overall_est, overall_se, pointwise)
    overall.insert(0, "parameter", ["ATT", "ACRT"])
    es_se = se[2 * k + 2:]
    rows = []
    for j, (target, crit) in enumerate((("level", crit_level), ("slope", crit_slope))):
        table = _interval_table(es_est[:, j], es_se[j * m:(j + 1) * m], crit)
        table.insert(0, "event_time", pd.array(events, dtype="Int64"))
        average = _interval_table(es_avg[j:j + 1], es_se[2 * m + j:2 * m + j + 1], pointwise)
        average.insert(0, "event_time", pd.array([pd.NA], dtype="Int64"))
        rows.append(pd.concat([table, average], ignore_index=True).assign(target=target))
    event_study = pd.concat(rows, ignore_index=True)[["target", "event_time", "estimate", "se", "ci_lower", "ci_upper",
                                                       "p_value"]]
    cell_table = pd.DataFrame([(c.group, c.time, c.att, c.acrt, c.n_treated, c.n_control) for c in cells],
                              columns=["group", "time", "att", "acrt", "n_treated", "n_control"])
    used = np.isin(cohort, post_cohorts)
    comparison = cohort == 0 if control_group == "nevertreated" else ~used
    return ContDidResult(
        dose=dose_table, overall=overall, event_study=event_study, cells=cell_table, att_d_crit_val=float(crit_att),
        acrt_d_crit_val=float(crit_acrt), n_treated=int(used.sum()), n_control=int(comparison.sum()), degree=int(degree),
        knots=knots, control_group=control_group, alp=alp, biters=int(biters), overall_inf_func=dose_if[:, 2 * k:],
        unit_ids=panel.unit_ids, notes=notes)


def _interval_table(estimate: np.ndarray, se: np.ndarray, crit: float) -> pd.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = 2 * norm.sf(np.abs(estimate / se))
    return pd.DataFrame({"estimate": estimate, "se": se, "ci_lower": estimate - crit * se,
                         "ci_upper": estimate + crit * se, "p_value": p_value})
