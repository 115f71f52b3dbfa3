"""Aggregations of ATT(g,t) into summary parameters (R ``did::aggte``).

Weights are cohort shares ``P(G = g)`` estimated from the units, so every
aggregate's influence function includes the term from estimating those weights
(R's ``wif``) wherever the weights differ across cells.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from analyses.did.attgt import _ZERO_SE, AttGtResult, _method_lines, _whole_numbers_as_int
from analyses.did.bootstrap import analytic_se, multiplier_bootstrap, uniform_critical_value

_KEY_COLUMN = {"dynamic": "event_time", "group": "group", "calendar": "time"}
_TITLES = {"simple": "simple weighted average", "dynamic": "event-study/dynamic aggregation",
           "group": "group/cohort aggregation", "calendar": "calendar time aggregation"}
_APPLIES_TO = {"min_e": ("dynamic",), "max_e": ("simple", "group", "dynamic"), "balance_e": ("dynamic",)}
_DROPPED_CELL_COLUMNS = ["group", "time", "event_time", "reason"]
_DROPPED_COHORT_COLUMNS = ["group", "n_units", "reason"]


def _empty_dropped(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c == "reason" else np.int64) for c in columns})


@dataclass(repr=False)
class AggteResult:
    type: str
    overall_att: float
    overall_se: float
    overall_ci_lower: float
    overall_ci_upper: float
    overall_pvalue: float
    table: pd.DataFrame | None
    crit_val: float
    cband: bool
    bstrap: bool
    alp: float
    n_treated: int  # treated units in the cohorts entering the aggregate
    n_control: int  # units used as comparison in at least one entering cell
    overall_inf_func: np.ndarray
    inf_func: np.ndarray | None  # n_units x rows of table
    source: AttGtResult
    min_e: float = -np.inf
    max_e: float = np.inf
    balance_e: int | None = None
    dropped_cells: pd.DataFrame = field(default_factory=lambda: _empty_dropped(_DROPPED_CELL_COLUMNS))
    dropped_cohorts: pd.DataFrame = field(default_factory=lambda: _empty_dropped(_DROPPED_COHORT_COLUMNS))

    def summary(self) -> str:
        level = int(round(100 * (1 - self.alp)))
        lines = [f"Overall summary of ATT's based on {_TITLES[self.type]}:",
                 f"{'ATT':>10} {'Std. Error':>11}   [{level}% Conf. Int.]   p-value",
                 f"{self.overall_att:>10.4f} {self.overall_se:>11.4f}   [{self.overall_ci_lower:.4f}, "
                 f"{self.overall_ci_upper:.4f}]   {self.overall_pvalue:.4f}",
                 f"Treated units: {self.n_treated},  comparison units: {self.n_control}"]
        lines += [f"Left out, not estimable: cohort {row.group:g} ({row.n_units} units): {row.reason}"
                  for row in self.dropped_cohorts.itertuples(index=False)] + [""]
        if self.table is not None:
            key = _KEY_COLUMN[self.type]
            band = "Simult." if self.cband else "Pointwise"
            lines.append(f"{key:>10} {'Estimate':>10} {'Std. Error':>11}   [{level}% {band} Conf. Band]")
            for row in self.table.itertuples(index=False):
                star = "" if (row.ci_lower <= 0 <= row.ci_upper) or np.isnan(row.se) else " *"
                lines.append(f"{getattr(row, key):>10g} {row.att:>10.4f} {row.se:>11.4f}   "
                             f"[{row.ci_lower:>8.4f}, {row.ci_upper:>8.4f}]{star}")
            lines += ["---", "Signif. codes: `*' confidence band does not cover 0"]
        lines += _method_lines(self.source)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"AggteResult(type={self.type!r}, overall_att={self.overall_att:.6g}, overall_se={self.overall_se:.6g})"


def _weights_influence(keepers, pg_cell, unit_weight, unit_cohort, cell_group):
    """R ``wif``: influence of estimating the cohort shares used as aggregation weights."""
    pg_keep = pg_cell[keepers]
    total = pg_keep.sum()
    centred = unit_weight[:, None] * (unit_cohort[:, None] == cell_group[keepers][None, :]) - pg_keep
    return centred / total - np.outer(centred.sum(axis=1), pg_keep / total**2)


def _combine(inf_func, att, keepers, weights, wif=None):
    combined = inf_func[:, keepers] @ weights
    if wif is not None:
        combined = combined + wif @ att[keepers]
    return combined


def _share_weighted_average(cells, att, inf_func, pg_cell, group, unit_weight, unit_cohort):
    """Cohort-share weighted mean of ATT(g,t) over ``cells`` and its influence function (with R's ``wif``)."""
    weights = pg_cell[cells] / pg_cell[cells].sum()
    wif = _weights_influence(cells, pg_cell, unit_weight, unit_cohort, group)
    return float(att[cells] @ weights), _combine(inf_func, att, cells, weights, wif)


def _applicable_options(type, min_e, max_e, balance_e, cband):
    """R's scope of each option; one that does not apply to ``type`` is named in a warning and reset."""
    given = {"min_e": min_e if min_e != -np.inf else None, "max_e": max_e if max_e != np.inf else None,
             "balance_e": balance_e}
    ignored = {name: value for name, value in given.items() if value is not None and type not in _APPLIES_TO[name]}
    for name, value in ignored.items():
        warnings.warn(f"{name}={value:g} has no effect on type='{type}' (it applies to "
                      f"{' and '.join(_APPLIES_TO[name])} only, as in R); it is ignored", stacklevel=3)
    if cband and type == "simple":
        warnings.warn("cband=True has no effect on type='simple': a single overall effect has no simultaneous "
                      "band", stacklevel=3)
    return (-np.inf if "min_e" in ignored else min_e, np.inf if "max_e" in ignored else max_e,
            None if "balance_e" in ignored else balance_e)


def _dropped(result, type, missing, min_e, max_e, balance_e):
    """NaN cells the aggregation would have used, and cohorts none of whose cells it can use (tidy tables)."""
    group, time = result.group, result.time
    event = time - group
    if type == "dynamic":
        wanted = (event >= min_e) & (event <= max_e)
        if balance_e is not None:
            wanted &= time.max() - group >= balance_e
    else:
        wanted = (group <= time) & (event <= max_e)
    reasons = {(g, t): reason for g, t, reason in result.failed_cells}
    lost = np.flatnonzero(wanted & missing)
    cells = pd.DataFrame({"group": group[lost], "time": time[lost], "event_time": event[lost],
                          "reason": [reasons.get((group[i], time[i]), "ATT(g,t) is NaN") for i in lost]},
                         columns=_DROPPED_CELL_COLUMNS)
    cohorts = [g for g in np.unique(group[lost]) if missing[wanted & (group == g)].all()]
    first_reason = {g: cells.loc[cells.group == g, "reason"].iloc[0] for g in cohorts}
    cohort_table = pd.DataFrame({"group": cohorts,
                                 "n_units": [int(np.sum(result.unit_cohort == g)) for g in cohorts],
                                 "reason": [first_reason[g] for g in cohorts]}, columns=_DROPPED_COHORT_COLUMNS)
    for table in (cells, cohort_table):
        for column in ("group", "time", "event_time"):
            if column in table:
                table[column] = _whole_numbers_as_int(table[column].to_numpy(dtype=float))
    return cells, cohort_table


def _warn_dropped(type, cells, cohorts):
    listed = ", ".join(f"({g:g},{t:g})" for g, t in zip(cells.group, cells.time))
    message = f"aggte(type='{type}'): left out {len(cells)} ATT(g,t) cell(s) that could not be estimated: {listed}"
    if len(cohorts):
        message += (f"; left out cohort(s) {cohorts.group.tolist()} ({int(cohorts.n_units.sum())} treated units) "
                    "entirely")
    warnings.warn(message + "; the weights are renormalised over the estimable cells (see .dropped_cells, "
                  ".dropped_cohorts)", stacklevel=3)


def aggte(
    result: AttGtResult,
    type: str = "group",
    balance_e: int | None = None,
    min_e: float = -np.inf,
    max_e: float = np.inf,
    na_rm: bool = True,
    bstrap: bool | None = None,
    biters: int | None = None,
    cband: bool | None = None,
    alp: float | None = None,
    random_state=None,
) -> AggteResult:
    """Aggregate ATT(g,t) like R ``aggte``: ``simple``, ``dynamic`` (event study), ``group`` or ``calendar``.

    Options apply as in R: ``max_e`` to simple, group and dynamic; ``min_e`` and ``balance_e``
    to dynamic only.  An option given for a type it does not apply to is named in a warning
    and not recorded on the result.  Cells that could not be estimated (NaN ATT(g,t)) are left
    out and the weights renormalised over the estimable cells (``na_rm=True``, the default; a
    deliberate difference from R, whose default stops); the cells and the cohorts left out
    entirely are listed, with the reason, in ``dropped_cells`` and ``dropped_cohorts`` and
    named in a warning.  ``na_rm=False`` raises ``ValueError`` instead, as R's default.
    With ``bstrap`` one multiplier bootstrap serves every row, the overall effect and the
    uniform band (R draws separately for each; same distribution, see ``analyses.did``).
    Standard errors ``<= sqrt(eps) * 10`` are NaN, as in R.
    """
    if type not in _TITLES:
        raise ValueError(f"type must be one of {list(_TITLES)}, got {type!r}")
    if balance_e is not None and (int(balance_e) != balance_e or balance_e < 0):
        raise ValueError(f"balance_e must be a non-negative whole number, got {balance_e}")
    min_e, max_e, balance_e = _applicable_options(type, min_e, max_e, balance_e, cband)
    bstrap = result.bstrap if bstrap is None else bstrap
    biters = result.biters if biters is None else int(biters)
    cband = result.cband_requested if cband is None else cband
    alp = result.alp if alp is None else alp
    rng = np.random.default_rng(random_state) if random_state is not None else result.rng

    group, time, att, inf_func = result.group, result.time, result.att, result.inf_func
    missing = np.isnan(att)
    dropped_cells, dropped_cohorts = _dropped(result, type, missing, min_e, max_e, balance_e)
    if missing.any():
        if not na_rm:
            cells = ", ".join(f"({g:g},{t:g})" for g, t in zip(group[missing], time[missing]))
            raise ValueError(f"ATT(g,t) is NaN for cells {cells} (see result.failed_table); with na_rm=False "
                             "aggte refuses them, as R's default does")
        if len(dropped_cells):
            _warn_dropped(type, dropped_cells, dropped_cohorts)
        group, time, att, inf_func = group[~missing], time[~missing], att[~missing], inf_func[:, ~missing]
    control_units = result.control_units[:, ~missing]
    if not np.any(group <= time):
        raise ValueError("no post-treatment ATT(g,t) cells to aggregate")

    unit_weight, unit_cohort = result.panel.unit_weight, result.panel.unit_cohort
    glist = np.unique(group)
    pg_group = np.array([np.mean(unit_weight * (unit_cohort == g)) for g in glist])
    pg_cell = pg_group[np.searchsorted(glist, group)]
    event = time - group
    in_window = (group <= time) & (event <= max_e)  # R: simple and group keep t <= g + max_e

    rows_att, rows_if, row_keys, row_cells = [], [], [], []

    def add_share_weighted_row(key, cells):
        """A dynamic (event time) or calendar (period) row: cohort-share weighted mean of its cells."""
        row_att, row_if = _share_weighted_average(cells, att, inf_func, pg_cell, group, unit_weight, unit_cohort)
        rows_att.append(row_att)
        rows_if.append(row_if)
        row_keys.append(key)
        row_cells.append(cells)

    if type == "simple":
        keepers = np.flatnonzero(in_window)
        if keepers.size == 0:
            raise ValueError(f"no post-treatment cells with event time <= {max_e}")
        overall_att, overall_if = _share_weighted_average(keepers, att, inf_func, pg_cell, group,
                                                          unit_weight, unit_cohort)
        used_cells = keepers
    elif type == "group":
        lost = set(dropped_cohorts.group)  # only pre-treatment cells of these cohorts could be estimated
        cohorts = np.array([g for g in glist if g not in lost])
        for g in cohorts:
            whichg = np.flatnonzero((group == g) & in_window)
            if whichg.size == 0:
                raise ValueError(f"cohort {g:g} has no post-treatment cell with event time <= {max_e}")
            rows_att.append(att[whichg].mean())
            rows_if.append(_combine(inf_func, att, whichg, np.full(whichg.size, 1.0 / whichg.size)))
            row_keys.append(g)
            row_cells.append(whichg)
        att_g, if_g = np.asarray(rows_att), np.column_stack(rows_if)
        pg_kept = pg_group[np.searchsorted(glist, cohorts)]
        all_groups = np.arange(len(cohorts))
        overall_att = float(att_g @ pg_kept / pg_kept.sum())
        overall_if = _combine(if_g, att_g, all_groups, pg_kept / pg_kept.sum(),
                              _weights_influence(all_groups, pg_kept, unit_weight, unit_cohort, cohorts))
        used_cells = np.concatenate(row_cells)
    elif type == "dynamic":
        include = np.ones(len(group), dtype=bool)
        eseq = np.unique(event)
        if balance_e is not None:
            include = time.max() - group >= balance_e
            eseq = np.unique(event[include])
            first_time = min(result.panel.tlist.min(), glist.min())
            eseq = eseq[(eseq <= balance_e) & (eseq >= balance_e - time.max() + first_time)]
        eseq = eseq[(eseq >= min_e) & (eseq <= max_e)]
        if eseq.size == 0:
            raise ValueError("no event times fall in the requested window (min_e, max_e, balance_e)")
        for e in eseq:
            add_share_weighted_row(e, np.flatnonzero((event == e) & include))
        post = eseq >= 0
        if not post.any():
            raise ValueError("no event time >= 0 in the requested window; the overall effect is undefined")
        att_e, if_e = np.asarray(rows_att), np.column_stack(rows_if)
        overall_att = float(att_e[post].mean())
        overall_if = if_e[:, post].mean(axis=1)
        used_cells = np.concatenate([c for c, p in zip(row_cells, post) if p])
    else:  # calendar
        post_cells = group <= time
        for t1 in np.unique(time[post_cells & (time >= group.min())]):
            add_share_weighted_row(t1, np.flatnonzero((time == t1) & post_cells))
        overall_att = float(np.mean(rows_att))
        overall_if = np.column_stack(rows_if).mean(axis=1)
        used_cells = np.concatenate(row_cells)

    columns = np.column_stack(rows_if + [overall_if]) if rows_if else overall_if[:, None]
    cluster_codes = result.panel.cluster_codes
    se_all = analytic_se(columns, cluster_codes)
    pointwise = norm.ppf(1 - alp / 2)
    crit_val, uniform = pointwise, False
    needs_draws = bstrap or (cband and len(rows_if) > 0)
    if needs_draws:
        boot = multiplier_bootstrap(columns, biters, rng, cluster_codes, result.progress, f"aggte({type}) bootstrap")
        if bstrap:
            se_all = boot.se
        if cband and rows_if:
            crit_val, uniform = uniform_critical_value(boot, slice(0, len(rows_if)), alp)
    se_all = np.where(np.isfinite(se_all) & (se_all > _ZERO_SE), se_all, np.nan)  # R: <= sqrt(eps)*10 is NA
    overall_se = float(se_all[-1])

    table = None
    if rows_if:
        row_att, row_se = np.asarray(rows_att, dtype=float), se_all[:-1]
        table = pd.DataFrame({_KEY_COLUMN[type]: _whole_numbers_as_int(np.asarray(row_keys, dtype=float)), "att": row_att, "se": row_se,
                              "ci_lower": row_att - crit_val * row_se, "ci_upper": row_att + crit_val * row_se})
    treated_cohorts = np.unique(group[used_cells])
    return AggteResult(
        type=type, overall_att=overall_att, overall_se=overall_se,
        overall_ci_lower=overall_att - pointwise * overall_se, overall_ci_upper=overall_att + pointwise * overall_se,
        overall_pvalue=float(2 * norm.sf(abs(overall_att / overall_se))) if overall_se > 0 else np.nan,
        table=table, crit_val=float(crit_val), cband=uniform, bstrap=bool(bstrap), alp=alp,
        n_treated=int(np.isin(unit_cohort, treated_cohorts).sum()),
        n_control=int(control_units[:, used_cells].any(axis=1).sum()),
        overall_inf_func=overall_if, inf_func=columns[:, :-1] if rows_if else None, source=result,
        min_e=min_e, max_e=max_e, balance_e=balance_e, dropped_cells=dropped_cells, dropped_cohorts=dropped_cohorts,
    )
