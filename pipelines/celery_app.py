"""The Celery app the workers run: ``celery -A pipelines.celery_app worker --concurrency 1``.

It is ``dagster_celery``'s app (its queue, routes and ``execute_plan`` task) on the broker and
backend the executor uses (:func:`pipelines.executors.celery_settings`), so workers and runs
cannot disagree. Start workers with the same ``EXPORT_IMPACT_*`` and ``DAGSTER_PG_*`` environment
as the runs: a worker builds the job's resources (warehouse folder, plan) from its own
environment; a step of a worker pointed at another warehouse stops with a message saying so.
"""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from pipelines.executors import celery_settings

app = make_app(CeleryExecutor.for_cli(**celery_settings()).app_args())
execute_plan = create_task(app)
