"""Run each pre-registered mechanism family on the firm-year panel; rows in the ``estimates.csv`` vocabulary.

Every family returns a :class:`FamilyResult`: ``rows`` (``MECHANISM_COLUMNS``: ``ESTIMATE_COLUMNS`` plus
``subgroup``, ``dose``, ``p_value_adjusted``, ``family``), the specifications it ran, those it could not
estimate with the reason, and the seconds it took. Who is compared with whom follows
``analyses.evaluation.service_sample`` (first service, never-served comparisons by default).

Multiple testing: each family's summary rows (``aggregation`` ``dynamic_balanced`` / ``simple`` /
``dose_level`` / ``dose_slope`` with empty ``event_time`` and ``dose``) are its tested hypotheses. Their
``p_value_adjusted`` is Romano-Wolf from one joint multiplier bootstrap over the family's influence
functions (one multiplier per firm), or Holm where no influence functions exist (extended TWFE, Wald tests
of subgroup differences). Other rows (curves, event times) leave it empty.

Values of ``estimator`` and ``aggregation`` (documented in the README):

* ``cs_dose`` (``analyses.mechanisms.dose.cont_did``): ``dose_level`` ATT(d) at ``dose`` (empty ``dose`` =
  ATT^o), ``dose_slope`` ACRT(d) (empty = ACRT^o), ``eventstudy_level``/``eventstudy_slope`` by
  ``event_time`` (empty = average over e >= 0); curve intervals are uniform bands;
* ``cs_did`` with ``dynamic_balanced`` (the headline) for subgroups (``subgroup`` = ``name=value``),
  markets, bundles (``treatment`` = ``advisory+grant``), sequences (``treatment`` = ``advisory>network``:
  adding network after starting with advisory) and persistence; ``subgroup_difference`` rows carry the
  Wald test that a subgroup's values differ (``subgroup`` = its name; ``estimate`` the difference for two
  values, empty for more);
* ``etwfe_poisson`` (export value, proportional effect ``exp(b) - 1`` style: ``sum mu1 / sum mu0 - 1``),
  ``etwfe_ols`` on ``exporter`` (extensive margin, percentage points) and on ``log_export_value_if_exporting``
  (intensive margin among exporting firm-years: conditional on exporting, so descriptive, not causal);
  aggregations ``simple`` and ``dynamic`` (R ``etwfe::emfx`` types simple and event).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import norm

from analyses.evaluation import ESTIMATE_COLUMNS, EvaluationPlan, service_sample
from analyses.mechanisms.dose import GRID_SIZE, cont_did
from analyses.mechanisms.etwfe import emfx, etwfe
from analyses.mechanisms.inference import JointInfluence, holm, romano_wolf
from analyses.mechanisms.outcomes import add_persistence_outcomes, bundle_starts
from analyses.mechanisms.subgroups import cs_headline, subgroup_effects
from analyses.panel import NO_SERVICE, SERVICE_DOSE_COLUMN
from analyses.reporting.settings import HEADLINE, MECHANISM_EXTRA_COLUMNS, cohort_floor

MECHANISM_COLUMNS = (*ESTIMATE_COLUMNS, *MECHANISM_EXTRA_COLUMNS)
NOT_ESTIMABLE_COLUMNS = ("family", "specification", "reason")
SUMMARY_AGGREGATIONS = (HEADLINE, "simple", "dose_level", "dose_slope")


@dataclass
class FamilyResult:
    family: str
    rows: pd.DataFrame
    specifications: list[str] = field(default_factory=list)
    not_estimable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(NOT_ESTIMABLE_COLUMNS)))
    seconds: float = 0.0


class _Collector:
    """Rows, specifications, failures and influence functions of one family."""

    def __init__(self, family: str, plan: EvaluationPlan):
        self.family, self.plan = family, plan
        self.rows: list[dict] = []
        self.specs: list[str] = []
        self.failed: list[dict] = []
        self.joint = JointInfluence()
        self.joint_rows: list[int] = []
        self.z = norm.ppf(1 - plan.alpha / 2)

    def row(self, treatment, outcome, estimator, aggregation, estimate, se, n_treated, n_control, *, event_time=np.nan,
            lower=None, upper=None, p_value=None, subgroup="", dose=np.nan, inf_func=None, unit_ids=None) -> None:
        estimate, se = float(estimate), float(se)
        if p_value is None:
            p_value = float(2 * norm.sf(abs(estimate / se))) if se > 0 else np.nan
        self.rows.append({
            "treatment": treatment, "outcome": outcome, "estimator": estimator, "aggregation": aggregation,
            "event_time": event_time, "estimate": estimate, "std_error": se,
            "ci_lower": estimate - self.z * se if lower is None else lower,
            "ci_upper": estimate + self.z * se if upper is None else upper,
            "p_value": p_value, "n_treated": int(n_treated), "n_control": int(n_control), "subgroup": subgroup,
            "dose": dose, "p_value_adjusted": np.nan, "family": self.family})
        if inf_func is not None:
            self.joint.add(str(len(self.rows) - 1), estimate, inf_func, unit_ids)
            self.joint_rows.append(len(self.rows) - 1)

    def begin(self, specification: str, sample) -> bool:
        """Record a specification; ``False`` (and the reason) when its service has no cohort to estimate."""
        self.specs.append(specification)
        if sample is None:
            self.fail(specification, "no cohort could be estimated")
        return sample is not None

    def fail(self, specification: str, error) -> None:
        self.failed.append({"family": self.family, "specification": specification, "reason": str(error)})

    def headline(self, sample, treatment, outcome, plan=None, subgroup="") -> None:
        spec = f"{treatment} × {outcome}"
        self.specs.append(spec)
        try:
            head = cs_headline(usable_cohorts(sample, plan or self.plan), outcome, "firm_id", plan or self.plan)
        except ValueError as error:
            self.fail(spec, error)
            return
        self.row(treatment, outcome, "cs_did", HEADLINE, head.estimate, head.std_error, head.n_treated, head.n_control,
                 subgroup=subgroup, inf_func=head.inf_func, unit_ids=head.unit_ids)

    def result(self, started: float) -> FamilyResult:
        rows = pd.DataFrame(self.rows, columns=list(MECHANISM_COLUMNS))
        if self.joint_rows:
            if self.plan.bootstrap_iterations > 0:
                t_obs, t_draws, _ = self.joint.bootstrap_t(self.plan.bootstrap_iterations,
                                                           np.random.default_rng(self.plan.seed))
                rows.loc[self.joint_rows, "p_value_adjusted"] = romano_wolf(t_obs, t_draws)
            else:
                rows.loc[self.joint_rows, "p_value_adjusted"] = holm(rows.loc[self.joint_rows, "p_value"].to_numpy())
        return FamilyResult(self.family, rows, self.specs,
                            pd.DataFrame(self.failed, columns=list(NOT_ESTIMABLE_COLUMNS)), time.perf_counter() - started)


def _holm_summary(rows: pd.DataFrame, mask: pd.Series) -> None:
    rows.loc[mask, "p_value_adjusted"] = holm(rows.loc[mask, "p_value"].to_numpy())


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def _samples(panel: pd.DataFrame, plan: EvaluationPlan, sampler=service_sample):
    """``(service, sample)`` per service of the plan; ``sample`` is ``None`` when no cohort is usable."""
    for service in plan.services:
        sample, cohorts = sampler(panel, service, plan)
        if not cohorts["used"].any():
            yield service, None
        else:
            yield service, sample


def run_dose(panel: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Dose-response of each service's first episode (``{s}_first_dose``) on a balanced panel of firms.

    The curves are evaluated at ``GRID_SIZE`` doses between the ``families.dose_grid`` quantiles of the treated
    firms' doses. ``cont_did`` needs a balanced panel (as R contdid): firms observed with the outcome in every
    year of the sample's years are kept (firms entering or leaving the register drop out; their count is in
    ``not_estimable`` when nothing is left).
    """
    started, fam = time.perf_counter(), plan.families
    out = _Collector("dose", plan)
    control = "nevertreated" if plan.control_group == "nevertreated" else "notyettreated"
    for service, sample in _samples(panel, plan):
        for outcome in fam.dose_outcomes:
            spec = f"{service} × {outcome}"
            if not out.begin(spec, sample):
                continue
            data = sample.loc[sample[outcome].notna()]
            years = data["year"].nunique()
            complete = data.groupby("firm_id")["year"].transform("nunique") == years
            data = data.loc[complete].assign(dose=lambda d: np.where(d["cohort"] > 0, d[f"{service}_first_dose"], 0.0))
            doses = data.loc[data["dose"] > 0].drop_duplicates("firm_id")["dose"]
            try:
                grid = np.linspace(*np.quantile(doses, fam.dose_grid), GRID_SIZE) if len(doses) else None
                result = _quiet(cont_did, data, outcome, "year", "firm_id", "cohort", "dose", dvals=grid,
                                control_group=control,
                                base_period=plan.base_period, anticipation=plan.anticipation, degree=fam.dose_degree,
                                num_knots=fam.dose_num_knots, biters=max(plan.bootstrap_iterations, 2),
                                alp=plan.alpha, random_state=plan.seed)
            except (ValueError, np.linalg.LinAlgError) as error:
                out.fail(spec, error)
                continue
            n1, n0 = result.n_treated, result.n_control
            for j, aggregation in enumerate(("dose_level", "dose_slope")):  # ATT^o, ACRT^o
                row = result.overall.iloc[j]
                out.row(service, outcome, "cs_dose", aggregation, row.estimate, row.se, n1, n0,
                        inf_func=result.overall_inf_func[:, j], unit_ids=result.unit_ids)
            for curve in result.dose.itertuples():
                out.row(service, outcome, "cs_dose", "dose_level", curve.att_d, curve.att_d_se, n1, n0,
                        lower=curve.att_d_ci_lower, upper=curve.att_d_ci_upper, dose=curve.dose)
                out.row(service, outcome, "cs_dose", "dose_slope", curve.acrt_d, curve.acrt_d_se, n1, n0,
                        lower=curve.acrt_d_ci_lower, upper=curve.acrt_d_ci_upper, dose=curve.dose)
            for es in result.event_study.itertuples():
                out.row(service, outcome, "cs_dose", f"eventstudy_{es.target}", es.estimate, es.se, n1, n0,
                        event_time=np.nan if pd.isna(es.event_time) else float(es.event_time),
                        lower=es.ci_lower, upper=es.ci_upper)
    return out.result(started)


def run_subgroups(panel: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Headline by pre-programme subgroup and the Wald test of difference (see ``analyses.mechanisms.subgroups``)."""
    started, fam = time.perf_counter(), plan.families
    out = _Collector("subgroups", plan)
    floor = cohort_floor(plan.min_cohort_size)
    for service, sample in _samples(panel, plan):
        for outcome in fam.subgroup_outcomes:
            for name in fam.subgroups:
                spec = f"{service} × {outcome} by {name}"
                if not out.begin(spec, sample):
                    continue
                data = sample.loc[sample[outcome].notna()]
                table, test, joint = _quiet(subgroup_effects, data, outcome, name, plan, "firm_id", floor)
                for row in table.itertuples():
                    if row.reason:
                        out.fail(f"{spec}: {row.subgroup}", row.reason)
                        continue
                    inf_func, ids = joint.influence(row.subgroup)
                    out.row(service, outcome, "cs_did", HEADLINE, row.estimate, row.std_error, row.n_treated,
                            row.n_control, subgroup=row.subgroup, inf_func=inf_func, unit_ids=ids)
                if test:
                    estimate = test.get("difference", np.nan)
                    out.row(service, outcome, "cs_did", "subgroup_difference", estimate, test.get("se", np.nan),
                            table.n_treated.sum(), table.n_control.max(), p_value=test["p_value"], subgroup=name,
                            lower=test.get("ci_lower", np.nan), upper=test.get("ci_upper", np.nan))
    result = out.result(started)
    _holm_summary(result.rows, result.rows["aggregation"].eq("subgroup_difference"))
    return result


def _headlines_by_service(family: str, panel: pd.DataFrame, plan: EvaluationPlan, outcomes) -> FamilyResult:
    """``plan``'s headline per service and each of ``outcomes``."""
    started = time.perf_counter()
    out = _Collector(family, plan)
    for service, sample in _samples(panel, plan):
        for outcome in outcomes:
            if sample is not None:
                out.headline(sample.loc[sample[outcome].notna()], service, outcome)
            else:
                out.begin(f"{service} × {outcome}", sample)
    return out.result(started)


def run_markets(panel: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Headline effect on EU and non-EU market outcomes (new destinations, number of destinations) per service."""
    return _headlines_by_service("markets", panel, plan, plan.families.market_outcomes)


def run_persistence(panel: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Headline effect on ``sustained_exporter`` and ``spell_survives_k`` (``analyses.mechanisms.outcomes``),
    with covariates read as :func:`persistence_plan` says."""
    return _headlines_by_service("persistence", add_persistence_outcomes(panel), persistence_plan(plan),
                                 plan.families.persistence_outcomes)


def persistence_plan(plan: EvaluationPlan) -> EvaluationPlan:
    """``plan`` with covariates read by ``families.persistence_covariate_timing`` (first-year snapshots by default:
    the persistence outcomes' base-period values are the export history base-period covariates measure)."""
    return plan.with_covariate_timing(plan.families.persistence_covariate_timing)


def run_sequences(panel: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Incremental effect of adding ``s2`` among firms that started with ``s1`` (treatment ``s1>s2``).

    Staggered DiD within the ``s1``-starters, on their years from the ``s1`` start on: cohort = first ``s2``
    year; comparisons = ``s1``-starters who have not (yet) added ``s2`` (not-yet-treated). Firms whose ``s2``
    started in their ``s1`` year (bundles) are left out. The estimand is the effect of adding ``s2`` for
    firms that chose to add it, given ``s1``; it is not comparable across services' populations.
    """
    started = time.perf_counter()
    out = _Collector("sequences", plan)
    sequence_plan = replace(plan, control_group="notyettreated")
    for first in plan.services:
        for second in plan.services:
            if second == first:
                continue
            data = sequence_sample(panel, first, second)
            for outcome in plan.families.sequence_outcomes:
                out.headline(data.loc[data[outcome].notna()], f"{first}>{second}", outcome, plan=sequence_plan)
    return out.result(started)


def sequence_sample(panel: pd.DataFrame, first: str, second: str) -> pd.DataFrame:
    """Firm-years of the ``first``-starters from their start on (customs-covered years), ``cohort`` = the year
    they added ``second`` (0 = not (yet)); firms that started both in the same year (bundles) are left out."""
    starters = panel.loc[panel["first_service"].eq(first) & (panel["year"] >= panel["first_service_year"])
                         & panel["exports_covered"].eq(1)]
    added = starters[f"first_{second}_year"]
    later = added > starters["first_service_year"]
    return starters.assign(cohort=np.where(later, added, 0)).loc[later | added.eq(0)]


def run_bundles(panel: pd.DataFrame, participation: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Starting with a bundle (two services within ``bundle_window_months``) as its own treatment group.

    Treated: the bundle's firms, cohort = year of the first episode; comparisons as the plan's (never served).
    Cohorts below the plan's floor are left out; a bundle without a cohort left is not estimable.
    """
    started, fam = time.perf_counter(), plan.families
    out = _Collector("bundles", plan)
    bundles = bundle_starts(participation, fam.bundle_window_months).set_index("firm_id")
    label = panel["firm_id"].map(bundles["bundle"])
    never = panel["first_service"].eq(NO_SERVICE)
    observed = panel["exports_covered"].eq(1)
    for bundle in sorted(bundles["bundle"].unique()):
        data = panel.loc[(label.eq(bundle) | never) & observed].assign(
            cohort=lambda d: d["firm_id"].map(bundles["bundle_year"]).fillna(0).astype(int))
        for outcome in fam.bundle_outcomes:
            out.headline(data.loc[data[outcome].notna()], bundle, outcome)
    return out.result(started)


def usable_cohorts(data: pd.DataFrame, plan: EvaluationPlan) -> pd.DataFrame:
    """``data`` without cohorts below the plan's floor or without a year before support (treated at the start)."""
    floor = cohort_floor(plan.min_cohort_size)
    sizes = data.loc[data["cohort"] > 0].groupby("cohort")["firm_id"].nunique()
    small = sizes.index[(sizes < floor) | (sizes.index <= data["year"].min() + plan.anticipation)]
    kept = data.loc[~data["cohort"].isin(small)]
    if not (kept["cohort"] > 0).any():
        raise ValueError(f"no cohort of at least {floor} firms with a year before support")
    return kept


def run_value(panel: pd.DataFrame, plan: EvaluationPlan) -> FamilyResult:
    """Export value by staggered Poisson (extended TWFE, Wooldridge 2023) and its two margins by extended TWFE OLS.

    Outcomes: ``export_value_eur`` (zeros kept; ``etwfe_poisson``, the proportional effect), ``exporter``
    (extensive margin, ``etwfe_ols``) and ``log_export_value_if_exporting`` (log euros among exporting firm-years,
    ``etwfe_ols``: conditional on exporting, which support itself changes, so a description of the intensive
    margin rather than a causal effect). Never a DiD on log(1 + euros). Controls: ``families.value_controls``
    (Poisson) and ``families.margin_controls`` (OLS), time-invariant, each interacted with the cohort x year cells.
    A model whose effect has no finite standard error (a singular covariance) is not estimable, with that reason.
    """
    started, fam = time.perf_counter(), plan.families
    out = _Collector("value", plan)
    cgroup = "never" if plan.control_group == "nevertreated" else "notyet"
    for service, sample in _samples(panel, plan, value_sample):
        if sample is not None:
            sample = sample.assign(
                log_export_value_if_exporting=lambda d: np.log(d["export_value_eur"].where(d["export_value_eur"] > 0)))
        for outcome, family, estimator in (("export_value_eur", "poisson", "etwfe_poisson"),
                                           ("exporter", "gaussian", "etwfe_ols"),
                                           ("log_export_value_if_exporting", "gaussian", "etwfe_ols")):
            spec = f"{service} × {outcome} ({estimator})"
            if not out.begin(spec, sample):
                continue
            data = sample.loc[sample[outcome].notna()]
            controls = fam.value_controls if family == "poisson" else fam.margin_controls
            try:
                fit = _quiet(etwfe, data, outcome, "year", "cohort", "firm_id", xvar=controls, family=family,
                             cgroup=cgroup)
                overall = _quiet(emfx, fit, "simple", plan.alpha)
                if not np.isfinite(overall.iloc[0]["proportional_se" if family == "poisson" else "se"]):
                    raise ValueError(f"no finite standard error: the covariance is singular (controls {list(controls)} "
                                     "interacted with cells where too few firms vary)")
            except (ValueError, RuntimeError, np.linalg.LinAlgError) as error:
                out.fail(spec, error)
                continue
            n1 = int(data.loc[data["cohort"] > 0, "firm_id"].nunique())
            n0 = int(data.loc[data["cohort"] == 0, "firm_id"].nunique())
            for kind, aggregation in (("simple", "simple"), ("event", "dynamic")):
                for effect in (overall if kind == "simple" else _quiet(emfx, fit, kind, plan.alpha)).itertuples():
                    event_time = float(effect.event_time) if kind == "event" else np.nan
                    if family == "poisson":
                        out.row(service, outcome, estimator, aggregation, effect.proportional, effect.proportional_se,
                                n1, n0, event_time=event_time, lower=effect.proportional_ci_lower,
                                upper=effect.proportional_ci_upper, p_value=effect.proportional_p_value)
                    else:
                        out.row(service, outcome, estimator, aggregation, effect.estimate, effect.se, n1, n0,
                                event_time=event_time)
    result = out.result(started)
    _holm_summary(result.rows, result.rows["aggregation"].eq("simple"))
    return result


def value_sample(panel: pd.DataFrame, service: str, plan: EvaluationPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`service_sample` for the value models: firm-years with export value and the models' own controls
    (``families.value_controls``, ``margin_controls``), not thinned by the headline's covariates (not used here).

    Dropping the years where base-period covariates are unknown (the first two customs years lack a three-year
    export history) shortens every firm's pre-programme window; on the demo's untreated world that alone moved
    the Poisson placebo effects to z = +3.3, +1.9 and +2.3 (+0.5, +0.3 and -0.9 on the full window).
    """
    sample, cohorts = service_sample(panel, service, replace(plan, covariates=()))
    controls = {*plan.families.value_controls, *plan.families.margin_controls}
    known = sample[["export_value_eur", *sorted(controls)]].notna().all(axis=1)
    return sample.loc[known], cohorts


RUNNERS: dict[str, Callable] = {"dose": run_dose, "subgroups": run_subgroups, "markets": run_markets,
                                "value": run_value, "sequences": run_sequences, "persistence": run_persistence}
