"""Which executor runs the job's steps, chosen by ``EXPORT_IMPACT_EXECUTOR``.

* ``in_process`` (default): every step in the run's own process. Process start-up costs seconds
  per step, so on one machine this is the fastest for one delivery of a few thousand firms.
* ``multiprocess``: one child process per step, at most ``EXPORT_IMPACT_MAX_CONCURRENT_STEPS``
  at once (default: the number of CPUs); the specifications of the plan are estimated in parallel.
* ``celery``: steps are queued on a Celery broker (``EXPORT_IMPACT_CELERY_BROKER``, e.g.
  ``redis://host:6379/0``; results on ``EXPORT_IMPACT_CELERY_BACKEND``, default the broker) and
  run by workers started with ``celery -A pipelines.celery_app worker``, on this or other machines
  that see the same warehouse folder and the same Dagster instance (PostgreSQL).
"""

import os

import dagster as dg

EXECUTORS = ("in_process", "multiprocess", "celery")


def executor_name() -> str:
    """``EXPORT_IMPACT_EXECUTOR``, checked; ``in_process`` when unset."""
    name = os.environ.get("EXPORT_IMPACT_EXECUTOR") or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"EXPORT_IMPACT_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)}")
    return name


def celery_settings() -> dict:
    """Broker and result backend of the Celery executor and its workers, from the environment.

    Raises ``ValueError`` when ``EXPORT_IMPACT_CELERY_BROKER`` is not set: Celery's own default
    (RabbitMQ on localhost) would make the run wait for a broker nobody started.
    """
    broker = os.environ.get("EXPORT_IMPACT_CELERY_BROKER")
    if not broker:
        raise ValueError("EXPORT_IMPACT_EXECUTOR=celery needs EXPORT_IMPACT_CELERY_BROKER (e.g. redis://127.0.0.1:6379/0)")
    return {"broker": broker, "backend": os.environ.get("EXPORT_IMPACT_CELERY_BACKEND") or broker}


def selected_executor() -> dg.ExecutorDefinition:
    """The executor ``EXPORT_IMPACT_EXECUTOR`` names, configured from the environment."""
    name = executor_name()
    if name == "multiprocess":
        limit = int(os.environ.get("EXPORT_IMPACT_MAX_CONCURRENT_STEPS") or 0)
        return dg.multiprocess_executor.configured({"max_concurrent": limit}, name="multiprocess")
    if name == "celery":
        from dagster_celery import celery_executor  # imports Celery: only when chosen

        return celery_executor.configured(celery_settings(), name="celery")
    return dg.in_process_executor
