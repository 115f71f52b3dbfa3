"""Job hooks: a failed run says so in its delivery's output folder instead of leaving stale files."""

import contextlib

import dagster as dg

from analyses.deliveries import UnknownDelivery
from analyses.publishing import publish_failure
from pipelines.run_summary import run_problems, stored_events


@dg.failure_hook(required_resource_keys={"output_dir", "warehouse"})
def publish_failure_note(context: dg.HookContext) -> None:
    """Replace the delivery's published folder by ``RUN_FAILED.txt`` with the plain failure summary."""
    run = context.instance.get_run_by_id(context.run_id)
    delivery = run.tags.get("dagster/partition") if run else None
    if not delivery:
        return
    problems = run_problems(stored_events(context.instance, context.run_id))
    if not problems and context.op_exception is not None:
        problems = [f"{context.step_key}: {type(context.op_exception).__name__}: {context.op_exception}"]
    warehouse = context.resources.warehouse
    private = [warehouse.root]
    with contextlib.suppress(UnknownDelivery):  # runs launched from the UI carry no landing tag: use the manifest
        private.append(warehouse.deliveries.get(delivery).folder)
    folder = publish_failure(context.resources.output_dir.root, delivery, context.run_id, problems, tuple(private))
    context.log.error(f"run failed; {folder / 'RUN_FAILED.txt'} says why")
