"""Constructed inputs for the report tests.

The numbers are built (not estimated) so that tests know the sign,
interval and significance of every effect, while the shapes follow the
schemas the evaluation code hands to `build_report`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SERVICES = ("advisory", "network", "grant")
OUTCOMES = ("exporter", "n_destinations", "starts_exporting", "enters_new_market")
YEARS = tuple(range(2012, 2022))
COHORTS = (2015, 2016, 2017, 2018, 2019)

# (estimate, std_error) of the CS-DiD headline (event-study average over e = 0..3, the same cohorts):
# signs and significance the tests rely on. R's `simple` average is set apart (SIMPLE_SHARE of it).
HEADLINE_EFFECTS = {
    ("advisory", "exporter"): (0.041, 0.01173),          # +4.1 pp, CI 1.8 to 6.4: significant
    ("advisory", "n_destinations"): (0.35, 0.12),         # significant increase
    ("advisory", "starts_exporting"): (0.011, 0.009),     # CI includes zero
    ("advisory", "enters_new_market"): (0.012, 0.010),    # CI includes zero
    ("network", "exporter"): (0.008, 0.012),              # CI includes zero
    ("network", "n_destinations"): (0.42, 0.15),          # significant increase
    ("network", "starts_exporting"): (0.020, 0.007),      # significant increase
    ("network", "enters_new_market"): (0.030, 0.011),     # significant increase
    ("grant", "exporter"): (-0.025, 0.010),               # significant decrease
    ("grant", "n_destinations"): (-0.05, 0.10),           # CI includes zero
    ("grant", "starts_exporting"): (-0.015, 0.006),       # significant decrease
    ("grant", "enters_new_market"): (0.004, 0.009),       # CI includes zero
}
SIMPLE_SHARE = 0.6
HORIZON = 3
# TWFE is 1.25 x the CS-DiD headline; CS without covariates sits where the gap comes from: beside TWFE
# for advisory (covariate adjustment), beside CS with covariates for network (TWFE's weighting), halfway for grants.
TWFE_SHARE = 1.25
NO_COVARIATE_SHARE = {"advisory": 1.25, "network": 1.0, "grant": 1.125}
UNIFORM_CRITICAL = 2.8  # typical sup-t critical value for ~9 event times
# Per used cohort: with 5 cohorts (+1 in the unused one) advisory leaves out 11 firms, network 1, grants 16.
WITHOUT_BASELINE = {"advisory": 2, "network": 0, "grant": 3}


def _row(treatment, outcome, estimator, aggregation, event_time, estimate, se, n_treated, n_control, crit=1.96):
    z = estimate / se
    return {"treatment": treatment, "outcome": outcome, "estimator": estimator, "aggregation": aggregation,
            "event_time": event_time, "estimate": estimate, "std_error": se,
            "ci_lower": estimate - crit * se, "ci_upper": estimate + crit * se,
            "p_value": float(2 * stats.norm.sf(abs(z))), "n_treated": n_treated, "n_control": n_control}


def make_estimates(n_treated: int = 120, n_control: int = 900, effects: dict | None = None,
                   seed: int = 7) -> pd.DataFrame:
    """Estimates for 3 services x 4 outcomes in the evaluation's vocabulary.

    CS-DiD: simple, the headline (dynamic_balanced, e = 0..3), dynamic and dynamic_universal (-4..4), group and
    calendar; CS-DiD without covariates and TWFE on the headline window; TWFE simple and dynamic.
    """
    rng = np.random.default_rng(seed)
    effects = effects or HEADLINE_EFFECTS
    rows = []
    for (treatment, outcome), (effect, se) in effects.items():
        n_balanced = n_treated * 3 // 4  # the cohorts observed at every event time 0..HORIZON
        rows.append(_row(treatment, outcome, "cs_did", "simple", np.nan, SIMPLE_SHARE * effect, se, n_treated,
                         n_control))
        rows.append(_row(treatment, outcome, "twfe", "simple", np.nan, 0.8 * effect, se * 0.9, n_treated, n_control))
        for estimator, share in (("cs_did", 1.0), ("cs_did_no_covariates", NO_COVARIATE_SHARE[treatment]),
                                 ("twfe", TWFE_SHARE)):
            rows.append(_row(treatment, outcome, estimator, "dynamic_balanced", np.nan, share * effect, se,
                             n_balanced, n_control))
            for e in range(HORIZON + 1):
                rows.append(_row(treatment, outcome, estimator, "dynamic_balanced", float(e), share * effect,
                                 se * 1.3, n_balanced, n_control, UNIFORM_CRITICAL))
        drift = 0.0
        for e in range(-4, 5):
            level = 0.0 if e < 0 else effect * min(1.0, (e + 1) / 3)
            noise = rng.normal(0, se * 0.3)
            n_e = n_treated if e < 3 else max(n_treated // 2, 1)
            rows.append(_row(treatment, outcome, "cs_did", "dynamic", float(e), level + noise, se * 1.3,
                             n_e, n_control, UNIFORM_CRITICAL))
            # with a universal base period every point is relative to e = -1 (0 by construction, not a row)
            drift = drift + noise if e < -1 else 0.0
            if e != -1:
                rows.append(_row(treatment, outcome, "cs_did", "dynamic_universal", float(e),
                                 (drift if e < 0 else level + noise), se * 1.3, n_e, n_control, UNIFORM_CRITICAL))
            # TWFE normalises its reference period e = -1 to zero, without an interval
            twfe_estimate, twfe_se = (0.0, np.nan) if e == -1 else (0.8 * level + noise, se * 1.1)
            rows.append(_row(treatment, outcome, "twfe", "dynamic", float(e), twfe_estimate, twfe_se,
                             n_e, n_control))
        for cohort in COHORTS:
            rows.append(_row(treatment, outcome, "cs_did", "group", float(cohort),
                             effect + rng.normal(0, se), se * 2, n_treated // len(COHORTS), n_control))
        for year in range(2015, 2022):
            rows.append(_row(treatment, outcome, "cs_did", "calendar", float(year),
                             effect + rng.normal(0, se), se * 1.8, n_treated, n_control))
    columns = ["treatment", "outcome", "estimator", "aggregation", "event_time", "estimate", "std_error",
               "ci_lower", "ci_upper", "p_value", "n_treated", "n_control"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["n_treated"] = frame["n_treated"].astype("int64")
    frame["n_control"] = frame["n_control"].astype("int64")
    return frame


def make_panel(n_firms: int = 400, seed: int = 3) -> pd.DataFrame:
    """Firm-year panel with staggered first-service years and skewed export values."""
    rng = np.random.default_rng(seed)
    firm_ids = [f"FRM{100000 + i}" for i in range(n_firms)]
    first_service = rng.choice(["advisory", "network", "grant", "none"], size=n_firms, p=[0.25, 0.2, 0.15, 0.4])
    first_year = np.where(first_service == "none", 0, rng.choice(COHORTS, size=n_firms))
    size = rng.lognormal(12, 1.0, size=n_firms)
    records = []
    for i, firm in enumerate(firm_ids):
        for year in YEARS:
            treated = first_year[i] and year >= first_year[i]
            p_export = 0.35 + (0.05 if treated else 0.0)
            exporter = int(rng.random() < p_export)
            value = float(size[i] * rng.lognormal(0, 0.5)) if exporter else 0.0
            records.append({
                "firm_id": firm, "year": year, "exporter": exporter, "export_value_eur": round(value, 2),
                "n_destinations": int(rng.poisson(2) + 1) if exporter else 0,
                "first_advisory_year": int(first_year[i]) if first_service[i] == "advisory" else 0,
                "first_network_year": int(first_year[i]) if first_service[i] == "network" else 0,
                "first_grant_year": int(first_year[i]) if first_service[i] == "grant" else 0,
                "first_service": first_service[i], "first_service_year": int(first_year[i]), "exports_covered": 1,
                "nace2": int(rng.choice([10, 25, 28, 46, 62])),
                "region": rng.choice(["North", "South", "East", "West"]), "in_cluster": bool(rng.random() < 0.3),
            })
    return pd.DataFrame(records)


def make_diagnostics(failing_pretest: tuple[str, str] = ("grant", "starts_exporting")) -> dict:
    rng = np.random.default_rng(11)
    pretests, balance, overlap, mde, cohorts, behind = [], [], [], [], [], []
    covariates = ["employees_log", "turnover_log", "in_cluster", "manufacturing"]
    for treatment in SERVICES:
        for outcome in OUTCOMES:
            p = 0.012 if (treatment, outcome) == failing_pretest else float(rng.uniform(0.2, 0.9))
            w = float(stats.chi2.isf(p, 3))
            se = HEADLINE_EFFECTS[(treatment, outcome)][1]
            pretests.append({"treatment": treatment, "outcome": outcome, "W": w, "df": 3, "p_value": p,
                             "trend_slope": 2 * 2.8 * se / (HORIZON + 2), "power": 0.31})
            mde.append({"treatment": treatment, "outcome": outcome, "aggregation": "dynamic_balanced", "mde": 2.8 * se,
                        "baseline_sd": 0.45})
            # five cohorts; from e = 3 on only the earlier ones are observed
            for e in range(-4, 5):
                for aggregation in ("dynamic", "dynamic_universal"):
                    behind.append({"treatment": treatment, "outcome": outcome, "estimator": "cs_did",
                                   "aggregation": aggregation, "event_time": float(e),
                                   "n_cohorts": 5 if e < 3 else 7 - e})
        for covariate in covariates:
            smd_raw = float(rng.uniform(-0.5, 0.5))
            balance.append({"treatment": treatment, "covariate": covariate, "mean_treated": 1.0 + smd_raw,
                            "mean_control_unweighted": 1.0, "mean_control_weighted": 1.0 + smd_raw * 0.9,
                            "smd_unweighted": smd_raw, "smd_weighted": smd_raw * 0.1})
        edges = np.linspace(0, 1, 21)
        for group, centre in (("treated", 0.45), ("comparison", 0.3)):
            weights = stats.norm.pdf((edges[:-1] + 0.025 - centre) / 0.12)
            counts = np.round(weights / weights.sum() * (120 if group == "treated" else 900)).astype(int)
            for lower, upper, n in zip(edges[:-1], edges[1:], counts):
                overlap.append({"treatment": treatment, "group": group, "bin_lower": float(lower),
                                "bin_upper": float(upper), "n_firms": int(n)})
        # firms without accounts before their support started are left out of each cohort
        without = WITHOUT_BASELINE[treatment]
        for cohort in COHORTS:
            cohorts.append({"treatment": treatment, "cohort": cohort, "n_delivered": 24 + without,
                            "n_without_baseline": without, "n_firms": 24, "used": True, "reason": ""})
        # a cohort too small to estimate: listed by the evaluation, never published
        cohorts.append({"treatment": treatment, "cohort": 2020, "n_delivered": 5, "n_without_baseline": 1,
                        "n_firms": 4, "used": False, "reason": "fewer than 20 firms"})
    plan = {"control_group": "nevertreated", "est_method": "dr", "covariates": covariates, "base_period": "varying",
            "bootstrap_iterations": 999, "alpha": 0.05, "anticipation": 0, "panel_years": list(YEARS),
            "outcomes": list(OUTCOMES), "services": list(SERVICES), "headline_horizon": HORIZON}
    return {"pretests": pd.DataFrame(pretests), "balance": pd.DataFrame(balance), "overlap": pd.DataFrame(overlap),
            "mde": pd.DataFrame(mde), "cohorts": pd.DataFrame(cohorts), "cohorts_behind": pd.DataFrame(behind),
            "not_estimable": pd.DataFrame(columns=["treatment", "outcome", "estimator", "aggregation", "reason"]),
            "dropped_cells": pd.DataFrame(columns=["treatment", "outcome", "estimator", "aggregation", "cohort", "time",
                                                   "reason"]),
            "dropped_cohorts": pd.DataFrame(columns=["treatment", "outcome", "estimator", "aggregation", "cohort",
                                                     "n_firms", "reason"]),
            "sensitivity": make_sensitivity(), "robustness": make_robustness(),
            "plan": plan}


SENSITIVITY_MBAR = (0.5, 1.0, 1.5, 2.0)
#: the relative-magnitudes interval widens by this many standard errors per unit of Mbar, the smoothness one per
#: standard error of M: every significant headline of HEADLINE_EFFECTS then breaks down at Mbar >= 1
RM_WIDENING, SD_WIDENING = 0.5, 2.0


def _breakdown(estimate: float, se: float, widening: float) -> float:
    margin = abs(estimate) / se - 1.96
    return margin / widening if margin > 0 else float("nan")


def make_sensitivity() -> pd.DataFrame:
    """Constructed ``analyses.sensitivity`` rows: intervals widen linearly in Mbar and M (breakdowns known)."""
    rows = []
    for (treatment, outcome), (estimate, se) in HEADLINE_EFFECTS.items():
        for estimator, share in (("cs_did", 1.0), ("twfe", TWFE_SHARE)):
            for target, scale in (("on_impact", 0.8), ("average", 1.0)):
                centre = estimate * share * scale
                common = {"service": treatment, "outcome": outcome, "estimator": estimator, "target": target}
                rows.append({**common, "restriction": "none", "M": 0.0, "lower": centre - 1.96 * se,
                             "upper": centre + 1.96 * se, "method": "original", "breakdown": np.nan})
                for method, grid, widening in (("C-LF", SENSITIVITY_MBAR, RM_WIDENING),
                                               ("FLCI", tuple(np.linspace(0, 2 * se, 5)), SD_WIDENING)):
                    breakdown = _breakdown(centre, se, widening) * (1 if method == "C-LF" else se)
                    for m in grid:
                        half = (1.96 + widening * (m if method == "C-LF" else m / se)) * se
                        rows.append({**common, "restriction": "relative_magnitude" if method == "C-LF"
                                     else "smoothness", "M": float(m), "lower": centre - half,
                                     "upper": centre + half, "method": method, "breakdown": breakdown})
    return pd.DataFrame(rows)


ROBUSTNESS_SHIFTS = {"anticipation": 1.1, "comparison_group": 0.95, "covariate_timing": 1.05, "dominance": 0.9,
                     "placebo": 0.0}


def make_robustness(n_treated: int = 120, n_control: int = 900) -> pd.DataFrame:
    """Constructed ``analyses.robustness`` table: every run agrees with the main estimate, placebos are near zero."""
    rows = []
    for (treatment, outcome), (estimate, se) in HEADLINE_EFFECTS.items():
        for run, share in {"main": 1.0, **ROBUSTNESS_SHIFTS}.items():
            value = estimate * share if run != "placebo" else 0.1 * se
            z = value / se
            rows.append({"service": treatment, "outcome": outcome, "run": run,
                         "description": f"constructed run {run.replace('_', ' ')}", "estimate": value,
                         "std_error": se, "ci_lower": value - 1.96 * se, "ci_upper": value + 1.96 * se,
                         "p_value": float(2 * stats.norm.sf(abs(z))),
                         "n_treated": n_treated - (20 if run == "dominance" else 0), "n_control": n_control,
                         "reason": ""})
    return pd.DataFrame(rows)


def make_inputs_on_disk(directory: Path) -> tuple[dict, dict]:
    """Write small source files and return matching data-quality and lineage records."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {}
    for source, text in (("firms", "firm_id;nace2\nFRM100000;10\n"), ("services", "firm_id,service,year\n"),
                         ("exports", "firm_id,year,value\n")):
        path = directory / f"{source}.csv"
        path.write_text(text, encoding="utf-8")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        sources[source] = {
            "file": str(path), "sha256": digest, "format": "csv", "encoding": "utf-8",
            "delimiter": ";" if source == "firms" else ",", "contract_id": f"{source}_contract",
            "contract_version": "1.2.0", "rows_in": 10_000, "rows_clean": 9_870, "rows_quarantined": 130,
            "quarantine_share": 0.013, "quarantine_threshold": 0.05,
            "rules": {"firm_id_format": 80, "year_in_range": 40, "value_non_negative": 10, "unused_rule": 0},
            "warnings": ["12 rows had trailing whitespace"] if source == "exports" else [],
            "quarantine_file": str(directory / f"{source}_quarantine.parquet"),
        }
    data_quality = {"sources": sources}
    lineage = {"run_id": "run-2026-11-27-abc123", "git_commit": "0123456789abcdef0123456789abcdef01234567",
               "generated_at": "2026-11-27T09:30:00+00:00",
               "inputs": {name: {"file": rec["file"], "sha256": rec["sha256"]} for name, rec in sources.items()},
               "contract_versions": {name: rec["contract_version"] for name, rec in sources.items()},
               "code_version": "0.1.0"}
    return data_quality, lineage


# Mechanism rows (family, treatment, outcome, estimator, aggregation, subgroup, estimate, se): which intervals
# exclude zero is what the tests rely on. Supported: the sequence, advisory's dose slope, network's cluster
# difference, advisory's non-EU destinations and value. Not supported: the bundle, the size-class difference,
# network's and grant's dose slopes, persistence.
MECHANISM_EFFECTS = [
    ("bundles", "advisory+network", "exporter", "cs_did", "dynamic_balanced", "", 0.02, 0.02),
    ("sequences", "advisory>network", "exporter", "cs_did", "dynamic_balanced", "", 0.04, 0.012),
    ("dose", "advisory", "exporter", "cs_dose", "dose_level", "", 0.03, 0.01),
    ("dose", "advisory", "exporter", "cs_dose", "dose_slope", "", 0.001, 0.0003),
    ("dose", "network", "exporter", "cs_dose", "dose_level", "", 0.02, 0.012),
    ("dose", "network", "exporter", "cs_dose", "dose_slope", "", 0.002, 0.004),
    ("dose", "grant", "exporter", "cs_dose", "dose_level", "", 0.05, 0.02),
    ("dose", "grant", "exporter", "cs_dose", "dose_slope", "", 1e-7, 2e-6),
    ("subgroups", "network", "exporter", "cs_did", "dynamic_balanced", "in_cluster=0", 0.06, 0.015),
    ("subgroups", "network", "exporter", "cs_did", "dynamic_balanced", "in_cluster=1", 0.01, 0.012),
    ("subgroups", "advisory", "exporter", "cs_did", "dynamic_balanced", "size_class=micro", 0.03, 0.02),
    ("subgroups", "advisory", "exporter", "cs_did", "dynamic_balanced", "size_class=small", 0.04, 0.02),
    ("subgroups", "advisory", "exporter", "cs_did", "dynamic_balanced", "size_class=medium", 0.05, 0.02),
    ("markets", "advisory", "n_eu_destinations", "cs_did", "dynamic_balanced", "", 0.02, 0.05),
    ("markets", "advisory", "n_non_eu_destinations", "cs_did", "dynamic_balanced", "", 0.2, 0.05),
    ("value", "advisory", "export_value_eur", "etwfe_poisson", "simple", "", 0.12, 0.04),
    ("value", "advisory", "exporter", "etwfe_ols", "simple", "", 0.03, 0.01),
    ("value", "advisory", "log_export_value_if_exporting", "etwfe_ols", "simple", "", 0.05, 0.04),
    ("persistence", "grant", "sustained_exporter", "cs_did", "dynamic_balanced", "", 0.001, 0.01),
]
DOSE_GRIDS = {"advisory": (10.0, 120.0), "network": (1.0, 8.0), "grant": (5_000.0, 150_000.0)}


def make_mechanisms(n_treated: int = 60, n_control: int = 900) -> pd.DataFrame:
    """Rows of the mechanism families in the published columns (``MECHANISM_COLUMNS``)."""
    rows = []
    for family, treatment, outcome, estimator, aggregation, subgroup, estimate, se in MECHANISM_EFFECTS:
        row = _row(treatment, outcome, estimator, aggregation, np.nan, estimate, se, n_treated, n_control)
        rows.append({**row, "subgroup": subgroup, "dose": np.nan, "p_value_adjusted": min(1.0, 3 * row["p_value"]),
                     "family": family})
        if aggregation == "dose_level":
            for dose in np.linspace(*DOSE_GRIDS[treatment], 5):
                share = dose / DOSE_GRIDS[treatment][1]
                rows.append({**_row(treatment, outcome, estimator, aggregation, np.nan, 2 * estimate * share, se * 1.5,
                                    n_treated, n_control, UNIFORM_CRITICAL),
                             "subgroup": "", "dose": dose, "p_value_adjusted": np.nan, "family": family})
    for treatment, name, difference, p_value in (("network", "in_cluster", 0.05, 0.009),
                                                 ("advisory", "size_class", np.nan, 0.6)):
        se = 0.019 if difference == difference else np.nan
        rows.append({"treatment": treatment, "outcome": "exporter", "estimator": "cs_did",
                     "aggregation": "subgroup_difference", "event_time": np.nan, "estimate": difference,
                     "std_error": se, "ci_lower": difference - 1.96 * se, "ci_upper": difference + 1.96 * se,
                     "p_value": p_value, "n_treated": n_treated, "n_control": n_control, "subgroup": name,
                     "dose": np.nan, "p_value_adjusted": min(1.0, 2 * p_value), "family": "subgroups"})
    frame = pd.DataFrame(rows)
    return frame.astype({"n_treated": "int64", "n_control": "int64"})


def report_inputs(directory: Path) -> dict:
    """Keyword arguments for build_report (all but output_dir and settings)."""
    data_quality, lineage = make_inputs_on_disk(directory / "inputs")
    return {"estimates": make_estimates(), "diagnostics": make_diagnostics(), "data_quality": data_quality,
            "panel": make_panel(), "lineage": lineage, "mechanisms": make_mechanisms()}
