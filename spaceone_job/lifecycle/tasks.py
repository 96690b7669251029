"""A task's side of its life: its worker starts it, reports progress (the sweeper's heartbeat
for the job) and finishes it; the job follows (:meth:`Jobs.settle`).

Every report is one write conditional on the state it was computed from and on the caller's
scope, so concurrent workers, cancels and sweepers on several replicas never overwrite each other
and a task ends once (contract §8); that write is also the scope check. A report's request id is
recorded in that same write (see :mod:`spaceone_job.idempotency`): a retry finds the record and is
answered as the first call was. The call's deadline bounds the report's reads and its write;
what follows for the job is the lifecycle's own work, done within its own bound (a retry does it
again, harmlessly).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spaceone_job.errors import Code, ServiceError
from spaceone_job.idempotency import Request
from spaceone_job.lifecycle.jobs import TASK_ANSWER, Jobs
from spaceone_job.lifecycle.states import (
    QUERY_TIMEOUT_S,
    REPORTED_END,
    UNFINISHED_TASK,
    Left,
    job_state,
    task_not_found,
    within,
)
from spaceone_job.store.documents import Document
from spaceone_job.trail import TASK_MOVES, Actor, Event, event, pushed

# How many reports (start_task, report_progress) a task takes with request ids, by default.
REPORTS_PER_TASK = 1000
# How often a report is tried again when other writers changed its task in between.
ATTEMPTS = 16
# The most rows a task's created_count says: the answer's field is an int32.
INT32_MAX = 2**31 - 1

# What a report sets on a task, given the task and the time (an empty dict: nothing but the
# record of the request).
Change = Callable[[Document, datetime], Document]


class Tasks:
    """Workers' reports on tasks."""

    def __init__(self, jobs: Jobs, reports_per_task: int = REPORTS_PER_TASK) -> None:
        self.life = jobs
        self.jobs = jobs.jobs
        self.tasks = jobs.tasks
        self.clock = jobs.clock
        self.reports_per_task = reports_per_task

    def start_task(
        self,
        task_id: str,
        request: Request | None = None,
        scope: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        actor: Actor = {},  # noqa: B006 (never changed)
    ) -> Document:
        """PENDING -> IN_PROGRESS (``started_at``); a running task is answered as it is."""

        def start(task: Document, now: datetime) -> Document:
            if task["status"] != "PENDING":
                return {}
            return {"status": "IN_PROGRESS", "started_at": now, "updated_at": now}

        report = _Report(task_id, "start_task", request, scope, within(timeout), actor)
        answer, _ = self._report(report, start, limited=True)
        return answer

    def progress(
        self,
        task_id: str,
        created_count: int = 0,
        request: Request | None = None,
        scope: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        actor: Actor = {},  # noqa: B006 (never changed)
    ) -> Document:
        """``created_count += n`` on a running task; the job's ``updated_at`` moves (the
        sweeper's heartbeat). A total past int32, what the answer carries, is refused."""

        def add(task: Document, now: datetime) -> Document:
            total = int(task.get("created_count") or 0) + created_count
            if total > INT32_MAX:
                raise ServiceError(
                    Code.INVALID_PARAMETER,
                    f"Invalid parameter: the task's created_count would pass {INT32_MAX}.",
                    key="created_count",
                    created_count=task.get("created_count"),
                )
            return {"created_count": total, "updated_at": now}

        report = _Report(task_id, "report_progress", request, scope, within(timeout), actor)
        answer, changed = self._report(report, add, limited=True)
        if changed:
            self.life.heartbeat(answer["job_id"])
        return answer

    def finish_task(
        self,
        task_id: str,
        *,
        error_code: str = "",
        error_message: str = "",
        request: Request | None = None,
        scope: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        actor: Actor = {},  # noqa: B006 (never changed)
    ) -> Document:
        """The task ends SUCCESS, or FAILURE with ``error_code``; its job follows (see
        :meth:`Jobs.settle`). A task that had already ended is answered as it is."""

        def end(task: Document, now: datetime) -> Document:
            ended = {"status": "FAILURE" if error_code else "SUCCESS"}
            if error_code:
                ended.update(error_code=error_code, error_message=error_message)
            return {**ended, "finished_at": now, "updated_at": now}

        report = _Report(task_id, "finish_task", request, scope, within(timeout), actor)
        answer, changed = self._report(report, end, limited=False)
        if changed is not False:
            # A retry settles too: the first call may have ended before its job followed.
            self.life.settle(answer)
        return answer

    def _read(self, report: _Report, key: str | None) -> tuple[Document, Document | None]:
        """The task in the report's scope and the record of the request ``key`` on it, if
        any."""
        projection = None
        if key is not None:
            records = {"requests": {"$elemMatch": {"key": key}}}
            projection = {**dict.fromkeys(self.tasks.fields, 1), **records}
        task = self.tasks.find_one(report.where, projection, report.left())
        if task is None:
            raise task_not_found(report.task_id)
        found = task.pop("requests", None) or []
        return task, found[0] if found else None

    def _report(
        self, report: _Report, change: Change, limited: bool
    ) -> tuple[Document, bool | None]:
        """A worker's report on a task: the answer, and whether this call changed the task
        (None: it is a retry, answered as the first call was).

        A task ended SUCCESS or FAILURE is answered as it is. A CANCELED task, or one whose job
        is no longer running, is refused ``ERROR_JOB_STATE`` so that its worker stops. Else the
        change is one write conditional on the state it was computed from and on the caller's
        scope and, with a request id, records the request and its answer; another writer in
        between means reading again.
        """
        request, task_id = report.request, report.task_id
        key = None if request is None else request.key(report.domain_id, report.operation, task_id)
        seen: tuple[Any, ...] | None = None
        for _ in range(ATTEMPTS):
            task, record = self._read(report, key)
            if request is not None and record is not None:
                return request.replayed(record, task), None
            if task["status"] in REPORTED_END:
                return task, False
            state = (task["status"], task.get("created_count"))
            if state == seen:
                # Nothing changed but the write did not apply: only the report limit does that.
                raise ServiceError(
                    Code.TOO_MANY_REPORTS,
                    f"A task takes at most {self.reports_per_task} reports; finish it.",
                    job_task_id=task_id,
                )
            refused = self._refusal(task, report.left)
            if refused is not None:
                self._cancel_orphan(task)
                raise refused
            now = self.clock()
            sets = change(task, now)
            condition: Document = {
                **report.where,
                "status": task["status"],
                "created_count": task.get("created_count"),
            }
            update: Document = {"$set": sets} if sets else {}
            pushes = {} if sets.get("status") is None else pushed(_moved(task, sets, now, report))
            if request is not None and key is not None:
                condition["requests.key"] = {"$ne": key}
                answer = {name: sets.get(name, task.get(name)) for name in TASK_ANSWER}
                pushes["requests"] = request.record(key, answer)
                if limited:
                    condition[f"requests.{self.reports_per_task - 1}"] = {"$exists": False}
                    seen = state
            if pushes:
                update["$push"] = pushes
            if not update:
                return task, False
            written = self.tasks.update_one(condition, update, timeout=report.left())
            if written is not None:
                return written, True
        raise ServiceError(
            Code.CONCURRENT_CHANGE, "The task kept changing; try again.", job_task_id=task_id
        )

    def _refusal(self, task: Document, left: Left) -> ServiceError | None:
        """``ERROR_JOB_STATE`` when ``task`` is CANCELED or its job no longer running (so that
        its worker stops); None when a report on it is taken."""
        job = self.jobs.find_one({"job_id": task["job_id"]}, {"status": 1}, left())
        status = None if job is None else job.get("status")
        if task["status"] != "CANCELED" and status == "IN_PROGRESS":
            return None
        return job_state(task["job_id"], status)

    def _cancel_orphan(self, task: Document) -> None:
        """A task whose job stopped without it -> CANCELED, once, and counted off (the job's own
        follow-up, not the report's change)."""
        if task["status"] == "CANCELED":
            return
        now = self.clock()
        canceled = self.tasks.update_one(
            {"job_task_id": task["job_task_id"], "status": {"$in": list(UNFINISHED_TASK)}},
            {
                "$set": {"status": "CANCELED", "finished_at": now, "updated_at": now},
                "$push": pushed(event("task_canceled", now)),
            },
            timeout=QUERY_TIMEOUT_S,
        )
        if canceled is not None:
            self.life.count_off(task["job_id"])


def _moved(task: Document, sets: Document, now: datetime, report: _Report) -> Event:
    """The event of a report that moves ``task`` to ``sets``' status: its rows when it
    succeeded, its error when it failed."""
    status = sets["status"]
    details: dict[str, Any] = {}
    if status == "SUCCESS":
        details["created_count"] = sets.get("created_count", task.get("created_count"))
    if status == "FAILURE":
        details.update(error_code=sets.get("error_code"), error_message=sets.get("error_message"))
    return event(TASK_MOVES[status], now, report.actor, **details)


@dataclass(frozen=True)
class _Report:
    """One report: on which task, what kind, its request id, the caller's write scope (which
    the report's read and write both name), and the call's time left."""

    task_id: str
    operation: str
    request: Request | None
    scope: Mapping[str, Any] | None
    left: Left
    actor: Actor

    @property
    def where(self) -> Document:
        """The task, in the caller's scope."""
        return {"job_task_id": self.task_id, **(self.scope or {})}

    @property
    def domain_id(self) -> str:
        """The caller's domain (request ids are unique within it)."""
        return str((self.scope or {}).get("domain_id", ""))
