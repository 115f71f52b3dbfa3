"""The evaluation plan as Dagster run config, so evaluators choose specifications in the launchpad.

The config class is generated from the plan's dataclasses (``EvaluationPlan`` with its nested
``families``): every plan key is a launchpad field, a new plan key needs no second definition, and
unknown keys are refused by Dagster's config check as they are by the YAML reader. Every field is
optional: a field left out keeps the plan file's value, or the plan's default.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Optional

import dagster as dg
from pydantic import Field, create_model

from analyses.evaluation import EvaluationPlan

_SCALARS = (bool, int, float, str)


def _config_type(hint) -> type:
    """The run-config type of a plan field's annotation (tuples become lists, dataclasses nested configs)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        # ``X | dict | None``: a nested section also accepted as a mapping in YAML
        kept = [a for a in args if a is not type(None) and typing.get_origin(a) is not dict and a is not dict]
        if len(kept) != 1:
            raise TypeError(f"no run-config type for the plan annotation {hint!r}")
        return _config_type(kept[0])
    if origin is tuple:
        return list[_config_type(args[0])]
    if dataclasses.is_dataclass(hint):
        return config_class(hint)
    if hint in _SCALARS:
        return hint
    raise TypeError(f"no run-config type for the plan annotation {hint!r}")


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING and field.default is not None:
        value = field.default
        return f"default: {list(value) if isinstance(value, tuple) else value!r}"
    return "default: the plan's built-in default"


def config_class(plan_type: type) -> type[dg.Config]:
    """A ``dagster.Config`` with one optional field per field of the dataclass `plan_type`."""
    hints = typing.get_type_hints(plan_type)
    spec = {
        field.name: (Optional[_config_type(hints[field.name])], Field(default=None, description=_default_text(field)))
        for field in dataclasses.fields(plan_type)
    }
    return create_model(f"{plan_type.__name__}Config", __base__=dg.Config, **spec)


PlanConfig = config_class(EvaluationPlan)


def merged(base: Mapping, overrides: Mapping) -> dict:
    """`base` with `overrides` laid over it, nested sections key by key."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def plan_run_config(plan: Mapping) -> dict:
    """Run config that fixes every key of `plan` (e.g. ``EvaluationPlan.to_dict()``) for one run, so the run's
    page in the UI shows the specification it used."""
    return {"resources": {"plan": {"config": {"specification": dict(plan)}}}}
