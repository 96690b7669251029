"""The states of jobs and tasks, the errors their changes are refused with, and the bounds of
the lifecycle's own work."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from spaceone_job.errors import Code, ServiceError

FINISHED = ("SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")
UNFINISHED_TASK = ("PENDING", "IN_PROGRESS")
# A task that ended by its worker's report: answered as it is, never written again.
REPORTED_END = ("SUCCESS", "FAILURE")
# A newer job of the same source within this long is a duplicate (upstream §2.2).
DUPLICATE_WINDOW = timedelta(minutes=10)
# A running MANUAL job counts as a duplicate while updated this recently (contract §8.4).
MANUAL_ALIVE = timedelta(hours=24)
DUPLICATE_JOB = "ERROR_DUPLICATE_JOB"
# The time limit of each of the lifecycle's own reads and writes: those of a call without a
# deadline, and what follows a call's change (its job settling), which the change has made due.
QUERY_TIMEOUT_S = 10.0
# The errors of a job one of whose tasks failed.
FAILED_TASK = {"error_code": "ERROR_JOB_TASK", "error_message": "One or more job tasks failed."}

# Seconds left for the next step of a call's change.
Left = Callable[[], float]


def within(timeout: float | None) -> Left:
    """Seconds left of a call's ``timeout`` from now, for each read and write of its change
    (``QUERY_TIMEOUT_S`` each, without one)."""
    if timeout is None:
        return lambda: QUERY_TIMEOUT_S
    deadline = time.monotonic() + timeout
    return lambda: max(deadline - time.monotonic(), 0.0)


def job_state(job_id: str, status: object) -> ServiceError:
    """A report on a task whose job is no longer running."""
    return ServiceError(
        Code.JOB_STATE, "The job is no longer running.", job_id=job_id, job_state=status
    )


def task_not_found(task_id: str) -> ServiceError:
    """A task that does not exist, or not in the caller's scope."""
    return ServiceError(
        Code.NOT_FOUND, "The job task does not exist or is out of reach.", job_task_id=task_id
    )


def duplicate(data_source_id: str) -> dict[str, str]:
    """The errors of a job that duplicates a running one."""
    return {
        "error_code": DUPLICATE_JOB,
        "error_message": f"The same job is already running. (data_source_id = {data_source_id})",
    }
