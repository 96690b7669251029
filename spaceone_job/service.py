"""The API's rules: tenant scope, the cancel state machine, validation order.

One :class:`ReadService` serves ``get``, ``list`` and ``stat`` for the kind of document its store
holds (jobs, job tasks: see :mod:`spaceone_job.kinds`); :class:`JobService` adds ``cancel``.
Requests arrive as plain values (the servicer has already turned protobuf into dicts and
authenticated the caller); answers leave as stored documents or plain dicts for the renderer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from spaceone_job import cpu, trail
from spaceone_job.auth import DOMAIN_LEVEL, Caller
from spaceone_job.errors import Code, ServiceError, invalid, required
from spaceone_job.query import schema
from spaceone_job.query import stat as stat_compiler
from spaceone_job.query.filters import Clause, Context, Limits
from spaceone_job.query.listing import ListPlan, compile_list
from spaceone_job.store.documents import Document, QueryRefused
from spaceone_job.store.protocol import Store

Clock = Callable[[], datetime]
P = TypeVar("P")
R = TypeVar("R")
ID_MAX_LENGTH = 40


def utcnow() -> datetime:
    """The current time as naive UTC, as stored."""
    return datetime.now(UTC).replace(tzinfo=None)


def read_scope(caller: Caller) -> list[Clause]:
    """What a caller may read: the domain, narrowed to ``[wid, "*"]`` for workspace callers."""
    scope: list[Clause] = [{"domain_id": caller.domain_id}]
    if caller.workspace_scoped:
        scope.append({"workspace_id": {"$in": [caller.workspace_id, DOMAIN_LEVEL]}})
    return scope


def _left(ends: float) -> float:
    """Seconds until ``ends`` (monotonic); a store call gets at least a millisecond, to time
    out in."""
    return max(ends - time.monotonic(), 0.001)


def _and(clauses: Sequence[Clause]) -> Clause:
    return {"$and": list(clauses)}


def _does_not_fit(part: str) -> ServiceError:
    return ServiceError(
        Code.INVALID_PARAMETER,
        "The stored values do not fit this part of the query (e.g. an array operator on values"
        " that are not arrays, or a date format on values that are not dates).",
        key=part,
    )


@dataclass(frozen=True)
class ListResult:
    """One page of documents, the count before paging, and how to render them."""

    documents: list[Document]
    total_count: int
    minimal: bool


class ReadService:
    """get / list / stat of the documents of one store (jobs, or job tasks) for an
    authenticated caller."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        query_timeout_ms: int,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.limits = limits
        self.query_timeout_ms = query_timeout_ms
        self.clock = clock
        # What the store holds (jobs, or job tasks) decides the fields, the id and the shortcuts.
        self.kind = store.kind
        self.schema = schema.Schema(store.kind)

    def _budget(self, client_timeout: float | None) -> float:
        """Seconds the database work of one call may take: the query limit or the client's
        remaining time, whichever is shorter."""
        limit = self.query_timeout_ms / 1000
        return limit if client_timeout is None else max(min(limit, client_timeout), 0.001)

    def _context(self) -> Context:
        return Context(self.schema, self.limits, self.clock())

    def _id(self, value: str) -> str:
        name = self.kind.key
        value = value.strip()
        if not value:
            raise required(name)
        if len(value) > ID_MAX_LENGTH:
            raise invalid(name, f"a {self.kind.noun} id is at most {ID_MAX_LENGTH} characters.")
        return value

    def _find(
        self,
        caller: Caller,
        value: str,
        timeout: float,
        projection: Mapping[str, Any] | None = None,
    ) -> Document:
        name = self.kind.key
        where = _and([*read_scope(caller), {name: value}])
        doc = self.store.find_one(where, projection, timeout=timeout)
        if doc is None:
            raise ServiceError(
                Code.NOT_FOUND,
                f"The {self.kind.noun} does not exist or is out of reach.",
                **{name: value},
            )
        return doc

    def get(
        self,
        caller: Caller,
        value: str,
        timeout: float | None = None,
        also: Sequence[str] = (),
    ) -> Document:
        """One document the caller may read (with the internal fields named in ``also``)."""
        projection = self.fields_and(also) if also else None
        return self._find(caller, self._id(value), self._budget(timeout), projection)

    def fields_and(self, internal: Sequence[str]) -> dict[str, int]:
        """The projection of a read that returns the internal fields ``internal`` beside the
        document's own."""
        return {**dict.fromkeys(self.store.fields, 1), **dict.fromkeys(internal, 1)}

    def readable(
        self, caller: Caller, ids: Sequence[str], timeout: float | None = None
    ) -> dict[str, Document]:
        """The documents of ``ids`` the caller may read, by id."""
        name = self.kind.key
        where = _and([*read_scope(caller), {name: {"$in": list(ids)}}])
        found = self.store.find(
            where, projection=None, sort=[], skip=0, limit=0, timeout=self._budget(timeout)
        )
        return {doc[name]: doc for doc in found}

    def list_documents(
        self, caller: Caller, request: Mapping[str, Any], timeout: float | None = None
    ) -> ListResult:
        """Documents matching the request's shortcut fields and query, within the caller's
        scope."""
        budget = self._budget(timeout)
        ends = time.monotonic() + budget

        def listed(plan: ListPlan) -> ListResult:
            try:
                return self._run_list(plan, _left(ends))
            except QueryRefused as exc:
                raise _does_not_fit("query") from exc

        return self._computed(
            budget,
            lambda: compile_list(
                request.get("query") or {},
                read_scope(caller),
                self._shortcuts(caller, request),
                self._context(),
            ),
            listed,
        )

    def _computed(self, budget: float, compile: Callable[[], P], run: Callable[[P], R]) -> R:
        """``run(compile())`` within ``budget``, the compiling in a CPU place (see
        :mod:`spaceone_job.cpu`); on a store that answers in this process, the running too, in
        the same place, so that a call waiting for its turn holds no compiled plan."""
        if self.store.in_memory:
            return cpu.run(budget, lambda _: run(compile()))
        return run(cpu.run(budget, lambda _: compile()))

    def _run_list(self, plan: ListPlan, timeout: float) -> ListResult:
        if plan.stages is not None:
            return self._list_pipeline(plan, timeout)
        docs, total = self.store.page(
            plan.filter,
            projection=plan.projection,
            sort=plan.sort,
            skip=plan.skip,
            limit=plan.limit,
            count_only=plan.count_only,
            timeout=timeout,
        )
        return ListResult(docs, total, plan.minimal)

    def _list_pipeline(self, plan: ListPlan, timeout: float) -> ListResult:
        docs, total = self.store.page_pipeline(
            plan.rows(), plan.page(), skip=plan.skip, count_only=plan.count_only, timeout=timeout
        )
        return ListResult(docs, total, plan.minimal)

    def _shortcuts(self, caller: Caller, request: Mapping[str, Any]) -> list[Clause]:
        clauses: list[Clause] = [
            {name: request[name]} for name in self.kind.shortcuts if request.get(name)
        ]
        workspace_id = request.get("workspace_id")
        # A workspace caller's scope already fixes the workspace; upstream ignores theirs too.
        if workspace_id and not caller.workspace_scoped:
            clauses.append({"workspace_id": {"$in": [workspace_id, DOMAIN_LEVEL]}})
        return clauses

    def stat(
        self, caller: Caller, query: Mapping[str, Any] | None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Statistics over the caller's documents, computed in the database."""
        if query is None:
            raise required("query")
        budget = self._budget(timeout)
        ends = time.monotonic() + budget

        def counted(plan: stat_compiler.StatPlan) -> dict[str, Any]:
            timeout = _left(ends)
            try:
                rows = self.store.aggregate(plan.pipeline, timeout=timeout)
                result: dict[str, Any] = {"results": plan.shape(rows)}
                if plan.count_pipeline is not None:
                    counted = self.store.aggregate(plan.count_pipeline, timeout=timeout)
                    result["total_count"] = int(counted[0]["total_count"]) if counted else 0
            except QueryRefused as exc:
                raise _does_not_fit(plan.part_refused(exc.reason, exc.stage)) from exc
            return result

        return self._computed(
            budget,
            lambda: stat_compiler.compile_stat(query, read_scope(caller), self._context()),
            counted,
        )


class JobService(ReadService):
    """get / list / stat of jobs, and cancel."""

    def __init__(
        self,
        store: Store,
        limits: Limits,
        query_timeout_ms: int,
        clock: Clock = utcnow,
        on_cancel: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__(store, limits, query_timeout_ms, clock)
        # What follows a cancel (the lifecycle cancels the job's PENDING tasks).
        self.on_cancel = on_cancel

    def cancel(self, caller: Caller, job_id: str, timeout: float | None = None) -> Document:
        """IN_PROGRESS -> CANCELED in one conditional write; a CANCELED job stays as it is."""
        job_id = self._id(job_id)
        timeout = self._budget(timeout)
        target: Clause = {"domain_id": caller.domain_id, "job_id": job_id, "status": "IN_PROGRESS"}
        if caller.workspace_scoped:
            target["workspace_id"] = caller.workspace_id
        now = self.clock()
        canceled = trail.event("canceled", now, trail.by(caller))
        changed = self.store.update_one(
            target,
            {
                "$set": {"status": "CANCELED", "finished_at": now, "updated_at": now},
                "$push": trail.pushed(canceled),
            },
            timeout=timeout,
        )
        if changed is not None:
            if self.on_cancel is not None:
                self.on_cancel(job_id)
            return changed
        current = self._find(caller, job_id, timeout)
        if caller.workspace_scoped and current.get("workspace_id") != caller.workspace_id:
            raise ServiceError(
                Code.PERMISSION_DENIED,
                "Only a domain admin can cancel a domain-level job.",
                job_id=job_id,
            )
        if current.get("status") == "CANCELED":
            return current
        raise ServiceError(
            Code.JOB_STATE,
            "Only an IN_PROGRESS job can be canceled.",
            job_state=current.get("status"),
        )


class Trails:
    """The event trail of a job (see :mod:`spaceone_job.trail`), read with the scope of
    ``get``."""

    def __init__(self, jobs: JobService, tasks: Store) -> None:
        self.jobs = jobs
        self.tasks = tasks

    def events(self, caller: Caller, job_id: str, timeout: float | None = None) -> list[Document]:
        """The job's events and its tasks', oldest first, each naming its job and, for a
        task's, its task. At one instant (a clock's tick holds many), in the order changes cause
        each other: the creation, then tasks' moves, then the job's end, then the tasks it
        canceled."""
        budget = self.jobs._budget(timeout)
        ends = time.monotonic() + budget
        job_id = self.jobs._id(job_id)
        job = self.jobs._find(caller, job_id, budget, {"job_id": 1, "events": 1})
        tasks = self.tasks.find(
            {"job_id": job_id, "domain_id": caller.domain_id},
            projection={"job_task_id": 1, "events": 1},
            sort=[("job_task_id", 1)],
            skip=0,
            limit=0,
            timeout=max(ends - time.monotonic(), 0.001),
        )
        found = [{**e, "job_id": job_id} for e in job.get("events") or []]
        for task in tasks:
            mine = {"job_id": job_id, "job_task_id": task["job_task_id"]}
            found += [{**e, **mine} for e in task.get("events") or []]
        return sorted(found, key=lambda e: (e["at"], trail.trail_rank(e["type"])))
