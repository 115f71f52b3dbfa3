"""Pre-registered robustness runs of the headline: the same evaluation with one choice changed.

Each run is :func:`analyses.evaluation.run_evaluation` on a modified plan or panel, estimating only
the Callaway–Sant'Anna headline (``headline_only``), so it shares every rule of the main run:

* ``anticipation``: ``anticipation`` one year more than the plan's (firms may change course between
  applying and the recorded start date), so the base period is a year earlier;
* ``comparison_group``: not-yet-supported firms join the comparison group (``notyettreated``), or, when
  the plan already uses them, never-supported firms only;
* ``covariate_timing``: the other covariate timing (``first_year`` snapshots against ``base_period``
  values); a plan with the default covariates of its timing takes the default ones of the other;
* ``dominance``: the largest exporters dropped. A firm's size is its average yearly export value over
  the years the customs extract covers before its first support (every covered year for firms never
  supported). Within each group (the firms first supported by each service, the firms never
  supported) the ``dominance_share`` largest (1 %) are dropped, and never fewer than the disclosure
  minimum of 10 firms: a run that differed from the main one by a handful of firms would let a reader
  difference out those firms' effect;
* ``placebo``: every programme start moved ``placebo_years`` (2) years earlier, and supported firms'
  years from their real start on (less any anticipation) dropped, so the fake "effect" is estimated on
  pre-programme years only and is zero if trends are parallel. Its headline averages the fake event
  times ``0..placebo_years - 1 - anticipation``, which lie before the real start.

:func:`run_robustness` returns one table, ``ROBUSTNESS_TABLE_COLUMNS``: the main headline and every
run's, per service and outcome, with the reason when a run could not be estimated.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from analyses.evaluation import EvaluationPlan, run_evaluation
from analyses.panel import NO_SERVICE, SERVICES
from analyses.reporting.settings import HEADLINE, MIN_FIRMS

ROBUSTNESS_TABLE_COLUMNS = ("service", "outcome", "run", "description", "estimate", "std_error", "ci_lower",
                            "ci_upper", "p_value", "n_treated", "n_control", "reason")
MAIN_RUN = "main"


def _other(options: tuple[str, str], current: str) -> str:
    return options[1] if current == options[0] else options[0]


def largest_exporters(panel: pd.DataFrame, share: float, minimum: int = MIN_FIRMS) -> pd.Index:
    """Firm ids of the largest exporters before support, per group of first service (see the module docstring).

    Raises ``ValueError`` when the panel lacks ``export_value_eur``.
    """
    if "export_value_eur" not in panel.columns:
        raise ValueError("firm_year_panel lacks column 'export_value_eur', which the dominance run ranks firms by")
    before = panel["exports_covered"].eq(1) & (
        panel["first_service"].eq(NO_SERVICE) | (panel["year"] < panel["first_service_year"]))
    size = panel.loc[before].groupby("firm_id")["export_value_eur"].mean()
    groups = panel.drop_duplicates("firm_id").set_index("firm_id")["first_service"].reindex(size.index)
    dropped = []
    for _, values in size.groupby(groups):
        count = min(len(values), max(math.ceil(share * len(values)), minimum))
        dropped.append(values.nlargest(count).index)
    return pd.Index(np.concatenate(dropped)) if dropped else pd.Index([])


def placebo_panel(panel: pd.DataFrame, years: int, anticipation: int = 0) -> pd.DataFrame:
    """Supported firms' years before their real start (less ``anticipation``), every start ``years`` earlier."""
    supported = panel["first_service_year"] > 0
    kept = panel.loc[~supported | (panel["year"] < panel["first_service_year"] - anticipation)].copy()
    for column in ["first_service_year", *(f"first_{s}_year" for s in SERVICES)]:
        kept[column] = np.where(kept[column] > 0, kept[column] - years, kept[column])
    return kept


def robustness_variant(run: str, panel: pd.DataFrame, plan: EvaluationPlan) -> tuple[pd.DataFrame, EvaluationPlan, str]:
    """The panel, plan and plain description of one robustness run (a name of ``ROBUSTNESS_RUNS``)."""
    if run == "anticipation":
        changed = replace(plan, anticipation=plan.anticipation + 1)
        return panel, changed, f"programmes may have effects {changed.anticipation} year(s) before their start"
    if run == "comparison_group":
        group = _other(("nevertreated", "notyettreated"), plan.control_group)
        words = {"notyettreated": "firms not yet supported also serve as comparisons",
                 "nevertreated": "only firms never supported serve as comparisons"}
        return panel, replace(plan, control_group=group), words[group]
    if run == "covariate_timing":
        timing = _other(("first_year", "base_period"), plan.covariate_timing)
        words = {"first_year": "covariates as in each firm's first year",
                 "base_period": "covariates as they stood in the year before support (base period)"}
        return panel, plan.with_covariate_timing(timing), words[timing]
    if run == "dominance":
        dropped = largest_exporters(panel, plan.dominance_share)
        return (panel.loc[~panel["firm_id"].isin(dropped)], plan,
                f"the largest exporters dropped ({plan.dominance_share:.0%} of each group, at least {MIN_FIRMS} "
                f"firms; {len(dropped):,} firms in all)")
    if run == "placebo":
        horizon = plan.placebo_years - 1 - plan.anticipation
        if horizon < 0:
            raise ValueError(f"placebo_years ({plan.placebo_years}) must exceed the anticipation "
                             f"({plan.anticipation}) so that the fake start precedes the real one")
        return (placebo_panel(panel, plan.placebo_years, plan.anticipation), replace(plan, headline_horizon=horizon),
                f"programme starts moved {plan.placebo_years} years earlier, on pre-programme years only "
                "(the true effect is zero)")
    raise ValueError(f"unknown robustness run {run!r}")


def _headline(estimates: pd.DataFrame, run: str, description: str) -> pd.DataFrame:
    rows = estimates.loc[estimates["estimator"].eq("cs_did") & estimates["aggregation"].eq(HEADLINE)
                         & estimates["event_time"].isna()]
    return (rows.rename(columns={"treatment": "service"})
            .assign(run=run, description=description, reason="")[list(ROBUSTNESS_TABLE_COLUMNS)])


def _missing(pairs: pd.DataFrame, found: pd.DataFrame, run: str, description: str, reasons: pd.DataFrame) -> list[dict]:
    """Rows for main-run pairs a run could not estimate, with the evaluation's reason."""
    rows = []
    for service, outcome in pairs.itertuples(index=False):
        if ((found["service"] == service) & (found["outcome"] == outcome)).any():
            continue
        hits = reasons.loc[(reasons["treatment"] == service) & reasons["outcome"].isin([outcome, ""])]
        reason = "; ".join(dict.fromkeys(hits["reason"].astype(str))) or "the headline could not be estimated"
        rows.append({"service": service, "outcome": outcome, "run": run, "description": description,
                     "estimate": np.nan, "std_error": np.nan, "ci_lower": np.nan, "ci_upper": np.nan,
                     "p_value": np.nan, "n_treated": 0, "n_control": 0, "reason": reason})
    return rows


def run_robustness(panel: pd.DataFrame, plan: EvaluationPlan, estimates: pd.DataFrame,
                   progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The main headline (from ``estimates``, the main run's ``estimates.csv`` rows) and each of the plan's
    ``robustness_runs`` for the same services and outcomes, as ``ROBUSTNESS_TABLE_COLUMNS``.

    A run that cannot be estimated at all, or for one pair, gets rows with empty estimates and the reason.
    """
    main = _headline(estimates, MAIN_RUN, "the evaluation plan as registered")
    pairs = main[["service", "outcome"]]
    frames, missing = [main], []
    for run in plan.robustness_runs if len(main) else ():  # no headline: nothing to test
        if progress:
            progress(f"robustness run {run}")
        try:
            run_panel, run_plan, description = robustness_variant(run, panel, plan)
            with warnings.catch_warnings():  # cells a run cannot estimate are listed in its not_estimable
                warnings.filterwarnings("ignore", message=r"ATT\(.*could not be estimated")
                warnings.filterwarnings("ignore", message="pre-test of parallel trends not computed")
                result = run_evaluation(run_panel, run_plan, headline_only=True)
        except ValueError as error:
            missing += _missing(pairs, main.iloc[:0], run, run, pd.DataFrame(
                {"treatment": pairs["service"], "outcome": "", "reason": str(error)}))
            continue
        found = _headline(result.estimates, run, description).merge(pairs, on=["service", "outcome"])
        frames.append(found)
        missing += _missing(pairs, found, run, description, result.diagnostics["not_estimable"])
    if missing:
        frames.append(pd.DataFrame(missing, columns=list(ROBUSTNESS_TABLE_COLUMNS)))
    table = pd.concat([frame for frame in frames if not frame.empty] or [main], ignore_index=True)
    order = {name: position for position, name in enumerate((MAIN_RUN, *plan.robustness_runs))}
    table = table.sort_values(["service", "outcome", "run"], key=lambda c: c.map(order) if c.name == "run" else c,
                              kind="stable").reset_index(drop=True)
    numbers = {c: "float64" for c in ("estimate", "std_error", "ci_lower", "ci_upper", "p_value")}
    return table.astype({**numbers, "n_treated": "int64", "n_control": "int64"})
