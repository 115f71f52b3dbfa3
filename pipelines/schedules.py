"""Schedules: a quarterly evaluation, off until an evaluator switches it on in the UI."""

import dagster as dg

from pipelines.jobs import evaluate_programmes

quarterly_evaluation = dg.ScheduleDefinition(
    name="quarterly_evaluation",
    job=evaluate_programmes,
    cron_schedule="0 6 1 1,4,7,10 *",
    execution_timezone="Europe/Brussels",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-run the evaluation on the first day of each quarter at 06:00.",
)
