"""Random interleavings of create, start, progress, finish, cancel and the sweeper, with retries
and request ids shared by several tenants, keep the lifecycle's invariants (contract §8, §11):

- a job ends once: a finished job never changes status again;
- a job is FAILURE exactly when one of its tasks failed (or it was a duplicate); SUCCESS only when
  every task succeeded; a running job has unfinished tasks;
- ``remained_tasks`` is the number of the job's unfinished tasks;
- a retry (the same tenant, operation and request) is answered as the first call was;
- no answer carries another tenant's data.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from spaceone_job import auth
from spaceone_job.api import render
from spaceone_job.auth import Caller
from spaceone_job.errors import ServiceError
from spaceone_job.kinds import TASK
from spaceone_job.lifecycle import Created, Lifecycle
from spaceone_job.producer import Producers
from spaceone_job.query.filters import Limits
from spaceone_job.service import JobService
from spaceone_job.store.connect import connect
from spaceone_job.store.documents import Document

from .conftest import D1, D2, TEST_MONGODB_URI, WS1, WS2, Clock

TENANTS = {
    "d1 admin": Caller(D1, None, auth.DOMAIN_ADMIN),
    "d1 ws1 owner": Caller(D1, WS1, auth.WORKSPACE_OWNER),
    "d1 ws2 owner": Caller(D1, WS2, auth.WORKSPACE_OWNER),
    "d2 admin": Caller(D2, None, auth.DOMAIN_ADMIN),
}
tenants = st.sampled_from(sorted(TENANTS))
request_ids = st.sampled_from(["r-1", "r-2", "r-3"])
UNFINISHED = ("PENDING", "IN_PROGRESS")
FINISHED = ("SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")


def shown(answer: Any) -> Any:
    """What the client receives, for comparing answers."""
    if isinstance(answer, Created):
        return (render.job_info(answer.job), [render.job_task_info(t) for t in answer.tasks])
    return render.job_task_info(answer)


def documents(answer: Any) -> list[Document]:
    if isinstance(answer, Created):
        return [answer.job, *answer.tasks]
    return [answer]


class Producing(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.jobs = connect(TEST_MONGODB_URI, f"spaceone-job-test-{uuid.uuid4().hex[:8]}")
        self.tasks = self.jobs.sibling(TASK)
        self.clock = Clock()
        self.lifecycle = Lifecycle(self.jobs, self.tasks, self.clock)
        self.producers = Producers(self.lifecycle)
        self.service = JobService(
            self.jobs, Limits(), 10_000, self.clock, on_cancel=self.lifecycle.cancel_tasks
        )
        self.answered: dict[tuple[str, str, str], Any] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.task_ids: list[str] = []
        self.job_ids: list[str] = []
        self.ended: dict[str, str] = {}

    def teardown(self) -> None:
        self.jobs.drop()
        self.tasks.drop()

    def call(self, tenant: str, operation: str, body: dict[str, Any]) -> None:
        caller = TENANTS[tenant]
        same = (tenant, operation, json.dumps(body, sort_keys=True))
        try:
            answer = getattr(self.producers, operation)(caller, body)
        except ServiceError as exc:
            assert same not in self.answered, f"a retry was refused: {exc.details}"
            return
        for doc in documents(answer):
            assert doc["domain_id"] == caller.domain_id, "another domain's data"
            if caller.workspace_scoped:
                assert doc["workspace_id"] == caller.workspace_id, "another workspace's data"
        if same in self.answered:
            assert shown(answer) == self.answered[same], "a retry answered differently"
        else:
            self.answered[same] = shown(answer)
            self.calls.append((tenant, operation, body))
        if isinstance(answer, Created):
            self.job_ids.append(answer.job["job_id"])
            self.task_ids += [t["job_task_id"] for t in answer.tasks]

    @rule(
        tenant=tenants,
        request_id=request_ids,
        tasks=st.integers(0, 3),
        source=st.sampled_from(["ds-1", "ds-2"]),
    )
    def create(self, tenant: str, request_id: str, tasks: int, source: str) -> None:
        body = {
            "request_id": request_id,
            "data_source_id": source,
            "tasks": [{"options": {"part": n}} for n in range(tasks)],
        }
        self.call(tenant, "create_job", body)

    @precondition(lambda self: self.task_ids)
    @rule(
        tenant=tenants,
        request_id=request_ids,
        pick=st.integers(0, 100),
        kind=st.sampled_from(["start_task", "report_progress", "finish_task", "fail"]),
        count=st.integers(0, 5),
    )
    def report(self, tenant: str, request_id: str, pick: int, kind: str, count: int) -> None:
        body: dict[str, Any] = {
            "request_id": request_id,
            "job_task_id": self.task_ids[pick % len(self.task_ids)],
        }
        if kind == "report_progress":
            body["created_count"] = count
        if kind == "fail":
            kind, body["error_code"] = "finish_task", "ERROR_PLUGIN"
        self.call(tenant, kind, body)

    @precondition(lambda self: self.calls)
    @rule(pick=st.integers(0, 1000))
    def retry(self, pick: int) -> None:
        self.call(*self.calls[pick % len(self.calls)])

    @precondition(lambda self: self.job_ids)
    @rule(tenant=tenants, pick=st.integers(0, 100))
    def cancel(self, tenant: str, pick: int) -> None:
        with contextlib.suppress(ServiceError):
            self.service.cancel(TENANTS[tenant], self.job_ids[pick % len(self.job_ids)])

    @rule()
    def sweep(self) -> None:
        self.clock.advance(hours=3)
        self.lifecycle.sweep_timeouts(7200)

    @invariant()
    def jobs_agree_with_their_tasks(self) -> None:
        for job_id in self.job_ids:
            job = self.jobs.find_one({"job_id": job_id})
            assert job is not None
            status = job["status"]
            assert self.ended.get(job_id, status) == status, "a finished job changed"
            if status in FINISHED:
                self.ended[job_id] = status
            found = self.tasks.find(
                {"job_id": job_id}, projection=None, sort=[], skip=0, limit=0, timeout=10
            )
            statuses = [t["status"] for t in found]
            if job.get("error_code") == "ERROR_DUPLICATE_JOB":
                assert status == "FAILURE" and statuses == []
                continue
            assert len(statuses) == job["total_tasks"]
            unfinished = sum(s in UNFINISHED for s in statuses)
            assert job["remained_tasks"] == unfinished
            assert (status == "FAILURE") == ("FAILURE" in statuses)
            if status == "SUCCESS":
                assert set(statuses) <= {"SUCCESS"}
            if status == "IN_PROGRESS":
                assert unfinished > 0
            if status in ("FAILURE", "TIMEOUT"):
                assert unfinished == 0
            if status == "CANCELED":
                assert "PENDING" not in statuses


TestProducing = Producing.TestCase
