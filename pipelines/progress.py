"""A quiet logger for terminal runs: one line per finished stage, the full log to a file.

``make run`` turns Dagster's console logger down to errors-only and this one on, so a user sees
which stage is done (and how long it took) instead of hundreds of DEBUG lines; everything,
tracebacks included, goes to ``log_file``. Runs started from the UI keep Dagster's event log.
"""

import logging
import sys

import dagster as dg

from assets.checks import CHECK_STEPS

_STAGE_EVENTS = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}


def _step_outcome(record: logging.LogRecord):
    """Step outcomes worth a line; a check-only step that ran is not a stage (its failed checks are notes)."""
    event = getattr(record, "dagster_meta", {}).get("dagster_event")
    if event is None or event.event_type_value not in _STAGE_EVENTS:
        return None
    return None if event.event_type_value == "STEP_SUCCESS" and event.step_key in CHECK_STEPS else event


class _StageLine(logging.Formatter):
    """A step outcome as ``  <step>: done (1.2 s)``."""

    def format(self, record: logging.LogRecord) -> str:
        event = _step_outcome(record)
        seconds = ""
        if event.event_type_value == "STEP_SUCCESS":
            seconds = f" ({event.event_specific_data.duration_ms / 1000:.1f} s)"
        return f"  {event.step_key}: {_STAGE_EVENTS[event.event_type_value]}{seconds}"


class _WithErrors(logging.Formatter):
    """The full message, plus the stack trace of a failed step (kept out of the terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is not None and event.event_type_value == "STEP_FAILURE" and event.step_failure_data.error:
            text += "\n" + event.step_failure_data.error.to_string()
        return text


@dg.logger(
    config_schema={
        "stages_to_stdout": dg.Field(bool, default_value=False, description="print one line per finished step"),
        "log_file": dg.Field(str, default_value="", description="append the full run log here ('' = none)"),
    },
    description="One line per finished stage on stdout and the full log in a file (used by make run).",
)
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("export_impact.progress", level=logging.DEBUG)
    if init_context.logger_config["stages_to_stdout"]:
        stages = logging.StreamHandler(sys.stdout)
        stages.addFilter(_step_outcome)
        stages.setFormatter(_StageLine())
        logger.addHandler(stages)
    if init_context.logger_config["log_file"]:
        full = logging.FileHandler(init_context.logger_config["log_file"], encoding="utf-8")
        full.setFormatter(_WithErrors("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(full)
    return logger
