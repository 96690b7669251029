"""How jobs and their tasks change state outside the read RPCs: producers and the sweeper.

A scheduler creates a job with its tasks; workers start a task, report progress (a heartbeat for
the sweeper) and finish it. Every state change is one conditional write that names the state it
leaves, so concurrent workers, cancels and sweepers on several replicas never overwrite each
other: a finished job or task is never written again, and a task ends once (contract §8).

A job's ``remained_tasks`` is the number of its unfinished tasks, counted again after each task
ends (never raised), and the task that leaves none decides the job: FAILURE when any task
failed, else SUCCESS. A failing task fails its job at once, so the other workers stop.

A producer's request id is recorded in the write that makes its change (see
:mod:`spaceone_job.idempotency`): a create in the job it makes (whose record key is unique), a
task's report in the task. A retry finds the record and is answered as the first call was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from spaceone_job.errors import Code, ServiceError, as_service_error
from spaceone_job.idempotency import Request
from spaceone_job.service import Clock, utcnow
from spaceone_job.store.documents import Document, DuplicateJobId, StoreError
from spaceone_job.store.model import (
    InvalidJob,
    Job,
    JobTask,
    Model,
    new_document,
    new_job_id,
    new_task_id,
)
from spaceone_job.store.protocol import Store

LOG = logging.getLogger(__name__)
FINISHED = ("SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")
UNFINISHED_TASK = ("PENDING", "IN_PROGRESS")
# A task that ended by its worker's report: answered as it is, never written again.
REPORTED_END = ("SUCCESS", "FAILURE")
# A newer job of the same source within this long is a duplicate (upstream §2.2).
DUPLICATE_WINDOW = timedelta(minutes=10)
# A running MANUAL job counts as a duplicate while updated this recently (contract §8.4).
MANUAL_ALIVE = timedelta(hours=24)
DUPLICATE_JOB = "ERROR_DUPLICATE_JOB"
# The time limit of the lifecycle's own reads (no client deadline governs them).
QUERY_TIMEOUT_S = 10.0
# How many reports (start_task, report_progress) a task takes with request ids, by default.
REPORTS_PER_TASK = 1000
# How often a report is tried again when other writers changed its task in between.
ATTEMPTS = 16
# How often a create draws new ids when one is taken (a 48-bit id can clash, rarely).
ID_DRAWS = 3
# What of a task changes after a report's answer: a report's record keeps these, the rest of
# the answer is the task itself (its ids, options, data source never change).
TASK_ANSWER = (
    "status",
    "created_count",
    "started_at",
    "updated_at",
    "finished_at",
    "error_code",
    "error_message",
)
# The most rows a task's created_count says: the answer's field is an int32.
INT32_MAX = 2**31 - 1


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
        Code.JOB_STATE, "The job is no longer running.", job_id=job_id, job_state=status
    )


def _not_found(task_id: str) -> ServiceError:
    return ServiceError(
        Code.NOT_FOUND, "The job task does not exist or is out of reach.", job_task_id=task_id
    )


def _duplicate(data_source_id: str) -> dict[str, str]:
    """The errors of a job that duplicates a running one."""
    return {
        "error_code": DUPLICATE_JOB,
        "error_message": f"The same job is already running. (data_source_id = {data_source_id})",
    }


# The errors of a job one of whose tasks failed.
FAILED_TASK = {"error_code": "ERROR_JOB_TASK", "error_message": "One or more job tasks failed."}


def _sorted_task_ids(count: int) -> list[str]:
    """``count`` new task ids in ascending order: a job's tasks sorted by id are in the order
    they were asked for, so a retry lists them as the first answer did."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(new_task_id())
    return sorted(ids)


def _as_created(job: Document) -> Document:
    """A stored job as its create answered it: a running job as it started (what came later is
    not the create's answer); one finished at creation (a duplicate, no tasks) as it is."""
    if job.get("error_code") == DUPLICATE_JOB or not job.get("total_tasks"):
        return job
    return job | {
        "status": "IN_PROGRESS",
        "remained_tasks": job.get("total_tasks"),
        "updated_at": job.get("created_at"),
        "finished_at": None,
        "error_code": None,
        "error_message": None,
    }


def _task_as_created(task: Document) -> Document:
    """A stored task as the create of its job answered it: PENDING, nothing done yet."""
    return (
        task
        | dict.fromkeys(TASK_ANSWER)
        | {
            "status": "PENDING",
            "created_count": 0,
            "updated_at": task.get("created_at"),
        }
    )


# What a report sets on a task, given the task and the time (an empty dict: nothing but the
# record of the request).
Change = Callable[[Document, datetime], Document]


class Lifecycle:
    """The producers' side of a job's life."""

    def __init__(
        self,
        jobs: Store,
        tasks: Store,
        clock: Clock = utcnow,
        reports_per_task: int = REPORTS_PER_TASK,
    ) -> None:
        self.jobs = jobs
        self.tasks = tasks
        self.clock = clock
        self.reports_per_task = reports_per_task

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
        request: Request | None = None,
    ) -> Created:
        """A new IN_PROGRESS job with PENDING tasks, after upstream's duplicate check.

        Options are normalised as upstream (``no_preload_cache``, ``start``, ``sync_mode``). A
        duplicate job is stored as FAILURE ``ERROR_DUPLICATE_JOB`` with no tasks; a job without
        tasks is stored SUCCESS. All or nothing: every document is checked before the first
        write, the tasks are stored before their job, and a reader finds a job only with all its
        tasks. With ``request``, a retry (on any replica, however late) is answered as the first
        call was, and two creates of one request make one job (the record key is unique).
        """
        key = None if request is None else request.key(domain_id, "create_job", workspace_id)
        if key is not None:
            earlier = self._created_by(domain_id, key, request)
            if earlier is not None:
                return earlier
        options = {"no_preload_cache": False, "start": None, "sync_mode": "SCHEDULED"} | dict(
            options or {}
        )
        now = self.clock()
        data: dict[str, Any] = {
            "job_id": new_job_id(),
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
        job = self._valid(data)
        specs = [
            self._task(job, spec, now, task_id)
            for spec, task_id in zip(tasks, _sorted_task_ids(len(tasks)), strict=True)
        ]
        if request is not None and key is not None:
            job["request"] = request.record(key)
        if self._is_duplicate(job, now):
            duplicate = {"status": "FAILURE", "finished_at": now, **_duplicate(data_source_id)}
            return self._store(job | duplicate, [], request, key)
        if not specs:
            return self._store(job | {"status": "SUCCESS", "finished_at": now}, [], request, key)
        created = self._store(job, specs, request, key)
        if created.job is job and self._is_duplicate(job, now):
            # A create of the same source was stored in the meantime (the check above missed it).
            failed = self._finish(job["job_id"], "FAILURE", **_duplicate(data_source_id))
            return Created(failed or job, [])
        return created

    def _store(
        self, job: Document, tasks: list[Document], request: Request | None, key: str | None
    ) -> Created:
        """Store the tasks, then their job; when a create of the same request was stored first,
        remove ours and answer that one. A random id that is taken is drawn again (before the
        tasks name it, so that no other job ever seems to have them)."""
        for _ in range(ID_DRAWS):
            if self.jobs.find_one({"job_id": job["job_id"]}, {"job_id": 1}) is not None:
                self._draw_ids(job, tasks)
                continue
            try:
                self.tasks.insert(tasks)
                self.jobs.insert([job])
                return Created(job, tasks)
            except DuplicateJobId:
                # The request's key (a retry stored first), or a random id drawn meanwhile.
                self._remove(job, tasks)
                if key is not None:
                    earlier = self._created_by(job["domain_id"], key, request)
                    if earlier is not None:
                        return earlier
                self._draw_ids(job, tasks)
            except BaseException:
                self._remove(job, tasks)
                raise
        raise ServiceError(Code.CONCURRENT_CHANGE, "New ids kept clashing; try again.")

    @staticmethod
    def _draw_ids(job: Document, tasks: list[Document]) -> None:
        job["job_id"] = new_job_id()
        for task, task_id in zip(tasks, _sorted_task_ids(len(tasks)), strict=True):
            task.update(job_id=job["job_id"], job_task_id=task_id)

    def _remove(self, job: Document, tasks: list[Document]) -> None:
        """Take back the tasks a create stored before its job (best effort: the create fails
        anyway, and no job names them)."""
        if not tasks:
            return
        ours = {"job_id": job["job_id"], "job_task_id": {"$in": [t["job_task_id"] for t in tasks]}}
        try:
            self.tasks.delete_many(ours, timeout=QUERY_TIMEOUT_S)
        except StoreError as exc:
            reason = as_service_error(exc).details
            LOG.warning("tasks of job %s not removed: %s", job["job_id"], reason)

    def _created_by(self, domain_id: str, key: str, request: Request | None) -> Created | None:
        """The job a create of this request made, answered as then; None when there is none."""
        job = self.jobs.find_one(
            {"domain_id": domain_id, "request.key": key},
            {**dict.fromkeys(self.jobs.fields, 1), "request": 1},
            timeout=QUERY_TIMEOUT_S,
        )
        if job is None:
            return None
        record = job.pop("request", None) or {}
        if request is not None:
            request.check(record)
        job = _as_created(job)
        if job["status"] != "IN_PROGRESS":
            return Created(job, [])
        tasks = self.tasks.find(
            {"job_id": job["job_id"]},
            projection=None,
            sort=[("job_task_id", 1)],
            skip=0,
            limit=0,
            timeout=QUERY_TIMEOUT_S,
        )
        return Created(job, [_task_as_created(task) for task in tasks])

    @staticmethod
    def _valid(data: dict[str, Any], model: Model = Job) -> Document:
        try:
            return new_document(data, model)
        except InvalidJob as exc:
            raise ServiceError(Code.INVALID_PARAMETER, f"Invalid job: {exc}.") from exc

    def _task(self, job: Document, spec: TaskSpec, now: datetime, task_id: str) -> Document:
        inherited = ("job_id", "data_source_id", "workspace_id", "domain_id", "resource_group")
        data = {name: job[name] for name in inherited}
        data.update(job_task_id=task_id, options=dict(spec.options), created_at=now, updated_at=now)
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
        """A job's tasks in ``statuses`` -> CANCELED, counted off ``remained_tasks``; how
        many."""
        now = self.clock()
        moved = self.tasks.update_many(
            {"job_id": job_id, "status": {"$in": list(statuses)}},
            {"$set": {"status": "CANCELED", "finished_at": now, "updated_at": now}},
        )
        if moved:
            self._count_off(job_id)
        return moved

    def _count_off(self, job_id: str) -> int:
        """``remained_tasks`` = the job's unfinished tasks, counted now (it never goes up, so
        concurrent counts settle on the last, lowest one); how many remain. Counting rather
        than subtracting makes it safe to do again (a retried report after a crash)."""
        left = self.tasks.count(
            {"job_id": job_id, "status": {"$in": list(UNFINISHED_TASK)}}, timeout=QUERY_TIMEOUT_S
        )
        self.jobs.update_one(
            {"job_id": job_id, "remained_tasks": {"$gt": left}}, {"$set": {"remained_tasks": left}}
        )
        return left

    def _settle(self, task: Document) -> None:
        """What follows a task's end for its job (again, harmlessly, for a retry): a failed task
        fails it at once; otherwise it stays alive, and the task that leaves none unfinished
        ends it, FAILURE when any task failed, else SUCCESS."""
        job_id = task["job_id"]
        if task["status"] == "FAILURE":
            self._finish(job_id, "FAILURE", **FAILED_TASK)
        else:
            self.heartbeat(job_id)
        if self._count_off(job_id):
            return
        failed = self.tasks.find_one(
            {"job_id": job_id, "status": "FAILURE"}, {"job_task_id": 1}, timeout=QUERY_TIMEOUT_S
        )
        if failed is not None:
            self._finish(job_id, "FAILURE", **FAILED_TASK)
            return
        now = self.clock()
        self.jobs.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS", "remained_tasks": 0},
            {"$set": {"status": "SUCCESS", "finished_at": now, "updated_at": now}},
        )

    # --- tasks --------------------------------------------------------------------------------

    def start_task(
        self, task_id: str, request: Request | None = None, scope: Mapping[str, Any] | None = None
    ) -> Document:
        """PENDING -> IN_PROGRESS (``started_at``); a running task is answered as it is."""

        def start(task: Document, now: datetime) -> Document:
            if task["status"] != "PENDING":
                return {}
            return {"status": "IN_PROGRESS", "started_at": now, "updated_at": now}

        answer, _ = self._report(task_id, "start_task", request, scope, start, limited=True)
        return answer

    def progress(
        self,
        task_id: str,
        created_count: int = 0,
        request: Request | None = None,
        scope: Mapping[str, Any] | None = None,
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

        answer, changed = self._report(task_id, "report_progress", request, scope, add, True)
        if changed:
            self.heartbeat(answer["job_id"])
        return answer

    def finish_task(
        self,
        task_id: str,
        *,
        error_code: str = "",
        error_message: str = "",
        request: Request | None = None,
        scope: Mapping[str, Any] | None = None,
    ) -> Document:
        """The task ends SUCCESS, or FAILURE with ``error_code``; its job follows (see
        :meth:`_settle`). A task that had already ended is answered as it is."""

        def end(task: Document, now: datetime) -> Document:
            ended = {"status": "FAILURE" if error_code else "SUCCESS"}
            if error_code:
                ended.update(error_code=error_code, error_message=error_message)
            return {**ended, "finished_at": now, "updated_at": now}

        answer, changed = self._report(task_id, "finish_task", request, scope, end, False)
        if changed is not False:
            # A retry settles too: the first call may have ended before its job followed.
            self._settle(answer)
        return answer

    def _task_of(self, task_id: str, scope: Mapping[str, Any] | None = None) -> Document:
        task = self.tasks.find_one({"job_task_id": task_id, **(scope or {})})
        if task is None:
            raise _not_found(task_id)
        return task

    def _read(
        self, task_id: str, scope: Mapping[str, Any] | None, key: str | None
    ) -> tuple[Document, Document | None]:
        """The task in ``scope`` and the record of the request ``key`` on it, if any."""
        if key is None:
            return self._task_of(task_id, scope), None
        task = self.tasks.find_one(
            {"job_task_id": task_id, **(scope or {})},
            {**dict.fromkeys(self.tasks.fields, 1), "requests": {"$elemMatch": {"key": key}}},
            timeout=QUERY_TIMEOUT_S,
        )
        if task is None:
            raise _not_found(task_id)
        records = task.pop("requests", None) or []
        return task, records[0] if records else None

    def _report(
        self,
        task_id: str,
        operation: str,
        request: Request | None,
        scope: Mapping[str, Any] | None,
        change: Change,
        limited: bool,
    ) -> tuple[Document, bool | None]:
        """A worker's report on a task: the answer, and whether this call changed the task
        (None: it is a retry, answered as the first call was).

        A task ended SUCCESS or FAILURE is answered as it is. A CANCELED task, or one whose job
        is no longer running, is refused ``ERROR_JOB_STATE`` so that its worker stops. Else the
        change is one write conditional on the state it was computed from and, with a request
        id, records the request and its answer; another writer in between means reading again.
        """
        domain_id = (scope or {}).get("domain_id", "")
        key = None if request is None else request.key(domain_id, operation, task_id)
        seen: tuple[Any, ...] | None = None
        for _ in range(ATTEMPTS):
            task, record = self._read(task_id, scope, key)
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
            self._refuse_if_stopped(task)
            now = self.clock()
            sets = change(task, now)
            condition: Document = {
                "job_task_id": task_id,
                "status": task["status"],
                "created_count": task.get("created_count"),
            }
            update: Document = {"$set": sets} if sets else {}
            if request is not None and key is not None:
                condition["requests.key"] = {"$ne": key}
                answer = {name: sets.get(name, task.get(name)) for name in TASK_ANSWER}
                update["$push"] = {"requests": request.record(key, answer)}
                if limited:
                    condition[f"requests.{self.reports_per_task - 1}"] = {"$exists": False}
                    seen = state
            if not update:
                return task, False
            written = self.tasks.update_one(condition, update)
            if written is not None:
                return written, True
        raise ServiceError(
            Code.CONCURRENT_CHANGE, "The task kept changing; try again.", job_task_id=task_id
        )

    def _refuse_if_stopped(self, task: Document) -> None:
        """``ERROR_JOB_STATE`` for a report on a CANCELED task, or on a task whose job is no
        longer running (the task is then canceled, once, and counted off)."""
        job = self.jobs.find_one({"job_id": task["job_id"]}, {"status": 1})
        status = None if job is None else job.get("status")
        if task["status"] != "CANCELED" and status == "IN_PROGRESS":
            return
        if task["status"] != "CANCELED":
            now = self.clock()
            canceled = self.tasks.update_one(
                {"job_task_id": task["job_task_id"], "status": {"$in": list(UNFINISHED_TASK)}},
                {"$set": {"status": "CANCELED", "finished_at": now, "updated_at": now}},
            )
            if canceled is not None:
                self._count_off(task["job_id"])
        raise _job_state(task["job_id"], status)

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
            except StoreError as exc:
                LOG.warning("sweeper: %s", as_service_error(exc).details)
            self.stopped.wait(self.interval_s)

    def stop(self) -> None:
        """Ask the loop to end after the current round."""
        self.stopped.set()
