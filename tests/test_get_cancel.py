"""get and cancel through the servicer: rendering, the cancel state machine, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
import mongomock.collection
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job.store.protocol import Store

from .conftest import NOW, REFERENCE_JOB, Clock, InProcess, Live, Token, together

REFERENCE = REFERENCE_JOB


def _reference_document() -> dict[str, Any]:
    from spaceone_job.store.model import new_document

    return new_document(
        {
            **{k: v for k, v in REFERENCE.items() if not k.endswith("_at")},
            "workspace_id": None,
            "created_at": datetime(2022, 4, 2, 9, 17, 44, 31_999),
            "updated_at": datetime(2022, 4, 2, 9, 19, 47, 715_000),
            "finished_at": datetime(2022, 4, 2, 9, 19, 47, 715_000),
        }
    )


def test_get_renders_the_reference_example_exactly(
    store: Store, api: InProcess, token: Token
) -> None:
    store.insert([_reference_document()])
    answer = api.call(
        "get",
        job_pb2.JobRequest(job_id="job-07994c7c9021"),
        token(domain_id="domain-58010aa2e451"),
    )
    assert answer.code is grpc.StatusCode.OK
    rendered = json_format.MessageToDict(answer.response, preserving_proto_field_name=True)
    # As upstream renders it: every changed entry carries its filter, empty here (contract §4).
    assert rendered == {**REFERENCE, "changed": [{"start": "2021-01", "filter": {}}]}


def test_get_leaves_nulls_unset_and_renders_every_field(
    add: Callable[..., dict[str, Any]], api: InProcess, token: Token
) -> None:
    add(
        job_id="job-aaaaaaaaaaa1",
        status="FAILURE",
        error_code="ERROR_JOB_TASK",
        error_message="One or more job tasks failed.",
        total_tasks=3,
        remained_tasks=1,
        changed=[{"start": "2024-01", "end": "2024-02", "filter": {"account": ["a", "b"]}}],
        synced_accounts=[{"account_id": "111122223333"}],
        finished_at=datetime(2024, 5, 1, 12, 0, 0, 999_999),
    )
    info = api.call("get", job_pb2.JobRequest(job_id="job-aaaaaaaaaaa1"), token()).response
    assert info.status == job_pb2.JobInfo.FAILURE
    assert info.resource_group == job_pb2.JobInfo.WORKSPACE
    assert info.finished_at == "2024-05-01T12:00:00.999Z"
    assert info.changed[0].end == "2024-02"
    assert dict(info.changed[0].filter)["account"] == ["a", "b"]
    assert [a.account_id for a in info.synced_accounts] == ["111122223333"]
    assert info.error_code == "ERROR_JOB_TASK"
    running = add(job_id="job-aaaaaaaaaaa2")
    info = api.call("get", job_pb2.JobRequest(job_id=running["job_id"]), token()).response
    assert info.finished_at == "" and info.error_code == ""
    assert not info.HasField("options") or dict(info.options)["sync_mode"] == "SCHEDULED"


def test_get_without_job_id_is_invalid_argument(api: InProcess, token: Token) -> None:
    answer = api.call("get", job_pb2.JobRequest(), token())
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT
    assert (
        answer.details
        == "ERROR_REQUIRED_PARAMETER: A required parameter is missing. (key = job_id)"
    )


def test_errors_carry_a_google_rpc_status_with_error_info(live: Live, token: Token) -> None:
    answer = live.call("get", job_pb2.JobRequest(job_id="job-000000000000"), token())
    assert answer.code is grpc.StatusCode.NOT_FOUND
    assert answer.details.startswith("ERROR_NOT_FOUND: ")
    rich = dict(answer.trailing)["grpc-status-details-bin"]
    status = rpc_status.status_pb2.Status.FromString(rich)
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("NOT_FOUND", "spaceone-job")
    assert info.metadata["job_id"] == "job-000000000000"


def test_cancel_moves_a_running_job_to_canceled(
    add: Callable[..., dict[str, Any]], api: InProcess, token: Token, clock: Clock
) -> None:
    running = add(job_id="job-bbbbbbbbbbb1", total_tasks=2, remained_tasks=2)
    answer = api.call("cancel", job_pb2.JobRequest(job_id=running["job_id"]), token())
    assert answer.code is grpc.StatusCode.OK
    info = answer.response
    assert info.status == job_pb2.JobInfo.CANCELED
    assert info.finished_at == info.updated_at == "2026-05-15T12:00:00.000Z"
    assert info.remained_tasks == 2, "cancel leaves task accounting to the workers"


def test_cancel_is_idempotent_for_canceled_jobs(
    add: Callable[..., dict[str, Any]], api: InProcess, token: Token, clock: Clock
) -> None:
    running = add(job_id="job-bbbbbbbbbbb2")
    first = api.call("cancel", job_pb2.JobRequest(job_id=running["job_id"]), token()).response
    clock.advance(minutes=5)
    again = api.call("cancel", job_pb2.JobRequest(job_id=running["job_id"]), token())
    assert again.code is grpc.StatusCode.OK
    assert again.response == first, "a second cancel changes nothing"


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE", "TIMEOUT"])
def test_cancel_of_a_finished_job_is_failed_precondition(
    add: Callable[..., dict[str, Any]], api: InProcess, token: Token, status: str
) -> None:
    done = add(job_id="job-ccccccccccc1", status=status, finished_at=NOW)
    answer = api.call("cancel", job_pb2.JobRequest(job_id=done["job_id"]), token())
    assert answer.code is grpc.StatusCode.FAILED_PRECONDITION
    assert answer.error_code == "ERROR_JOB_STATE"
    assert answer.details.endswith(f"(job_state = {status})")
    after = api.call("get", job_pb2.JobRequest(job_id=done["job_id"]), token()).response
    assert after.status == job_pb2.JobInfo.Status.Value(status)


def test_twelve_concurrent_cancels_all_succeed_with_one_write(
    add: Callable[..., dict[str, Any]], api: InProcess, token: Token, writes: list[Any]
) -> None:
    running = add(job_id="job-ddddddddddd1")
    request, caller = job_pb2.JobRequest(job_id=running["job_id"]), token()
    answers = together(12, lambda _: api.call("cancel", request, caller))
    assert [a.code for a in answers] == [grpc.StatusCode.OK] * 12
    assert {a.response.status for a in answers} == {job_pb2.JobInfo.CANCELED}
    assert len(writes) == 1


def test_a_hand_edited_document_renders_what_it_can(
    store: Store, api: InProcess, token: Token
) -> None:
    store.insert(
        [
            {
                "job_id": "job-eeeeeeeeeee1",
                "domain_id": "domain-aaaaaaaaaaaa",
                "status": "ERROR",
                "resource_group": "PROJECT",
                "total_tasks": "3",
                "remained_tasks": 2**40,
                "options": "none",
                "created_at": "2024-05-01",
                "changed": [{"start": 202405}, "2024-06", None],
                "synced_accounts": None,
                "data_source_id": 7,
            }
        ]
    )
    answer = api.call("get", job_pb2.JobRequest(job_id="job-eeeeeeeeeee1"), token())
    assert answer.code is grpc.StatusCode.OK
    info = answer.response
    assert (info.status, info.resource_group, info.total_tasks, info.remained_tasks) == (0, 0, 0, 0)
    assert not info.HasField("options") and info.created_at == "" and info.data_source_id == ""
    assert [c.start for c in info.changed] == [""]


@pytest.mark.only_on(
    "embedded", why="mongomock's in-place updates; MongoDB updates a document atomically"
)
def test_a_get_never_sees_half_of_a_cancel(
    live: Live, token: Token, add: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded store changes a stored document in place, field by field (mongomock): a get
    that came in halfway through a cancel must see the job before it or after it, as MongoDB
    answers, never CANCELED without its finished_at."""
    add(job_id="job-000000000001", status="IN_PROGRESS")
    halfway, resume = threading.Event(), threading.Event()
    setter = mongomock.collection._updaters["$set"]

    def slow_setter(doc: Any, field_name: str, value: Any) -> None:
        if field_name == "finished_at" and not halfway.is_set():
            halfway.set()  # status is CANCELED already, finished_at not yet
            resume.wait(10)
        setter(doc, field_name, value)

    monkeypatch.setitem(mongomock.collection._updaters, "$set", slow_setter)
    request = job_pb2.JobRequest(job_id="job-000000000001")
    canceled: list[Any] = []
    cancel = threading.Thread(target=lambda: canceled.append(live.call("cancel", request, token())))
    cancel.start()
    assert halfway.wait(10)
    seen: list[Any] = []
    get = threading.Thread(target=lambda: seen.append(live.call("get", request, token())))
    get.start()
    get.join(0.3)
    resume.set()
    for thread in (cancel, get):
        thread.join(10)
    job = seen[0].response
    assert seen[0].code is grpc.StatusCode.OK and canceled[0].code is grpc.StatusCode.OK
    assert (job.status, bool(job.finished_at)) in (
        (job_pb2.JobInfo.IN_PROGRESS, False),
        (job_pb2.JobInfo.CANCELED, True),
    )
