"""Schedules: a quarterly evaluation of the delivery in the landing folder, off until switched on."""

import dagster as dg

from pipelines.jobs import evaluate_programmes
from pipelines.partitions import deliveries
from pipelines.resources import EvaluationPlanResource, LandingDirectory, WarehouseDirectory
from pipelines.sensors import delivery_run_request, register_delivery


@dg.schedule(
    job=evaluate_programmes,
    cron_schedule="0 6 1 1,4,7,10 *",
    execution_timezone="Europe/Brussels",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-run the evaluation of the current delivery on the first day of each quarter at 06:00.",
)
def quarterly_evaluation(context: dg.ScheduleEvaluationContext, landing: LandingDirectory, warehouse: WarehouseDirectory,
                         plan: EvaluationPlanResource):
    delivery = register_delivery(landing, warehouse)
    context.instance.add_dynamic_partitions(deliveries.name, [delivery.key])
    return delivery_run_request(delivery, run_key=None, plan=plan)
