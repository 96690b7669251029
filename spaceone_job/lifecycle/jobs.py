"""A job's side of its life: created with its tasks, kept alive, finished, and settled after
each of its tasks ends.

A job's ``remained_tasks`` is the number of its unfinished tasks, counted again after each task
ends (never raised), and the task that leaves none decides the job: FAILURE when any task
failed, else SUCCESS. A failing task fails its job at once, so the other workers stop.

A create's request id is recorded in the job it makes (whose record key is unique): a retry
finds it and is answered as the first call was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spaceone_job.errors import Code, ServiceError, as_service_error
from spaceone_job.idempotency import Request
from spaceone_job.kinds import JOB, TASK, DocumentKind
from spaceone_job.lifecycle.states import (
    DUPLICATE_JOB,
    DUPLICATE_WINDOW,
    FAILED_TASK,
    FINISHED,
    MANUAL_ALIVE,
    QUERY_TIMEOUT_S,
    UNFINISHED_TASK,
    Left,
    duplicate,
    within,
)
from spaceone_job.service import Clock, utcnow
from spaceone_job.store.documents import Document, DuplicateJobId, OutOfTime, StoreError
from spaceone_job.store.model import InvalidJob, new_document, new_job_id, new_task_id
from spaceone_job.store.protocol import Store
from spaceone_job.trail import DUPLICATE_RULE, JOB_ENDS, Actor, event, pushed

LOG = logging.getLogger(__name__)
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


class Jobs:
    """Jobs: created, kept alive, finished, settled."""

    def __init__(self, jobs: Store, tasks: Store, clock: Clock = utcnow) -> None:
        self.jobs = jobs
        self.tasks = tasks
        self.clock = clock

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
        timeout: float | None = None,
        actor: Actor = {},  # noqa: B006 (never changed)
    ) -> Created:
        """A new IN_PROGRESS job with PENDING tasks, after upstream's duplicate check.

        Options are normalised as upstream (``no_preload_cache``, ``start``, ``sync_mode``). A
        duplicate job is stored as FAILURE ``ERROR_DUPLICATE_JOB`` with no tasks; a job without
        tasks is stored SUCCESS. All or nothing: every document is checked before the first
        write, the tasks are stored before their job, and a reader finds a job only with all its
        tasks. With ``request``, a retry (on any replica, however late) is answered as the first
        call was, and two creates of one request make one job (the record key is unique).
        Its reads are bounded by ``timeout`` (the call's deadline), and its writes begin within
        it. The job's trail starts with its creation by ``actor``.
        """
        left = within(timeout)
        key = None if request is None else request.key(domain_id, "create_job", workspace_id)
        if key is not None:
            earlier = self._created_by(domain_id, key, request, left)
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
            "events": [event("created", now, actor)],
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
        running = self._duplicated(job, now, left)
        if running is not None:
            errors = duplicate(data_source_id)
            failed = event("failed_as_duplicate", now, DUPLICATE_RULE, other_job_id=running)
            ended = {"status": "FAILURE", "finished_at": now, **errors}
            ended["events"] = [*job["events"], failed | errors]
            return self._store(job | ended, [], request, key, left)
        if not specs:
            ended = {"status": "SUCCESS", "finished_at": now}
            ended["events"] = [*job["events"], event("succeeded", now)]
            return self._store(job | ended, [], request, key, left)
        created = self._store(job, specs, request, key, left)
        running = self._duplicated(job, now, within(None)) if created.job is job else None
        if running is not None:
            # A create of the same source was stored in the meantime (the check above missed it);
            # the job is stored, so this is the lifecycle's own work, not bound by the call.
            failed_now = self._finish(
                job["job_id"],
                "FAILURE",
                errors=duplicate(data_source_id),
                kind="failed_as_duplicate",
                actor=DUPLICATE_RULE,
                other_job_id=running,
            )
            return Created(failed_now or job, [])
        return created

    def _store(
        self,
        job: Document,
        tasks: list[Document],
        request: Request | None,
        key: str | None,
        left: Left,
    ) -> Created:
        """Store the tasks, then their job; when a create of the same request was stored first,
        remove ours and answer that one. A random id that is taken is drawn again (before the
        tasks name it, so that no other job ever seems to have them)."""
        for _ in range(ID_DRAWS):
            if self.jobs.find_one({"job_id": job["job_id"]}, {"job_id": 1}, left()) is not None:
                self._draw_ids(job, tasks)
                continue
            # Not begun past the call's deadline; once begun, the two writes are not cut between
            # them by it (an insert cut off may still land: its tasks would be taken back).
            if left() <= 0:
                raise OutOfTime()
            try:
                self.tasks.insert(tasks)
                self.jobs.insert([job])
                return Created(job, tasks)
            except DuplicateJobId:
                # The request's key (a retry stored first), or a random id drawn meanwhile.
                self._remove(job, tasks)
                if key is not None:
                    earlier = self._created_by(job["domain_id"], key, request, left)
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

    def _created_by(
        self, domain_id: str, key: str, request: Request | None, left: Left
    ) -> Created | None:
        """The job a create of this request made, answered as then; None when there is none."""
        job = self.jobs.find_one(
            {"domain_id": domain_id, "request.key": key},
            {**dict.fromkeys(self.jobs.fields, 1), "request": 1},
            timeout=left(),
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
            timeout=left(),
        )
        return Created(job, [_task_as_created(task) for task in tasks])

    @staticmethod
    def _valid(data: dict[str, Any], kind: DocumentKind = JOB) -> Document:
        try:
            return new_document(data, kind.model)
        except InvalidJob as exc:
            raise ServiceError(Code.INVALID_PARAMETER, f"Invalid job: {exc}.") from exc

    def _task(self, job: Document, spec: TaskSpec, now: datetime, task_id: str) -> Document:
        data = {name: job[name] for name in TASK.inherited}
        data.update(job_task_id=task_id, options=dict(spec.options), created_at=now, updated_at=now)
        if spec.changed is not None:
            data["changed"] = dict(spec.changed)
        return self._valid(data, TASK)

    def _duplicated(self, job: Document, now: datetime, left: Left) -> str | None:
        """The running job ``job`` duplicates, by upstream's duplicate check with the manual-job
        rule the right way round: another running job of the same source created within 10
        minutes, or a MANUAL one updated within 24 hours; older scheduled ones are canceled on
        the way (as replaced by ``job``). None: no duplicate."""
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
            timeout=left(),
        )
        for other in others:
            if other["created_at"] >= now - DUPLICATE_WINDOW:
                return str(other["job_id"])
            if (other.get("options") or {}).get("sync_mode") == "MANUAL":
                if other["updated_at"] >= now - MANUAL_ALIVE:
                    return str(other["job_id"])
                continue
            self._finish(
                other["job_id"],
                "CANCELED",
                kind="canceled_as_duplicate",
                actor=DUPLICATE_RULE,
                other_job_id=job["job_id"],
            )
        return None

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
        errors = {"error_code": error_code, "error_message": error_message} if error_code else {}
        return self._finish(job_id, status, errors=errors)

    def _finish(
        self,
        job_id: str,
        status: str,
        *,
        errors: Mapping[str, str] = {},
        kind: str = "",
        actor: Actor = {},  # noqa: B006 (never changed)
        **details: str,
    ) -> Document | None:
        """One conditional write out of IN_PROGRESS, with its event (``kind``, by default the
        state's: see :data:`~spaceone_job.trail.JOB_ENDS`); the unfinished tasks follow (PENDING
        ones on a cancel, every unfinished one otherwise: nobody will report them any more)."""
        now = self.clock()
        happened = event(kind or JOB_ENDS[status], now, actor, **errors, **details)
        done = self.jobs.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS"},
            {
                "$set": {"status": status, "finished_at": now, "updated_at": now, **errors},
                "$push": pushed(happened),
            },
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
            {
                "$set": {"status": "CANCELED", "finished_at": now, "updated_at": now},
                "$push": pushed(event("task_canceled", now)),
            },
        )
        if moved:
            self.count_off(job_id)
        return moved

    def count_off(self, job_id: str) -> int:
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

    def settle(self, task: Document) -> None:
        """What follows a task's end for its job (again, harmlessly, for a retry): a failed task
        fails it at once; otherwise it stays alive, and the task that leaves none unfinished
        ends it, FAILURE when any task failed, else SUCCESS."""
        job_id = task["job_id"]
        if task["status"] == "FAILURE":
            self._finish(job_id, "FAILURE", errors=FAILED_TASK)
        else:
            self.heartbeat(job_id)
        if self.count_off(job_id):
            return
        failed = self.tasks.find_one(
            {"job_id": job_id, "status": "FAILURE"}, {"job_task_id": 1}, timeout=QUERY_TIMEOUT_S
        )
        if failed is not None:
            self._finish(job_id, "FAILURE", errors=FAILED_TASK)
            return
        now = self.clock()
        self.jobs.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS", "remained_tasks": 0},
            {
                "$set": {"status": "SUCCESS", "finished_at": now, "updated_at": now},
                "$push": pushed(event("succeeded", now)),
            },
        )
