"""The ``families`` section of the evaluation plan: which mechanism models to run, with what.

Kept apart from ``analyses.evaluation.EvaluationPlan`` (which holds it as ``families``) so the mechanism
layer's defaults live beside the models. Unknown keys are errors, as in the rest of the plan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

FAMILY_NAMES = ("dose", "subgroups", "markets", "value", "bundles", "sequences", "persistence")
SUBGROUP_NAMES = ("in_cluster", "size_class", "exported_before", "region")
#: per family, its settings that name panel columns (outcomes and controls)
FAMILY_COLUMNS = {"dose": ("dose_outcomes",), "subgroups": ("subgroup_outcomes",), "markets": ("market_outcomes",),
                  "value": ("value_controls", "margin_controls"), "bundles": ("bundle_outcomes",),
                  "sequences": ("sequence_outcomes",), "persistence": ("persistence_outcomes",)}
#: the families' outcome settings
OUTCOME_SETTINGS = tuple(key for keys in FAMILY_COLUMNS.values() for key in keys if key.endswith("_outcomes"))


def list_settings(plan_type: type, raw: dict, prefix: str = "") -> dict:
    """``raw`` plan keys of ``plan_type`` (a plan dataclass) with its list settings as tuples.

    A list setting given one word or number (``run: dose`` in YAML) is an error naming the key, not a list of
    its characters. Raises ``ValueError``.
    """
    lists = {f.name for f in fields(plan_type) if "tuple[" in str(f.type)}
    out = {}
    for key, value in raw.items():
        if key in lists and value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(f"evaluation plan: {prefix}{key} must be a list (e.g. [{value}]), got {value!r}")
        out[key] = tuple(value) if key in lists and isinstance(value, list) else value
    return out


@dataclass(frozen=True)
class FamiliesPlan:
    """Pre-registered mechanism specifications (the plan's ``families:`` mapping); every key has a default."""

    #: the families to run (each is its own Dagster asset)
    run: tuple[str, ...] = FAMILY_NAMES
    #: dose-response (cont_did) outcomes, B-spline degree and interior knots
    dose_outcomes: tuple[str, ...] = ("exporter", "n_destinations")
    dose_degree: int = 3
    dose_num_knots: int = 0
    #: quantiles of the treated firms' first doses between which the curves ATT(d), ACRT(d) are evaluated (50
    #: equally spaced doses). R contdid spans every positive dose, but a few large grants then set the band
    #: (+-750 pp at the largest grant of the 5,000-firm demo) and the grid's ends are single firms' doses
    dose_grid: tuple[float, float] = (0.05, 0.95)
    #: pre-programme subgroups (``region`` only when named) and their outcomes
    subgroups: tuple[str, ...] = ("in_cluster", "size_class", "exported_before")
    subgroup_outcomes: tuple[str, ...] = ("exporter",)
    market_outcomes: tuple[str, ...] = ("new_eu_destination", "new_non_eu_destination", "n_eu_destinations",
                                        "n_non_eu_destinations")
    #: two services starting within this many months form a bundle (their own treatment group)
    bundle_window_months: int = 12
    sequence_outcomes: tuple[str, ...] = ("exporter", "n_destinations")
    bundle_outcomes: tuple[str, ...] = ("exporter", "n_destinations")
    persistence_outcomes: tuple[str, ...] = ("sustained_exporter", "spell_survives_1", "spell_survives_2",
                                             "spell_survives_3")
    #: how the persistence models read the plan's covariates. Their base-period value is a function of the
    #: export history that base-period covariates measure (exporting in g-1, years exported in g-3..g-1, and
    #: turnover, which includes exports): conditioning a DiD on the base-period outcome biases it by regression
    #: to the mean when firms differ in their long-run exporting (Daw & Hatfield 2018, Health Serv Res 53(6)).
    #: Measured on the demo's untreated world: spell-survival placebo effects at z = +1.5 to +2.9 with
    #: ``base_period`` covariates, within +-1.5 with ``first_year`` snapshots.
    persistence_covariate_timing: str = "first_year"
    #: controls of the extended TWFE value models (time-invariant first-year snapshots), each interacted with
    #: every cohort x period cell as R etwfe does. None by default: with Poisson, cells where few firms export
    #: leave those interactions unidentified (near-singular information matrix, measured on the demo)
    value_controls: tuple[str, ...] = ()
    #: controls of the extended TWFE OLS margins (extensive: ``exporter``; intensive, descriptive), first-year
    #: snapshots as in the first-year covariate timing. Without them the extensive margin is not like for like:
    #: on the demo's untreated world network services' placebo effect sat at z = -3.6, -1.2 and -2.4 over three
    #: draws (-2.7, -0.9 and +0.4 with them, as the covariate-adjusted headline of the same draws)
    margin_controls: tuple[str, ...] = ("log_employees_first", "log_turnover_first", "exporter_first", "in_cluster",
                                        "firm_age_first")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.run) - set(FAMILY_NAMES))
        if unknown:
            raise ValueError(f"evaluation plan: families.run names unknown families {unknown}; expected some of "
                             f"{list(FAMILY_NAMES)}")
        unknown = sorted(set(self.subgroups) - set(SUBGROUP_NAMES))
        if unknown:
            raise ValueError(f"evaluation plan: families.subgroups {unknown} unknown; expected some of "
                             f"{list(SUBGROUP_NAMES)}")
        if self.persistence_covariate_timing not in ("base_period", "first_year"):
            raise ValueError(f"evaluation plan: families.persistence_covariate_timing must be 'base_period' or "
                             f"'first_year', got {self.persistence_covariate_timing!r}")
        for name in ("dose_degree", "bundle_window_months"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"evaluation plan: families.{name} must be a whole number >= 1, got {value!r}")
        grid = tuple(self.dose_grid)
        numbers = all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in grid)
        if len(grid) != 2 or not numbers or not 0 <= grid[0] < grid[1] <= 1:
            raise ValueError(f"evaluation plan: families.dose_grid must be two quantiles 0 <= low < high <= 1, "
                             f"got {list(self.dose_grid)!r}")
        if isinstance(self.dose_num_knots, bool) or not isinstance(self.dose_num_knots, int) or self.dose_num_knots < 0:
            raise ValueError(f"evaluation plan: families.dose_num_knots must be a whole number >= 0, "
                             f"got {self.dose_num_knots!r}")

    def unknown_columns(self, columns) -> dict[str, list[str]]:
        """Per list setting of a family in ``run`` that names panel ``columns``: the names not among them.

        Persistence outcomes are made from the panel's exporting (``PERSISTENCE_OUTCOMES``), not read from it.
        """
        from analyses.mechanisms.outcomes import PERSISTENCE_OUTCOMES

        known = set(columns)
        unknown = {}
        for family in self.run:
            for key in FAMILY_COLUMNS[family]:
                allowed = set(PERSISTENCE_OUTCOMES) if key == "persistence_outcomes" else known
                missing = [name for name in getattr(self, key) if name not in allowed]
                if missing:
                    unknown[key] = missing
        return unknown

    @classmethod
    def from_value(cls, value) -> FamiliesPlan:
        """From the plan's ``families`` entry: ``None`` (defaults), a mapping, or a ``FamiliesPlan``."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            kind = "a list" if isinstance(value, (list, tuple)) else type(value).__name__
            raise ValueError(f"evaluation plan: families must be a mapping of settings (e.g. run: [dose, value]), "
                             f"got {kind}")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"evaluation plan: unknown families key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**list_settings(cls, value, "families."))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
