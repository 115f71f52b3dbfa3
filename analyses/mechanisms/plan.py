"""The ``families`` section of the evaluation plan: which mechanism models to run, with what.

Kept apart from ``analyses.evaluation.EvaluationPlan`` (which holds it as ``families``) so the mechanism
layer's defaults live beside the models. Unknown keys are errors, as in the rest of the plan.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

FAMILY_NAMES = ("dose", "subgroups", "markets", "value", "bundles", "sequences", "persistence")
SUBGROUP_NAMES = ("in_cluster", "size_class", "exported_before", "region")


@dataclass(frozen=True)
class FamiliesPlan:
    """Pre-registered mechanism specifications (the plan's ``families:`` mapping); every key has a default."""

    #: the families to run (each is its own Dagster asset)
    run: tuple[str, ...] = FAMILY_NAMES
    #: dose-response (cont_did) outcomes, B-spline degree and interior knots
    dose_outcomes: tuple[str, ...] = ("exporter", "n_destinations")
    dose_degree: int = 3
    dose_num_knots: int = 0
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
    #: controls of the extended TWFE value models (time-invariant first-year snapshots), each interacted with
    #: every cohort x period cell as R etwfe does. None by default: with Poisson, cells where few firms export
    #: leave those interactions unidentified (near-singular information matrix, measured on the demo)
    value_controls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.run) - set(FAMILY_NAMES))
        if unknown:
            raise ValueError(f"evaluation plan: families.run names unknown families {unknown}; expected some of "
                             f"{list(FAMILY_NAMES)}")
        unknown = sorted(set(self.subgroups) - set(SUBGROUP_NAMES))
        if unknown:
            raise ValueError(f"evaluation plan: families.subgroups {unknown} unknown; expected some of "
                             f"{list(SUBGROUP_NAMES)}")
        for name in ("dose_degree", "bundle_window_months"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"evaluation plan: families.{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.dose_num_knots, bool) or not isinstance(self.dose_num_knots, int) or self.dose_num_knots < 0:
            raise ValueError(f"evaluation plan: families.dose_num_knots must be a whole number >= 0, "
                             f"got {self.dose_num_knots!r}")

    @classmethod
    def from_value(cls, value) -> FamiliesPlan:
        """From the plan's ``families`` entry: ``None`` (defaults), a mapping, or a ``FamiliesPlan``."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"evaluation plan: families must be a mapping of settings, got {type(value).__name__}")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"evaluation plan: unknown families key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
