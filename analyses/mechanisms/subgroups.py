"""For whom: Callaway-Sant'Anna effects by pre-programme subgroup, and tests that they differ.

Each subgroup's treated firms are labelled in their last year before support (cluster membership, size
class from employees, prior exporting, region). For a firm attribute that never changes (cluster
membership, region) the comparison firms are those with the same value (exact matching; the attribute then
drops out of the propensity model). For a label measured before support (size class, prior exporting) the
**whole** comparison group of the service is used with the plan's covariates, so the doubly robust
reweighting matches comparisons to the subgroup; those subgroup estimates share comparison firms and are
correlated. Either way the test of difference uses the influence functions stacked on the union of firms
(``analyses.mechanisms.inference.JointInfluence``), not two separate intervals.

The estimate per subgroup is the plan's headline (R ``aggte(type="dynamic", balance_e=H, min_e=0,
max_e=H)``), estimated by ``analyses.did``'s engine.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyses.did import aggte, att_gt
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


def cs_headline(sample: pd.DataFrame, outcome: str, idname: str, plan: EvaluationPlan) -> Headline:
    """The plan's headline CS estimate on ``sample`` (columns ``year``, ``cohort``, ``idname``, outcome, covariates).

    Raises ``ValueError`` from the engine when it cannot be estimated (no cohort observed H years, ...).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = att_gt(sample, yname=outcome, tname="year", idname=idname, gname="cohort", xformla=plan.xformla,
                        control_group=plan.control_group, est_method=plan.est_method, base_period=plan.base_period,
                        anticipation=plan.anticipation, bstrap=False, cband=False, alp=plan.alpha,
                        allow_unbalanced_panel=True, random_state=plan.seed,
                        event_window=(0, plan.headline_horizon))  # only the cells the headline reads
        agg = aggte(result, type="dynamic", balance_e=plan.headline_horizon, min_e=0, max_e=plan.headline_horizon,
                    bstrap=False, cband=False)
    if not np.isfinite(agg.overall_att):
        raise ValueError("headline not estimable (NaN)")
    return Headline(agg.overall_att, agg.overall_se, agg.overall_inf_func, result.panel.unit_ids, agg.n_treated,
                    agg.n_control)


def _as_label(value) -> str:
    """A subgroup value as text: whole numbers (flags) without decimals, missing as empty."""
    if pd.isna(value):
        return ""
    return str(int(value)) if isinstance(value, (bool, int, float, np.number)) else str(value)


def subgroup_labels(sample: pd.DataFrame, idname: str = "firm_id") -> pd.DataFrame:
    """One row per treated firm (index ``idname``): ``SUBGROUPS`` labels from its last row before support.

    ``in_cluster`` and ``exported_before`` are ``"0"``/``"1"``, ``size_class`` micro/small/medium from
    ``employees``, ``region`` as registered; empty where the pre-programme value is missing.
    """
    before = sample.loc[(sample["cohort"] > 0) & (sample["year"] < sample["cohort"])]
    last = before.sort_values([idname, "year"], kind="stable").groupby(idname).last()
    employees = last["employees"].to_numpy(dtype=float)
    size = np.select([(lo <= employees) & (employees < hi) for lo, hi, _ in SIZE_CLASSES],
                     [label for _, _, label in SIZE_CLASSES], "")

    labels = pd.DataFrame({"in_cluster": last["in_cluster"].map(_as_label), "size_class": size,
                           "exported_before": last["exporter"].map(_as_label)}, index=last.index)
    if "region" in last:
        labels["region"] = last["region"].astype(str)
    return labels


def subgroup_effects(sample: pd.DataFrame, outcome: str, subgroup: str, plan: EvaluationPlan, idname: str = "firm_id",
                     min_firms: int | None = None) -> tuple[pd.DataFrame, dict, JointInfluence]:
    """Headline effect per value of ``subgroup`` and the Wald test that they are equal.

    Returns ``(table, test, joint)``: ``table`` has ``subgroup`` (``name=value``), ``estimate, std_error,
    ci_lower, ci_upper, p_value, n_treated, n_control`` (analytic, clustered by firm) and ``reason`` (non-empty
    when the value could not be estimated: fewer than ``min_firms`` treated firms (plan's cohort floor) or
    the engine's error); ``test``: ``wald, df, p_value`` (and ``difference, se, ci_lower, ci_upper`` for two
    values, first minus second in sorted order) over the estimable values, ``{}`` when fewer than two;
    ``joint`` the stacked influence functions.
    """
    from scipy.stats import norm

    labels = subgroup_labels(sample, idname)
    if subgroup not in labels:
        raise ValueError(f"unknown subgroup {subgroup!r}: expected one of {list(labels.columns)}")
    min_firms = plan.min_cohort_size if min_firms is None else min_firms
    label = sample[idname].map(labels[subgroup]).fillna("")
    comparison = sample["cohort"] == 0
    fixed = subgroup in sample and (sample.groupby(idname)[subgroup].nunique(dropna=False) <= 1).all()
    if fixed:  # a firm attribute that never changes: compare like with like (exact matching on it)
        own = sample[subgroup].map(_as_label)
    joint, rows = JointInfluence(), []
    z = norm.ppf(1 - plan.alpha / 2)
    for value in sorted(v for v in labels[subgroup].unique() if v != ""):
        mine = sample.loc[((comparison & own.eq(value)) if fixed else comparison) | (label == value)]
        n_firms = int((labels[subgroup] == value).sum())
        row = {"subgroup": f"{subgroup}={value}", "estimate": np.nan, "std_error": np.nan, "ci_lower": np.nan,
               "ci_upper": np.nan, "p_value": np.nan, "n_treated": n_firms, "n_control": 0, "reason": ""}
        if n_firms < min_firms:
            row["reason"] = f"fewer than {min_firms} treated firms ({n_firms})"
        else:
            try:
                head = cs_headline(mine, outcome, idname, plan)
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
