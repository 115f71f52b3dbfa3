"""For whom: Callaway-Sant'Anna effects by pre-programme subgroup, and tests that they differ.

Each subgroup's treated firms are labelled in their last year before support (cluster membership, size
class from employees, prior exporting, region). The comparison firms are matched exactly on the label:

* a label that never changes within a firm (cluster membership, region): the comparison firms with the same
  value, in one ``att_gt`` run (the label then drops out of the covariates);
* a label of a measure that changes over time (prior exporting, size class): for each cohort g, the comparison
  firms whose label **in g's base year** ``g - 1 - anticipation`` (where the plan reads covariates) has the
  subgroup's value, one ``att_gt`` run per cohort (:func:`matched_att_gt`), its cells combined into one result
  for ``aggte``. Read in the base year the label is constant within the cell and drops out of the covariates;
  the others stay. Not matching on it fails where the label is itself a covariate (``exporter`` is constant
  among the subgroup's treated firms, the doubly robust repeated-cross-section regression among them is
  singular), and dropping it from the covariates leaves comparisons that are not matched on prior exporting:
  on the demo's world without any effect, regression to the mean gives z = +7..+10 for firms that did not
  export and -7..-12 for those that did. On a fixed label both ways give the same numbers (tested to 1e-10).

The test of difference uses the influence functions stacked on the union of firms
(``analyses.mechanisms.inference.JointInfluence``), not two separate intervals: subgroups of a time-varying
label share comparison firms (a firm that exported in 2015 but not in 2018 serves both).

The estimate per subgroup is the plan's headline (R ``aggte(type="dynamic", balance_e=H, min_e=0,
max_e=H)``), estimated by ``analyses.did``'s engine.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses.did import aggte, att_gt
from analyses.did.attgt import AttGtResult
from analyses.did.bootstrap import analytic_se
from analyses.did.prepare import PreparedPanel
from analyses.evaluation import EvaluationPlan
from analyses.mechanisms.inference import JointInfluence

#: employees in the last year before support: micro < 10, small 10-49, medium 50+ (EU SME classes;
#: larger firms, rare among supported SMEs, count as medium)
SIZE_CLASSES = ((0, 10, "micro"), (10, 50, "small"), (50, np.inf, "medium"))
SUBGROUPS = ("in_cluster", "size_class", "exported_before", "region")


@dataclass
class Headline:
    """One headline estimate with its influence function on its sample's units."""

    estimate: float
    std_error: float
    inf_func: np.ndarray
    unit_ids: np.ndarray
    n_treated: int
    n_control: int


def _att_gt(sample: pd.DataFrame, outcome: str, idname: str, plan: EvaluationPlan) -> AttGtResult:
    """``att_gt`` with the plan's options on the cells the headline reads (event times 0..H), analytic errors."""
    return att_gt(sample, yname=outcome, tname="year", idname=idname, gname="cohort", xformla=plan.xformla,
                  control_group=plan.control_group, est_method=plan.est_method, base_period=plan.base_period,
                  anticipation=plan.anticipation, bstrap=False, cband=False, alp=plan.alpha,
                  allow_unbalanced_panel=True, random_state=plan.seed,
                  event_window=(0, plan.headline_horizon))  # only the cells the headline reads


def _headline(result: AttGtResult, plan: EvaluationPlan) -> Headline:
    agg = aggte(result, type="dynamic", balance_e=plan.headline_horizon, min_e=0, max_e=plan.headline_horizon,
                bstrap=False, cband=False)
    if not np.isfinite(agg.overall_att):
        raise ValueError("headline not estimable (NaN)")
    return Headline(agg.overall_att, agg.overall_se, agg.overall_inf_func, result.panel.unit_ids, agg.n_treated,
                    agg.n_control)


def cs_headline(sample: pd.DataFrame, outcome: str, idname: str, plan: EvaluationPlan) -> Headline:
    """The plan's headline CS estimate on ``sample`` (columns ``year``, ``cohort``, ``idname``, outcome, covariates).

    Raises ``ValueError`` from the engine when it cannot be estimated (no cohort observed H years, ...).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _headline(_att_gt(sample, outcome, idname, plan), plan)


def matched_headline(sample: pd.DataFrame, outcome: str, idname: str, plan: EvaluationPlan, labels: pd.Series,
                     value: str) -> Headline:
    """The plan's headline for the treated firms labelled ``value``, each cohort compared with the comparison firms
    labelled ``value`` in its base year (:func:`matched_att_gt`; ``labels``: one per row of ``sample``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _headline(matched_att_gt(sample, outcome, idname, plan, labels, value), plan)


def matched_att_gt(sample: pd.DataFrame, outcome: str, idname: str, plan: EvaluationPlan, labels: pd.Series,
                   value: str) -> AttGtResult:
    """ATT(g,t) at event times 0..H of the treated firms labelled ``value`` before support, exact matching per cohort.

    ``labels`` (aligned with ``sample``'s rows) labels every firm-year. The subgroup is the treated firms whose
    last row before support (``year < cohort - anticipation``) is labelled ``value``. For each of its cohorts g
    observed H years (the headline's ``balance_e``; later cohorts could not enter it) one ``att_gt`` runs on g's
    firms of the subgroup and the firms that can serve as its comparisons (never treated; with
    ``notyettreated`` also treated later than g) labelled ``value`` in g's base year ``g - 1 - anticipation``.

    The cells are combined into one ``AttGtResult`` on the union of those firms and the subgroup's treated firms
    of every cohort (they make the cohort shares ``aggte`` weights by): each cell's influence function is
    rescaled from its run's n firms to the union's N (``IF * N / n``: ``estimate - truth ~ mean(IF)`` keeps
    holding), so ``aggte`` and ``JointInfluence`` use it as any other. A firm serving as comparison in several
    runs contributes to each cell it is in, as in one ``att_gt`` run. On a label that never changes the result
    is that of one ``att_gt`` run on the firms labelled ``value`` (the cells are the same 2x2 comparisons).

    A cohort whose run fails (too few matched comparison firms, ...) has its cells reported NaN with the reason in
    ``failed_cells``, so ``aggte`` leaves it out and names it. Raises ``ValueError`` when no cohort can run.
    """
    horizon, a = plan.headline_horizon, plan.anticipation
    firm, year, cohort = sample[idname], sample["year"], sample["cohort"]
    pre_programme = treated_labels(sample, labels, idname, a)
    member = firm.isin(pre_programme.index[pre_programme == value])
    last_year = year.max()
    cohorts = np.sort(cohort[member].unique())
    runs, failed = [], []
    for g in cohorts[last_year - cohorts >= horizon]:
        later = (cohort > g) if plan.control_group == "notyettreated" else False
        matched = firm[(year == g - 1 - a) & labels.eq(value) & ((cohort == 0) | later)]
        if matched.empty:  # att_gt would take the cohort itself as never treated (R's rule), and find no cohort
            failed.append((g, f"no comparison firm labelled {value!r} in {g - 1 - a:g}, the cohort's base year"))
            continue
        try:
            runs.append((g, _att_gt(sample.loc[(member & cohort.eq(g)) | firm.isin(matched)], outcome, idname, plan)))
        except ValueError as error:
            failed.append((g, str(error)))
    if not runs:
        raise ValueError("; ".join(f"cohort {g:g}: {reason}" for g, reason in failed) or
                         f"no cohort of the subgroup is observed {horizon} years after it started")
    return _combine_runs(runs, failed, cohort[member].groupby(firm[member]).first(), horizon)


def _combine_runs(runs: list[tuple[float, AttGtResult]], failed: list[tuple[float, str]], member_cohort: pd.Series,
                  horizon: int) -> AttGtResult:
    """One ``AttGtResult`` from per-cohort runs ``(g, result)``, each giving cohort g's cells, on the union of firms.

    ``member_cohort``: the subgroup's treated firms (index) and their cohorts; cohorts in ``failed`` get NaN cells
    at event times 0..``horizon`` with their reason.
    """
    union = np.unique(np.concatenate([member_cohort.index.to_numpy()] + [run.panel.unit_ids for _, run in runs]))
    n = len(union)
    tlist = np.unique(np.concatenate([run.panel.tlist for _, run in runs]))
    cells: dict[str, list] = {key: [] for key in ("group", "time", "att", "inf_func", "control_units", "n_treated",
                                                  "n_control")}  # per run, on the union's firms
    failed_cells, notes = [], []

    def add(group, time, att, inf_func, control_units, n_treated, n_control):
        for key, value in zip(cells, (group, time, att, inf_func, control_units, n_treated, n_control)):
            cells[key].append(value)

    for g, run in runs:
        own = np.flatnonzero(run.group == g)
        rows = np.searchsorted(union, run.panel.unit_ids)
        inf_func = np.zeros((n, own.size))
        inf_func[rows] = run.inf_func[:, own] * (n / len(rows))
        control_units = np.zeros((n, own.size), dtype=bool)
        control_units[rows] = run.control_units[:, own]
        add(run.group[own], run.time[own], run.att[own], inf_func, control_units, run.n_treated[own],
            run.n_control[own])
        failed_cells += [cell for cell in run.failed_cells if cell[0] == g]
        notes += [f"cohort {g:g}: {note}" for note in run.notes]
    for g, reason in failed:
        times = tlist[(tlist >= g) & (tlist <= g + horizon)].astype(float)
        k = times.size
        add(np.full(k, float(g)), times, np.full(k, np.nan), np.full((n, k), np.nan), np.zeros((n, k), dtype=bool),
            np.zeros(k, dtype=int), np.zeros(k, dtype=int))
        failed_cells += [(g, t, reason) for t in times]
    order = np.lexsort((np.concatenate(cells["time"]), np.concatenate(cells["group"])))  # R's order of the cells
    group, time, att, n_treated, n_control = (np.concatenate(cells[key])[order] for key in
                                              ("group", "time", "att", "n_treated", "n_control"))
    inf_func, control_units = (np.hstack(cells[key])[:, order] for key in ("inf_func", "control_units"))
    first = runs[0][1]
    unit_cohort = member_cohort.reindex(union).fillna(0).to_numpy(dtype=float)
    panel = PreparedPanel(unit_ids=union, unit_cohort=unit_cohort, unit_weight=np.ones(n), tlist=tlist,
                          glist=np.unique(group), design_columns=first.panel.design_columns, balanced=False)
    se = analytic_se(inf_func)
    table = pd.DataFrame({"group": group, "time": time, "att": att, "se": se, "ci_lower": att - first.crit_val * se,
                          "ci_upper": att + first.crit_val * se})
    return AttGtResult(
        table=table, group=group, time=time, att=att, se=se, inf_func=inf_func, n_units=n, W=None, Wpval=None,
        W_df=None, crit_val=first.crit_val, alp=first.alp, cband=False, cband_requested=False, bstrap=False,
        biters=first.biters, control_group=first.control_group, est_method=first.est_method,
        base_period=first.base_period, anticipation=first.anticipation, xformla=first.xformla, panel=panel,
        n_treated=n_treated, n_control=n_control, control_units=control_units, failed_cells=failed_cells, notes=notes)


def _as_label(value) -> str:
    """A subgroup value as text: whole numbers (flags) without decimals, missing as empty."""
    if pd.isna(value):
        return ""
    return str(int(value)) if isinstance(value, (bool, int, float, np.number)) else str(value)


def row_labels(sample: pd.DataFrame, subgroup: str) -> pd.Series:
    """The label ``subgroup`` (one of ``SUBGROUPS``) of every firm-year of ``sample`` (same index), as text.

    ``in_cluster`` and ``exported_before`` (from ``exporter``) are ``"0"``/``"1"``, ``size_class``
    micro/small/medium from ``employees`` (``SIZE_CLASSES``), ``region`` as registered; empty where the value is
    missing. Raises ``ValueError`` for another name or a sample without the column behind it.
    """
    source = {"in_cluster": "in_cluster", "size_class": "employees", "exported_before": "exporter", "region": "region"}
    if subgroup not in source:
        raise ValueError(f"unknown subgroup {subgroup!r}: expected one of {list(SUBGROUPS)}")
    if source[subgroup] not in sample:
        raise ValueError(f"subgroup {subgroup!r} needs the panel column {source[subgroup]!r}, which the sample lacks")
    if subgroup == "size_class":
        employees = sample["employees"].to_numpy(dtype=float)
        size = np.select([(lo <= employees) & (employees < hi) for lo, hi, _ in SIZE_CLASSES],
                         [label for _, _, label in SIZE_CLASSES], "")
        return pd.Series(size, index=sample.index)
    return sample[source[subgroup]].map(_as_label)


def treated_labels(sample: pd.DataFrame, labels: pd.Series, idname: str = "firm_id", anticipation: int = 0) -> pd.Series:
    """Per treated firm (index ``idname``): ``labels`` (one per row of ``sample``) in its last row before support
    (``year < cohort - anticipation``: with anticipation, before the years it may already respond)."""
    before = sample.loc[(sample["cohort"] > 0) & (sample["year"] < sample["cohort"] - anticipation)]
    ordered = before.sort_values([idname, "year"], kind="stable")
    last = pd.Series(ordered.index, index=ordered[idname]).groupby(level=0).last()
    return pd.Series(labels.loc[last.to_numpy()].to_numpy(), index=last.index)


def subgroup_labels(sample: pd.DataFrame, idname: str = "firm_id", anticipation: int = 0) -> pd.DataFrame:
    """One row per treated firm (index ``idname``): ``SUBGROUPS`` labels (:func:`row_labels`) from its last row
    before support (:func:`treated_labels`); ``region`` only when the sample has it."""
    names = [name for name in SUBGROUPS if name != "region" or "region" in sample]
    return pd.DataFrame({name: treated_labels(sample, row_labels(sample, name), idname, anticipation)
                         for name in names})


def subgroup_effects(sample: pd.DataFrame, outcome: str, subgroup: str, plan: EvaluationPlan, idname: str = "firm_id",
                     min_firms: int | None = None) -> tuple[pd.DataFrame, dict, JointInfluence]:
    """Headline effect per value of ``subgroup`` and the Wald test that they are equal.

    Each value's treated firms are compared with comparison firms of the same value: in one run when no firm's
    label changes, else per cohort in its base year (:func:`matched_headline`; module docstring).
    Returns ``(table, test, joint)``: ``table`` has ``subgroup`` (``name=value``), ``estimate, std_error,
    ci_lower, ci_upper, p_value, n_treated, n_control`` (analytic, clustered by firm) and ``reason`` (non-empty
    when the value could not be estimated: fewer than ``min_firms`` treated firms (plan's cohort floor) or
    the engine's error); ``test``: ``wald, df, p_value`` (and ``difference, se, ci_lower, ci_upper`` for two
    values, first minus second in sorted order) over the estimable values, ``{}`` when fewer than two;
    ``joint`` the stacked influence functions. Raises ``ValueError`` for an unknown subgroup.
    """
    from scipy.stats import norm

    own = row_labels(sample, subgroup)
    labels = treated_labels(sample, own, idname, plan.anticipation)
    min_firms = plan.min_cohort_size if min_firms is None else min_firms
    label = sample[idname].map(labels).fillna("")
    fixed = (own.groupby(sample[idname]).nunique(dropna=False) <= 1).all()
    joint, rows = JointInfluence(), []
    z = norm.ppf(1 - plan.alpha / 2)
    for value in sorted(v for v in labels.unique() if v != ""):
        n_firms = int((labels == value).sum())
        row = {"subgroup": f"{subgroup}={value}", "estimate": np.nan, "std_error": np.nan, "ci_lower": np.nan,
               "ci_upper": np.nan, "p_value": np.nan, "n_treated": n_firms, "n_control": 0, "reason": ""}
        if n_firms < min_firms:
            row["reason"] = f"fewer than {min_firms} treated firms ({n_firms})"
        else:
            try:
                if fixed:  # one run on the firms of this value: the same cells as matching per cohort, faster
                    head = cs_headline(sample.loc[(sample["cohort"].eq(0) & own.eq(value)) | label.eq(value)], outcome,
                                       idname, plan)
                else:
                    head = matched_headline(sample, outcome, idname, plan, own, value)
            except ValueError as error:
                row["reason"] = str(error)
            else:
                joint.add(row["subgroup"], head.estimate, head.inf_func, head.unit_ids)
                row.update(estimate=head.estimate, std_error=head.std_error, ci_lower=head.estimate - z * head.std_error,
                           ci_upper=head.estimate + z * head.std_error,
                           p_value=float(2 * norm.sf(abs(head.estimate / head.std_error))),
                           n_treated=head.n_treated, n_control=head.n_control)
        rows.append(row)
    test = joint.wald_equal(plan.alpha) if len(joint.names) >= 2 else {}
    return pd.DataFrame(rows), test, joint
