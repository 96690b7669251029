"""Producers that cannot be fooled (issue 27), through the real server: a failing last task fails
its job, request ids stay in their tenant, their operation and their request, a create is all or
nothing, and what a caller stores is bounded."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2, job_task_pb2_grpc
from spaceone_job.v1 import producer_pb2

from spaceone_job import auth

from .conftest import WS1, WS2, Live, Token, together
from .support.producing import call, create, job_of, report

INT32_MAX = 2**31 - 1


def tasks_of(live: Live, token: str, job_id: str) -> job_task_pb2.JobTasksInfo:
    stub = job_task_pb2_grpc.JobTaskStub(live.channel)
    found: job_task_pb2.JobTasksInfo = stub.list(
        job_task_pb2.JobTaskQuery(job_id=job_id), metadata=(("token", token),), timeout=10
    )
    return found


def everything(live: Live, token: str) -> tuple[int, int]:
    """How many jobs and tasks the caller can see."""
    jobs = live.call("list", job_pb2.JobQuery(), token).response.total_count
    stub = job_task_pb2_grpc.JobTaskStub(live.channel)
    tasks = stub.list(job_task_pb2.JobTaskQuery(), metadata=(("token", token),), timeout=10)
    return jobs, tasks.total_count


def create_with(live: Live, token: str, body: dict[str, Any]) -> Any:
    return call(
        live, "create_job", json_format.ParseDict(body, producer_pb2.CreateJobRequest()), token
    )


@pytest.mark.parametrize(("tasks", "succeeding"), [(1, 0), (2, 1)], ids=["only", "last of two"])
def test_a_job_whose_last_task_fails_ends_failure(
    live: Live, token: Token, tasks: int, succeeding: int
) -> None:
    admin = token()
    created = create(live, admin, tasks=tasks).response
    ids = [t.job_task_id for t in created.tasks]
    for n, task_id in enumerate(ids[:succeeding]):
        report(live, admin, "finish_task", task_id, f"ok-{n}")
    failed = report(live, admin, "finish_task", ids[-1], "bad", error_code="ERROR_PLUGIN")
    assert failed.response.status == job_task_pb2.JobTaskInfo.FAILURE
    job = job_of(live, admin, created.job.job_id)
    assert (job.status, job.error_code, job.remained_tasks) == (
        job_pb2.JobInfo.FAILURE,
        "ERROR_JOB_TASK",
        0,
    )


def secret_job(live: Live, token: str, request_id: str, secret: str) -> Any:
    return create(
        live,
        token,
        request_id,
        tasks=1,
        options={"secret_hint": secret},
        data_source_id=f"ds-{secret}"[:15],
    )


def test_a_request_id_of_another_workspace_makes_a_job_of_its_own(live: Live, token: Token) -> None:
    ws1, ws2 = token(auth.WORKSPACE_OWNER), token(auth.WORKSPACE_OWNER, workspace_id=WS2)
    first = secret_job(live, ws1, "nightly-2026-12-03", "one").response
    replay = secret_job(live, ws2, "nightly-2026-12-03", "two")
    assert replay.code is grpc.StatusCode.OK, replay.details
    theirs = replay.response
    assert theirs.job.job_id != first.job.job_id
    assert theirs.job.workspace_id == WS2 and theirs.job.options["secret_hint"] == "two"
    assert b"one" not in theirs.SerializeToString()
    assert job_of(live, ws2, theirs.job.job_id).job_id == theirs.job.job_id


def test_a_request_id_claimed_first_by_another_workspace_does_not_stop_this_ones_run(
    live: Live, token: Token
) -> None:
    ws1, ws2 = token(auth.WORKSPACE_OWNER), token(auth.WORKSPACE_OWNER, workspace_id=WS2)
    secret_job(live, ws2, "nightly-2026-12-03", "squat")
    mine = secret_job(live, ws1, "nightly-2026-12-03", "real").response
    assert mine.job.workspace_id == WS1 and mine.job.options["secret_hint"] == "real"
    started = report(live, ws1, "start_task", mine.tasks[0].job_task_id, "start")
    assert started.code is grpc.StatusCode.OK, started.details


def test_request_ids_of_two_domains_never_meet(live: Live, token: Token) -> None:
    # On a 48-bit id made from (domain, request id), these two were one job.
    a = secret_job(live, token(domain_id="domain-a"), "nightly-13230785", "a").response
    b = secret_job(live, token(domain_id="domain-b"), "x-15130875", "b")
    assert b.code is grpc.StatusCode.OK, b.details
    assert b.response.job.job_id != a.job.job_id
    assert (b.response.job.domain_id, b.response.job.options["secret_hint"]) == ("domain-b", "b")


def test_a_request_id_reused_with_another_request_is_refused(live: Live, token: Token) -> None:
    admin = token()
    first = create(live, admin, "reused", tasks=1).response
    other = create(live, admin, "reused", tasks=5, data_source_id="ds-000000000002")
    assert other.code is grpc.StatusCode.FAILED_PRECONDITION, other.details
    assert other.error_code == "ERROR_REQUEST_ID_REUSED" and "reused" in other.details
    assert everything(live, admin) == (1, 1)
    task_id = first.tasks[0].job_task_id
    report(live, admin, "report_progress", task_id, "p", created_count=10)
    again = report(live, admin, "report_progress", task_id, "p", created_count=20)
    assert again.error_code == "ERROR_REQUEST_ID_REUSED"
    assert tasks_of(live, admin, first.job.job_id).results[0].created_count == 10


@pytest.mark.parametrize("key", ["a\x00b", "a.b", "", " ", "a$b", "$where"])
def test_a_create_with_a_key_mongodb_cannot_store_stores_nothing(
    live: Live, token: Token, key: str
) -> None:
    admin = token()
    body: dict[str, Any] = {
        "request_id": "keys",
        "data_source_id": "ds-000000000001",
        "tasks": [{"options": {"part": 0}}, {"options": {"nested": {key: 1}}}],
    }
    refused = create_with(live, admin, body)
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT, refused.details
    assert refused.error_code == "ERROR_INVALID_PARAMETER"
    assert "tasks[1].options.nested" in refused.details
    assert everything(live, admin) == (0, 0)
    body["tasks"][1] = {"options": {"part": 1}}
    fixed = create_with(live, admin, body)
    assert fixed.code is grpc.StatusCode.OK, fixed.details
    assert len(fixed.response.tasks) == 2 and everything(live, admin) == (1, 2)


def test_nan_in_options_names_where_it_is(live: Live, token: Token) -> None:
    request = producer_pb2.CreateJobRequest(request_id="nan", data_source_id="ds-000000000001")
    request.tasks.add().options.update({"deep": {"list": [1, float("nan")]}})
    refused = call(live, "create_job", request, token())
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT, refused.details
    assert "tasks[0].options.deep.list[1]" in refused.details


def test_identical_creates_at_once_all_answer_the_whole_job(live: Live, token: Token) -> None:
    admin = token()
    answers = together(4, lambda _: create(live, admin, "big", tasks=1000))
    assert {a.code for a in answers} == {grpc.StatusCode.OK}
    assert len({a.response.job.job_id for a in answers}) == 1
    listed = {tuple(t.job_task_id for t in a.response.tasks) for a in answers}
    assert len(listed) == 1 and len(next(iter(listed))) == 1000
    parts = [t.options["part"] for t in answers[0].response.tasks]
    assert parts == list(range(1000)), "the tasks in the order they were asked for"
    assert everything(live, admin) == (1, 1000)


def test_one_request_id_for_each_operation_of_a_task_applies_each(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    task_id = created.tasks[0].job_task_id
    for kind, fields in (
        ("start_task", {}),
        ("report_progress", {"created_count": 7}),
        ("finish_task", {}),
    ):
        answer = report(live, admin, kind, task_id, "one-id", **fields)
        assert answer.code is grpc.StatusCode.OK, answer.details
    assert (answer.response.status, answer.response.created_count) == (
        job_task_pb2.JobTaskInfo.SUCCESS,
        7,
    )
    assert job_of(live, admin, created.job.job_id).status == job_pb2.JobInfo.SUCCESS


def test_a_late_retry_of_a_progress_report_is_not_counted_again(live: Live, token: Token) -> None:
    admin = token()
    task_id = create(live, admin, tasks=1).response.tasks[0].job_task_id
    report(live, admin, "start_task", task_id, "s")
    first = report(live, admin, "report_progress", task_id, "p-0", created_count=100).response
    for n in range(1, 33):
        report(live, admin, "report_progress", task_id, f"p-{n}", created_count=1)
    retried = report(live, admin, "report_progress", task_id, "p-0", created_count=100)
    assert retried.response == first, "answered as the first call was"
    task = report(live, admin, "report_progress", task_id, "p-33", created_count=0).response
    assert task.created_count == 132


def test_retries_answer_as_the_first_call_did(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, "first", tasks=2).response
    ids = [t.job_task_id for t in created.tasks]
    started = report(live, admin, "start_task", ids[0], "s").response
    for n, task_id in enumerate(ids):
        report(live, admin, "finish_task", task_id, f"f-{n}")
    assert job_of(live, admin, created.job.job_id).status == job_pb2.JobInfo.SUCCESS
    assert report(live, admin, "start_task", ids[0], "s").response == started
    assert create(live, admin, "first", tasks=2).response == created


def test_what_a_caller_stores_is_bounded(serve: Any, token: Token) -> None:
    live = serve(max_tasks_per_job=3, max_values_bytes=300)
    admin = token()
    too_many = create(live, admin, "many", tasks=4)
    assert too_many.code is grpc.StatusCode.INVALID_ARGUMENT and "tasks" in too_many.details
    big = {"blob": "x" * 300}
    for where, fields in (
        ("options", {"options": big}),
        ("synced_accounts", {"synced_accounts": [f"{n:012d}" for n in range(30)]}),
        ("tasks[0].options", {"tasks": [{"options": big}]}),
    ):
        refused = create_with(
            live, admin, {"request_id": "big", "data_source_id": "ds-1", **fields}
        )
        assert refused.code is grpc.StatusCode.INVALID_ARGUMENT, refused.details
        assert f"key = {where})" in refused.details and "300" in refused.details
    assert everything(live, admin) == (0, 0)


def test_a_long_error_message_is_cut_and_the_failure_kept(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    message = "é" * 100_000
    failed = report(
        live,
        admin,
        "finish_task",
        created.tasks[0].job_task_id,
        "f",
        error_code="ERROR_PLUGIN",
        error_message=message,
    ).response
    assert failed.status == job_task_pb2.JobTaskInfo.FAILURE
    assert len(failed.error_message.encode()) <= 1024 and failed.error_message.endswith("\u2026")
    assert job_of(live, admin, created.job.job_id).status == job_pb2.JobInfo.FAILURE


def test_created_count_past_int32_is_refused_never_dropped(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    task_id = created.tasks[0].job_task_id
    report(live, admin, "report_progress", task_id, "a", created_count=INT32_MAX)
    past = report(live, admin, "report_progress", task_id, "b", created_count=INT32_MAX)
    assert past.code is grpc.StatusCode.INVALID_ARGUMENT, past.details
    assert "created_count" in past.details
    assert tasks_of(live, admin, created.job.job_id).results[0].created_count == INT32_MAX


def test_a_task_takes_a_bounded_number_of_reports_and_still_finishes(
    serve: Any, token: Token
) -> None:
    live = serve(max_reports_per_task=4)
    admin = token()
    task_id = create(live, admin, tasks=1).response.tasks[0].job_task_id
    answers = [
        report(live, admin, "report_progress", task_id, f"p-{n}", created_count=1) for n in range(5)
    ]
    assert [a.code for a in answers[:4]] == [grpc.StatusCode.OK] * 4
    assert answers[4].code is grpc.StatusCode.FAILED_PRECONDITION
    assert answers[4].error_code == "ERROR_TOO_MANY_REPORTS"
    assert report(live, admin, "report_progress", task_id, "p-0", created_count=1).code is (
        grpc.StatusCode.OK
    ), "a retry is still answered"
    done = report(live, admin, "finish_task", task_id, "f")
    assert done.response.status == job_task_pb2.JobTaskInfo.SUCCESS
    assert done.response.created_count == 4
