"""Figures for the report, rendered with matplotlib's Agg canvas to inline PNG.

Figures use the object API (no pyplot) so rendering has no global state,
and they rely on marker shape, fill and line style rather than colour so
they stay readable when printed in greyscale. Every figure comes with alt
text generated from the plotted numbers.

matplotlib is imported inside the functions that draw: loading the Dagster
definitions (which import this package) should not pay for it.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analyses.reporting.summary import Intervals, format_number, outcome_spec, service_title, variable_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
PRE_COLOUR = "0.55"
POST_COLOUR = "0.0"
TWFE_COLOUR = "0.35"
TWFE_OFFSET = 0.22
#: the universal base period: every plotted estimate is a change since this event time
REFERENCE_E = -1


@dataclass(frozen=True)
class Plot:
    """A rendered figure: PNG, alt text, and the words printed on its axes (titles, then tick labels),
    read back from the drawn figure so tests can check what readers see."""

    png_base64: str
    alt: str
    axis_titles: tuple[str, ...] = ()
    tick_labels: tuple[str, ...] = ()

    @property
    def data_uri(self) -> str:
        return f"data:image/png;base64,{self.png_base64}"


def _new_figure(**options) -> Figure:
    from matplotlib.figure import Figure

    return Figure(**options)


def _render(figure: Figure, alt: str) -> Plot:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    titles, ticks = [], []
    for axes in figure.axes:
        titles += [text for text in (axes.get_xlabel(), axes.get_ylabel()) if text]
        ticks += [label.get_text() for label in (*axes.get_xticklabels(), *axes.get_yticklabels()) if label.get_text()]
    return Plot(base64.b64encode(buffer.getvalue()).decode("ascii"), alt, tuple(titles), tuple(ticks))


def _to_display(frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
    spec = outcome_spec(outcome)
    out = frame.sort_values("event_time").copy()
    for column in ("estimate", "ci_lower", "ci_upper"):
        out[column] = out[column].map(spec.display)
    return out


def _errorbars(axes, frame: pd.DataFrame, offset: float, colour: str, marker: str, filled: bool, label: str):
    x = frame["event_time"].to_numpy(dtype=float) + offset
    y = frame["estimate"].to_numpy(dtype=float)
    yerr = np.vstack([y - frame["ci_lower"].to_numpy(dtype=float), frame["ci_upper"].to_numpy(dtype=float) - y])
    container = axes.errorbar(
        x, y, yerr=yerr, fmt=marker, color=colour, ecolor=colour, capsize=2.5, markersize=5,
        markerfacecolor=colour if filled else "white", markeredgecolor=colour, linewidth=1.1, label=label,
    )
    if not filled:
        container[2][0].set_linestyle("--")
    return container


def event_study_plot(cs_dynamic: pd.DataFrame, twfe_dynamic: pd.DataFrame | None,
                     treatment: str, outcome: str, intervals: Intervals = Intervals()) -> Plot:
    """CS-DiD dynamic effects with their bands, TWFE event-study estimates beside them.

    Both are expected with a universal base period (CS-DiD rows ``dynamic_universal``, TWFE
    ``dynamic``): every point is relative to e = -1, which is drawn at 0 as the reference and said
    on the axis. `intervals` names the level and whether the CS-DiD bands are uniform
    (bootstrap) or pointwise, in the legend and in the alt text.
    """
    from matplotlib.ticker import MaxNLocator

    spec = outcome_spec(outcome)
    cs = _to_display(cs_dynamic, outcome)
    twfe = _to_display(twfe_dynamic, outcome) if twfe_dynamic is not None and not twfe_dynamic.empty else None
    figure = _new_figure(figsize=(6.6, 3.3), layout="constrained")
    axes = figure.add_subplot()
    all_times = pd.concat([cs["event_time"], twfe["event_time"] if twfe is not None else cs["event_time"]])
    left, right = float(all_times.min()) - 0.6, float(all_times.max()) + 0.6
    axes.axvspan(left, -0.5, color="0.92", zorder=0, linewidth=0)
    axes.axvline(-0.5, color="0.3", linestyle=":", linewidth=1)
    axes.axhline(0, color="0.2", linewidth=0.8)
    pre, post = cs[cs["event_time"] < 0], cs[cs["event_time"] >= 0]
    if not pre.empty:
        _errorbars(axes, pre, 0.0, PRE_COLOUR, "o", True, "CS-DiD pre-period (placebo)")
    if not post.empty:
        _errorbars(axes, post, 0.0, POST_COLOUR, "o", True, f"CS-DiD ({intervals.band})")
    if twfe is not None:
        twfe = twfe[twfe["event_time"] != REFERENCE_E]  # the reference is drawn once, below
        _errorbars(axes, twfe, TWFE_OFFSET, TWFE_COLOUR, "s", False, f"TWFE ({intervals.level} pointwise CI)")
    axes.plot([REFERENCE_E], [0.0], linestyle="none", marker="D", markersize=5, markerfacecolor="white",
              markeredgecolor=POST_COLOUR, label="Reference year e = \u22121 (0 by construction)")
    axes.set_xlim(left, right)
    axes.set_xlabel("Years since first support (e = t \u2212 g); universal base period e = \u22121")
    axes.set_ylabel(f"Effect vs e = \u22121, {spec.unit}")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    # below the axes, so the legend never hides an estimate
    figure.legend(fontsize=7, frameon=False, loc="outside lower center", ncol=2)
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=8)
    axes.yaxis.label.set_size(8)
    axes.xaxis.label.set_size(8)
    return _render(figure, _event_study_alt(cs, twfe, treatment, outcome, intervals))


def _range_text(frame: pd.DataFrame, decimals: int) -> str:
    low, high = frame.loc[frame["estimate"].idxmin()], frame.loc[frame["estimate"].idxmax()]
    return (f"from {format_number(low['estimate'], decimals)} (e = {low['event_time']:g}) "
            f"to {format_number(high['estimate'], decimals)} (e = {high['event_time']:g})")


def _excluding_zero(frame: pd.DataFrame) -> int:
    return int(((frame["ci_lower"] > 0) | (frame["ci_upper"] < 0)).sum())


def _event_study_alt(cs: pd.DataFrame, twfe: pd.DataFrame | None, treatment: str, outcome: str,
                     intervals: Intervals) -> str:
    spec = outcome_spec(outcome)
    bands = f"{intervals.level} {intervals.band_plural}"
    parts = [f"Event-study estimates for {service_title(treatment).lower()} on "
             f"{spec.label.lower()}, in {spec.unit}, relative to the year before support (e = \u22121)."]
    pre, post = cs[cs["event_time"] < 0], cs[cs["event_time"] >= 0]
    if not pre.empty:
        parts.append(f"Before support, Callaway\u2013Sant'Anna placebo estimates range {_range_text(pre, spec.decimals)}; "
                     f"{_excluding_zero(pre)} of {len(pre)} {bands} exclude zero.")
    if not post.empty:
        parts.append(f"After support, estimates range {_range_text(post, spec.decimals)}; "
                     f"{_excluding_zero(post)} of {len(post)} {bands} exclude zero.")
    if twfe is not None:
        twfe_post = twfe[twfe["event_time"] >= 0]
        if not twfe_post.empty:
            parts.append(f"Two-way fixed-effects estimates after support range {_range_text(twfe_post, spec.decimals)}.")
    return " ".join(parts)


def overlap_plot(overlap: pd.DataFrame, treatment: str) -> Plot:
    """Mirrored propensity-score histograms (densities, since pooled bins differ in width)."""
    from matplotlib.ticker import FuncFormatter

    figure = _new_figure(figsize=(6.6, 2.6))
    axes = figure.add_subplot()
    ranges = []
    for group, sign, face, hatch in (("treated", 1, "0.35", None), ("comparison", -1, "0.85", "///")):
        rows = overlap[(overlap["treatment"] == treatment) & (overlap["group"] == group)]
        total = rows["n_firms"].sum()
        if rows.empty or total == 0:
            continue
        width = (rows["bin_upper"] - rows["bin_lower"]).to_numpy(dtype=float)
        density = rows["n_firms"].to_numpy(dtype=float) / (total * width)
        axes.bar(rows["bin_lower"], sign * density, width=width, align="edge", color=face, edgecolor="0.2",
                 hatch=hatch, linewidth=0.6, label="Supported firms" if sign > 0 else "Comparison firms")
        occupied = rows[rows["n_firms"] > 0]
        ranges.append(f"{group} firms between {occupied['bin_lower'].min():.2f} and {occupied['bin_upper'].max():.2f}")
    axes.axhline(0, color="0.2", linewidth=0.8)
    axes.set_xlim(0, 1)
    # comparison firms are drawn downwards, but a density is never negative: label the ticks by size
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{abs(value):g}"))
    axes.set_xlabel("Estimated propensity score")
    axes.set_ylabel("Density (comparison below)")
    axes.yaxis.label.set_size(8)
    axes.legend(fontsize=7, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=8)
    figure.tight_layout()
    alt = (f"Propensity-score overlap for {service_title(treatment).lower()}: "
           + ("; ".join(ranges) if ranges else "no firms to show") + ".")
    return _render(figure, alt)


def balance_plot(balance: pd.DataFrame, treatment: str) -> Plot:
    """Standardised mean differences before (open) and after (filled) weighting."""
    rows = balance[balance["treatment"] == treatment].reset_index(drop=True)
    figure = _new_figure(figsize=(6.6, 0.4 * len(rows) + 1.3), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]
    for limit in (0.1, 0.25):
        for side in (-limit, limit):
            axes.axvline(side, color="0.6", linestyle=":" if limit == 0.1 else "--", linewidth=0.8)
    axes.axvline(0, color="0.2", linewidth=0.8)
    axes.scatter(rows["smd_unweighted"], positions, marker="o", facecolors="white", edgecolors="0.2",
                 label="Before weighting")
    axes.scatter(rows["smd_weighted"], positions, marker="o", color="0.0", label="After weighting")
    widest = float(np.nanmax(np.abs(rows[["smd_unweighted", "smd_weighted"]].to_numpy()), initial=0.3))
    axes.set_xlim(-1.1 * max(widest, 0.3), 1.1 * max(widest, 0.3))
    axes.set_ylim(-0.7, len(rows) - 0.3)
    axes.set_yticks(positions, [variable_label(str(code)) for code in rows["covariate"]])
    axes.set_xlabel("Standardised mean difference")
    figure.legend(fontsize=7, frameon=False, loc="outside lower center", ncol=2)
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=8)
    measured = rows.dropna(subset=["smd_unweighted", "smd_weighted"])
    if measured.empty:
        alt = f"No covariate balance available for {service_title(treatment).lower()}."
    else:
        before = measured.loc[measured["smd_unweighted"].abs().idxmax()]
        after = measured.loc[measured["smd_weighted"].abs().idxmax()]
        alt = (f"Covariate balance for {service_title(treatment).lower()}: the largest absolute standardised "
               f"mean difference is {abs(before['smd_unweighted']):.2f} ({variable_label(before['covariate'])}) before "
               f"weighting and {abs(after['smd_weighted']):.2f} ({variable_label(after['covariate'])}) after weighting.")
    return _render(figure, alt)


def sensitivity_plot(sensitivity: pd.DataFrame, treatment: str, outcome: str, target: str = "average") -> Plot:
    """The usual interval beside the robust ones (``analyses.honest_did.sensitivity_analysis`` rows of one
    target): relative magnitudes by Mbar on the left, smoothness by M on the right."""
    spec = outcome_spec(outcome)
    rows = sensitivity[sensitivity["target"] == target]
    original = rows[rows["method"] == "original"]
    panels = [(method, rows[rows["method"] == method]) for method in ("C-LF", "FLCI")]
    panels = [(method, frame) for method, frame in panels if not frame.empty]
    titles = {"C-LF": ("Relative magnitudes", "M\u0304: trend change after / largest before"),
              "FLCI": ("Smoothness", f"M: change in trend slope per year, {spec.unit_short}")}
    figure = _new_figure(figsize=(6.6, 3.0), layout="constrained")
    for position, (method, frame) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), position)
        labels = ["Usual"] + [format_number(spec.display(m) if method == "FLCI" else m, 2, signed=False)
                              for m in frame["M"]]
        lower = [spec.display(v) for v in [*original["lower"], *frame["lower"]]]
        upper = [spec.display(v) for v in [*original["upper"], *frame["upper"]]]
        for x, (low, high) in enumerate(zip(lower, upper)):
            colour = POST_COLOUR if x == 0 else TWFE_COLOUR
            axes.plot([x, x], [low, high], color=colour, linewidth=2.2 if x == 0 else 1.4)
        axes.axhline(0, color="0.2", linewidth=0.8)
        axes.set_xticks(range(len(labels)), labels, fontsize=7)
        axes.set_title(titles[method][0], fontsize=8)
        axes.set_xlabel(titles[method][1], fontsize=7)
        axes.set_ylabel(f"Effect, {spec.unit}", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.spines[["top", "right"]].set_visible(False)
    alt = (f"{service_title(treatment)}, {spec.label}: 95% interval assuming parallel trends beside intervals "
           f"that allow growing violations of parallel trends ({', '.join(titles[m][0].lower() for m, _ in panels)}).")
    return _render(figure, alt)
