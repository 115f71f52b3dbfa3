"""Figures of the "How support works" section: dose-response curves and a forest plot of subgroup effects.

Drawn like the other report figures (``analyses.reporting.plots``): object API, greyscale, labels instead of
code names, alt text from the plotted numbers, axis words exposed on the returned ``Plot``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.reporting.mechanisms import (
    DOSE_UNITS, EFFECT_BOUNDS, SUBGROUP_NAMES, effect_bounds, in_sentence, mechanism_outcome, subgroup_title,
)
from analyses.reporting.plots import POST_COLOUR, Plot, _new_figure, _render
from analyses.reporting.summary import Intervals, format_number, service_title


def dose_plot(curve: pd.DataFrame, treatment: str, outcome: str, intervals: Intervals = Intervals(),
              median_dose: float | None = None, dose_grid: tuple[float, float] = (0.05, 0.95)) -> Plot:
    """ATT(d) of one service and outcome over the dose grid with its uniform band (``cs_dose`` ``dose_level`` rows
    with a ``dose``, raw units), the dose axis in ``DOSE_UNITS`` (grant euros in thousands).

    The caption quotes the effect at the grid dose nearest ``median_dose`` (the middle of the doses shown when it
    is unknown), not at the curve's ends, which rest on few firms: ``dose_grid`` (the plan's ``families.dose_grid``
    quantiles) says how many treated firms lie outside the curve. An effect with logical limits (``EFFECT_BOUNDS``:
    +-100 pp on a share) has its curve, band and axis cut there, and the caption says so; a cubic B-spline's band
    (R contdid's default degree) otherwise reaches impossible values at the ends.
    """
    spec = mechanism_outcome(outcome)
    axis_label, _, per, unit = DOSE_UNITS[treatment]
    curve = curve.sort_values("dose")
    raw = curve["dose"].to_numpy(dtype=float)
    dose = raw / per
    estimate, lower, upper = (curve[c].map(spec.display).to_numpy(dtype=float)
                              for c in ("estimate", "ci_lower", "ci_upper"))
    bounds = effect_bounds(spec)
    cut = bounds is not None and bool(np.any(np.hstack([lower, upper, estimate]) < bounds[0])
                                       or np.any(np.hstack([lower, upper, estimate]) > bounds[1]))
    if bounds is not None:
        estimate, lower, upper = (np.clip(v, *bounds) for v in (estimate, lower, upper))
    figure = _new_figure(figsize=(6.6, 2.8), layout="constrained")
    axes = figure.add_subplot()
    axes.fill_between(dose, lower, upper, color="0.85", linewidth=0, label=f"{intervals.level} uniform band")
    axes.plot(dose, estimate, color=POST_COLOUR, linewidth=1.6, label="Effect at this dose, ATT(d)")
    axes.axhline(0, color="0.2", linewidth=0.8)
    if bounds is not None:
        low, high = min(lower.min(), 0.0), max(upper.max(), 0.0)
        margin = 0.05 * (high - low)
        axes.set_ylim(max(bounds[0], low - margin), min(bounds[1], high + margin))
    axes.set_xlabel(axis_label, fontsize=8)
    axes.set_ylabel(f"Effect, {spec.unit}", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=7, frameon=False)
    return _render(figure, _dose_caption(spec, treatment, dose, estimate, lower, upper, intervals,
                                         None if median_dose is None else median_dose / per, dose_grid, unit, cut))


def _dose_caption(spec, treatment: str, dose, estimate, lower, upper, intervals: Intervals, median: float | None,
                  dose_grid: tuple[float, float], unit: str, cut: bool) -> str:
    """The curve's caption and alt text: the effect where most firms are, where the curve ends, what is cut."""
    shown = lambda value: format_number(value, 1, signed=False)  # noqa: E731
    if median is None:
        at = int(np.argmin(np.abs(dose - (dose.min() + dose.max()) / 2)))
        where = f"in the middle of the doses shown ({shown(dose[at])} {unit})"
    else:
        at = int(np.argmin(np.abs(dose - median)))
        where = f"at the median treated dose ({shown(dose[at])} {unit}, the nearest dose shown)"
    number = lambda value: format_number(value, spec.decimals)  # noqa: E731
    text = (f"Dose-response curve, {service_title(treatment).lower()}, {in_sentence(spec.label)}: {where} the effect "
            f"is {number(estimate[at])} {spec.sentence_unit} ({intervals.level} uniform band {number(lower[at])} to "
            f"{number(upper[at])}). The curve runs from {shown(dose.min())} to {shown(dose.max())} {unit}")
    low, high = (round(100 * q) for q in (dose_grid[0], 1 - dose_grid[1]))
    outside = [part for part, share in ((f"the {low} % of treated firms with the smallest doses", low),
                                        (f"the {high} % with the largest", high)) if share]
    if outside:
        text += f": {' and '.join(outside)} lie outside the curve, and its ends rest on few firms."
    else:
        text += "; its ends rest on few firms."
    if cut:
        bound = EFFECT_BOUNDS[spec.unit_short]
        text += (f" The band is cut at \u2212{abs(bound[0]):g} and +{bound[1]:g} {spec.unit}, the largest possible "
                 f"change in a share.")
    return text


def forest_plot(rows: pd.DataFrame, tests: pd.DataFrame, outcome: str, intervals: Intervals = Intervals()) -> Plot:
    """Subgroup effects (``cs_did`` headline rows with a ``subgroup``) with their intervals, grouped by service
    and subgroup in the order given (``mechanisms.order_subgroups``, as Table M4), each group's test of difference
    in its label (its adjusted p-value where the family has one); a row with a ``withheld`` text (disclosure
    control) gets no point and says why in its label."""
    spec = mechanism_outcome(outcome)
    rows = rows.assign(_name=rows["subgroup"].str.split("=").str[0])
    labels, p_values = [], {}
    for test in tests.to_dict("records"):
        adjusted = pd.notna(test["p_value_adjusted"])
        p_values[(test["treatment"], test["subgroup"])] = (
            "adjusted p" if adjusted else "p", test["p_value_adjusted"] if adjusted else test["p_value"])
    figure = _new_figure(figsize=(6.6, 0.28 * len(rows) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    position = np.arange(len(rows))[::-1]
    estimate, lower, upper = (rows[c].map(spec.display).to_numpy(dtype=float) for c in ("estimate", "ci_lower",
                                                                                           "ci_upper"))
    axes.errorbar(estimate, position, xerr=np.vstack([estimate - lower, upper - estimate]), fmt="o",
                  color=POST_COLOUR, markersize=4, capsize=2, linewidth=1)
    axes.axvline(0, color="0.2", linewidth=0.8)
    for record in rows.to_dict("records"):
        name, p = p_values.get((record["treatment"], record["_name"]), ("", np.nan))
        test = ("" if pd.isna(p) else f" (difference: {name} = {p:.3f})" if p >= 0.001
                else f" (difference: {name} < 0.001)")
        note = f": {record['withheld']}" if record.get("withheld") else test
        labels.append(f"{service_title(record['treatment'])}: {subgroup_title(record['subgroup'])}{note}")
    axes.set_yticks(position, labels)
    axes.set_xlabel(f"Effect on {in_sentence(spec.label)},\n{spec.unit} ({intervals.level} CI)", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.spines[["top", "right"]].set_visible(False)
    names = list(dict.fromkeys(SUBGROUP_NAMES.get(n, n).lower() for n in rows["_name"]))
    shown = estimate[np.isfinite(estimate)]
    values = (f"from {format_number(shown.min(), spec.decimals)} to {format_number(shown.max(), spec.decimals)}"
              if shown.size else "none published")
    withheld = len(rows) - shown.size
    alt = (f"Effects on {in_sentence(spec.label)} by group of firms ({', '.join(names)}), in {spec.unit}, for "
           f"{len(rows)} groups: {values}" + (f" ({withheld} withheld, too few firms)" if withheld else "")
           + "; each group's label gives the test that its values differ.")
    return _render(figure, alt)
