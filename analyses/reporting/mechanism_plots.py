"""Figures of the "How support works" section: dose-response curves and a forest plot of subgroup effects.

Drawn like the other report figures (``analyses.reporting.plots``): object API, greyscale, labels instead of
code names, alt text from the plotted numbers, axis words exposed on the returned ``Plot``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.reporting.mechanisms import SUBGROUP_NAMES, in_sentence, mechanism_outcome, subgroup_title
from analyses.reporting.plots import POST_COLOUR, Plot, _new_figure, _render
from analyses.reporting.summary import Intervals, format_number, service_title


def dose_plot(curve: pd.DataFrame, treatment: str, outcome: str, dose_label: str, dose_per: float,
              intervals: Intervals = Intervals()) -> Plot:
    """ATT(d) of one service and outcome over the dose grid with its uniform band (``cs_dose`` ``dose_level`` rows
    with a ``dose``); ``dose_per`` divides the raw dose for the axis (grant euros in thousands)."""
    spec = mechanism_outcome(outcome)
    curve = curve.sort_values("dose")
    dose = curve["dose"].to_numpy(dtype=float) / dose_per
    estimate, lower, upper = (curve[c].map(spec.display).to_numpy(dtype=float)
                              for c in ("estimate", "ci_lower", "ci_upper"))
    figure = _new_figure(figsize=(6.6, 2.8), layout="constrained")
    axes = figure.add_subplot()
    axes.fill_between(dose, lower, upper, color="0.85", linewidth=0, label=f"{intervals.level} uniform band")
    axes.plot(dose, estimate, color=POST_COLOUR, linewidth=1.6, label="Effect at this dose, ATT(d)")
    axes.axhline(0, color="0.2", linewidth=0.8)
    axes.set_xlabel(dose_label, fontsize=8)
    axes.set_ylabel(f"Effect, {spec.unit}", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=7, frameon=False)
    low, high = int(np.argmin(dose)), int(np.argmax(dose))
    alt = (f"Dose-response curve, {service_title(treatment).lower()}, {in_sentence(spec.label)} in {spec.unit}: the effect "
           f"is {format_number(estimate[low], spec.decimals)} at the smallest dose shown "
           f"({format_number(dose[low], 1, signed=False)}) and {format_number(estimate[high], spec.decimals)} at the "
           f"largest ({format_number(dose[high], 1, signed=False)}), with a {intervals.level} uniform band.")
    return _render(figure, alt)


def forest_plot(rows: pd.DataFrame, tests: pd.DataFrame, outcome: str, intervals: Intervals = Intervals()) -> Plot:
    """Subgroup effects (``cs_did`` headline rows with a ``subgroup``) with their intervals, grouped by service
    and subgroup, each group's test of difference in its label; a row with a ``withheld`` text (disclosure
    control) gets no point and says why in its label."""
    spec = mechanism_outcome(outcome)
    rows = rows.assign(_name=rows["subgroup"].str.split("=").str[0]).sort_values(["treatment", "_name", "subgroup"])
    labels, p_values = [], {}
    for test in tests.to_dict("records"):
        p_values[(test["treatment"], test["subgroup"])] = test["p_value_adjusted"] if pd.notna(
            test["p_value_adjusted"]) else test["p_value"]
    figure = _new_figure(figsize=(6.6, 0.28 * len(rows) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    position = np.arange(len(rows))[::-1]
    estimate, lower, upper = (rows[c].map(spec.display).to_numpy(dtype=float) for c in ("estimate", "ci_lower",
                                                                                           "ci_upper"))
    axes.errorbar(estimate, position, xerr=np.vstack([estimate - lower, upper - estimate]), fmt="o",
                  color=POST_COLOUR, markersize=4, capsize=2, linewidth=1)
    axes.axvline(0, color="0.2", linewidth=0.8)
    for record in rows.to_dict("records"):
        p = p_values.get((record["treatment"], record["_name"]))
        test = "" if p is None or pd.isna(p) else f" (difference p = {p:.3f})" if p >= 0.001 else " (difference p < 0.001)"
        note = f": {record['withheld']}" if record.get("withheld") else test
        labels.append(f"{service_title(record['treatment'])}: {subgroup_title(record['subgroup'])}{note}")
    axes.set_yticks(position, labels)
    axes.set_xlabel(f"Effect on {in_sentence(spec.label)},\n{spec.unit} ({intervals.level} CI)", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.spines[["top", "right"]].set_visible(False)
    names = sorted({SUBGROUP_NAMES.get(n, n).lower() for n in rows["_name"]})
    shown = estimate[np.isfinite(estimate)]
    values = (f"from {format_number(shown.min(), spec.decimals)} to {format_number(shown.max(), spec.decimals)}"
              if shown.size else "none published")
    withheld = len(rows) - shown.size
    alt = (f"Effects on {in_sentence(spec.label)} by group of firms ({', '.join(names)}), in {spec.unit}, for "
           f"{len(rows)} groups: {values}" + (f" ({withheld} withheld, too few firms)" if withheld else "")
           + "; each group's label gives the test that its values differ.")
    return _render(figure, alt)
