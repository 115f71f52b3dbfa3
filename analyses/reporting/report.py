"""Build the publishable impact report (HTML, PDF) and the analyst companions.

The order of work matters for confidentiality: disclosure rules are applied
first, the report is rendered to memory, the rendered text is scanned for
firm identifiers, and only then is anything written to disk.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from analyses.csv_safety import write_csv
from analyses.reporting import lineage as lineage_module
from analyses.reporting.disclosure import (
    SUPPRESSED_MARK, DisclosureResult, check_disclosure, cohort_cells, coarsen_overlap, describe_panel,
    drop_suppressed, estimate_key, redact_identifiers, scan_for_identifiers, with_extra_columns,
)
from analyses.reporting.mechanisms import (
    MECHANISM_OUTCOMES, is_known_treatment, mechanism_section, median_first_doses, withheld_rows,
)
from analyses.reporting.plots import balance_plot, event_study_plot, overlap_plot, sensitivity_plot
from analyses.reporting.rating import ROBUSTNESS_COLUMNS, SENSITIVITY_COLUMNS, rate_service, unsupported_share
from analyses.reporting.settings import (
    AGGREGATIONS, ESTIMATORS, EXTRA_DEFAULTS, HEADLINE, HEADLINE_FAMILY, INDEXED_AGGREGATIONS, MECHANISM_AGGREGATIONS,
    MECHANISM_ESTIMATORS, MECHANISM_EXTRA_COLUMNS, MIN_FIRMS, UNIVERSAL_EVENT_STUDY, ReportSettings, cohort_floor,
)
from analyses.reporting.summary import (
    OUTCOMES, SERVICES, Intervals, comparison_phrase, comparison_sentence, display_interval, format_number,
    is_estimable, outcome_spec, service_title, summary_paragraphs, variable_label, window_words,
)

ALLOWED_VALUES = {"outcome": set(OUTCOMES) | set(MECHANISM_OUTCOMES),
                  "estimator": set(ESTIMATORS) | set(MECHANISM_ESTIMATORS),
                  "aggregation": set(AGGREGATIONS) | set(MECHANISM_AGGREGATIONS)}
ESTIMATOR_LABELS = {"cs_did": "CS-DiD", "cs_did_no_covariates": "CS-DiD without covariates", "twfe": "TWFE"}
DIAGNOSTIC_COLUMNS = {
    "pretests": ["treatment", "outcome", "W", "df", "p_value"],
    "dropped_cells": ["treatment", "outcome", "estimator", "aggregation", "cohort", "time", "reason"],
    "dropped_cohorts": ["treatment", "outcome", "estimator", "aggregation", "cohort", "reason"],
    "cohorts_behind": ["treatment", "outcome", "estimator", "aggregation", "event_time", "n_cohorts"],
    "robustness": ROBUSTNESS_COLUMNS,
    "sensitivity": SENSITIVITY_COLUMNS,
    "balance": ["treatment", "covariate", "mean_treated", "mean_control_unweighted", "mean_control_weighted",
                "smd_unweighted", "smd_weighted"],
    "overlap": ["treatment", "group", "bin_lower", "bin_upper", "n_firms"],
    "mde": ["treatment", "outcome", "aggregation", "mde"],
    "cohorts": ["treatment", "cohort", "n_delivered", "n_without_baseline", "n_firms", "used", "reason"],
    "not_estimable": ["treatment", "outcome", "reason"],
    "left_out": ["treatment", "outcome", "reason", "firms", "firm_years"],
    "panel_account": ["source", "status", "reason", "rows", "firms"],
    "export_coverage": ["year", "covered", "reason"],
}
SOURCE_KEYS = ["rows_in", "rows_clean", "rows_quarantined"]
TEMPLATE_DIR = Path(__file__).parent / "templates"
#: The numbered sections of the main template (``sections[i]`` there, anchors ``section-<i + 1>``).
CORE_SECTIONS = ["Executive summary", "Headline results", "How robust are the results", "Event studies", "Diagnostics",
                 "Data quality", "Methods annex", "Limitations", "Lineage and reproducibility"]
#: The mechanism models' section (its own template, ``how_support_works.html.j2``), after the event studies.
MECHANISM_SECTION = "How support works"
SECTION_TITLES = [*CORE_SECTIONS[:4], MECHANISM_SECTION, *CORE_SECTIONS[4:]]
_ANCHORS = {title: f"section-{i}" for i, title in enumerate(CORE_SECTIONS, start=1)} | {
    MECHANISM_SECTION: "section-mechanisms"}


@dataclass
class ReportResult:
    html_path: Path
    pdf_path: Path | None
    disclosure: DisclosureResult
    headline: pd.DataFrame
    headline_markdown: str
    summary_paragraphs: dict[str, str]
    estimate_files: dict[str, Path] = field(default_factory=dict)
    pdf_bookmarks: list[str] = field(default_factory=list)
    pdf_pages: int = 0
    seconds: float = 0.0


# --- validation -------------------------------------------------------------

def estimate_columns() -> list[str]:
    """The published estimate columns, as the evaluation defines them.

    Imported on use because analyses.evaluation loads statsmodels, which
    importing the reporting package (e.g. from the Dagster definitions)
    should not.
    """
    from analyses.evaluation import ESTIMATE_COLUMNS

    return list(ESTIMATE_COLUMNS)


def published_columns() -> list[str]:
    """The columns of ``estimates.csv``: the evaluation's, then ``MECHANISM_EXTRA_COLUMNS``."""
    return estimate_columns() + list(MECHANISM_EXTRA_COLUMNS)


def _family_names() -> set[str]:
    from analyses.mechanisms.plan import FAMILY_NAMES

    return {HEADLINE_FAMILY, *FAMILY_NAMES}


def validate_estimates(estimates: pd.DataFrame, name: str = "estimates") -> None:
    """Fail with the row and column at fault rather than deep inside rendering.

    ``estimates``: the evaluation's columns (``estimate_columns``, headline rows) or the published ones
    (``published_columns``, e.g. the mechanism families' rows); ``name`` names the table in messages.
    """
    columns = published_columns() if "family" in estimates.columns else estimate_columns()
    if list(estimates.columns) != columns:
        missing = [c for c in columns if c not in estimates.columns]
        extra = [c for c in estimates.columns if c not in columns]
        raise ValueError(f"{name} must have exactly the columns {columns} in this order; "
                         f"missing {missing}, unexpected {extra}")
    bad = estimates[~estimates["treatment"].map(is_known_treatment)]
    if not bad.empty:
        raise ValueError(f"{name} row {bad.index[0]}: column 'treatment' has value {bad['treatment'].iloc[0]!r}; "
                         f"allowed: {sorted(SERVICES)}, two services joined by '+' (a bundle) or '>' (a sequence)")
    allowed_values = {**ALLOWED_VALUES, **({"family": _family_names()} if "family" in columns else {})}
    for column, allowed in allowed_values.items():
        bad = estimates[~estimates[column].isin(allowed)]
        if not bad.empty:
            raise ValueError(f"{name} row {bad.index[0]}: column {column!r} has value {bad[column].iloc[0]!r}; "
                             f"allowed: {sorted(allowed)}")
    for column in [*columns[4:12], *[c for c in ("dose", "p_value_adjusted") if c in columns]]:
        if not pd.api.types.is_numeric_dtype(estimates[column]):
            raise ValueError(f"{name} column {column!r} must be numeric, got dtype {estimates[column].dtype}")
    # CIs may be missing: a reference event time is normalised to zero without an interval; a test that more
    # than two subgroups differ has a p-value but no single difference to estimate
    without_estimate = estimates["aggregation"].eq("subgroup_difference")
    for column in ("estimate", "n_treated", "n_control"):
        bad = estimates[estimates[column].isna() & ~(without_estimate & (column == "estimate"))]
        if not bad.empty:
            raise ValueError(f"{name} row {bad.index[0]}: column {column!r} is missing")
    bad = estimates[(estimates["ci_lower"] > estimates["estimate"]) | (estimates["estimate"] > estimates["ci_upper"])]
    if not bad.empty:
        row = bad.iloc[0]
        raise ValueError(f"{name} row {bad.index[0]}: interval [{row['ci_lower']}, {row['ci_upper']}] "
                         f"does not contain the estimate {row['estimate']} (rule: ci_lower <= estimate <= ci_upper)")
    bad = estimates[(estimates["n_treated"] < 0) | (estimates["n_control"] < 0)]
    if not bad.empty:
        raise ValueError(f"{name} row {bad.index[0]}: firm counts n_treated/n_control must be >= 0")
    if "p_value_adjusted" in columns:
        bad = estimates[~estimates["p_value_adjusted"].between(0, 1) & estimates["p_value_adjusted"].notna()]
        if not bad.empty:
            raise ValueError(f"{name} row {bad.index[0]}: column 'p_value_adjusted' must lie in [0, 1]")
    # rows of an event study, cohort or calendar table are indexed by event_time; overall effects have none
    needs_time = estimates[estimates["aggregation"].isin(INDEXED_AGGREGATIONS) & estimates["event_time"].isna()]
    if not needs_time.empty:
        raise ValueError(f"{name} row {needs_time.index[0]}: column 'event_time' is required for "
                         f"aggregation {needs_time['aggregation'].iloc[0]!r}")


def combine_estimates(estimates: pd.DataFrame, mechanisms: pd.DataFrame | None = None) -> pd.DataFrame:
    """The table ``estimates.csv`` publishes (``published_columns``): the evaluation's rows (family ``headline``,
    no subgroup, dose or adjusted p-value) followed by the mechanism families' rows.

    ``estimates`` has the evaluation's or the published columns; ``mechanisms`` (optional) the published ones
    (``analyses.mechanisms.families.MECHANISM_COLUMNS``). Raises ``ValueError`` naming the table, row and column.
    """
    validate_estimates(estimates)
    parts = [with_extra_columns(estimates)[published_columns()]]
    if mechanisms is not None and len(mechanisms):
        validate_estimates(mechanisms, "mechanism estimates")
        parts.append(with_extra_columns(mechanisms)[published_columns()])
    combined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    for column, default in EXTRA_DEFAULTS.items():
        if not isinstance(default, str):
            combined[column] = combined[column].astype("float64")
    return combined


def validate_diagnostics(diagnostics: Mapping) -> None:
    for name, columns in DIAGNOSTIC_COLUMNS.items():
        frame = diagnostics.get(name)
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"diagnostics[{name!r}] must be a DataFrame, got {type(frame).__name__}")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"diagnostics[{name!r}] is missing columns {missing}")
    plan = diagnostics.get("plan")
    if plan is not None and not isinstance(plan, Mapping):
        raise ValueError(f"diagnostics['plan'] must be a dict, got {type(plan).__name__}")


def validate_data_quality(data_quality: Mapping) -> None:
    sources = data_quality.get("sources")
    if not isinstance(sources, Mapping):
        raise ValueError("data_quality must contain a 'sources' mapping of source name to its record")
    for source, record in sources.items():
        missing = [key for key in SOURCE_KEYS if key not in record]
        if missing:
            raise ValueError(f"data_quality['sources'][{source!r}] is missing keys {missing}")


# --- analyst companions -------------------------------------------------------

def write_estimate_files(estimates: pd.DataFrame, output_dir: Path,
                         disclosure: DisclosureResult | None = None) -> dict[str, Path]:
    """estimates.csv and estimates.parquet with exactly the published columns (``published_columns``).

    ``estimates``: the evaluation's columns (headline rows) or the published ones (``combine_estimates``).
    Rows that fail disclosure are dropped here; they are listed in
    `disclosure.suppressed_estimates` so their absence is explained.
    """
    validate_estimates(estimates)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    published = drop_suppressed(estimates, disclosure)[published_columns()].reset_index(drop=True)
    published["n_treated"] = published["n_treated"].astype("int64")
    published["n_control"] = published["n_control"].astype("int64")
    paths = {"csv": output_dir / "estimates.csv", "parquet": output_dir / "estimates.parquet"}
    write_csv(published, paths["csv"], float_format="%.10g")
    published.to_parquet(paths["parquet"], index=False)
    return paths


def _round_close_counts(table: pd.DataFrame, keys: list[str], min_firms: int) -> pd.DataFrame:
    """Counts of a family (rows sharing ``keys``) rounded down to a multiple of ``min_firms`` when two of them
    differ by 1 to ``min_firms - 1`` firms (the differencing rule of ``analyses.reporting.disclosure``)."""
    table = table.copy()
    for column in ("n_treated", "n_control"):
        for _, rows in table.groupby(keys, sort=False):
            values = np.sort(rows[column].to_numpy())
            gaps = np.diff(values)
            if ((gaps > 0) & (gaps < min_firms)).any():
                table.loc[rows.index, column] = rows[column] // min_firms * min_firms
    return table


def publishable_robustness(sensitivity: pd.DataFrame | None, robustness: pd.DataFrame | None,
                           suppressed: set[tuple], min_firms: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sensitivity and robustness tables as they may be published.

    Sensitivity rows go with their event study: none for a pair whose headline or event-study rows are withheld.
    Robustness rows on fewer than ``min_firms`` treated or comparison firms, and every row of a pair whose main
    headline is withheld, are left out; counts of one pair's runs are coarsened like estimate families.
    """
    sensitivity = pd.DataFrame(columns=SENSITIVITY_COLUMNS) if sensitivity is None else sensitivity
    robustness = pd.DataFrame(columns=ROBUSTNESS_COLUMNS + ["n_treated", "n_control"]) if robustness is None \
        else robustness
    studies = {"cs_did": (UNIVERSAL_EVENT_STUDY, HEADLINE), "twfe": ("dynamic", HEADLINE)}
    withheld = {(key[0], key[1], key[2]) for key in suppressed if key[3] in studies.get(key[2], ())}
    keep = [(s, o, e) not in withheld for s, o, e in sensitivity[["service", "outcome", "estimator"]].itertuples(
        index=False)]
    headline_withheld = {(key[0], key[1]) for key in suppressed if key[2:] == ("cs_did", HEADLINE, None)}
    small = robustness["estimate"].notna() & ((robustness["n_treated"] < min_firms)
                                              | (robustness["n_control"] < min_firms))
    pair_withheld = [(s, o) in headline_withheld for s, o in robustness[["service", "outcome"]].itertuples(index=False)]
    shown = robustness.loc[~small & ~np.array(pair_withheld, dtype=bool)]
    return (sensitivity.loc[keep].reset_index(drop=True),
            _round_close_counts(shown, ["service", "outcome"], min_firms).reset_index(drop=True))


def write_robustness_files(sensitivity: pd.DataFrame, robustness: pd.DataFrame, output_dir: Path) -> dict[str, Path]:
    """sensitivity.csv and robustness.csv (already made publishable by :func:`publishable_robustness`)."""
    paths = {"sensitivity": Path(output_dir) / "sensitivity.csv", "robustness": Path(output_dir) / "robustness.csv"}
    write_csv(sensitivity, paths["sensitivity"], float_format="%.10g")
    write_csv(robustness, paths["robustness"], float_format="%.10g")
    return paths


# --- view models ------------------------------------------------------------

def _p_text(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _present(values, order) -> list[str]:
    present = set(values)
    return [key for key in order if key in present]


def _overall(estimates: pd.DataFrame, estimator: str) -> pd.DataFrame:
    """The headline rows (no event time) of one estimator."""
    return estimates[(estimates["estimator"] == estimator) & (estimates["aggregation"] == HEADLINE)
                     & estimates["event_time"].isna()]


def headline_table(estimates: pd.DataFrame, disclosure: DisclosureResult, diagnostics: Mapping,
                   alpha: float) -> pd.DataFrame:
    """Service x outcome headline effects in reporting units: CS-DiD, beside it CS-DiD without covariates and
    TWFE on the same window with the reading of their gap, and the service's SMS rating."""
    suppressed = disclosure.suppressed_keys()
    rows = []
    headline = _overall(estimates, "cs_did")
    others = {name: _overall(estimates, name) for name in ("cs_did_no_covariates", "twfe")}
    for treatment in _present(headline["treatment"], SERVICES):
        rating = rate_service(treatment, diagnostics)
        for outcome in _present(headline.loc[headline["treatment"] == treatment, "outcome"], OUTCOMES):
            record = headline[(headline["treatment"] == treatment) & (headline["outcome"] == outcome)].iloc[0]
            published = estimate_key(record) not in suppressed
            value, lower, upper = display_interval(outcome, record["estimate"], record["ci_lower"], record["ci_upper"])
            beside = {}
            for name, frame in others.items():
                hit = frame[(frame["treatment"] == treatment) & (frame["outcome"] == outcome)]
                shown = published and not hit.empty and estimate_key(hit.iloc[0]) not in suppressed
                beside[name] = float(hit["estimate"].iloc[0]) if shown else np.nan
            comparable = published and all(np.isfinite(v) for v in beside.values())
            rows.append({
                "service": service_title(treatment), "treatment": treatment, "outcome": outcome,
                "outcome_label": outcome_spec(outcome).label, "unit": outcome_spec(outcome).unit,
                "unit_short": outcome_spec(outcome).unit_short,
                "estimate": value if published else np.nan, "ci_lower": lower if published else np.nan,
                "ci_upper": upper if published else np.nan,
                "p_value": float(record["p_value"]) if published else np.nan,
                "n_treated": int(record["n_treated"]) if published else pd.NA,
                "n_control": int(record["n_control"]) if published else pd.NA,
                "no_covariates": outcome_spec(outcome).display(beside["cs_did_no_covariates"]),
                "twfe": outcome_spec(outcome).display(beside["twfe"]),
                "comparison": (comparison_sentence(outcome, record["estimate"], beside["cs_did_no_covariates"],
                                                   beside["twfe"]) if comparable else ""),
                "sms_level": rating.level, "rating_reason": rating.explanation, "published": published,
            })
    return pd.DataFrame(rows, columns=HEADLINE_COLUMNS)


HEADLINE_COLUMNS = ["service", "treatment", "outcome", "outcome_label", "unit", "unit_short", "estimate", "ci_lower",
                    "ci_upper", "p_value", "n_treated", "n_control", "no_covariates", "twfe", "comparison",
                    "sms_level", "rating_reason", "published"]


def _headline_cells(row: Mapping) -> dict:
    decimals = outcome_spec(row["outcome"]).decimals
    if not row["published"]:
        mark = SUPPRESSED_MARK
        return {"estimate": mark, "ci": mark, "p": mark, "n_treated": mark, "n_control": mark,
                "no_covariates_text": mark, "twfe_text": mark}
    if not is_estimable(row["ci_lower"], row["ci_upper"]):
        ci = "could not be estimated"
    else:
        ci = f"{format_number(row['ci_lower'], decimals)} to {format_number(row['ci_upper'], decimals)}"
    return {"estimate": format_number(row["estimate"], decimals), "ci": ci,
            "p": _p_text(row["p_value"]), "n_treated": f"{row['n_treated']:,}", "n_control": f"{row['n_control']:,}",
            "no_covariates_text": format_number(row["no_covariates"], decimals),
            "twfe_text": format_number(row["twfe"], decimals)}


def headline_markdown(headline: pd.DataFrame, intervals: Intervals = Intervals()) -> str:
    header = ["Service", "Outcome", "Unit", "Estimate", intervals.ci, "p-value", "Treated firms",
              "Comparison firms", "CS-DiD without covariates", "TWFE", "SMS level"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in headline.to_dict("records"):
        cells = _headline_cells(row)
        lines.append("| " + " | ".join([row["service"], row["outcome_label"], row["unit"], cells["estimate"],
                                         cells["ci"], cells["p"], cells["n_treated"], cells["n_control"],
                                         cells["no_covariates_text"], cells["twfe_text"],
                                         str(row["sms_level"])]) + " |")
    return "\n".join(lines)


def _long_run_note(cs: pd.DataFrame, support: pd.DataFrame | None, horizon: int) -> str:
    """Event times beyond the headline window with the cohorts and firms behind them."""
    late = cs[cs["event_time"] > horizon].sort_values("event_time")
    if late.empty:
        return ""
    parts = []
    for _, row in late.iterrows():
        hit = None if support is None else support[
            (support["treatment"] == row["treatment"]) & (support["outcome"] == row["outcome"])
            & (support["estimator"] == row["estimator"]) & (support["aggregation"] == row["aggregation"])
            & (support["event_time"] == row["event_time"])]
        cohorts = "" if hit is None or hit.empty else f"{int(hit['n_cohorts'].iloc[0])} cohort" + (
            "s" if int(hit["n_cohorts"].iloc[0]) != 1 else "") + " "
        parts.append(f"e = {row['event_time']:g}: {cohorts}({int(row['n_treated']):,} firms)")
    return f"Event times after {horizon} rest on fewer cohorts: " + "; ".join(parts) + "."


def _event_studies(published: pd.DataFrame, full: pd.DataFrame, suppressed: set[tuple],
                   intervals: Intervals, support: pd.DataFrame | None, horizon: int) -> list[dict]:
    """CS-DiD with a universal base period (``dynamic_universal``) and TWFE (``dynamic``, reference e = -1)."""
    sections = []
    for treatment in _present(full["treatment"], SERVICES):
        figures = []
        for outcome in _present(full.loc[full["treatment"] == treatment, "outcome"], OUTCOMES):
            rows = published[(published["treatment"] == treatment) & (published["outcome"] == outcome)]
            cs = rows[(rows["estimator"] == "cs_did") & (rows["aggregation"] == UNIVERSAL_EVENT_STUDY)]
            twfe = rows[(rows["estimator"] == "twfe") & (rows["aggregation"] == "dynamic")]
            hidden = sum(1 for key in suppressed if key[0] == treatment and key[1] == outcome
                         and key[3] in ("dynamic", UNIVERSAL_EVENT_STUDY))
            note = (f"{hidden} event-time estimate(s) withheld because they rest on too few firms."
                    if hidden else "")
            figure = {"outcome": outcome_spec(outcome).label, "note": note, "plot": None,
                      "long_run": _long_run_note(cs, support, horizon)}
            if not cs.empty:
                figure["plot"] = event_study_plot(cs, twfe, treatment, outcome, intervals)
            figures.append(figure)
        sections.append({"title": service_title(treatment), "figures": figures})
    return sections


def _pretest_rows(pretests: pd.DataFrame | None, alpha: float) -> list[dict]:
    if pretests is None:
        return []
    rows = []
    for record in pretests.to_dict("records"):
        p_value = record["p_value"]
        if pd.isna(p_value):
            verdict = "not testable (no pre-periods)"
        elif p_value < alpha:
            verdict = "rejects parallel pre-trends"
        else:
            verdict = "no evidence against parallel pre-trends"
        power, slope = record.get("power", np.nan), record.get("trend_slope", np.nan)
        spec = outcome_spec(record["outcome"])
        rows.append({"service": service_title(record["treatment"]), "outcome": spec.label,
                     "W": "n/a" if pd.isna(record["W"]) else f"{record['W']:.2f}",
                     "df": "n/a" if pd.isna(record["df"]) else f"{int(record['df'])}",
                     "p": _p_text(p_value), "verdict": verdict,
                     "slope": "n/a" if pd.isna(slope) else f"{format_number(spec.display(slope), spec.decimals + 1)} "
                                                           f"{spec.unit_short}",
                     "power": "n/a" if pd.isna(power) else f"{100 * power:.0f} %"})
    return rows


def _pretest_summary(pretests: pd.DataFrame | None, alpha: float) -> str:
    """How many pre-tests reject, against how many would by chance alone."""
    if pretests is None or pretests["p_value"].notna().sum() == 0:
        return ""
    tested = int(pretests["p_value"].notna().sum())
    rejecting = int((pretests["p_value"] < alpha).sum())
    verb = "rejects" if rejecting == 1 else "reject"
    return (f"{rejecting} of {tested} pre-trend tests {verb} at &alpha; = {alpha:g}; about {tested * alpha:.1f} "
            "would by chance alone, even if every trend were parallel.")


def _balance_sections(balance: pd.DataFrame | None, overlap: pd.DataFrame | None,
                      treated_ok: set[str], min_firms: int) -> tuple[list[dict], list[dict]]:
    """Balance tables/plots and disclosure-safe overlap plots per service."""
    sections, checks = [], []
    coarse = None
    if overlap is not None and not overlap.empty:
        coarse, checks = coarsen_overlap(overlap, min_firms)
    treatments = set() if balance is None else set(balance["treatment"])
    treatments |= set() if overlap is None else set(overlap["treatment"])
    for treatment in _present(treatments, SERVICES):
        if treatment not in treated_ok:
            sections.append({"title": service_title(treatment), "withheld": True})
            continue
        section = {"title": service_title(treatment), "withheld": False, "rows": [], "balance_plot": None,
                   "overlap_plot": None, "unsupported": None}
        if balance is not None:
            rows = balance[balance["treatment"] == treatment]
            section["rows"] = [{"covariate": variable_label(r["covariate"]), "mean_treated": f"{r['mean_treated']:.3g}",
                                "mean_unweighted": f"{r['mean_control_unweighted']:.3g}",
                                "mean_weighted": f"{r['mean_control_weighted']:.3g}",
                                "smd_unweighted": format_number(r["smd_unweighted"], 2),
                                "smd_weighted": format_number(r["smd_weighted"], 2)}
                               for r in rows.to_dict("records")]
            if not rows.empty:
                section["balance_plot"] = balance_plot(balance, treatment)
        if coarse is not None and (coarse["treatment"] == treatment).any():
            section["overlap_plot"] = overlap_plot(coarse, treatment)
            share = unsupported_share(overlap, treatment)
            section["unsupported"] = f"{share:.1%}" if share == share else "n/a"
        sections.append(section)
    return sections, checks


def _mde_rows(mde: pd.DataFrame | None) -> list[dict]:
    if mde is None:
        return []
    rows = mde[mde["aggregation"] == HEADLINE]
    return [{"service": service_title(r["treatment"]), "outcome": outcome_spec(r["outcome"]).label,
             "mde": format_number(abs(outcome_spec(r["outcome"]).display(r["mde"])), outcome_spec(r["outcome"]).decimals),
             "unit": outcome_spec(r["outcome"]).unit} for r in rows.to_dict("records")]


def _quality_rows(data_quality: Mapping, firm_ids) -> list[dict]:
    """Per-source quality summary; free-text warnings are redacted since upstream may quote firm ids."""
    rows = []
    for source, record in sorted(data_quality["sources"].items()):
        rules = sorted((record.get("rules") or {}).items(), key=lambda item: -item[1])
        share = record.get("quarantine_share")
        if share is None:
            share = record["rows_quarantined"] / record["rows_in"] if record["rows_in"] else 0.0
        rows.append({
            "source": source, "file": Path(str(record.get("file", ""))).name, "format": record.get("format", ""),
            # an Excel or Parquet file has no text encoding: print what applies or nothing
            "encoding": record.get("encoding") or "", "contract": f"{record.get('contract_id', 'n/a')} "
                                                               f"v{record.get('contract_version', 'n/a')}",
            "rows_in": f"{int(record['rows_in']):,}", "rows_clean": f"{int(record['rows_clean']):,}",
            "rows_quarantined": f"{int(record['rows_quarantined']):,}", "share": f"{share:.1%}",
            "threshold": (f"{record['quarantine_threshold']:.0%}" if record.get("quarantine_threshold") is not None
                          else "n/a"),
            "reasons": [f"{rule} ({count:,})" for rule, count in rules[:3] if count],
            "warnings": [redact_identifiers(str(w), firm_ids) for w in record.get("warnings") or []],
        })
    return rows


#: every table is per year (periods differ in length, so totals over a period would jump by construction)
DESCRIPTIVE_TABLES = [
    ("firms", "Firms observed per year", "average over the period's years", lambda v: f"{v:,.0f}"),
    ("exporters", "Exporting firms per year", "average over the period's years", lambda v: f"{v:,.0f}"),
    ("total_export_value", "Export value per year", "EUR million, average over the period's years",
     lambda v: f"{v / 1e6:,.1f}"),
    ("mean_export_value", "Mean export value per exporting firm-year", "EUR thousand", lambda v: f"{v / 1e3:,.0f}"),
]


def _cell_grid(subset: pd.DataFrame, disclosure: DisclosureResult, fmt, empty: str,
               sort_rows: bool = False) -> tuple[list, list]:
    """Rows x columns of one cell table with suppressed cells marked; total rows go last.

    `sort_rows` orders row labels (cohort years) when the services list different cohorts.
    """
    columns = list(dict.fromkeys(subset["column"]))
    interior = subset.loc[~subset["is_total"].astype(bool), "row"]
    totals = subset.loc[subset["is_total"].astype(bool), "row"]
    labels = list(dict.fromkeys(sorted(interior, key=str) if sort_rows else interior))
    labels += [label for label in dict.fromkeys(totals) if label not in labels]
    rows = []
    for label in labels:
        values = []
        for column in columns:
            hit = subset[(subset["row"] == label) & (subset["column"] == column)]
            if hit.empty:
                values.append(empty)
            elif disclosure.is_cell_suppressed(hit["table"].iloc[0], label, column):
                values.append(SUPPRESSED_MARK)
            else:
                values.append(fmt(hit["value"].iloc[0]))
        rows.append({"label": label, "cells": values, "total": label in set(totals)})
    return columns, rows


def _descriptive_tables(cells: pd.DataFrame, disclosure: DisclosureResult) -> list[dict]:
    tables = []
    for name, caption, unit, fmt in DESCRIPTIVE_TABLES:
        subset = cells[cells["table"] == name]
        if subset.empty:
            continue
        columns, rows = _cell_grid(subset, disclosure, fmt, "")
        tables.append({"caption": f"{caption} ({unit}), by group and period", "columns": columns, "rows": rows})
    return tables


def _cohort_table(cells: pd.DataFrame, disclosure: DisclosureResult) -> dict | None:
    subset = cells[cells["table"] == "cohorts"]
    if subset.empty:
        return None
    columns, rows = _cell_grid(subset, disclosure, lambda value: f"{int(value):,}", "\u2013", sort_rows=True)
    return {"columns": [service_title(c) for c in columns], "rows": rows}


def _cohort_notes(cohorts: pd.DataFrame | None, min_firms: int) -> dict:
    """Who was left out of estimation, per service, in plain words.

    Set-aside cohorts are counted with the evaluation's reason but their
    sizes are not printed; firms without pre-support accounts are summed per
    service, and a sum below `min_firms` is shown as "fewer than" so that
    no small group of firms is singled out.
    """
    notes: dict = {"known": cohorts is not None, "n_set_aside": 0, "set_aside": [], "without_baseline": []}
    if cohorts is None or cohorts.empty:
        return notes
    used = cohorts["used"].astype(bool)
    notes["n_set_aside"] = int((~used).sum())
    for treatment in _present(cohorts["treatment"], SERVICES):
        rows = cohorts[cohorts["treatment"] == treatment]
        unused = rows[~rows["used"].astype(bool)]
        if not unused.empty:
            reasons = unused["reason"].fillna("").replace("", "not used in estimation").value_counts(sort=False)
            notes["set_aside"].append(f"{service_title(treatment)}: "
                                      + "; ".join(f"{n} ({reason})" for reason, n in reasons.items()))
        left_out = int(rows["n_without_baseline"].sum())
        if left_out:
            count = f"{left_out:,}" if left_out >= min_firms else f"fewer than {min_firms}"
            notes["without_baseline"].append(f"{service_title(treatment)}: {count} firms")
    return notes


def _firm_count(n: int, min_firms: int) -> str:
    """A count of firms, shown as "fewer than" below the disclosure minimum so no small group is singled out."""
    return f"{n:,}" if n >= min_firms or n == 0 else f"fewer than {min_firms}"


def _panel_account_rows(account: pd.DataFrame | None, min_firms: int) -> list[dict]:
    """Where the clean rows of each source went (the panel builder's account, row for row)."""
    if account is None:
        return []
    return [{"source": r["source"], "status": r["status"], "reason": r["reason"], "rows": f"{int(r['rows']):,}",
             "firms": _firm_count(int(r["firms"]), min_firms)} for r in account.to_dict("records")]


def _left_out_rows(left_out: pd.DataFrame | None, min_firms: int) -> list[dict]:
    """Firms and firm-years each service's estimation set aside, with the evaluation's reason."""
    if left_out is None:
        return []
    return [{"service": service_title(r["treatment"]),
             "outcome": outcome_spec(r["outcome"]).label if r["outcome"] in OUTCOMES else "all outcomes",
             "reason": r["reason"], "firms": _firm_count(int(r["firms"]), min_firms),
             "firm_years": f"{int(r['firm_years']):,}"} for r in left_out.to_dict("records")]


def _coverage_notes(coverage: pd.DataFrame | None, account: pd.DataFrame | None, min_firms: int) -> dict:
    """Years the customs extract does not cover, and supported firms that never reached the panel."""
    from analyses.panel import REASON_NO_ACCOUNTS

    uncovered = [] if coverage is None else [
        f"{int(r['year'])} ({r['reason']})" for r in coverage.to_dict("records") if not r["covered"]]
    supported_without_accounts = 0
    if account is not None:
        lost = account[(account["source"] == "participation") & (account["status"] == "left out")
                       & (account["reason"] == REASON_NO_ACCOUNTS)]
        supported_without_accounts = int(lost["firms"].sum())
    return {"uncovered": uncovered,
            "supported_without_accounts": (_firm_count(supported_without_accounts, min_firms)
                                           if supported_without_accounts else "")}


def _not_estimable_rows(not_estimable: pd.DataFrame | None, firm_ids) -> list[dict] | None:
    """Services, outcomes or aggregations the evaluation could not estimate (None: not reported by the evaluation).

    Reasons are redacted like any upstream text.
    """
    if not_estimable is None:
        return None
    rows = []
    for r in not_estimable.to_dict("records"):
        part = ""
        if r.get("estimator") or r.get("aggregation"):
            part = " (" + ", ".join(filter(None, [ESTIMATOR_LABELS.get(r.get("estimator"), r.get("estimator")),
                                                  r.get("aggregation")])) + ")"
        outcome = OUTCOMES[r["outcome"]].label if r["outcome"] in OUTCOMES else str(r["outcome"] or "all outcomes")
        rows.append({"service": service_title(r["treatment"]), "outcome": outcome + part,
                     "reason": redact_identifiers(str(r["reason"]), firm_ids)})
    return rows


def _dropped_rows(cells: pd.DataFrame | None, cohorts: pd.DataFrame | None, firm_ids) -> list[dict]:
    """ATT(g,t) cells left out of the averages, one row per service, outcome, estimator, cohort and reason."""
    if cells is None or cells.empty:
        return []
    rows = []
    keys = ["treatment", "outcome", "estimator", "cohort", "reason"]
    for (treatment, outcome, estimator, cohort, reason), group in cells.groupby(keys, sort=False):
        whole = [] if cohorts is None or cohorts.empty else sorted(set(cohorts.loc[
            (cohorts["treatment"] == treatment) & (cohorts["outcome"] == outcome)
            & (cohorts["estimator"] == estimator) & (cohorts["cohort"] == cohort), "aggregation"]))
        rows.append({"service": service_title(treatment), "outcome": outcome_spec(outcome).label,
                     "estimator": ESTIMATOR_LABELS.get(estimator, estimator), "cohort": int(cohort),
                     "years": ", ".join(str(int(t)) for t in sorted(set(group["time"]))),
                     "aggregations": ", ".join(dict.fromkeys(group["aggregation"])),
                     "whole": (f"cohort {int(cohort)} left out entirely ({', '.join(whole)})" if whole else ""),
                     "reason": redact_identifiers(str(reason), firm_ids)})
    return rows


def _ratings(headline: pd.DataFrame, diagnostics: Mapping) -> list[dict]:
    """One evidence rating per service (the design's), as the headline table carries it, with every reason and
    what holds."""
    services = headline.drop_duplicates("treatment")
    return [{"service": r["service"], "level": r["sms_level"], "reason": r["rating_reason"],
             "notes": list(rate_service(r["treatment"], diagnostics).notes)} for r in services.to_dict("records")]


RUN_LABELS = {"main": "Main estimate", "anticipation": "Anticipation", "comparison_group": "Comparison group",
              "covariate_timing": "Covariate timing", "dominance": "Largest exporters dropped",
              "placebo": "Placebo: earlier starts"}


def _robustness_rows(rows: pd.DataFrame, outcome: str, mark: str) -> list[dict]:
    spec = outcome_spec(outcome)
    out = []
    for r in rows.to_dict("records"):
        if r.get("withheld"):
            cells = dict.fromkeys(("estimate", "ci", "p", "n_treated", "n_control"), mark)
        elif r["estimate"] != r["estimate"]:
            cells = {"estimate": "not estimable", "ci": "", "p": "", "n_treated": "", "n_control": ""}
        else:
            value, lower, upper = display_interval(outcome, r["estimate"], r["ci_lower"], r["ci_upper"])
            cells = {"estimate": format_number(value, spec.decimals),
                     "ci": f"{format_number(lower, spec.decimals)} to {format_number(upper, spec.decimals)}",
                     "p": _p_text(r["p_value"]), "n_treated": f"{int(r['n_treated']):,}",
                     "n_control": f"{int(r['n_control']):,}"}
        out.append({"run": RUN_LABELS.get(r["run"], r["run"]), "description": r["description"],
                    "reason": r.get("reason") or "", "main": r["run"] == "main", **cells})
    return out


def _robustness_sections(headline: pd.DataFrame, sensitivity: pd.DataFrame, robustness: pd.DataFrame,
                         all_robustness: pd.DataFrame | None, event_studies: pd.DataFrame | None,
                         ratings: list[dict], mark: str) -> list[dict]:
    """Per service: each outcome's sensitivity plot and plain sentence, its robustness runs beside the main
    estimate (withheld rows marked), and the service's rating with every reason."""
    from analyses.honest_did import robustness_sentence

    sections = []
    rating_of = {r["service"]: r for r in ratings}
    shown_keys = set(zip(robustness["service"], robustness["outcome"], robustness["run"]))
    for treatment in _present(headline["treatment"], SERVICES):
        outcomes = []
        for outcome in _present(headline.loc[headline["treatment"] == treatment, "outcome"], OUTCOMES):
            spec = outcome_spec(outcome)
            rows = sensitivity[(sensitivity["service"] == treatment) & (sensitivity["outcome"] == outcome)
                               & (sensitivity["estimator"] == "cs_did")]
            entry = {"outcome": spec.label, "plot": None, "sentence": "", "note": "", "runs": []}
            if not rows.empty:
                breakdown = rows.loc[(rows["target"] == "average") & (rows["method"] == "C-LF"), "breakdown"]
                entry["plot"] = sensitivity_plot(rows, treatment, outcome, "average")
                subject = f"the effect of {service_title(treatment).lower()} on {spec.noun}"
                entry["sentence"] = robustness_sentence(subject, float(breakdown.iloc[0]) if len(breakdown)
                                                        else float("nan"))
            else:
                reason = "" if event_studies is None else "; ".join(event_studies.loc[
                    (event_studies["treatment"] == treatment) & (event_studies["outcome"] == outcome)
                    & (event_studies["estimator"] == "cs_did"), "reason"].astype(str))
                entry["note"] = ("No sensitivity analysis" + (f": {reason}" if reason else
                                                              ": its estimates are withheld or were not computed") + ".")
            runs = pd.DataFrame() if all_robustness is None else all_robustness[
                (all_robustness["service"] == treatment) & (all_robustness["outcome"] == outcome)]
            if not runs.empty:
                published = robustness[(robustness["service"] == treatment) & (robustness["outcome"] == outcome)]
                merged = runs[["service", "outcome", "run", "description"]].merge(
                    published.drop(columns="description"), on=["service", "outcome", "run"], how="left")
                merged["withheld"] = [(s, o, r) not in shown_keys for s, o, r in
                                      merged[["service", "outcome", "run"]].itertuples(index=False)]
                entry["runs"] = _robustness_rows(merged, outcome, mark)
            outcomes.append(entry)
        title = service_title(treatment)
        sections.append({"title": title, "outcomes": outcomes, "rating": rating_of.get(title)})
    return sections


def _plan_items(plan: Mapping, comparison: str) -> dict:
    covariates = plan.get("covariates") or []
    lookback = plan.get("lookback_years", 3)
    definitions = [{"label": OUTCOMES[o].label, "definition": OUTCOMES[o].definition.format(k=lookback)}
                   for o in plan.get("outcomes") or [] if o in OUTCOMES]
    years = plan.get("panel_years") or plan.get("years")
    return {
        "min_cohort_size": plan.get("min_cohort_size", MIN_FIRMS),
        "cohort_floor": cohort_floor(plan.get("min_cohort_size", MIN_FIRMS)),
        "disclosure_floor": MIN_FIRMS,
        "control_group": plan.get("control_group", "nevertreated"),
        "comparison": comparison,
        "est_method": plan.get("est_method", "dr"),
        "covariates": "; ".join(variable_label(str(c)) for c in covariates) if covariates else "none",
        "variables": [{"label": OUTCOMES[o].label, "code": o, "kind": "outcome"}
                      for o in plan.get("outcomes") or [] if o in OUTCOMES]
        + [{"label": variable_label(str(c)), "code": str(c), "kind": "covariate"} for c in covariates],
        "covariates_first_year": plan.get("covariate_timing") == "first_year",
        "outcome_definitions": definitions,
        "base_period": plan.get("base_period", "varying"),
        "bootstrap": plan.get("bootstrap_iterations", plan.get("biters", plan.get("bootstrap", "n/a"))),
        "alpha": plan.get("alpha", 0.05),
        "anticipation": plan.get("anticipation", 0),
        "years": (f"{min(years)}\u2013{max(years)}" if isinstance(years, (list, tuple)) and years else years or "n/a"),
        "horizon": int(plan.get("headline_horizon", 3)),
        "window": window_words(int(plan.get("headline_horizon", 3)), "the year support started"),
    }


#: The families that estimate combinations of services, as the limitations name them.
COMBINATION_FAMILIES = {"bundles": "starting with two services within a year",
                        "sequences": "adding a second service after the first"}


def combinations_run(plan: Mapping, rows: pd.DataFrame) -> list[str]:
    """What the run estimated about combining services: the bundle and sequence families the plan's
    ``families.run`` names, or that left rows (``rows``: all estimates, column ``family``), in words; empty
    when neither ran (the headline alone says nothing about combinations)."""
    families = plan.get("families")
    planned = set((families or {}).get("run") or ()) if isinstance(families, Mapping) else set()
    ran = planned | set(rows["family"])
    return [words for family, words in COMBINATION_FAMILIES.items() if family in ran]


def _robustness_plan(plan: Mapping) -> dict:
    """The sensitivity grids and robustness runs the plan registered, for the methods annex."""
    mbar = plan.get("sensitivity_mbar") or [0.5, 1.0, 1.5, 2.0]
    return {"mbar": ", ".join(f"{m:g}" for m in mbar),
            "m": ", ".join(f"{m:g}" for m in plan.get("sensitivity_m") or []),
            "runs": list(plan.get("robustness_runs", [])),
            "dominance_share": f"{float(plan.get('dominance_share', 0.01)):.0%}",
            "placebo_years": int(plan.get("placebo_years", 2))}


# --- rendering --------------------------------------------------------------

_TABLE_BODY = re.compile(r"<tbody>(.*?)</tbody>", re.S)
_TABLE_ROW = re.compile(r"<tr\b.*?</tr>", re.S)


def keep_table_ends(html: str, rows: int = 3) -> str:
    """Group the first and last `rows` rows of every table body so a page break never leaves fewer
    than `rows` rows of a table on a page (the print CSS keeps ``tbody.keep`` whole; WeasyPrint
    honours ``break-inside: avoid`` on row groups). Short bodies, and bodies whose cells span rows,
    are kept whole."""
    def group(match: re.Match) -> str:
        body = match.group(1)
        found = _TABLE_ROW.findall(body)
        if len(found) <= 2 * rows or "rowspan" in body:
            return f'<tbody class="keep">{body}</tbody>'
        head, middle, tail = ("\n".join(part) for part in (found[:rows], found[rows:-rows], found[-rows:]))
        return (f'<tbody class="keep part">{head}</tbody><tbody class="part">{middle}</tbody>'
                f'<tbody class="keep part">{tail}</tbody>')

    return _TABLE_BODY.sub(group, html)


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                              autoescape=jinja2.select_autoescape(
                                  ["html", "j2"], disabled_extensions=["css"], default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_pdf(html: str, path: Path) -> tuple[list[str], int]:
    """Write the PDF and return its top-level bookmarks and page count."""
    import weasyprint
    from weasyprint.urls import URLFetcher

    # Only inline data: URIs may be fetched, and any other reference stops the
    # render, so the PDF can never depend on (or leak to) the network.
    offline = URLFetcher(allowed_protocols=["data"], fail_on_errors=True)
    document = weasyprint.HTML(string=html, url_fetcher=offline).render()
    bookmarks = [label for label, *_ in document.make_bookmark_tree()]
    document.write_pdf(path)
    return bookmarks, len(document.pages)


def build_report(estimates: pd.DataFrame, diagnostics: dict, data_quality: dict, panel: pd.DataFrame,
                 lineage: dict, output_dir: Path, settings: ReportSettings = ReportSettings(),
                 input_locations: Mapping[str, Path] | None = None,
                 mechanisms: pd.DataFrame | None = None) -> ReportResult:
    """Check, render and write the impact report and its companions into `output_dir`.

    ``input_locations`` (source → file) lets the lineage footer re-hash the inputs without
    printing where they are. ``mechanisms``: the mechanism families' rows (``MECHANISM_COLUMNS``, the
    families' assets concatenated), put through the same disclosure control, published in estimates.csv
    beside the headline rows and shown in the "How support works" section.
    """
    started = time.perf_counter()
    combined = combine_estimates(estimates, mechanisms)
    headline_family = combined["family"] == HEADLINE_FAMILY
    estimates = combined.loc[headline_family]
    validate_diagnostics(diagnostics)
    validate_data_quality(data_quality)
    lineage_module.validate_lineage(lineage)
    output_dir = Path(output_dir)
    plan = diagnostics.get("plan") or {}
    intervals = Intervals.from_plan(plan)
    alpha = intervals.alpha

    firm_ids = panel["firm_id"].unique() if "firm_id" in panel.columns else []
    cells = describe_panel(panel)
    cohorts = diagnostics.get("cohorts")
    if cohorts is not None:
        # only cohorts used in estimation are published; the others are counted in the notes
        used = cohorts[cohorts["used"].astype(bool)]
        if not used.empty:
            cells = pd.concat([cells, cohort_cells(used)], ignore_index=True)
    disclosure = check_disclosure(combined, cells, settings)
    suppressed = disclosure.suppressed_keys()
    published = drop_suppressed(estimates, disclosure)
    suppressed_pairs = {(key[0], key[1]) for key in suppressed
                        if key[2] == "cs_did" and key[3] == HEADLINE and key[4] is None and key[5] == ""
                        and key[7] == HEADLINE_FAMILY}

    paragraphs = summary_paragraphs(published, diagnostics, suppressed_pairs, settings.min_firms)
    headline = headline_table(estimates, disclosure, diagnostics, alpha)
    treated_ok = {row["treatment"] for row in headline.to_dict("records") if row["published"]}
    balance_sections, overlap_checks = _balance_sections(
        diagnostics.get("balance"), diagnostics.get("overlap"), treated_ok, settings.min_firms)
    disclosure = disclosure.with_checks(pd.DataFrame(overlap_checks, columns=disclosure.checks.columns))
    sensitivity, robustness = publishable_robustness(diagnostics.get("sensitivity"), diagnostics.get("robustness"),
                                                     suppressed, settings.min_firms)
    ratings = _ratings(headline, diagnostics)

    context = {
        "settings": settings,
        "sections": CORE_SECTIONS,
        "contents": [{"anchor": _ANCHORS[title], "title": title} for title in SECTION_TITLES],
        "mechanism_title": MECHANISM_SECTION,
        "mechanisms": mechanism_section(drop_suppressed(combined.loc[~headline_family], disclosure), intervals,
                                        withheld_rows(disclosure.suppressed_estimates, settings.min_firms), plan,
                                        median_first_doses(panel)),
        "paragraphs": [{"title": service_title(t), "text": text} for t, text in paragraphs.items()],
        "headline": [{"title": title, "rows": [{**row, **_headline_cells(row)} for row in rows.to_dict("records")]}
                     for title, rows in headline.groupby("service", sort=False)],
        "event_studies": _event_studies(published, estimates, suppressed, intervals, diagnostics.get("cohorts_behind"),
                                        int(plan.get("headline_horizon", 3))),
        "pretests": _pretest_rows(diagnostics.get("pretests"), alpha),
        "pretest_summary": _pretest_summary(diagnostics.get("pretests"), alpha),
        "comparisons": [row for row in headline.to_dict("records") if row["comparison"]],
        "dropped": _dropped_rows(diagnostics.get("dropped_cells"), diagnostics.get("dropped_cohorts"), firm_ids),
        "nothing_estimated": estimates.empty,
        "balance_sections": balance_sections,
        "mde": _mde_rows(diagnostics.get("mde")),
        "quality": _quality_rows(data_quality, firm_ids),
        "descriptives": _descriptive_tables(cells, disclosure),
        "cohorts": _cohort_table(cells, disclosure),
        "cohort_notes": _cohort_notes(cohorts, settings.min_firms),
        "panel_account": _panel_account_rows(diagnostics.get("panel_account"), settings.min_firms),
        "left_out": _left_out_rows(diagnostics.get("left_out"), settings.min_firms),
        "coverage_notes": _coverage_notes(diagnostics.get("export_coverage"), diagnostics.get("panel_account"),
                                          settings.min_firms),
        "not_estimable": _not_estimable_rows(diagnostics.get("not_estimable"), firm_ids),
        "plan": _plan_items(plan, comparison_phrase(plan.get("control_group"))),
        "combinations": combinations_run(plan, combined),
        "ratings": ratings,
        "robust_sections": _robustness_sections(headline, sensitivity, robustness, diagnostics.get("robustness"),
                                                diagnostics.get("event_studies"), ratings, SUPPRESSED_MARK),
        "robustness_plan": _robustness_plan(plan),
        "disclosure": disclosure.metadata(),
        "mark": SUPPRESSED_MARK,
        "lineage": lineage,
        "inputs": lineage_module.input_rows(lineage, data_quality, input_locations),
        "alpha": alpha,
        "intervals": intervals,
    }
    html = keep_table_ends(_environment().get_template("impact_report.html.j2").render(**context))

    disclosure = disclosure.with_checks(scan_for_identifiers({"impact_report.html": html}, firm_ids))
    if not disclosure.passed:
        failures = disclosure.metadata()["failures"]
        raise ValueError(f"disclosure check failed; nothing was written: {failures}")

    output_dir.mkdir(parents=True, exist_ok=True)
    html_path = output_dir / "impact_report.html"
    html_path.write_text(html, encoding="utf-8")
    estimate_files = write_estimate_files(combined, output_dir, disclosure)
    if "sensitivity" in diagnostics or "robustness" in diagnostics:
        estimate_files.update(write_robustness_files(sensitivity, robustness, output_dir))
    pdf_path, bookmarks, pages = None, [], 0
    if "pdf" in settings.formats:
        pdf_path = output_dir / "impact_report.pdf"
        bookmarks, pages = render_pdf(html, pdf_path)
    return ReportResult(html_path=html_path, pdf_path=pdf_path, disclosure=disclosure, headline=headline,
                        headline_markdown=headline_markdown(headline, intervals), summary_paragraphs=paragraphs,
                        estimate_files=estimate_files, pdf_bookmarks=bookmarks, pdf_pages=pages,
                        seconds=time.perf_counter() - started)
