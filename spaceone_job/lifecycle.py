"""How jobs and their tasks change state outside the read RPCs: producers and the sweeper.

A scheduler creates a job with its tasks; workers start a task, report progress (a heartbeat for
the sweeper) and finish it. Every state change is one conditional write that names the states it
leaves, so concurrent workers, cancels and sweepers on several replicas never overwrite each
other: a finished job or task is never written again, and a task ends once, so the job's
``remained_tasks`` goes down by exactly one per task (contract §8).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from spaceone_job.errors import ServiceError
from spaceone_job.service import Clock, utcnow
from spaceone_job.store.model import InvalidJob, Job, JobTask, Model, new_document
from spaceone_job.store.store import Document, DuplicateJobId, JobStore

LOG = logging.getLogger(__name__)
FINISHED = ("SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")
UNFINISHED_TASK = ("PENDING", "IN_PROGRESS")
# A newer job of the same source within this long is a duplicate (upstream §2.2).
DUPLICATE_WINDOW = timedelta(minutes=10)
# A running MANUAL job counts as a duplicate while updated this recently (contract §8.4).
MANUAL_ALIVE = timedelta(hours=24)
# The time limit of the lifecycle's own reads (no client deadline governs them).
QUERY_TIMEOUT_S = 10.0
# How many request ids a task remembers (a retry comes soon after its first call).
KEPT_REQUEST_IDS = 32


def _derived(prefix: str, *parts: str) -> str:
    """An id made from ``parts``: the same request always names the same document."""
    return prefix + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _once(request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The condition and update that record ``request_id`` with the change it makes, so a retry
    matches nothing (and is recognised by the id it finds)."""
    if not request_id:
        return {}, {}
    return (
        {"request_ids": {"$ne": request_id}},
        {"$push": {"request_ids": {"$each": [request_id], "$slice": -KEPT_REQUEST_IDS}}},
    )


@dataclass(frozen=True)
class TaskSpec:
    """One task of a new job: its options and the month range it replaces."""

    options: Mapping[str, Any] = field(default_factory=dict)
    changed: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Created:
    """A new job and its tasks (none when it was a duplicate or had nothing to do)."""

    job: Document
    tasks: list[Document]


def _job_state(job_id: str, status: Any) -> ServiceError:
    return ServiceError(
        "ERROR_JOB_STATE", "The job is no longer running.", job_id=job_id, job_state=status
    )


def _not_found(task_id: str) -> ServiceError:
    return ServiceError("ERROR_NOT_FOUND", "The job task does not exist.", job_task_id=task_id)


class Lifecycle:
    """The producers' side of a job's life."""

    def __init__(self, jobs: JobStore, tasks: JobStore, clock: Clock = utcnow) -> None:
        self.jobs = jobs
        self.tasks = tasks
        self.clock = clock

    # --- jobs ---------------------------------------------------------------------------------

    def create(
        self,
        *,
        domain_id: str,
        data_source_id: str,
        workspace_id: str | None = None,
        resource_group: str | None = None,
        options: Mapping[str, Any] | None = None,
        tasks: Sequence[TaskSpec] = (),
        changed: Sequence[Mapping[str, Any]] = (),
        synced_accounts: Sequence[str] = (),
        request_id: str = "",
    ) -> Created:
        """A new IN_PROGRESS job with PENDING tasks, after upstream's duplicate check.

        Options are normalised as upstream (``no_preload_cache``, ``start``, ``sync_mode``). A
        duplicate job is stored as FAILURE ``ERROR_DUPLICATE_JOB`` with no tasks; a job without
        tasks succeeds at once. With ``request_id``, the job's id is made from it: a retry finds
        the job the first call made (the unique index decides, on any replica) and answers it.
        """
        options = {"no_preload_cache": False, "start": None, "sync_mode": "SCHEDULED"} | dict(
            options or {}
        )
        now = self.clock()
        data: dict[str, Any] = {
            "domain_id": domain_id,
            "data_source_id": data_source_id,
            "workspace_id": workspace_id,
            "resource_group": resource_group,
            "options": options,
            "total_tasks": len(tasks),
            "remained_tasks": len(tasks),
            "created_at": now,
            "updated_at": now,
        }
        if changed:
            data["changed"] = [dict(c) for c in changed]
        if synced_accounts:
            data["synced_accounts"] = [{"account_id": a} for a in synced_accounts]
        if request_id:
            data["job_id"] = _derived("job-", domain_id, request_id)
        job = self._valid(data)
        try:
            self.jobs.insert([job])
        except DuplicateJobId:
            if not request_id:
                raise
            return self._created_before(job["job_id"])
        if self._is_duplicate(job, now):
            failed = self._finish(
                job["job_id"],
                "FAILURE",
                error_code="ERROR_DUPLICATE_JOB",
                error_message="The same job is already running."
                f" (data_source_id = {data_source_id})",
            )
            return Created(failed or job, [])
        if not tasks:
            return Created(self._finish(job["job_id"], "SUCCESS") or job, [])
        created = [self._task(job, spec, now, index) for index, spec in enumerate(tasks)]
        self.tasks.insert(created)
        return Created(job, created)

    def _created_before(self, job_id: str) -> Created:
        job = self.jobs.find_one({"job_id": job_id})
        assert job is not None, "the insert found it"
        tasks = self.tasks.find(
            {"job_id": job_id},
            projection=None,
            sort=[("job_task_id", 1)],
            skip=0,
            limit=0,
            timeout=QUERY_TIMEOUT_S,
        )
        return Created(job, tasks)

    @staticmethod
    def _valid(data: dict[str, Any], model: Model = Job) -> Document:
        try:
            return new_document(data, model)
        except InvalidJob as exc:
            raise ServiceError("ERROR_INVALID_PARAMETER", f"Invalid job: {exc}.") from exc

    def _task(self, job: Document, spec: TaskSpec, now: datetime, index: int) -> Document:
        inherited = ("job_id", "data_source_id", "workspace_id", "domain_id", "resource_group")
        data = {name: job[name] for name in inherited}
        data["job_task_id"] = _derived("job-task-", job["job_id"], str(index))
        data.update(options=dict(spec.options), created_at=now, updated_at=now)
        if spec.changed is not None:
            data["changed"] = dict(spec.changed)
        return self._valid(data, JobTask)

    def _is_duplicate(self, job: Document, now: datetime) -> bool:
        """Upstream's duplicate check, with the manual-job rule the right way round: another
        running job of the same source created within 10 minutes, or a MANUAL one updated
        within 24 hours, is a duplicate; older scheduled ones are canceled on the way."""
        others = self.jobs.find(
            {
                "domain_id": job["domain_id"],
                "workspace_id": job["workspace_id"],
                "data_source_id": job["data_source_id"],
                "status": "IN_PROGRESS",
                "job_id": {"$ne": job["job_id"]},
            },
            projection=None,
            sort=[("created_at", -1)],
            skip=0,
            limit=0,
            timeout=QUERY_TIMEOUT_S,
        )
        for other in others:
            if other["created_at"] >= now - DUPLICATE_WINDOW:
                return True
            if (other.get("options") or {}).get("sync_mode") == "MANUAL":
                if other["updated_at"] >= now - MANUAL_ALIVE:
                    return True
                continue
            self._finish(other["job_id"], "CANCELED")
        return False

    def heartbeat(self, job_id: str) -> Document | None:
        """Mark a running job alive (``updated_at`` = now); None when it is no longer running."""
        return self.jobs.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS"}, {"$set": {"updated_at": self.clock()}}
        )

    def finish(
        self, job_id: str, status: str = "SUCCESS", *, error_code: str = "", error_message: str = ""
    ) -> Document | None:
        """IN_PROGRESS -> ``status``; None when the job was not running any more."""
        if status not in FINISHED:
            raise ValueError(f"{status} is not a finished state")
        extra = {"error_code": error_code, "error_message": error_message} if error_code else {}
        return self._finish(job_id, status, **extra)

    def _finish(self, job_id: str, status: str, **extra: str) -> Document | None:
        """One conditional write out of IN_PROGRESS; the unfinished tasks follow (PENDING ones
        on a cancel, every unfinished one otherwise: nobody will report them any more)."""
        now = self.clock()
        done = self.jobs.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS"},
            {"$set": {"status": status, "finished_at": now, "updated_at": now, **extra}},
        )
        if done is not None and status != "SUCCESS":
            self.cancel_tasks(job_id, ("PENDING",) if status == "CANCELED" else UNFINISHED_TASK)
        return done

    def cancel_tasks(self, job_id: str, statuses: Sequence[str] = ("PENDING",)) -> int:
        """A job's tasks in ``statuses`` -> CANCELED, each counted off ``remained_tasks`` once;
        how many."""
        now = self.clock()
        moved = self.tasks.update_many(
            {"job_id": job_id, "status": {"$in": list(statuses)}},
            {"$set": {"status": "CANCELED", "finished_at": now, "updated_at": now}},
        )
        if moved:
            self.jobs.update_one({"job_id": job_id}, {"$inc": {"remained_tasks": -moved}})
        return moved

    # --- tasks --------------------------------------------------------------------------------

    def _reportable(self, task: Document) -> bool:
        """Whether a worker's report on ``task`` may change it: False when the task has already
        ended SUCCESS or FAILURE (answered as it is). A CANCELED task, or one whose job has
        finished (it is canceled now, once), is refused ``ERROR_JOB_STATE`` so its worker
        stops."""
        if task["status"] in ("SUCCESS", "FAILURE"):
            return False
        job = self.jobs.find_one({"job_id": task["job_id"]})
        status = None if job is None else job.get("status")
        if task["status"] != "CANCELED" and status == "IN_PROGRESS":
            return True
        self._end_task(task["job_task_id"], "CANCELED")
        raise _job_state(task["job_id"], status)

    def _task_of(self, task_id: str) -> Document:
        task = self.tasks.find_one({"job_task_id": task_id})
        if task is None:
            raise _not_found(task_id)
        return task

    def start_task(self, task_id: str, request_id: str = "") -> Document:
        """PENDING -> IN_PROGRESS (``started_at``); a task already past PENDING is answered as
        it is."""
        task = self._task_of(task_id)
        if request_id in task.get("request_ids", ()) or not self._reportable(task):
            return task
        now = self.clock()
        condition, record = _once(request_id)
        started = self.tasks.update_one(
            {"job_task_id": task_id, "status": "PENDING", **condition},
            {"$set": {"status": "IN_PROGRESS", "started_at": now, "updated_at": now}, **record},
        )
        return started or self._task_of(task_id)

    def progress(self, task_id: str, created_count: int = 0, request_id: str = "") -> Document:
        """``created_count += n`` on a running task; the job's ``updated_at`` moves (the
        sweeper's heartbeat)."""
        task = self._task_of(task_id)
        if request_id in task.get("request_ids", ()) or not self._reportable(task):
            return task
        now = self.clock()
        condition, record = _once(request_id)
        moved = self.tasks.update_one(
            {"job_task_id": task_id, "status": {"$in": list(UNFINISHED_TASK)}, **condition},
            {"$inc": {"created_count": created_count}, "$set": {"updated_at": now}, **record},
        )
        self.heartbeat(task["job_id"])
        return moved or self._task_of(task_id)

    def finish_task(
        self, task_id: str, *, error_code: str = "", error_message: str = "", request_id: str = ""
    ) -> Document:
        """The task ends SUCCESS, or FAILURE with ``error_code``; its job counts it off once.

        A failed task fails its job (``ERROR_JOB_TASK``); the last task of a running job makes
        it SUCCESS. A task that had already ended is answered as it is and changes nothing.
        """
        task = self._task_of(task_id)
        if request_id in task.get("request_ids", ()) or not self._reportable(task):
            return task
        failed = bool(error_code)
        errors = {"error_code": error_code, "error_message": error_message} if failed else {}
        status = "FAILURE" if failed else "SUCCESS"
        ended = self._end_task(task_id, status, request_id=request_id, **errors)
        if ended is None:
            return self._task_of(task_id)
        if failed:
            self._finish(
                task["job_id"],
                "FAILURE",
                error_code="ERROR_JOB_TASK",
                error_message="One or more job tasks failed.",
            )
        return ended

    def _end_task(
        self, task_id: str, status: str, request_id: str = "", **extra: str
    ) -> Document | None:
        """An unfinished task -> ``status`` in one conditional write, then its job's
        ``remained_tasks`` -1 (never below 0); the job succeeds when none remain. None when the
        task had already ended."""
        now = self.clock()
        condition, record = _once(request_id)
        ended = self.tasks.update_one(
            {"job_task_id": task_id, "status": {"$in": list(UNFINISHED_TASK)}, **condition},
            {"$set": {"status": status, "finished_at": now, "updated_at": now, **extra}, **record},
        )
        if ended is None:
            return None
        job = self.jobs.update_one(
            {"job_id": ended["job_id"], "remained_tasks": {"$gt": 0}},
            {"$inc": {"remained_tasks": -1}, "$set": {"updated_at": now}},
        )
        if job is not None and job["remained_tasks"] == 0 and job["status"] == "IN_PROGRESS":
            self.jobs.update_one(
                {"job_id": ended["job_id"], "status": "IN_PROGRESS", "remained_tasks": 0},
                {"$set": {"status": "SUCCESS", "finished_at": now, "updated_at": now}},
            )
        return ended

    # --- the sweeper --------------------------------------------------------------------------

    def sweep_timeouts(self, timeout_s: int) -> int:
        """Running jobs with no update for ``timeout_s`` -> TIMEOUT, their unfinished tasks
        CANCELED; how many jobs moved. Each move is conditional, so replicas sweeping at once
        move each job once."""
        cutoff = self.clock() - timedelta(seconds=timeout_s)
        stale = {"status": "IN_PROGRESS", "updated_at": {"$lt": cutoff}}
        found = self.jobs.find(
            stale, projection={"job_id": 1}, sort=[], skip=0, limit=0, timeout=QUERY_TIMEOUT_S
        )
        moved = 0
        for job in found:
            now = self.clock()
            done = self.jobs.update_one(
                {"job_id": job["job_id"], **stale},
                {"$set": {"status": "TIMEOUT", "finished_at": now, "updated_at": now}},
            )
            if done is not None:
                self.cancel_tasks(job["job_id"], UNFINISHED_TASK)
                moved += 1
        if moved:
            LOG.info("sweeper: %d job(s) timed out after %d s without an update", moved, timeout_s)
        return moved


class Sweeper(threading.Thread):
    """Runs :meth:`Lifecycle.sweep_timeouts` every ``interval_s`` until stopped."""

    def __init__(self, lifecycle: Lifecycle, timeout_s: int, interval_s: float) -> None:
        super().__init__(name="timeout-sweeper", daemon=True)
        self.lifecycle = lifecycle
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sweep, wait, repeat; a database outage is logged and retried next round."""
        while not self.stopped.is_set():
            try:
                self.lifecycle.sweep_timeouts(self.timeout_s)
            except ServiceError as exc:
                LOG.warning("sweeper: %s", exc.details)
            self.stopped.wait(self.interval_s)

    def stop(self) -> None:
        """Ask the loop to end after the current round."""
        self.stopped.set()
