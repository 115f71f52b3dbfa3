"""Report settings shared by the disclosure rules and the renderer."""
from __future__ import annotations

from dataclasses import dataclass

#: The disclosure minimum: firms behind every published number. It is also a floor for the
#: evaluation plan's ``min_cohort_size`` (see `cohort_floor`), so no plan can lower it.
MIN_FIRMS = 10

#: The ``estimates.csv`` vocabulary (README, "Outputs"), shared by the evaluation and the report.
#: ``cs_did_no_covariates`` is Callaway–Sant'Anna with ``xformla=None``, estimated for the headline comparison.
ESTIMATORS = ("cs_did", "cs_did_no_covariates", "twfe")
#: The headline: R ``aggte(type="dynamic", balance_e=H, min_e=0, max_e=H)``, H the plan's ``headline_horizon``.
HEADLINE = "dynamic_balanced"
#: The event study with a universal base period (R ``att_gt(base_period="universal")``), as plotted.
UNIVERSAL_EVENT_STUDY = "dynamic_universal"
AGGREGATIONS = ("simple", "dynamic", "group", "calendar", HEADLINE, UNIVERSAL_EVENT_STUDY)

#: The mechanism models' vocabulary beside the headline's (README, "Mechanism models"): ``cs_dose`` is the
#: continuous-dose DiD (``analyses.mechanisms.dose``), ``etwfe_*`` the extended TWFE (``analyses.mechanisms.etwfe``).
MECHANISM_ESTIMATORS = ("cs_dose", "etwfe_poisson", "etwfe_ols")
MECHANISM_AGGREGATIONS = ("dose_level", "dose_slope", "eventstudy_level", "eventstudy_slope", "subgroup_difference")
#: Columns ``estimates.csv`` has beyond the evaluation's: the subgroup (empty = all firms, else ``name=value``;
#: the subgroup's name on ``subgroup_difference`` rows), the dose of a dose-response row, the p-value adjusted
#: within its family, and the family (``headline`` for the evaluation's rows).
MECHANISM_EXTRA_COLUMNS = ("subgroup", "dose", "p_value_adjusted", "family")
HEADLINE_FAMILY = "headline"
#: What a headline row holds in the extra columns (and what a missing or empty cell read back means).
EXTRA_DEFAULTS = {"subgroup": "", "dose": float("nan"), "p_value_adjusted": float("nan"), "family": HEADLINE_FAMILY}
#: Aggregations whose rows are indexed by ``event_time`` (event time, cohort or year): it may not be empty.
INDEXED_AGGREGATIONS = ("dynamic", "group", "calendar", UNIVERSAL_EVENT_STUDY)


def cohort_floor(min_cohort_size: int) -> int:
    """Smallest cohort the evaluation estimates: the plan's minimum, never below `MIN_FIRMS`."""
    return max(int(min_cohort_size), MIN_FIRMS)


@dataclass(frozen=True)
class ReportSettings:
    """Publication settings.

    The disclosure thresholds follow common practice for confidential
    business statistics: at least `min_firms` treated and comparison firms
    behind every number, and the (p%-style) dominance rules for magnitudes.
    """

    min_firms: int = MIN_FIRMS
    dominance_top1: float = 0.50
    dominance_top2: float = 0.67
    formats: tuple = ("html", "pdf")
    title: str = "Export Impact evaluation"
    agency: str = "Export promotion agency"

    def __post_init__(self) -> None:
        if self.min_firms < 1:
            raise ValueError(f"ReportSettings.min_firms must be >= 1, got {self.min_firms}")
        for name in ("dominance_top1", "dominance_top2"):
            share = getattr(self, name)
            if not 0 < share <= 1:
                raise ValueError(f"ReportSettings.{name} must be in (0, 1], got {share}")
        unknown = set(self.formats) - {"html", "pdf"}
        if unknown or "html" not in self.formats:
            raise ValueError(f"ReportSettings.formats must contain 'html' and only 'html'/'pdf', got {self.formats}")
