"""Group-time average treatment effects ATT(g,t) (Callaway & Sant'Anna 2021; R ``did::att_gt``)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from analyses.did.bootstrap import analytic_se, multiplier_bootstrap, uniform_critical_value
from analyses.did.estimators import (
    _GLM_MAXIT,
    NUMERICALLY_ZERO,
    PANEL_ESTIMATORS,
    RC_ESTIMATORS,
    CellEstimationError,
    PropensityScoreWarning,
)
from analyses.did.prepare import PreparedPanel, prepare_panel

_ZERO_SE = np.sqrt(np.finfo(float).eps) * 10  # R did: smaller standard errors are reported as NA


@dataclass(repr=False)
class AttGtResult:
    """ATT(g,t) estimates plus everything ``aggte`` needs (influence functions, cohort shares)."""

    table: pd.DataFrame
    group: np.ndarray
    time: np.ndarray
    att: np.ndarray
    se: np.ndarray
    inf_func: np.ndarray  # n_units x n_cells
    n_units: int
    W: float | None
    Wpval: float | None
    W_df: int | None  # pre-treatment cells in the Wald test
    crit_val: float
    alp: float
    cband: bool  # True when the reported intervals are a uniform (simultaneous) band
    cband_requested: bool
    bstrap: bool
    biters: int
    control_group: str
    est_method: str
    base_period: str
    anticipation: int
    xformla: str | None
    panel: PreparedPanel
    n_treated: np.ndarray  # per cell
    n_control: np.ndarray  # per cell
    control_units: np.ndarray  # n_units x n_cells, True where the unit served as comparison
    failed_cells: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    rng: np.random.Generator | None = None
    progress: bool = False

    @property
    def unit_cohort(self) -> np.ndarray:
        return self.panel.unit_cohort

    @property
    def failed_table(self) -> pd.DataFrame:
        """Cells that could not be estimated (NaN), one row each: ``group, time, event_time, reason``."""
        rows = [(g, t, t - g, reason) for g, t, reason in self.failed_cells]
        table = pd.DataFrame(rows, columns=["group", "time", "event_time", "reason"])
        for column in ("group", "time", "event_time"):
            table[column] = _whole_numbers_as_int(table[column].to_numpy(dtype=float))
        return table

    @property
    def dropped_first_period_units(self) -> int:
        return self.panel.dropped_first_period_units

    def summary(self) -> str:
        level = int(round(100 * (1 - self.alp)))
        band = "Simult." if self.cband else "Pointwise"
        lines = ["Group-Time Average Treatment Effects:",
                 f"{'Group':>7} {'Time':>6} {'ATT(g,t)':>10} {'Std. Error':>11}   [{level}% {band} Conf. Band]"]
        for row in self.table.itertuples(index=False):
            covers_zero = not (row.ci_upper < 0 or row.ci_lower > 0)
            star = "" if covers_zero or np.isnan(row.se) else " *"
            lines.append(f"{row.group:>7g} {row.time:>6g} {row.att:>10.4f} {row.se:>11.4f}   "
                         f"[{row.ci_lower:>8.4f}, {row.ci_upper:>8.4f}]{star}")
        lines += ["---", "Signif. codes: `*' confidence band does not cover 0", ""]
        if self.W is not None:
            lines.append(f"P-value for pre-test of parallel trends assumption:  {self.Wpval:.5f} (W = {self.W:.4f})")
        lines += _method_lines(self)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"AttGtResult({len(self.att)} cells, {self.n_units} units, est_method={self.est_method!r}, "
                f"control_group={self.control_group!r}, W={self.W})")


def _method_lines(result) -> list[str]:
    methods = {"dr": "Doubly Robust", "ipw": "Inverse Probability Weighting", "reg": "Outcome Regression"}
    controls = {"nevertreated": "Never Treated", "notyettreated": "Not Yet Treated"}
    se_kind = f"multiplier bootstrap ({result.biters} draws)" if result.bstrap else "analytic (influence function)"
    return [f"Control Group: {controls[result.control_group]},  Anticipation Periods: {result.anticipation}",
            f"Estimation Method: {methods[result.est_method]},  Standard errors: {se_kind}"]


def _whole_numbers_as_int(values: np.ndarray) -> np.ndarray:
    """Report periods as integers when they are (years), as the input data had them."""
    return values.astype(np.int64) if np.all(values == np.round(values)) else values


def _validate_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _last_pre_period(g, tlist, anticipation):
    idx = np.flatnonzero(tlist + anticipation < g)
    return int(idx[-1]) if idx.size else None


def att_gt(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    xformla: str | None = None,
    control_group: str = "nevertreated",
    est_method: str = "dr",
    base_period: str = "varying",
    anticipation: int = 0,
    weightsname: str | None = None,
    clustervars=None,
    bstrap: bool = True,
    biters: int = 1000,
    cband: bool = True,
    alp: float = 0.05,
    allow_unbalanced_panel: bool = False,
    random_state=None,
    progress: bool = False,
    event_window: tuple[int, int] | None = None,
) -> AttGtResult:
    """Estimate every ATT(g,t) with R ``did`` semantics; see the module docstring of ``analyses.did``.

    ``event_window=(lo, hi)`` estimates only the cells with ``lo <= t - g <= hi`` (not in R): each cell is its
    own 2x2 comparison, so the cells kept are unchanged, and an aggregation that only reads them (the headline,
    ``aggte(type="dynamic", balance_e=H, min_e=0, max_e=H)`` with ``(0, H)``) is too, at a fraction of the cost.
    The pre-test then has no pre-period cells to test.

    With ``anticipation=a`` the cells ``g - a <= t < g`` are measured from period ``g - a - 1``
    and left out of the pre-test (R: from ``t - 1`` under a varying base, and tested) --
    a deliberate difference shared with csdid.
    """
    _validate_choice("control_group", control_group, ("nevertreated", "notyettreated"))
    _validate_choice("est_method", est_method, ("dr", "ipw", "reg"))
    _validate_choice("base_period", base_period, ("varying", "universal"))
    if not (0 < alp < 1):
        raise ValueError(f"alp must lie strictly between 0 and 1, got {alp}")
    if int(anticipation) != anticipation or anticipation < 0:
        raise ValueError(f"anticipation must be a non-negative whole number, got {anticipation}")
    if bstrap and (int(biters) != biters or biters < 2):
        raise ValueError(f"biters must be a whole number >= 2, got {biters}")

    panel = prepare_panel(data, yname, tname, idname, gname, xformla, control_group, anticipation,
                          weightsname, clustervars, allow_unbalanced_panel)
    notes = list(panel.notes)
    tlist, n = panel.tlist, len(panel.unit_ids)
    if len(tlist) == 2 and cband:
        cband = False  # R: with two periods there is one post cell per group, no band needed
    cells = _estimate_cells(panel, control_group, est_method, base_period, anticipation, notes, event_window)
    group, time, att, inf_func, n_treated, n_control, control_units, failed = cells

    se = analytic_se(inf_func, panel.cluster_codes)
    rng = np.random.default_rng(random_state)
    crit_val = norm.ppf(1 - alp / 2)
    uniform = False
    if bstrap:
        boot = multiplier_bootstrap(inf_func, int(biters), rng, panel.cluster_codes, progress, "att_gt bootstrap")
        usable = np.isfinite(se) & (se > _ZERO_SE)
        se = np.where(usable, boot.se, se)
        if cband:
            crit_val, uniform = uniform_critical_value(boot, slice(None), alp)
    se = np.where(np.isfinite(se) & (se > _ZERO_SE), se, np.nan)

    W, Wpval, W_df = _pretest(att, group, time, inf_func, anticipation, base_period, tlist, panel, bstrap)
    table = pd.DataFrame({"group": _whole_numbers_as_int(group), "time": _whole_numbers_as_int(time), "att": att, "se": se,
                          "ci_lower": att - crit_val * se, "ci_upper": att + crit_val * se})
    return AttGtResult(
        table=table, group=group, time=time, att=att, se=se, inf_func=inf_func, n_units=n, W=W, Wpval=Wpval, W_df=W_df,
        crit_val=float(crit_val), alp=alp, cband=uniform, cband_requested=bool(cband), bstrap=bool(bstrap), biters=int(biters),
        control_group=control_group, est_method=est_method, base_period=base_period,
        anticipation=int(anticipation), xformla=xformla, panel=panel, n_treated=n_treated, n_control=n_control,
        control_units=control_units, failed_cells=failed, notes=notes, rng=rng, progress=progress,
    )


def _estimate_cells(panel: PreparedPanel, control_group, est_method, base_period, anticipation, notes,
                    event_window=None):
    """Loop over (g,t) in R's order; each cell is a 2x2 DiD on the units of cohort g and its comparisons."""
    tlist, glist, cohort = panel.tlist, panel.glist, panel.unit_cohort
    n = len(panel.unit_ids)
    varying = base_period == "varying"
    tfac = 1 if varying else 0
    n_time_cells = len(tlist) - tfac
    columns, groups, times, atts, n_treated, n_control, control_cols, failed = [], [], [], [], [], [], [], []
    log = _CellLog()
    pscore_cells: dict[str, list[str]] = {"numerically 0": [], "did not converge": []}
    for g in glist:
        pre_g = _last_pre_period(g, tlist, anticipation)
        if pre_g is None:
            continue  # prepare_panel already dropped such cohorts
        treated_units = cohort == g
        for t_i in range(n_time_cells):
            t_idx = t_i + tfac
            if event_window is not None and not event_window[0] <= tlist[t_idx] - g <= event_window[1]:
                continue
            base = t_i if varying else pre_g
            if g - anticipation <= tlist[t_idx]:
                base = pre_g
            groups.append(g)
            times.append(tlist[t_idx])
            if not varying and base == t_idx:  # universal base period itself: ATT 0 by construction
                atts.append(0.0)
                columns.append(np.zeros(n))
                n_treated.append(int(treated_units.sum()))
                n_control.append(0)
                control_cols.append(np.zeros(n, dtype=bool))
                continue
            if control_group == "nevertreated":
                controls = cohort == 0
            else:
                threshold = tlist[max(t_i, base) + tfac] + anticipation
                controls = (cohort == 0) | ((cohort > threshold) & (cohort != g))
            cell_function = _panel_cell if panel.balanced else _unbalanced_cell
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", PropensityScoreWarning)
                    att, column = cell_function(panel, treated_units, controls, t_idx, base, est_method,
                                                log)
                _sort_warnings(caught, pscore_cells, f"ATT({g:g},{tlist[t_idx]:g})")
            except CellEstimationError as error:
                message = f"ATT({g:g},{tlist[t_idx]:g}) could not be estimated: {error}; it is reported as NaN"
                warnings.warn(message, stacklevel=3)
                notes.append(message)
                failed.append((g, tlist[t_idx], str(error)))
                att, column = np.nan, np.full(n, np.nan)
            atts.append(att)
            columns.append(column)
            n_treated.append(int(treated_units.sum()))
            n_control.append(int(controls.sum()))
            control_cols.append(controls)
    messages = []
    if log.constant_columns:
        messages.append(f"covariate column(s) {sorted(log.constant_columns)} are constant within some (g,t) cells and "
                        "were dropped there (they are collinear with the intercept, so estimates are unchanged)")
    if pscore_cells["numerically 0"]:
        messages.append(f"propensity score numerically 0 (< {NUMERICALLY_ZERO:g}) for some comparison units in "
                        f"{', '.join(pscore_cells['numerically 0'])}: the covariates (nearly) separate them from the "
                        "treated cohort, so they get no weight; as R's glm, the logit stops at its convergence "
                        "tolerance and the estimate is finite")
    if pscore_cells["did not converge"]:
        messages.append(f"propensity-score logit did not converge in {_GLM_MAXIT} iterations (R glm's limit) in "
                        f"{', '.join(pscore_cells['did not converge'])}; as in R, the last iterate is used")
    for message in messages:
        warnings.warn(message, stacklevel=3)
        notes.append(message)
    if log.left_base:  # by design (see _unbalanced_cell), so a note rather than a warning
        notes.append(f"{len(log.left_base)} unit(s) not observed in the cell's base period left some (g,t) cells: "
                     "with covariates that vary over time their pre-treatment covariates are unknown there")
    return (np.asarray(groups, dtype=float), np.asarray(times, dtype=float), np.asarray(atts, dtype=float),
            np.column_stack(columns), np.asarray(n_treated), np.asarray(n_control),
            np.column_stack(control_cols), failed)


@dataclass
class _CellLog:
    """What the cells set aside: covariates constant within a cell, units without a base-period row."""

    constant_columns: set = field(default_factory=set)
    left_base: set = field(default_factory=set)


def _sort_warnings(caught, pscore_cells, cell: str) -> None:
    """Collect a cell's propensity-score diagnostics for one summary warning; pass other warnings on."""
    for item in caught:
        if issubclass(item.category, PropensityScoreWarning):
            pscore_cells[str(item.message)].append(cell)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _cell_design(design: np.ndarray, names: list[str], dropped: set[str]) -> np.ndarray:
    """Drop non-intercept columns that are constant in this cell (collinear with the intercept)."""
    if design.shape[1] == 1:
        return design
    constant = np.ptp(design, axis=0) == 0
    constant[0] = False  # column 0 is the intercept
    if constant.any():
        dropped.update(name for name, flag in zip(names, constant) if flag)
        return design[:, ~constant]
    return design


def _panel_cell(panel, treated_units, controls, t_idx, base, est_method, log):
    members = treated_units | controls
    n, n_cell = len(members), int(members.sum())
    if not treated_units.any() or not controls.any():
        raise CellEstimationError("no treated or no comparison units")
    earlier = min(t_idx, base)
    design = _cell_design(panel.design_wide[earlier][members], panel.design_columns, log.constant_columns)
    att, inf = PANEL_ESTIMATORS[est_method](
        panel.outcome_wide[members, t_idx], panel.outcome_wide[members, base],
        treated_units[members].astype(float), design, panel.weight_wide[members, earlier])
    column = np.zeros(n)
    column[members] = (n / n_cell) * inf
    return att, column


def _unbalanced_cell(panel, treated_units, controls, t_idx, base, est_method, log):
    """R's repeated-cross-section 2x2 on the rows of periods ``t_idx`` and ``base``, covariates from the earlier.

    Every unit's covariates are those of its row in the cell's earlier period (the base period of a
    post-treatment cell), as the panel path reads them; R reads each row's own, and a covariate that
    responds to treatment (prior exporting) then carries post-treatment values into the cell. A unit
    not observed in that period has no pre-treatment covariates and leaves the cell: its own later
    row would be post-treatment for a treated unit and measured at another time for a comparison
    one, so conditioning on it would not be conditioning on the base period. When no covariate
    varies within a unit, every row's covariates are its base-period ones and R's rows are kept.
    """
    members = treated_units | controls
    rows = ((panel.row_period == t_idx) | (panel.row_period == base)) & members[panel.row_unit]
    earlier = min(t_idx, base)
    if panel.covariates_vary:
        in_base = panel.row_index[:, earlier] >= 0
        left = rows & ~in_base[panel.row_unit]
        log.left_base.update(panel.row_unit[left].tolist())
        rows &= ~left
    unit = panel.row_unit[rows]
    treated = treated_units[unit].astype(float)
    post = (panel.row_period[rows] == t_idx).astype(float)
    if min(np.sum(treated * post), np.sum(treated * (1 - post)),
           np.sum((1 - treated) * post), np.sum((1 - treated) * (1 - post))) == 0:
        raise CellEstimationError("no treated or no comparison units observed in one of the two periods")
    design_rows = panel.row_index[unit, earlier] if panel.covariates_vary else np.flatnonzero(rows)
    design = _cell_design(panel.row_design[design_rows], panel.design_columns, log.constant_columns)
    att, inf = RC_ESTIMATORS[est_method](panel.row_outcome[rows], post, treated, design, panel.row_weight[rows])
    n = len(panel.unit_ids)
    column = np.bincount(unit, weights=(n / len(unit)) * inf, minlength=n)
    return att, column


def _pretest(att, group, time, inf_func, anticipation, base_period, tlist, panel, bstrap):
    """Wald pre-test of parallel trends on pre-treatment cells, with the analytic covariance (R did)."""
    if panel.cluster_codes is not None and bstrap:
        return None, None, None  # R: analytic V ignores between-cluster correlation under a clustered bootstrap
    n = inf_func.shape[0]
    pre = np.flatnonzero(group - anticipation > time)
    finite = np.all(np.isfinite(inf_func[:, pre]), axis=0) if pre.size else np.array([], dtype=bool)
    pre = pre[finite]
    if pre.size == 0:
        return None, None, None
    if panel.cluster_codes is not None:
        sums = np.zeros((panel.cluster_codes.max() + 1, len(pre)))
        np.add.at(sums, panel.cluster_codes, inf_func[:, pre])
        V = sums.T @ sums / n
    else:
        V = inf_func[:, pre].T @ inf_func[:, pre] / n
    keep = np.sqrt(np.diag(V) / n) > _ZERO_SE
    pre, V = pre[keep], V[np.ix_(keep, keep)]
    if pre.size == 0:
        return None, None, None
    if 1.0 / np.linalg.cond(V, 1) <= np.finfo(float).eps:
        warnings.warn("pre-test of parallel trends not computed: singular covariance matrix", stacklevel=3)
        return None, None, None
    W = float(n * att[pre] @ np.linalg.solve(V, att[pre]))
    return W, round(float(1.0 - chi2.cdf(W, pre.size)), 5), int(pre.size)
