"""Producers over gRPC (spaceone_job.v1.Producer): a whole run, retries that apply once, failures
and cancels that stop the workers, who may produce and where."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2, job_task_pb2_grpc

from spaceone_job import auth

from .conftest import D1, D2, WS1, WS2, Live, Token, together
from .support.producing import call, create, job_of, report, task_request


def test_a_whole_run(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin)
    assert created.code is grpc.StatusCode.OK, created.details
    job, tasks = created.response.job, created.response.tasks
    assert (job.status, job.total_tasks, job.remained_tasks) == (job_pb2.JobInfo.IN_PROGRESS, 2, 2)
    assert [t.status for t in tasks] == [job_task_pb2.JobTaskInfo.PENDING] * 2
    assert job.workspace_id == "*" and job.resource_group == job_pb2.JobInfo.DOMAIN
    for n, task in enumerate(tasks):
        started = report(live, admin, "start_task", task.job_task_id, f"start-{n}")
        assert started.response.status == job_task_pb2.JobTaskInfo.IN_PROGRESS
        moved = report(live, admin, "report_progress", task.job_task_id, f"p-{n}", created_count=50)
        assert moved.response.created_count == 50
        done = report(live, admin, "finish_task", task.job_task_id, f"done-{n}")
        assert done.response.status == job_task_pb2.JobTaskInfo.SUCCESS
    final = job_of(live, admin, job.job_id)
    assert (final.status, final.remained_tasks) == (job_pb2.JobInfo.SUCCESS, 0)


def test_retries_with_the_same_request_id_apply_once(live: Live, token: Token) -> None:
    admin = token()
    first = create(live, admin, "same")
    answers = together(12, lambda _: create(live, admin, "same"))
    assert {a.response.job.job_id for a in answers} == {first.response.job.job_id}
    assert live.call("list", job_pb2.JobQuery(), admin).response.total_count == 1
    task_id = first.response.tasks[0].job_task_id
    report(live, admin, "start_task", task_id, "s")
    for _ in range(3):
        again = report(live, admin, "report_progress", task_id, "p-1", created_count=10)
        assert again.response.created_count == 10
    for _ in range(3):
        report(live, admin, "finish_task", task_id, "f-1")
    assert job_of(live, admin, first.response.job.job_id).remained_tasks == 1


def test_a_task_failure_fails_the_job_and_the_other_worker_is_stopped(
    live: Live, token: Token
) -> None:
    admin = token()
    created = create(live, admin).response
    failing, working = (t.job_task_id for t in created.tasks)
    report(live, admin, "start_task", working, "s-w")
    failed = report(
        live, admin, "finish_task", failing, "f", error_code="ERROR_PLUGIN", error_message="no"
    )
    assert failed.response.status == job_task_pb2.JobTaskInfo.FAILURE
    job = job_of(live, admin, created.job.job_id)
    assert (job.status, job.error_code) == (job_pb2.JobInfo.FAILURE, "ERROR_JOB_TASK")
    refused = report(live, admin, "report_progress", working, "p", created_count=1)
    assert refused.code is grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details.startswith("ERROR_JOB_STATE")


def test_cancel_during_a_run(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=3).response
    busy = created.tasks[0].job_task_id
    report(live, admin, "start_task", busy, "s")
    live.call("cancel", job_pb2.JobRequest(job_id=created.job.job_id), admin)
    pending = created.tasks[1].job_task_id
    got = job_task_pb2_grpc.JobTaskStub(live.channel).get(
        job_task_pb2.JobTaskRequest(job_task_id=pending), metadata=(("token", admin),), timeout=5
    )
    assert got.status == job_task_pb2.JobTaskInfo.CANCELED
    refused = report(live, admin, "finish_task", busy, "f")
    assert refused.code is grpc.StatusCode.FAILED_PRECONDITION


def test_twelve_workers_finish_one_jobs_tasks_at_once(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=12).response
    ids = [t.job_task_id for t in created.tasks]
    together(12, lambda i: report(live, admin, "start_task", ids[i], f"s-{i}"))
    done = together(12, lambda i: report(live, admin, "finish_task", ids[i], f"f-{i}"))
    assert {a.code for a in done} == {grpc.StatusCode.OK}
    job = job_of(live, admin, created.job.job_id)
    assert (job.status, job.remained_tasks) == (job_pb2.JobInfo.SUCCESS, 0)


ATTEMPTS: dict[str, tuple[Any, grpc.StatusCode]] = {
    "workspace member": (
        lambda live, token: create(live, token(auth.WORKSPACE_MEMBER)),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "read-only admin": (
        lambda live, token: create(live, token(permissions=["cost-analysis:Job.read"])),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "owner elsewhere": (
        lambda live, token: create(live, token(auth.WORKSPACE_OWNER), workspace_id=WS2),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    "system without x_domain_id": (
        lambda live, token: create(live, token(typ="SYSTEM_TOKEN")),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "no request_id": (
        lambda live, token: create(live, token(), request_id=""),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "operator in options": (
        lambda live, token: create(live, token(), options={"$where": "1"}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
}


@pytest.mark.parametrize("who", list(ATTEMPTS))
def test_who_may_create_and_how(live: Live, token: Token, who: str) -> None:
    attempt, expected = ATTEMPTS[who]
    answer = attempt(live, token)
    assert answer.code is expected, answer.details


def test_a_workspace_owner_produces_in_its_workspace_only(live: Live, token: Token) -> None:
    owner = token(auth.WORKSPACE_OWNER)
    mine = create(live, owner, "mine").response
    assert mine.job.workspace_id == WS1 and mine.job.resource_group == job_pb2.JobInfo.WORKSPACE
    domain_level = create(live, token(), "domain").response
    other_domain = create(live, token(domain_id=D2), "elsewhere").response
    for task in (domain_level.tasks[0], other_domain.tasks[0]):
        answer = report(live, owner, "start_task", task.job_task_id, "s")
        assert answer.code is grpc.StatusCode.NOT_FOUND
    system = call(
        live,
        "start_task",
        task_request("start_task", mine.tasks[0].job_task_id, "s"),
        token(typ="SYSTEM_TOKEN"),
        x_domain_id=D1,
    )
    assert system.code is grpc.StatusCode.OK
