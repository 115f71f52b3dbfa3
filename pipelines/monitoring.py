"""Runs whose worker died (killed, machine restarted) are marked failed at the next start.

Dagster's daemon run monitoring needs a run launcher that can report its workers' health; the
default launcher and ``make run``'s in-process runs cannot, so such a run would stay STARTED for
ever. Every Dagster event carries the pid of the process that logged it: a run in progress whose
worker pid no longer exists on this host is dead. It is marked failed and its delivery's output
folder says so.
"""

import os
import socket

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from analyses.publishing import publish_failure

HOST_TAG = "export_impact/host"
IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    starts = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
    return starts[-1].dagster_event.pid if starts and starts[-1].dagster_event else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fail_abandoned_runs(instance: DagsterInstance, output_root) -> list[str]:
    """Mark in-progress runs of this host whose worker process is gone as failed; return their ids.

    Runs tagged with another host are left to that host. A run that has not logged its start
    yet is left to Dagster's start timeout (``run_monitoring`` in ``dagster.yaml``).
    """
    failed = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        if run.tags.get(HOST_TAG, socket.gethostname()) != socket.gethostname():
            continue
        pid = _worker_pid(instance, run.run_id)
        if pid is None or _alive(pid):
            continue
        message = f"run worker (pid {pid}) is gone: the run was killed or its machine stopped"
        instance.report_run_failed(run, message)
        delivery = run.tags.get("dagster/partition")
        if delivery:
            publish_failure(output_root, delivery, run.run_id, [message])
        failed.append(run.run_id)
    return failed
