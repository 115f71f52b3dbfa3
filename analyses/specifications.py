"""Split an evaluation plan into independent specifications and combine their results.

Each specification is estimated on its own (one Dagster step each, so workers estimate in
parallel) and the parts are put back together into exactly what one
:func:`analyses.evaluation.run_evaluation` call over the whole plan returns: every (service,
outcome) pair draws its bootstrap from ``plan.seed`` alone, so splitting changes no number.
"""

from dataclasses import replace

import pandas as pd

from analyses.evaluation import EvaluationPlan, EvaluationResult


def split_plan(plan: EvaluationPlan) -> dict[str, EvaluationPlan]:
    """One plan per service, keyed by the service name (a step's mapping key), in the plan's order.

    A plan without services stays whole (key ``all``), so the empty evaluation is still reported.
    """
    if not plan.services:
        return {"all": plan}
    return {service: replace(plan, services=(service,)) for service in plan.services}


def combine_results(parts: list[EvaluationResult], plan: EvaluationPlan) -> EvaluationResult:
    """The results of :func:`split_plan`'s specifications (in any order) as one result for ``plan``.

    Estimates and every diagnostic table with a ``treatment`` column are stacked; tables about the
    whole delivery (the panel account, export coverage) are the same in every part and kept once;
    the ``plan`` entry names the whole plan. Raises ``ValueError`` when there is no part or a
    delivery-wide table differs between parts (the parts were not estimated on the same panel).
    """
    if not parts:
        raise ValueError("no specification results to combine (split_plan always gives at least one)")
    order = {service: position for position, service in enumerate(plan.services)}
    parts = sorted(parts, key=lambda part: [order[service] for service in part.diagnostics["plan"]["services"]])
    estimates = _stack([part.estimates for part in parts])
    diagnostics: dict = {}
    for key, first in parts[0].diagnostics.items():
        values = [part.diagnostics[key] for part in parts]
        if isinstance(first, pd.DataFrame) and "treatment" in first.columns:
            diagnostics[key] = _stack(values)
        elif all(_same(_whole(first), _whole(value)) for value in values[1:]):
            diagnostics[key] = {**first, **plan.to_dict()} if key == "plan" else first
        else:
            raise ValueError(f"diagnostics {key!r} differ between specifications: were they estimated on one panel?")
    return EvaluationResult(estimates=estimates.astype(parts[0].estimates.dtypes.to_dict()), diagnostics=diagnostics)


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of every part; empty parts (typed ``object`` when built from no row) do not change the dtypes."""
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled, ignore_index=True) if filled else frames[0]


def _whole(value):
    """A diagnostic as it should be the same in every part: a plan entry without its services."""
    return {k: v for k, v in value.items() if k != "services"} if isinstance(value, dict) else value


def _same(left, right) -> bool:
    if isinstance(left, pd.DataFrame):
        return isinstance(right, pd.DataFrame) and left.equals(right)
    return left == right
