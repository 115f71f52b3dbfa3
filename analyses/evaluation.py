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
* covariates are time-varying and read in each comparison's base period
  (``covariate_timing="base_period"``, the default): on a balanced panel as R ``did`` reads them, on
  an unbalanced register likewise (``att_gt`` gives every firm of a 2x2 cell its covariates as
  observed in the cell's base period, where R's repeated-cross-section path would read each row's
  own, post-programme exporting included), so for post-programme cells they describe the firm in
  the year before its programme: size, turnover, age, cluster membership, exported in g-1, years
  exported in g-3..g-1. ``covariate_timing="first_year"`` uses first-panel-year snapshots
  (``*_first``) instead. A firm-year whose covariates are missing (e.g. fewer than three years of
  customs data for the exporting history) cannot be a base period; it is dropped and counted, as R
  drops it, and treated firms without such a year before their programme are left out;
* firms already treated when the data start (support in or before the first year with data) are
  in no cohort and no comparison group, for every service; firms first treated after the last
  year with data are untreated throughout and serve as comparisons (as R ``did`` codes them);
* firm-years whose outcome is missing (years the customs extract does not cover) are dropped
  before estimation, never read as zeros.

What is estimated (the ``estimates.csv`` vocabulary is in the README): the headline is the event
study averaged over e = 0..H on the cohorts observed at each of them (R ``aggte(type="dynamic",
balance_e=H, min_e=0, max_e=H)``, ``plan.headline_horizon``), beside it the same without covariates
and TWFE on the same cohorts; R's simple, dynamic, group and calendar aggregations; the event study
with a universal base period for the figures. Cells that cannot be estimated are left out of each
aggregate and listed (``dropped_cells``, ``dropped_cohorts``); what cannot be estimated at all is in
``not_estimable``.

Every firm or firm-year set aside is counted with its reason in ``diagnostics["left_out"]``; the
panel builder's account of the input rows travels along as ``diagnostics["panel_account"]``.

Everything is returned as tidy tables so that the report, the warehouse and ``estimates.csv``
share one vocabulary.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
import yaml
from scipy import stats
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from analyses.did import AggteResult, AttGtResult, aggte, att_gt
from analyses.did.attgt import _ZERO_SE
from analyses.honest_did import event_study_from_aggte, event_study_from_twfe
from analyses.mechanisms.plan import OUTCOME_SETTINGS, FamiliesPlan, list_settings
from analyses.panel import (
    BASELINE_COVARIATES,
    EXPORT_OUTCOMES,
    FIRST_YEAR_COLUMN,
    LOOKBACK_YEARS,
    NO_SERVICE,
    PANEL_OUTCOMES,
    SERVICES,
    TIME_VARYING_COVARIATES,
    PanelAccount,
)
from analyses.reporting.settings import HEADLINE, UNIVERSAL_EVENT_STUDY, cohort_floor
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
#: Outcomes whose average effect has a plain reading. ``starts_exporting`` and ``new_destination`` split
#: ``enters_new_market`` into its two margins.
DEFAULT_OUTCOMES = ("exporter", "n_destinations", "starts_exporting", "new_destination")
#: a panel column that is never an outcome (:meth:`EvaluationPlan._check_outcomes` says why and what instead)
LOG_VALUE_OUTCOME = "log_export_value"
#: the covariates a plan uses unless it names its own, per ``covariate_timing`` (measures; under
#: ``first_year`` they are read from their ``*_first`` columns, ``BASELINE_COVARIATES``)
DEFAULT_COVARIATES = {
    "base_period": TIME_VARYING_COVARIATES,
    "first_year": ("log_employees", "log_turnover", "exporter", "in_cluster", "firm_age"),
}
#: The pre-registered robustness runs of the headline (``analyses.robustness`` says what each changes).
ROBUSTNESS_RUNS = ("anticipation", "comparison_group", "covariate_timing", "dominance", "placebo")
#: Power at which the minimum detectable effect is quoted.
POWER = 0.80

# Why a firm of a service's sample is left out of its estimation (``diagnostics["left_out"]``).
REASON_ALREADY_TREATED_FIRMS = "already treated when the data start (support in or before the first year with data)"
REASON_NO_COVERED_YEAR = "no year covered by the customs extract"
REASON_NO_BASELINE = "no year before support started with accounts, customs data and the covariates of the plan"
LEFT_OUT_COLUMNS = ("treatment", "outcome", "reason", "firms", "firm_years")
COHORT_COLUMNS = ("treatment", "cohort", "n_delivered", "n_already_treated", "n_without_baseline", "n_firms", "used",
                  "reason")
#: What could not be estimated: a whole service (``outcome`` empty), a pair (``estimator`` empty) or one
#: estimator's aggregation.
NOT_ESTIMABLE_COLUMNS = ("treatment", "outcome", "estimator", "aggregation", "reason")
#: ATT(g,t) cells (``cohort``, calendar ``time``) an aggregation left out because they could not be estimated,
#: and cohorts none of whose cells it could use (R ``aggte(..., na.rm=TRUE)``; ``AggteResult.dropped_cells``).
DROPPED_CELL_COLUMNS = ("treatment", "outcome", "estimator", "aggregation", "cohort", "time", "reason")
DROPPED_COHORT_COLUMNS = ("treatment", "outcome", "estimator", "aggregation", "cohort", "n_firms", "reason")
#: Cohorts behind each estimate row (``event_time`` as in ``estimates.csv``): long-run event times rest on few.
SUPPORT_COLUMNS = ("treatment", "outcome", "estimator", "aggregation", "event_time", "n_cohorts")
#: The pre-trend Wald test (R ``att_gt``'s W) and its power against a linear differential trend of
#: ``trend_slope`` per year, the trend that would bias the headline by its MDE (:func:`pretest_trend_slope`).
PRETEST_COLUMNS = ("treatment", "outcome", "W", "df", "p_value", "trend_slope", "power")
#: The event studies of ``cs_did`` (universal base period) and ``twfe`` in HonestDiD's layout
#: (``analyses.honest_did.EventStudy``: every pre-period, post-periods 0..H), for the sensitivity analysis.
EVENT_STUDY_COLUMNS = ("treatment", "outcome", "estimator", "study", "reason")


def read_plan_file(path: str | Path) -> dict:
    """The keys of a YAML plan file, unchecked (``EvaluationPlan.from_mapping`` checks them)."""
    with open(path, encoding="utf-8") as handle:
        try:
            raw = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:  # its text names the line and column
            raise ValueError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an evaluation plan must be a mapping of keys to values, got {type(raw).__name__}")
    return raw


@dataclass(frozen=True)
class EvaluationPlan:
    """The specification an evaluator commits to before seeing results (pre-registration).

    Load one from YAML with :meth:`from_yaml`; every field has a defensible default.
    """

    services: tuple[str, ...] = SERVICES
    outcomes: tuple[str, ...] = DEFAULT_OUTCOMES
    #: covariate measures (panel columns); empty (None) means ``DEFAULT_COVARIATES[covariate_timing]``
    covariates: tuple[str, ...] | None = None
    #: ``base_period``: as each year stands, read in each comparison's base period (``analyses.did``);
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
    #: the headline averages the event study over e = 0..H on the cohorts observed at every one of them
    #: (R ``aggte(type="dynamic", balance_e=H, min_e=0, max_e=H)``), so it does not depend on how long
    #: the panel runs; R's ``simple`` average is kept in ``estimates.csv`` beside it.
    headline_horizon: int = 3
    #: write the linkage table (firm identifier -> pseudonym) of each delivery to the vault (restricted)
    linkage_table: bool = False
    #: mechanism models (``analyses.mechanisms.plan.FamiliesPlan``; a mapping in YAML, defaults when absent)
    families: FamiliesPlan | dict | None = None
    #: sensitivity to violations of parallel trends (Rambachan & Roth 2023, ``analyses.honest_did``): relative
    #: magnitudes Mbar, and smoothness M in outcome units per year squared (empty: 0 to 2 standard errors of
    #: each target in 5 steps, as that target's scale is known only from the estimates)
    sensitivity_mbar: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    sensitivity_m: tuple[float, ...] = ()
    #: the pre-programme years (nearest the start) the sensitivity analysis reads; 0: all of the event study's.
    #: Early event times rest on few, late cohorts: their noise widens the relative-magnitudes bounds
    sensitivity_pre_periods: int = 0
    #: the pre-registered robustness runs of the headline (some of ``ROBUSTNESS_RUNS``; empty: none), the share
    #: of largest exporters the ``dominance`` run drops, and how many years earlier the ``placebo`` starts
    robustness_runs: tuple[str, ...] = ROBUSTNESS_RUNS
    dominance_share: float = 0.01
    placebo_years: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", FamiliesPlan.from_value(self.families))
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
        self._check_outcomes()
        if self.covariates is None:
            object.__setattr__(self, "covariates", DEFAULT_COVARIATES[self.covariate_timing])
        self.covariate_columns  # noqa: B018 -- validates the covariates against the timing
        horizon = self.headline_horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
            raise ValueError(f"evaluation plan: headline_horizon must be a whole number of years >= 0, got {horizon!r}")
        self._check_robustness()

    def _check_outcomes(self) -> None:
        """No DiD on log(1 + euros): with zeros for non-exporters it mixes entry into exporting with changes in
        value and has no proportional reading (issue 10; Chen & Roth 2024 on logs of outcomes with zeros)."""
        lists = {"outcomes": self.outcomes,
                 **{f"families.{name}": getattr(self.families, name) for name in OUTCOME_SETTINGS}}
        for key, outcomes in lists.items():
            if LOG_VALUE_OUTCOME in outcomes:
                raise ValueError(
                    f"evaluation plan: {key} names {LOG_VALUE_OUTCOME!r} (log of 1 + export value in euros), which is "
                    "not an evaluation outcome: with zeros for non-exporters a difference-in-differences on it mixes "
                    "entry into exporting with changes in value and has no proportional reading. Export value is "
                    "estimated by the value family (families: run: [..., value]): staggered Poisson, estimator "
                    "etwfe_poisson, reported as a proportional effect exp(b) - 1, with the extensive margin "
                    "(exporter) and the intensive margin beside it. Remove it from the plan's outcomes."
                )

    def _check_robustness(self) -> None:
        unknown = sorted(set(self.robustness_runs) - set(ROBUSTNESS_RUNS))
        if unknown:
            raise ValueError(f"evaluation plan: unknown robustness run(s) {unknown}; expected some of {ROBUSTNESS_RUNS}")
        if any(not isinstance(m, (int, float)) or isinstance(m, bool) or m < 0
               for m in (*self.sensitivity_mbar, *self.sensitivity_m)):
            raise ValueError("evaluation plan: sensitivity_mbar and sensitivity_m must be lists of numbers >= 0, got "
                             f"{list(self.sensitivity_mbar)} and {list(self.sensitivity_m)}")
        if not 0 < self.dominance_share < 1:
            raise ValueError(f"evaluation plan: dominance_share must be in (0, 1), got {self.dominance_share!r}")
        pre = self.sensitivity_pre_periods
        if isinstance(pre, bool) or not isinstance(pre, int) or pre < 0 or pre == 1:
            raise ValueError(f"evaluation plan: sensitivity_pre_periods must be 0 (all) or a whole number >= 2, got {pre!r}")
        years = self.placebo_years
        if isinstance(years, bool) or not isinstance(years, int) or years < 1:
            raise ValueError(f"evaluation plan: placebo_years must be a whole number of years >= 1, got {years!r}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> EvaluationPlan:
        """Read a plan file; unknown keys are an error so that typos cannot go unnoticed."""
        return cls.from_mapping(read_plan_file(path), source=str(path))

    @classmethod
    def from_mapping(cls, raw: Mapping, source: str = "evaluation plan") -> EvaluationPlan:
        """A plan from its keys (a YAML file's, or run config's); unknown keys are an error naming `source`."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValueError(f"{source}: unknown evaluation plan key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**list_settings(cls, dict(raw)))

    def to_dict(self) -> dict:
        plain = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
        return {**plain, "families": self.families.to_dict()}

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

    def with_covariate_timing(self, timing: str) -> EvaluationPlan:
        """This plan with covariates read by ``timing``: the default covariates become that timing's defaults,
        a plan's own covariates are kept (``ValueError`` from :attr:`covariate_columns` if one has no snapshot)."""
        defaults = tuple(self.covariates) == tuple(DEFAULT_COVARIATES[self.covariate_timing])
        return replace(self, covariate_timing=timing,
                       covariates=DEFAULT_COVARIATES[timing] if defaults else self.covariates)

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
    and counted; so are firm-years whose covariates are missing. Returns the sample (exactly the
    rows :func:`run_evaluation` estimates on) and a table of every cohort with its size, whether it
    was used and why not.
    """
    sample, sizes, _ = _estimation_sample(panel, service, plan)
    return sample, sizes


def _estimation_sample(panel: pd.DataFrame, service: str, plan: EvaluationPlan) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """:func:`service_sample`'s sample and cohort table, plus the ``LEFT_OUT_COLUMNS`` rows of what it left out."""
    classified, sizes = _classify(panel, service, plan)
    excluded = classified["left_out"].ne("")
    left_out = _left_out_rows(classified.loc[excluded], service, "", classified.loc[excluded, "left_out"])
    sample = classified.loc[~excluded].drop(columns="left_out")
    no_covariates = ~covariates_known(sample, plan.covariate_columns)
    if no_covariates.any():
        rows_without = sample.loc[no_covariates]
        reasons = _missing_covariates_reason(rows_without, plan.covariate_columns)
        left_out += _left_out_rows(rows_without, service, "", reasons)
        sample = sample.loc[~no_covariates]
    sample["unit"] = pd.factorize(sample["firm_id"])[0] + 1
    return sample, sizes, left_out


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
    return sample, sizes[list(COHORT_COLUMNS)]


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
    """Name the covariates missing in each row, and the uncovered customs year when that is why."""
    missing = ~np.isfinite(rows[list(columns)].to_numpy(dtype="float64"))
    uncovered = rows["exports_covered"].eq(0).to_numpy()
    return pd.Series(
        [
            "covariate(s) missing in the year: " + ", ".join(c for c, gap in zip(columns, row) if gap)
            + (f" ({year} not covered by the customs extract)" if gap_year else "")
            + " (such a year cannot be a base period; dropped, as R did drops it)"
            for row, year, gap_year in zip(missing, rows["year"], uncovered)
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


def check_plan_fits_panel(panel: pd.DataFrame, plan: EvaluationPlan, account: PanelAccount | None = None) -> None:
    """Raise ``ValueError`` when the plan names a column the panel lacks (headline outcomes, covariates, the
    columns of every family it runs) or another look-back window; the message names the plan's key."""
    outcomes = sorted(c for c in panel.columns if c in {*PANEL_OUTCOMES, *EXPORT_OUTCOMES} - {LOG_VALUE_OUTCOME})
    unknown = {"outcomes": [o for o in plan.outcomes if o not in panel.columns],
               "covariates": [c for c in plan.covariate_columns if c not in panel.columns],
               **{f"families.{key}": names for key, names in plan.families.unknown_columns(panel.columns).items()}}
    for key, names in unknown.items():
        if names:
            known = (f"its outcomes are {outcomes}" if "outcomes" in key
                     else "its columns are listed in data_contracts/DATA_DICTIONARY.md (firm-year panel)")
            raise ValueError(f"evaluation plan: {key} names {names}, which the firm-year panel does not have; {known}")
    if "exports_covered" not in panel.columns:
        raise ValueError("firm_year_panel lacks column 'exports_covered': build it with analyses.panel")
    if account is not None and account.lookback_years != plan.lookback_years:
        raise ValueError(
            f"firm_year_panel was built with lookback_years={account.lookback_years} but the evaluation plan says "
            f"{plan.lookback_years}: rebuild the panel with the plan's window"
        )


def run_evaluation(
    panel: pd.DataFrame,
    plan: EvaluationPlan | None = None,
    progress: Callable[[str], None] | None = None,
    account: PanelAccount | None = None,
    headline_only: bool = False,
) -> EvaluationResult:
    """Estimate every (service, outcome) pair of the plan; see the module docstring for the design.

    ``account`` (from :func:`analyses.panel.build_firm_year_panel`) is passed through to the
    diagnostics (``panel_account``, ``export_coverage``) so the report can show the whole path.
    A service or outcome that cannot be estimated is listed in ``diagnostics["not_estimable"]``
    with the reason, and cells or cohorts left out of an aggregate in ``dropped_cells`` and
    ``dropped_cohorts``; nothing here raises because one part could not be estimated.
    ``headline_only`` estimates only the CS headline of each pair (the robustness runs).
    """
    plan = plan or EvaluationPlan()
    check_plan_fits_panel(panel, plan, account)
    rows: list[dict] = []
    pretests, balances, overlaps, mdes, cohorts, not_estimable, left_out = [], [], [], [], [], [], []
    dropped_cells, dropped_cohorts, support, event_studies = [], [], [], []
    for service in plan.services:
        sample, cohort_table, service_left_out = _estimation_sample(panel, service, plan)
        cohorts.append(cohort_table)
        left_out += service_left_out
        n_treated_firms = int(cohort_table.loc[cohort_table["used"], "n_firms"].sum())
        if n_treated_firms == 0:
            reason = _no_cohort_reason(cohort_table)
            not_estimable.append({"treatment": service, "outcome": "", "estimator": "", "aggregation": "",
                                  "reason": reason})
            if progress:
                progress(f"{service}: {reason}")
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
            pair = _Pair(service, outcome, sample, cohort_table, plan)
            try:
                result = pair.att_gt(plan.xformla, plan.base_period, headline_only)
            except ValueError as error:  # e.g. an outcome constant in the sample
                not_estimable.append({"treatment": service, "outcome": outcome, "estimator": "", "aggregation": "",
                                      "reason": str(error)})
                if progress:
                    progress(f"{service} × {outcome}: not estimable — {error}")
                continue
            pair.estimate_all(result, headline_only)
            rows.extend(pair.rows)
            not_estimable.extend(pair.failures)
            dropped_cells.extend(pair.dropped_cells)
            dropped_cohorts.extend(pair.dropped_cohorts)
            support.extend(pair.support)
            event_studies.extend(pair.event_studies)
            headline = pair.headline_std_error()
            mde = minimum_detectable_effect(headline, plan.alpha)
            slope = pretest_trend_slope(mde, plan.headline_horizon)
            pretests.append({"treatment": service, "outcome": outcome, "W": result.W, "df": result.W_df,
                             "p_value": result.Wpval, "trend_slope": slope,
                             "power": pretest_power(result, slope, plan.alpha)})
            if math.isfinite(mde):
                mdes.append({"treatment": service, "outcome": outcome, "aggregation": HEADLINE, "mde": mde,
                             "baseline_sd": _baseline_sd(sample, outcome)})
    estimates = _typed(pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS)))
    diagnostics = {
        "pretests": pd.DataFrame(pretests, columns=list(PRETEST_COLUMNS)),
        "balance": _concat(balances, ["covariate", "mean_treated", "mean_control_unweighted", "mean_control_weighted",
                                      "smd_unweighted", "smd_weighted", "treatment"]),
        "overlap": _concat(overlaps, ["group", "bin_lower", "bin_upper", "n_firms", "treatment"]),
        "mde": pd.DataFrame(mdes, columns=["treatment", "outcome", "aggregation", "mde", "baseline_sd"]),
        "cohorts": _concat(cohorts, list(COHORT_COLUMNS)),
        "not_estimable": pd.DataFrame(not_estimable, columns=list(NOT_ESTIMABLE_COLUMNS)),
        "dropped_cells": pd.DataFrame(dropped_cells, columns=list(DROPPED_CELL_COLUMNS)),
        "dropped_cohorts": pd.DataFrame(dropped_cohorts, columns=list(DROPPED_COHORT_COLUMNS)),
        "cohorts_behind": pd.DataFrame(support, columns=list(SUPPORT_COLUMNS)),
        "left_out": pd.DataFrame(left_out, columns=list(LEFT_OUT_COLUMNS)),
        "event_studies": pd.DataFrame(event_studies, columns=list(EVENT_STUDY_COLUMNS)),
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


def _no_cohort_reason(cohort_table: pd.DataFrame) -> str:
    """Why a service has no cohort to estimate, from its cohort table (e.g. every cohort below the size floor)."""
    if cohort_table.empty:
        return "no cohort could be estimated: no firm started with this service in the years with data"
    reasons = cohort_table["reason"].replace("", "no usable firms").value_counts(sort=False)
    listed = "; ".join(f"{count} cohort(s): {reason}" for reason, count in reasons.items())
    return f"no cohort could be estimated ({listed})"


def _typed(estimates: pd.DataFrame) -> pd.DataFrame:
    """The estimate columns with their dtypes, also when there is no row (nothing could be estimated)."""
    numeric = list(ESTIMATE_COLUMNS[4:10])
    counts = ["n_treated", "n_control"]
    return estimates.astype({**{c: "float64" for c in numeric}, **{c: "int64" for c in counts},
                             **{c: "object" for c in ESTIMATE_COLUMNS[:4]}})


def _baseline_sd(sample: pd.DataFrame, outcome: str) -> float:
    """Standard deviation of the outcome over firm-years before support (comparison firms: all years)."""
    untreated = (sample["cohort"] == 0) | (sample["year"] < sample["cohort"])
    return float(sample.loc[untreated, outcome].std())


def pretest_trend_slope(mde: float, horizon: int) -> float:
    """Slope per year of the linear differential trend that would bias the headline by ``mde``.

    A gap growing by ``d`` a year from the base period ``g - 1`` biases ATT(g, g + e) by ``d (e + 1)``,
    hence the average over ``e = 0..horizon`` by ``d (horizon + 2) / 2``.
    """
    return 2.0 * mde / (horizon + 2)


def pretest_power(result: AttGtResult, slope: float, alpha: float) -> float:
    """Power of ``att_gt``'s Wald pre-test against a linear differential pre-trend of ``slope`` per period.

    Under that alternative each pre-treatment ATT(g,t) has mean ``slope * (t - b)``, with ``b`` the
    cell's base period (``t - 1`` for a varying base, ``g - anticipation - 1`` for a universal one),
    and the Wald statistic is non-central chi-square with ``n mu' V^-1 mu``, V the covariance of the
    cells' influence functions (the test's own). NaN when the pre-test could not be computed.
    """
    if result.W is None or not math.isfinite(slope):
        return math.nan
    tlist = result.panel.tlist
    pre = (result.group - result.anticipation > result.time) & np.isfinite(result.att)
    pre &= np.all(np.isfinite(result.inf_func), axis=0)
    influence = result.inf_func[:, pre]
    n = influence.shape[0]
    covariance = influence.T @ influence / n
    keep = np.sqrt(np.diag(covariance) / n) > _ZERO_SE
    group, time = result.group[pre][keep], result.time[pre][keep]
    if result.base_period == "varying":
        base = tlist[np.searchsorted(tlist, time) - 1]
    else:
        base = np.array([tlist[tlist + result.anticipation < g].max() for g in group])
    mean = slope * (time - base)
    covariance = covariance[np.ix_(keep, keep)]
    noncentrality = float(n * mean @ np.linalg.solve(covariance, mean))
    critical = stats.chi2.isf(alpha, len(mean))
    return float(stats.ncx2.sf(critical, len(mean), noncentrality)) if noncentrality > 0 else float(alpha)


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


class _Pair:
    """One service and outcome: every estimator and aggregation, with what each left out or could not do."""

    def __init__(self, service: str, outcome: str, sample: pd.DataFrame, cohort_table: pd.DataFrame,
                 plan: EvaluationPlan):
        self.service, self.outcome, self.sample, self.cohort_table, self.plan = service, outcome, sample, cohort_table, plan
        self.cohort_size = sample.loc[sample["cohort"] > 0].groupby("cohort")["unit"].nunique()
        self.n_control = _n_comparison(sample, plan)
        self.rows: list[dict] = []
        self.failures: list[dict] = []
        self.dropped_cells: list[dict] = []
        self.dropped_cohorts: list[dict] = []
        self.support: list[dict] = []
        #: the universal-base event studies (pre-periods, post-periods 0..H) behind the sensitivity analysis
        self.event_studies: list[dict] = []

    def att_gt(self, xformla: str | None, base_period: str, headline_only: bool = False) -> AttGtResult:
        """R ``att_gt`` on the pair's sample; ``headline_only`` estimates just the cells the headline reads
        (e = 0..H, no pre-test): the same estimates and analytic SEs as the full run, six times faster on the
        demo; bootstrap intervals come from their own multiplier draws."""
        plan = self.plan
        return att_gt(
            self.sample, yname=self.outcome, tname="year", idname="unit", gname="cohort", xformla=xformla,
            control_group=plan.control_group, est_method=plan.est_method, base_period=base_period,
            anticipation=plan.anticipation, bstrap=plan.bootstrap_iterations > 0,
            biters=max(plan.bootstrap_iterations, 1), cband=plan.bootstrap_iterations > 0, alp=plan.alpha,
            # firms enter and leave the register; a balanced panel takes the panel estimator anyway
            allow_unbalanced_panel=True, random_state=plan.seed,
            event_window=(0, plan.headline_horizon) if headline_only else None,
        )

    def estimate_all(self, result: AttGtResult, headline_only: bool = False) -> None:
        """R's four aggregations, the headline, the universal-base event study, CS without covariates, TWFE
        (only the CS headline when ``headline_only``)."""
        plan, horizon = self.plan, self.plan.headline_horizon
        if headline_only:
            self.add_cs(result, "cs_did", HEADLINE, type="dynamic", balance_e=horizon, min_e=0, max_e=horizon)
            return
        for aggregation in ("simple", "dynamic", "group", "calendar"):
            self.add_cs(result, "cs_did", aggregation, type=aggregation)
        window = dict(type="dynamic", balance_e=horizon, min_e=0, max_e=horizon)
        self.add_cs(result, "cs_did", HEADLINE, **window)
        for estimator, xformla, base_period, aggregation, options in (
            ("cs_did", plan.xformla, "universal", UNIVERSAL_EVENT_STUDY, dict(type="dynamic")),
            ("cs_did_no_covariates", None, plan.base_period, HEADLINE, window),
        ):
            if (xformla, base_period) == (plan.xformla, plan.base_period):
                other = result  # the plan's own specification: no second run
            else:
                try:
                    with warnings.catch_warnings():  # only the plan's own run's pre-test is reported
                        warnings.filterwarnings("ignore", message="pre-test of parallel trends not computed")
                        other = self.att_gt(xformla, base_period, headline_only=aggregation == HEADLINE)
                except ValueError as error:
                    self.fail(estimator, aggregation, error)
                    continue
            self.add_cs(other, estimator, aggregation, **options)
        try:
            self.add_twfe()
        except ValueError as error:
            self.fail("twfe", "", error)

    def fail(self, estimator: str, aggregation: str, error: Exception) -> None:
        self.failures.append({"treatment": self.service, "outcome": self.outcome, "estimator": estimator,
                              "aggregation": aggregation, "reason": str(error)})

    def add_cs(self, result: AttGtResult, estimator: str, aggregation: str, **options) -> None:
        """Rows of one aggregation; ``n_treated`` counts the firms of the cohorts behind each row."""
        try:
            agg = aggte(result, **options)
        except ValueError as error:
            self.fail(estimator, aggregation, error)
            return
        self._record_dropped(agg, estimator, aggregation)
        if (estimator, aggregation) == ("cs_did", UNIVERSAL_EVENT_STUDY):
            self._keep_event_study(estimator, event_study_from_aggte, agg)
        cells = pd.DataFrame({"group": result.group, "time": result.time, "att": result.att}).dropna()
        cells["event_time"] = cells["time"] - cells["group"]
        if aggregation == HEADLINE:  # R's balance_e: cohorts observed at least H periods after starting
            cells = cells.loc[(cells["time"].max() - cells["group"] >= self.plan.headline_horizon)
                              & cells["event_time"].between(0, self.plan.headline_horizon)]
        if options["type"] == "simple" or aggregation == HEADLINE:
            post = cells.loc[cells["event_time"] >= 0, "group"].unique()
            self._add(estimator, aggregation, math.nan, agg.overall_att, agg.overall_se, None, None, post)
        if agg.table is None:
            return
        column = {"dynamic": "event_time", "group": "group", "calendar": "time"}[options["type"]]
        if options["type"] == "calendar":
            cells = cells.loc[cells["event_time"] >= 0]
        reference = -1.0 - self.plan.anticipation if result.base_period == "universal" else None
        for _, row in agg.table.iterrows():
            position = float(row[column])
            if position == reference:
                continue  # the universal base period: 0 by construction, not an estimate
            behind = cells.loc[cells[column] == position, "group"].unique()
            self._add(estimator, aggregation, position, row["att"], row["se"], row["ci_lower"], row["ci_upper"],
                      behind)

    def _keep_event_study(self, estimator: str, convert: Callable, result) -> None:
        """``EVENT_STUDY_COLUMNS`` record of one estimator's event study (``study`` None and the reason when
        HonestDiD cannot take it, e.g. an event time without an estimate)."""
        try:
            study, reason = convert(result, horizon=self.plan.headline_horizon), ""
        except ValueError as error:
            study, reason = None, str(error)
        self.event_studies.append({"treatment": self.service, "outcome": self.outcome, "estimator": estimator,
                                   "study": study, "reason": reason})

    def _add(self, estimator, aggregation, event_time, estimate, se, lower, upper, cohorts, n_treated=None) -> None:
        n_treated = int(self.cohort_size.loc[cohorts].sum()) if n_treated is None else n_treated
        self.rows.append(_row(self.service, self.outcome, estimator, aggregation, event_time, estimate, se, lower,
                              upper, n_treated, self.n_control if estimator != "twfe" else self._n_never(),
                              self.plan.alpha))
        self.support.append({"treatment": self.service, "outcome": self.outcome, "estimator": estimator,
                             "aggregation": aggregation, "event_time": event_time, "n_cohorts": len(cohorts)})

    def _n_never(self) -> int:
        return int(self.sample.loc[self.sample["cohort"] == 0, "unit"].nunique())

    def _record_dropped(self, agg: AggteResult, estimator: str, aggregation: str) -> None:
        labels = {"treatment": self.service, "outcome": self.outcome, "estimator": estimator, "aggregation": aggregation}
        self.dropped_cells += [{**labels, "cohort": int(cell.group), "time": int(cell.time), "reason": cell.reason}
                               for cell in agg.dropped_cells.itertuples(index=False)]
        self.dropped_cohorts += [{**labels, "cohort": int(c.group), "n_firms": int(c.n_units), "reason": c.reason}
                                 for c in agg.dropped_cohorts.itertuples(index=False)]

    def add_twfe(self) -> None:
        """The two-way fixed-effects comparison: static, event study, and the headline window on its cohorts."""
        sample, horizon = self.sample, self.plan.headline_horizon
        common = dict(yname=self.outcome, tname="year", idname="unit", gname="cohort")
        treated = sample.loc[sample["cohort"] > 0]
        firms_at_event_time = treated.assign(e=treated["year"] - treated["cohort"]).groupby("e")["unit"].nunique()
        used = list(self.cohort_size.index)
        static = twfe_static(sample, **common)
        self._add("twfe", "simple", math.nan, static.att, static.se, None, None, used)
        study = twfe_event_study(sample, **common)
        self._keep_event_study("twfe", event_study_from_twfe, study)
        for _, cell in study.table.loc[lambda t: t["event_time"] != study.ref_e].iterrows():
            e = int(cell["event_time"])
            behind = treated.loc[treated["year"] - treated["cohort"] == e, "cohort"].unique()
            self._add("twfe", "dynamic", float(e), cell["att"], cell["se"], None, None, behind,
                      n_treated=int(firms_at_event_time.get(e, 0)))
        balanced = [g for g in used if g + horizon <= sample["year"].max()]
        if not balanced:
            raise ValueError(f"no cohort is observed {horizon} years after starting, so the headline window "
                             f"0..{horizon} has no estimate")
        study = twfe_event_study(sample.loc[sample["cohort"].isin([0, *balanced])], **common)
        estimated = study.table.loc[study.table["event_time"] != study.ref_e].reset_index(drop=True)
        window = estimated["event_time"].between(0, horizon).to_numpy()
        weights = window / window.sum()
        average, se = float(weights @ estimated["att"]), float(np.sqrt(weights @ study.covariance @ weights))
        self._add("twfe", HEADLINE, math.nan, average, se, None, None, balanced)
        for _, cell in estimated.loc[window].iterrows():
            self._add("twfe", HEADLINE, float(cell["event_time"]), cell["att"], cell["se"], None, None, balanced)

    def headline_std_error(self) -> float:
        """Standard error of the CS headline (NaN when it could not be estimated)."""
        for row in self.rows:
            if (row["estimator"], row["aggregation"]) == ("cs_did", HEADLINE) and math.isnan(row["event_time"]):
                return row["std_error"]
        return math.nan


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


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The frames stacked; with the columns even when there is none (no service could be estimated)."""
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
