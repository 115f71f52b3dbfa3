"""Plain sentences about a run from its Dagster events: what failed, and what deserves a look.

Used by ``make run`` (printed once) and by the failure hook (``RUN_FAILED.txt`` in the output),
so a user reads the same explanation wherever they meet a failed run.
"""

from collections.abc import Iterable

#: Dagster's own wrapper around a failed blocking check; the check itself is reported instead.
CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"
INTERRUPTED_ERROR = "DagsterExecutionInterruptedError"


def run_problems(events: Iterable) -> list[str]:
    """Human lines for every failed step and every failed error-level check of a run."""
    problems, failed_checks = [], []
    for event in events:
        if event.event_type_value == "STEP_FAILURE":
            failure = event.step_failure_data
            if failure.user_failure_data is not None:
                problems.append(f"{event.step_key}: {failure.user_failure_data.description}")
            elif failure.error is not None and failure.error.cls_name == INTERRUPTED_ERROR:
                problems.append(f"{event.step_key}: interrupted (Ctrl-C or a stop request)")
            elif failure.error is not None and failure.error.cls_name != CHECK_FAILED_ERROR:
                problems.append(f"{event.step_key}: {innermost_message(failure.error)}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed and stops_run(evaluation):
                failed_checks.append(evaluation)
    return list(dict.fromkeys(problems)) + check_lines(failed_checks)


def run_warnings(events: Iterable) -> list[str]:
    """Failed checks that did not stop the run (a few rows quarantined, drift from the previous delivery): worth a look."""
    return check_lines(
        event.event_specific_data
        for event in events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
        and not event.event_specific_data.passed
        and not stops_run(event.event_specific_data)
    )


def stops_run(evaluation) -> bool:
    """An error-level check stops the run unless it is declared non-blocking (the checks between deliveries)."""
    return evaluation.severity.value == "ERROR" and evaluation.blocking is not False


def check_lines(evaluations: Iterable) -> list[str]:
    """One entry per distinct explanation, then the checks that gave it (a summary is printed once)."""
    by_detail: dict[str, list[str]] = {}
    for evaluation in evaluations:
        name = f"{evaluation.asset_key.to_user_string()} / {evaluation.check_name}"
        names = by_detail.setdefault(check_detail(evaluation), [])
        if name not in names:
            names.append(name)
    return [f"{detail}\n(data checks: {', '.join(names)})" for detail, names in by_detail.items()]


#: exceptions whose text is written for the user: shown without their class name
PLAIN_ERRORS = ("ValueError", "ContractError")


def innermost_message(error) -> str:
    """The user's exception, not Dagster's wrapper around it; an unexpected one keeps its class name."""
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()  # "ExceptionClass: text"
    prefix = f"{error.cls_name}: "
    return message[len(prefix):] if error.cls_name in PLAIN_ERRORS and message.startswith(prefix) else message


def check_detail(evaluation) -> str:
    summary = evaluation.metadata.get("summary")
    return summary.value if summary is not None else evaluation.description or "failed"


def stored_events(instance, run_id: str) -> list:
    """The Dagster events of a run as recorded in the instance's event log."""
    return [entry.dagster_event for entry in instance.all_logs(run_id) if entry.dagster_event is not None]
