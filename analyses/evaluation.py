"""Run the evaluation plan on the firm-year panel: one Callaway–Sant'Anna analysis per service.

This is the glue between the panel (``analyses.panel``) and the estimators (``analyses.did``,
``analyses.twfe``). It decides *who is compared with whom*, which is where evaluations of
support programmes usually go wrong:

* treated firms for service ``s`` are the firms whose **first** support episode was ``s``;
  their cohort is the calendar year of that first episode;
* the comparison group is, by default, firms that never received any service
  (``control_group="nevertreated"``), or additionally firms of the same service not yet treated
  (``"notyettreated"``); firms whose first service was a *different* one never serve as
  comparisons for ``s`` (they are contaminated by another treatment);
* covariates are taken as R ``did`` takes them (``covariate_timing="base_period"``, the default):
  on a balanced panel from the earlier year of each comparison, the base period (the year before the
  cohort's start for post-treatment cells), so they describe the firm before its programme; on an
  unbalanced register (R's repeated-cross-section estimators) as observed in each year.
  ``covariate_timing="first_year"`` uses first-panel-year snapshots (``*_first``) instead. A firm-year
  whose covariates are missing (e.g. fewer than three earlier years of customs data for the
  prior-exporting history) cannot be a base period; it is dropped and counted, as R drops it, and
  treated firms without such a year before their programme are left out;
* firms already treated when the data start (support in or before the first year with data) are
  in no cohort and no comparison group, for every service; firms first treated after the last
  year with data are untreated throughout and serve as comparisons (as R ``did`` codes them);
* firm-years whose outcome is missing (years the customs extract does not cover) are dropped
  before estimation, never read as zeros.

Every firm or firm-year set aside is counted with its reason in ``diagnostics["left_out"]``; the
panel builder's account of the input rows travels along as ``diagnostics["panel_account"]``.

Everything is returned as tidy tables so that the report, the warehouse and ``estimates.csv``
share one vocabulary.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
import yaml
from scipy import stats
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from analyses.did import aggte, att_gt
from analyses.panel import (
    BASELINE_COVARIATES,
    FIRST_YEAR_COLUMN,
    LOOKBACK_YEARS,
    NO_SERVICE,
    SERVICES,
    TIME_VARYING_COVARIATES,
    PanelAccount,
)
from analyses.reporting.settings import cohort_floor
from analyses.twfe import twfe_event_study, twfe_static

ESTIMATE_COLUMNS = (
    "treatment",
    "outcome",
    "estimator",
    "aggregation",
    "event_time",
    "estimate",
    "std_error",
    "ci_lower",
    "ci_upper",
    "p_value",
    "n_treated",
    "n_control",
)
#: Outcomes whose average effect has a plain reading. ``log_export_value`` (log of 1 + euros) is in
#: the panel but left out by default: with zeros for non-exporters its DiD mixes entry with sales
#: growth, and reads as implausible percentage changes; export values await PPML.
#: ``starts_exporting`` and ``new_destination`` split ``enters_new_market`` into its two margins.
DEFAULT_OUTCOMES = ("exporter", "n_destinations", "starts_exporting", "new_destination")
#: the covariates a plan uses unless it names its own, per ``covariate_timing``
DEFAULT_COVARIATES = {"base_period": TIME_VARYING_COVARIATES, "first_year": BASELINE_COVARIATES}
#: Power at which the minimum detectable effect is quoted.
POWER = 0.80

# Why a firm of a service's sample is left out of its estimation (``diagnostics["left_out"]``).
REASON_ALREADY_TREATED_FIRMS = "already treated when the data start (support in or before the first year with data)"
REASON_NO_COVERED_YEAR = "no year covered by the customs extract"
REASON_NO_BASELINE = "no year before support started with accounts, customs data and the covariates of the plan"
LEFT_OUT_COLUMNS = ("treatment", "outcome", "reason", "firms", "firm_years")


@dataclass(frozen=True)
class EvaluationPlan:
    """The specification an evaluator commits to before seeing results (pre-registration).

    Load one from YAML with :meth:`from_yaml`; every field has a defensible default.
    """

    services: tuple[str, ...] = SERVICES
    outcomes: tuple[str, ...] = DEFAULT_OUTCOMES
    #: covariate measures (panel columns); empty (None) means ``DEFAULT_COVARIATES[covariate_timing]``
    covariates: tuple[str, ...] | None = None
    #: ``base_period``: as each year stands, read in each comparison's base period (R ``did``);
    #: ``first_year``: each measure's first-panel-year snapshot (``analyses.panel.FIRST_YEAR_COLUMN``)
    covariate_timing: str = "base_period"
    #: look-back window k (years) of the new-market outcomes; the panel must be built with it
    lookback_years: int = LOOKBACK_YEARS
    control_group: str = "nevertreated"
    est_method: str = "dr"
    base_period: str = "varying"
    anticipation: int = 0
    bootstrap_iterations: int = 999
    alpha: float = 0.05
    #: cohorts with fewer firms are left out (they could not be published and destabilise the
    #: propensity model); the exclusion is reported in the diagnostics. Never below the disclosure
    #: minimum (``analyses.reporting.settings.cohort_floor``): a plan cannot publish smaller cohorts.
    min_cohort_size: int = 10
    seed: int = 20240601

    def __post_init__(self) -> None:
        unknown = sorted(set(self.services) - set(SERVICES))
        if unknown:
            raise ValueError(f"evaluation plan: unknown service(s) {unknown}; expected some of {SERVICES}")
        if self.control_group not in ("nevertreated", "notyettreated"):
            raise ValueError(
                f"evaluation plan: control_group must be 'nevertreated' or 'notyettreated', got {self.control_group!r}"
            )
        if self.est_method not in ("dr", "ipw", "reg"):
            raise ValueError(f"evaluation plan: est_method must be 'dr', 'ipw' or 'reg', got {self.est_method!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"evaluation plan: alpha must be in (0, 1), got {self.alpha}")
        if self.covariate_timing not in DEFAULT_COVARIATES:
            raise ValueError(
                f"evaluation plan: covariate_timing must be 'base_period' or 'first_year', got {self.covariate_timing!r}"
            )
        lookback = self.lookback_years
        if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 1:
            raise ValueError(f"evaluation plan: lookback_years must be a whole number of years >= 1, got {lookback!r}")
        if self.covariates is None:
            object.__setattr__(self, "covariates", DEFAULT_COVARIATES[self.covariate_timing])
        self.covariate_columns  # noqa: B018 -- validates the covariates against the timing

    @classmethod
    def from_yaml(cls, path: str | Path) -> EvaluationPlan:
        """Read a plan file; unknown keys are an error so that typos cannot go unnoticed."""
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValueError(f"{path}: unknown evaluation plan key(s) {unknown}; allowed: {sorted(allowed)}")
        coerced = {key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()}
        return cls(**coerced)

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def covariate_columns(self) -> tuple[str, ...]:
        """The panel columns behind ``covariates``: as named, or their first-year snapshots.

        Raises ``ValueError`` for a time-varying measure without a snapshot under ``first_year``.
        """
        if self.covariate_timing == "base_period":
            return tuple(self.covariates)
        no_snapshot = [c for c in self.covariates if c in TIME_VARYING_COVARIATES and c not in FIRST_YEAR_COLUMN]
        if no_snapshot:
            raise ValueError(
                f"evaluation plan: {', '.join(no_snapshot)} has no first-year snapshot (a firm's first year has no "
                f"earlier history); with covariate_timing: first_year use some of {sorted(FIRST_YEAR_COLUMN)}, or "
                "covariate_timing: base_period"
            )
        return tuple(FIRST_YEAR_COLUMN.get(c, c) for c in self.covariates)

    @property
    def xformla(self) -> str | None:
        return "~ " + " + ".join(self.covariate_columns) if self.covariates else None


@dataclass
class EvaluationResult:
    """Tidy outputs of :func:`run_evaluation`: estimates plus the diagnostics the report needs."""

    estimates: pd.DataFrame
    diagnostics: dict[str, pd.DataFrame | dict] = field(default_factory=dict)


def service_sample(panel: pd.DataFrame, service: str, plan: EvaluationPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Firms that can inform the effect of ``service``, with their cohort (0 = comparison).

    A treated firm needs a year before its programme started with accounts, customs data and the
    plan's covariates: its base period. Firms already treated when the data start, and firms that
    enter the register (or the customs data, or get covariates) only once treated, are left out
    and counted. Firm-years whose covariates are missing stay in the sample (``run_evaluation``
    drops and counts them). Returns the sample and a table of every cohort with
    its size, whether it was used and why not.
    """
    classified, sizes = _classify(panel, service, plan)
    sample = classified.loc[classified["left_out"].eq("")].drop(columns="left_out")
    sample["unit"] = pd.factorize(sample["firm_id"])[0] + 1
    return sample, sizes


def _classify(panel: pd.DataFrame, service: str, plan: EvaluationPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the first-``service`` and comparison firms, each with its cohort and ``left_out`` reason
    ("" when used), and the cohort table of :func:`service_sample`.

    The data start and end with the first and last panel years the customs extract covers.
    """
    observed = panel["exports_covered"].eq(1)
    first_year, last_year = int(panel.loc[observed, "year"].min()), int(panel.loc[observed, "year"].max())
    after_data = panel["first_service_year"] > last_year  # untreated in every year with data (R: never treated)
    is_first = panel["first_service"].eq(service) & ~after_data
    sample = panel.loc[is_first | panel["first_service"].eq(NO_SERVICE) | after_data].copy()
    sample["cohort"] = np.where(is_first.loc[sample.index], sample[f"first_{service}_year"], 0).astype(int)
    usable = sample["exports_covered"].eq(1) & covariates_known(sample, plan.covariate_columns)
    entry_year = sample["year"].where(usable).groupby(sample["firm_id"]).transform("min")
    treated = sample["cohort"] > 0
    already = treated & (sample["cohort"] <= first_year + plan.anticipation)
    no_baseline = treated & ~(entry_year <= sample["cohort"] - 1 - plan.anticipation)
    sample["left_out"] = np.select(
        [already, entry_year.isna(), no_baseline],
        [REASON_ALREADY_TREATED_FIRMS, REASON_NO_COVERED_YEAR, REASON_NO_BASELINE],
        default="",
    )

    firms = sample.drop_duplicates("firm_id")
    treated_firms = firms.loc[firms["cohort"] > 0]
    reasons = treated_firms["left_out"]
    sizes = (
        treated_firms.assign(
            already=reasons.eq(REASON_ALREADY_TREATED_FIRMS),
            without=reasons.isin([REASON_NO_COVERED_YEAR, REASON_NO_BASELINE]),
        )
        .groupby("cohort")
        .agg(n_delivered=("firm_id", "size"), n_already_treated=("already", "sum"), n_without_baseline=("without", "sum"))
        .reset_index()
    )
    sizes["n_firms"] = sizes["n_delivered"] - sizes["n_already_treated"] - sizes["n_without_baseline"]
    too_early = sizes["cohort"] <= first_year + plan.anticipation
    too_small = ~too_early & (sizes["n_firms"] < cohort_floor(plan.min_cohort_size))
    sizes["used"] = ~(too_early | too_small)
    small = f"fewer than {cohort_floor(plan.min_cohort_size)} firms"
    sizes["reason"] = np.select(
        [too_early, too_small],
        [f"already treated when the data start ({first_year}): no base period", small],
        default="",
    )
    sizes.insert(0, "treatment", service)
    in_small_cohort = sample["cohort"].isin(sizes.loc[too_small, "cohort"]) & sample["left_out"].eq("")
    sample.loc[in_small_cohort, "left_out"] = f"cohort of {small}"
    columns = ["treatment", "cohort", "n_delivered", "n_already_treated", "n_without_baseline", "n_firms", "used", "reason"]
    return sample, sizes[columns]


def covariates_known(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Rows whose covariates are all finite numbers (what a base period needs).

    Raises ``ValueError`` naming covariates the panel lacks.
    """
    if not columns:
        return pd.Series(True, index=frame.index)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"firm_year_panel lacks covariate column(s) {absent} named in the evaluation plan")
    return pd.Series(np.isfinite(frame[list(columns)].to_numpy(dtype="float64")).all(axis=1), index=frame.index)


def _missing_covariates_reason(rows: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    """Name the covariates missing in each row."""
    missing = ~np.isfinite(rows[list(columns)].to_numpy(dtype="float64"))
    return pd.Series(
        [
            "covariate(s) missing in the year: " + ", ".join(c for c, gap in zip(columns, row) if gap)
            + " (such a year cannot be a base period; dropped, as R did drops it)"
            for row in missing
        ],
        index=rows.index,
    )


def _left_out_rows(rows: pd.DataFrame, service: str, outcome: str, reason: pd.Series | str) -> list[dict]:
    """Firms and firm-years set aside, per reason, in the ``LEFT_OUT_COLUMNS`` vocabulary."""
    grouped = rows.assign(reason=reason).groupby("reason", sort=False)["firm_id"].agg(["nunique", "size"])
    return [
        {"treatment": service, "outcome": outcome, "reason": name, "firms": int(n_firms), "firm_years": int(n_rows)}
        for name, (n_firms, n_rows) in grouped.iterrows()
    ]


def _missing_outcome_reason(rows: pd.DataFrame) -> str:
    """Name the uncovered customs years when they explain every missing outcome."""
    if rows["exports_covered"].eq(0).all():
        years = ", ".join(str(year) for year in sorted(rows["year"].unique()))
        return f"outcome missing: {years} not covered by the customs extract"
    return "outcome missing"


def run_evaluation(
    panel: pd.DataFrame,
    plan: EvaluationPlan | None = None,
    progress: Callable[[str], None] | None = None,
    account: PanelAccount | None = None,
) -> EvaluationResult:
    """Estimate every (service, outcome) pair of the plan; see the module docstring for the design.

    ``account`` (from :func:`analyses.panel.build_firm_year_panel`) is passed through to the
    diagnostics (``panel_account``, ``export_coverage``) so the report can show the whole path.
    """
    plan = plan or EvaluationPlan()
    missing = sorted({*plan.outcomes, *plan.covariate_columns, "exports_covered"} - set(panel.columns))
    if missing:
        raise ValueError(f"firm_year_panel lacks column(s) {missing} named in the evaluation plan")
    if account is not None and account.lookback_years != plan.lookback_years:
        raise ValueError(
            f"firm_year_panel was built with lookback_years={account.lookback_years} but the evaluation plan says "
            f"{plan.lookback_years}: rebuild the panel with the plan's window"
        )
    rows: list[dict] = []
    pretests, balances, overlaps, mdes, cohorts, not_estimable, left_out = [], [], [], [], [], [], []
    for service in plan.services:
        classified, cohort_table = _classify(panel, service, plan)
        cohorts.append(cohort_table)
        excluded = classified["left_out"].ne("")
        left_out += _left_out_rows(classified.loc[excluded], service, "", classified.loc[excluded, "left_out"])
        sample = classified.loc[~excluded].drop(columns="left_out")
        no_covariates = ~covariates_known(sample, plan.covariate_columns)
        if no_covariates.any():
            rows_without = sample.loc[no_covariates]
            left_out += _left_out_rows(rows_without, service, "", _missing_covariates_reason(rows_without, plan.covariate_columns))
            sample = sample.loc[~no_covariates]
        sample["unit"] = pd.factorize(sample["firm_id"])[0] + 1
        n_treated_firms = int(cohort_table.loc[cohort_table["used"], "n_firms"].sum())
        if n_treated_firms == 0:
            if progress:
                progress(f"{service}: no usable treated cohort, skipped")
            continue
        balance, overlap = covariate_balance(_base_period_rows(sample, plan), plan.covariate_columns)
        balances.append(balance.assign(treatment=service))
        overlaps.append(overlap.assign(treatment=service))
        full_sample = sample
        for outcome in plan.outcomes:
            if progress:
                progress(f"{service} × {outcome}: Callaway–Sant'Anna ({plan.est_method}) and TWFE")
            unobserved = full_sample[outcome].isna()
            if unobserved.any():
                dropped = full_sample.loc[unobserved]
                left_out += _left_out_rows(dropped, service, outcome, _missing_outcome_reason(dropped))
            sample = full_sample.loc[~unobserved]
            try:
                result = att_gt(
                    sample,
                    yname=outcome,
                    tname="year",
                    idname="unit",
                    gname="cohort",
                    xformla=plan.xformla,
                    control_group=plan.control_group,
                    est_method=plan.est_method,
                    base_period=plan.base_period,
                    anticipation=plan.anticipation,
                    bstrap=plan.bootstrap_iterations > 0,
                    biters=max(plan.bootstrap_iterations, 1),
                    cband=plan.bootstrap_iterations > 0,
                    alp=plan.alpha,
                    # firms enter and leave the register; a balanced panel takes the panel estimator anyway
                    allow_unbalanced_panel=True,
                    random_state=plan.seed,
                )
                outcome_rows = _cs_rows(result, service, outcome, sample, plan)
                outcome_rows += _twfe_rows(sample, service, outcome, cohort_table, plan)
            except ValueError as error:  # e.g. an outcome constant in the sample, a cell without overlap
                not_estimable.append({"treatment": service, "outcome": outcome, "reason": str(error)})
                if progress:
                    progress(f"{service} × {outcome}: not estimable — {error}")
                continue
            rows.extend(outcome_rows)
            pretests.append(
                {"treatment": service, "outcome": outcome, "W": result.W, "df": result.W_df, "p_value": result.Wpval}
            )
            simple = outcome_rows[0]
            mdes.append(
                {
                    "treatment": service,
                    "outcome": outcome,
                    "aggregation": "simple",
                    "mde": minimum_detectable_effect(simple["std_error"], plan.alpha),
                }
            )
    estimates = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    diagnostics = {
        "pretests": pd.DataFrame(pretests, columns=["treatment", "outcome", "W", "df", "p_value"]),
        "balance": _concat(balances),
        "overlap": _concat(overlaps),
        "mde": pd.DataFrame(mdes, columns=["treatment", "outcome", "aggregation", "mde"]),
        "cohorts": _concat(cohorts),
        "not_estimable": pd.DataFrame(not_estimable, columns=["treatment", "outcome", "reason"]),
        "left_out": pd.DataFrame(left_out, columns=list(LEFT_OUT_COLUMNS)),
        "plan": {
            **plan.to_dict(),
            "panel_years": [int(panel["year"].min()), int(panel["year"].max())],
            "n_firms": int(panel["firm_id"].nunique()),
        },
    }
    if account is not None:
        diagnostics["panel_account"] = account.table
        diagnostics["export_coverage"] = account.coverage
    return EvaluationResult(estimates=estimates, diagnostics=diagnostics)


def minimum_detectable_effect(std_error: float, alpha: float = 0.05, power: float = POWER) -> float:
    """Smallest true effect a two-sided test at ``alpha`` detects with probability ``power``."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * std_error)


def _base_period_rows(sample: pd.DataFrame, plan: EvaluationPlan) -> pd.DataFrame:
    """One row per firm with its covariates as the estimator reads them for post-treatment cells.

    Treated firms: their base year (``cohort - 1 - anticipation``). Comparison firms: the row nearest
    to the treated firms' mean base year (earlier on ties), so both sides are measured at about the
    same time. Treated firms without a row in their base year are left out of this diagnostic.
    """
    base_year = sample["cohort"] - 1 - plan.anticipation
    treated = sample.loc[(sample["cohort"] > 0) & sample["year"].eq(base_year)]
    comparison = sample.loc[sample["cohort"].eq(0)]
    if not treated.empty:
        distance = (comparison["year"] - base_year.loc[treated.index].mean()).abs()
        comparison = comparison.assign(_distance=distance).sort_values(["unit", "_distance", "year"], kind="stable")
    comparison = comparison.drop_duplicates("unit").drop(columns="_distance", errors="ignore")
    return pd.concat([treated, comparison]).sort_values(["unit", "year"], kind="stable")


def covariate_balance(sample: pd.DataFrame, covariates: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Standardised mean differences before/after ATT odds weighting, and propensity overlap.

    Uses one row per firm (the first row of each ``unit``: pass the base-period rows). The propensity score is a logit of
    "ever treated by this service" on the covariates, pooled over cohorts: a diagnostic, not the
    estimator's cell-by-cell model.
    """
    firms = sample.drop_duplicates("unit")
    treated = firms["cohort"].to_numpy() > 0
    x = firms[list(covariates)].astype(float).to_numpy()
    pscore = _logit_pscore(x, treated)
    odds = pscore / (1 - pscore)
    rows = []
    for j, name in enumerate(covariates):
        xt, xc = x[treated, j], x[~treated, j]
        wc = odds[~treated]
        mean_weighted = float(np.average(xc, weights=wc))
        pooled_sd = math.sqrt((xt.var(ddof=1) + xc.var(ddof=1)) / 2) if len(xt) > 1 else float("nan")
        scale = pooled_sd if pooled_sd > 0 else float("nan")
        rows.append(
            {
                "covariate": name,
                "mean_treated": float(xt.mean()),
                "mean_control_unweighted": float(xc.mean()),
                "mean_control_weighted": mean_weighted,
                "smd_unweighted": float((xt.mean() - xc.mean()) / scale),
                "smd_weighted": float((xt.mean() - mean_weighted) / scale),
            }
        )
    edges = np.linspace(0, 1, 21)
    overlap = pd.concat(
        [
            pd.DataFrame(
                {
                    "group": label,
                    "bin_lower": edges[:-1],
                    "bin_upper": edges[1:],
                    "n_firms": np.histogram(pscore[mask], bins=edges)[0],
                }
            )
            for label, mask in (("treated", treated), ("comparison", ~treated))
        ],
        ignore_index=True,
    )
    return pd.DataFrame(rows), overlap


def _logit_pscore(x: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Fitted P(treated | x) from a statsmodels logit; bounded away from 0 and 1 for the weights."""
    design = np.column_stack([np.ones(len(x)), x[:, x.std(axis=0) > 0]])  # constant columns carry nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PerfectSeparationWarning)  # separation shows up as poor overlap
        fitted = sm.GLM(treated.astype(float), design, family=sm.families.Binomial()).fit()
    return np.clip(fitted.predict(design), 1e-6, 1 - 1e-6)


def _cs_rows(result, service, outcome, sample, plan) -> list[dict]:
    """Simple, dynamic, group and calendar rows; ``n_treated`` counts the cohorts behind each row."""
    cohort_size = sample.loc[sample["cohort"] > 0].groupby("cohort")["unit"].nunique()
    cells = pd.DataFrame({"group": result.group, "time": result.time, "att": result.att}).dropna()
    cells["event_time"] = cells["time"] - cells["group"]
    n_control = _n_comparison(sample, plan)
    simple = aggte(result, type="simple")
    post = cells.loc[cells["event_time"] >= 0, "group"].unique()
    rows = [_row(service, outcome, "cs_did", "simple", math.nan, simple.overall_att, simple.overall_se, None, None,
                 int(cohort_size.loc[post].sum()), n_control, plan.alpha)]
    for aggregation, key in (("dynamic", "event_time"), ("group", "group"), ("calendar", "time")):
        agg = aggte(result, type=aggregation)
        calendar_cells = cells.loc[cells["event_time"] >= 0]
        for _, row in agg.table.iterrows():
            position = float(row[key])
            if aggregation == "calendar":
                contributing = calendar_cells.loc[calendar_cells["time"] == position, "group"].unique()
            else:
                contributing = cells.loc[cells[key] == position, "group"].unique()
            rows.append(
                _row(service, outcome, "cs_did", aggregation, position, row["att"], row["se"], row["ci_lower"],
                     row["ci_upper"], int(cohort_size.loc[contributing].sum()), n_control, plan.alpha)
            )
    return rows


def _twfe_rows(sample, service, outcome, cohort_table, plan) -> list[dict]:
    """The two-way fixed-effects comparison the report sets beside Callaway–Sant'Anna."""
    treated = sample.loc[sample["cohort"] > 0]
    firms_at_event_time = treated.assign(e=treated["year"] - treated["cohort"]).groupby("e")["unit"].nunique()
    n_treated = int(cohort_table.loc[cohort_table["used"], "n_firms"].sum())
    n_control = int(sample.loc[sample["cohort"] == 0, "unit"].nunique())
    common = dict(data=sample, yname=outcome, tname="year", idname="unit", gname="cohort")
    static = twfe_static(**common)
    rows = [_row(service, outcome, "twfe", "simple", math.nan, static.att, static.se, None, None, n_treated, n_control,
                 plan.alpha)]
    event_study = twfe_event_study(**common)
    for _, cell in event_study.table.loc[lambda t: t["event_time"] != event_study.ref_e].iterrows():
        e = int(cell["event_time"])
        rows.append(_row(service, outcome, "twfe", "dynamic", float(e), cell["att"], cell["se"], None, None,
                         int(firms_at_event_time.get(e, 0)), n_control, plan.alpha))
    return rows


def _n_comparison(sample: pd.DataFrame, plan: EvaluationPlan) -> int:
    """Firms that serve as comparisons at least once: never-treated, plus later cohorts if not-yet-treated."""
    never = sample.loc[sample["cohort"] == 0, "unit"].nunique()
    if plan.control_group == "nevertreated":
        return int(never)
    later = sample.loc[sample["cohort"] > sample["cohort"].loc[sample["cohort"] > 0].min(), "unit"].nunique()
    return int(never + later)


def _row(service, outcome, estimator, aggregation, event_time, estimate, se, lower, upper, n_treated, n_control,
         alpha) -> dict:
    z = stats.norm.ppf(1 - alpha / 2)
    estimate, se = float(estimate), float(se)
    lower = estimate - z * se if lower is None else float(lower)
    upper = estimate + z * se if upper is None else float(upper)
    p_value = float(2 * stats.norm.sf(abs(estimate / se))) if se > 0 else math.nan
    return {
        "treatment": service,
        "outcome": outcome,
        "estimator": estimator,
        "aggregation": aggregation,
        "event_time": event_time,
        "estimate": estimate,
        "std_error": se,
        "ci_lower": lower,
        "ci_upper": upper,
        "p_value": p_value,
        "n_treated": int(n_treated),
        "n_control": int(n_control),
    }


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
