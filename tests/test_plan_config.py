"""The evaluation plan as Dagster run config: every plan key in the launchpad, validated, over the plan file."""
import dagster as dg
import pytest

from analyses.evaluation import EvaluationPlan
from pipelines.definitions import defs
from pipelines.plan_config import PlanConfig, plan_run_config
from pipelines.resources import EvaluationPlanResource, LandingDirectory, WarehouseDirectory
from pipelines.schedules import quarterly_evaluation

JOB = defs.resolve_job_def("evaluate_programmes")


def _run_config(specification: dict) -> dict:
    return {"resources": {"plan": {"config": {"specification": specification}}}}


def test_every_plan_key_and_family_key_is_a_run_config_field():
    fields = PlanConfig.model_fields
    assert set(fields) == set(EvaluationPlan.__dataclass_fields__)
    families = fields["families"].annotation.__args__[0].model_fields
    assert set(families) == set(EvaluationPlan().families.to_dict())


def test_run_config_is_validated_by_dagster_with_the_path_of_the_bad_key():
    resolved = dg.validate_run_config(JOB, _run_config({"headline_horizon": 2, "families": {"run": ["dose"]}}))
    assert resolved["resources"]["plan"]["config"]["specification"]["headline_horizon"] == 2
    for bad, where in (({"headline_horizont": 2}, "specification"), ({"families": {"runs": ["dose"]}}, "families"),
                       ({"headline_horizon": "two"}, "headline_horizon")):
        with pytest.raises(dg.DagsterInvalidConfigError, match=where):
            dg.validate_run_config(JOB, _run_config(bad))


def test_run_config_is_laid_over_the_plan_file_and_checked_by_the_plan(tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("headline_horizon: 2\noutcomes: [exporter, n_destinations]\nfamilies:\n  dose_degree: 2\n")
    resource = EvaluationPlanResource(plan_file=str(plan_file),
                                      specification={"outcomes": ["exporter"], "families": {"run": ["dose"]}})
    plan = resource.load()
    assert (plan.headline_horizon, plan.outcomes) == (2, ("exporter",))
    assert (plan.families.dose_degree, plan.families.run) == (2, ("dose",))  # nested keys merge one by one
    with pytest.raises(ValueError, match="control_group"):
        EvaluationPlanResource(specification={"control_group": "everyone"}).load()


def test_the_schedule_fixes_the_plan_in_each_runs_config(demo_landing, tmp_path):
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("headline_horizon: 2\n")
    resources = {"landing": LandingDirectory(path=str(demo_landing)),
                 "warehouse": WarehouseDirectory(path=str(tmp_path / "warehouse")),
                 "plan": EvaluationPlanResource(plan_file=str(plan_file))}
    with dg.instance_for_test() as instance, dg.build_schedule_context(resources=resources,
                                                                       instance=instance) as context:
        request = quarterly_evaluation(context)
    dg.validate_run_config(JOB, request.run_config)
    specification = request.run_config["resources"]["plan"]["config"]["specification"]
    assert EvaluationPlan.from_mapping(specification) == EvaluationPlan(headline_horizon=2)
    assert request.run_config == plan_run_config(EvaluationPlan(headline_horizon=2).to_dict())
