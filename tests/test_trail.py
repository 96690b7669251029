"""The event trail: each transition of a job or a task leaves its event, written with the change
(who, when, why), read by spaceone_job.v1.History/list_events with the scope of Job.get, and
never seen by upstream's messages or query languages."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth
from spaceone_job.lifecycle import Lifecycle, TaskSpec
from spaceone_job.store.protocol import Store
from spaceone_job.trail import EVENTS_KEPT, event, pushed

from .conftest import D1, D2, NOW, WS1, WS2, Clock, Live, Serve, Token
from .support.producing import create, report

pytestmark = pytest.mark.only_on(
    "embedded", why="the trail through the server; the writes' commands are pinned for MongoDB"
)


def trail(live: Live, token: str, job_id: str) -> list[dict[str, Any]]:
    """The job's events as list_events answers them, with the fields that are set."""
    stub = producer_pb2_grpc.HistoryStub(live.channel)
    answer = stub.list_events(
        producer_pb2.ListEventsRequest(job_id=job_id), metadata=(("token", token),), timeout=10
    )
    return [json_format.MessageToDict(e, preserving_proto_field_name=True) for e in answer.events]


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each event's type and task (empty for the job's own)."""
    return [(e["type"], e.get("job_task_id", "")) for e in events]


@pytest.fixture
def live(serve: Serve) -> Live:
    return serve()


def test_a_job_that_succeeds_leaves_who_made_it_and_each_tasks_start_and_end(
    live: Live, token: Token
) -> None:
    admin = token(aud="scheduler")
    created = create(live, admin, tasks=2).response
    job_id = created.job.job_id
    first, second = (t.job_task_id for t in created.tasks)
    worker = token(aud="worker-7")
    report(live, worker, "start_task", first, "s-1")
    report(live, worker, "finish_task", first, "f-1")
    report(live, worker, "start_task", second, "s-2")
    report(live, worker, "report_progress", second, "p-2", created_count=40)
    report(live, worker, "finish_task", second, "f-2")
    events = trail(live, admin, job_id)
    assert kinds(events) == [
        ("created", ""),
        ("task_started", first),
        ("task_succeeded", first),
        ("task_started", second),
        ("task_succeeded", second),
        ("succeeded", ""),
    ]
    made = events[0]
    assert (made["by"], made["role"], made["job_id"]) == (
        "user:scheduler",
        auth.DOMAIN_ADMIN,
        job_id,
    )
    assert made["request_id"] and made["at"].endswith("Z")
    assert events[1]["by"] == "user:worker-7"
    assert events[4]["created_count"] == 40
    assert "by" not in events[5], "the job's own end follows its last task, by nobody"


def test_a_failed_task_fails_its_job_and_cancels_the_rest(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=2).response
    first, second = (t.job_task_id for t in created.tasks)
    report(live, admin, "start_task", first, "s-1")
    report(live, admin, "finish_task", first, "f-1", error_code="ERROR_PLUGIN", error_message="x")
    events = trail(live, admin, created.job.job_id)
    assert kinds(events) == [
        ("created", ""),
        ("task_started", first),
        ("task_failed", first),
        ("failed", ""),
        ("task_canceled", second),
    ]
    assert (events[2]["error_code"], events[2]["error_message"]) == ("ERROR_PLUGIN", "x")
    assert events[3]["error_code"] == "ERROR_JOB_TASK"


def test_a_cancel_says_who_canceled_and_a_second_cancel_adds_nothing(
    live: Live, token: Token
) -> None:
    admin = token(aud="operator")
    job_id = create(live, admin, tasks=1).response.job.job_id
    for _ in range(2):
        assert (
            live.call("cancel", job_pb2.JobRequest(job_id=job_id), admin).code is grpc.StatusCode.OK
        )
    events = trail(live, admin, job_id)
    assert [e["type"] for e in events] == ["created", "canceled", "task_canceled"]
    assert events[1]["by"] == "user:operator"


def test_a_retried_report_adds_no_event(live: Live, token: Token) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    task_id = created.tasks[0].job_task_id
    for _ in range(3):
        report(live, admin, "start_task", task_id, "s-1")
    assert [e["type"] for e in trail(live, admin, created.job.job_id)] == [
        "created",
        "task_started",
    ]


def test_the_sweepers_timeout_and_the_duplicate_rule_say_why(
    lifecycle: Lifecycle, store: Store, tasks: Store, clock: Clock
) -> None:
    old = lifecycle.create(domain_id=D1, data_source_id="ds-1", tasks=[])
    stale = lifecycle.create(domain_id=D1, data_source_id="ds-2", tasks=[TaskSpec()])
    clock.advance(hours=3)
    assert lifecycle.sweep_timeouts(7200) == 1
    timed_out = store.find_one({"job_id": stale.job["job_id"]}, {"events": 1})
    assert timed_out is not None
    assert timed_out["events"][-1] == event("timed_out", clock.now, {"by": "sweeper"}, quiet_s=7200)
    running = lifecycle.create(domain_id=D1, data_source_id="ds-3", tasks=[TaskSpec()])
    duplicate = lifecycle.create(domain_id=D1, data_source_id="ds-3", tasks=[TaskSpec()])
    stored = store.find_one({"job_id": duplicate.job["job_id"]}, {"events": 1})
    assert stored is not None
    assert [e["type"] for e in stored["events"]] == ["created", "failed_as_duplicate"]
    assert stored["events"][1]["other_job_id"] == running.job["job_id"]
    clock.advance(minutes=11)  # the running one is now an older scheduled job: replaced
    newer = lifecycle.create(domain_id=D1, data_source_id="ds-3", tasks=[TaskSpec()])
    replaced = store.find_one({"job_id": running.job["job_id"]}, {"events": 1})
    assert replaced is not None
    assert replaced["events"][-1]["type"] == "canceled_as_duplicate"
    assert replaced["events"][-1]["other_job_id"] == newer.job["job_id"]
    assert old.job["events"][-1]["type"] == "succeeded", "no tasks: done at once"


def test_the_trail_keeps_the_newest_events(store: Store) -> None:
    store.insert([{"job_id": "job-000000000001", "domain_id": D1, "events": []}])
    for n in range(EVENTS_KEPT + 5):
        store.update_one(
            {"job_id": "job-000000000001"}, {"$push": pushed(event("created", NOW, n=n))}
        )
    stored = store.find_one({"job_id": "job-000000000001"}, {"events": 1})
    assert stored is not None
    assert [e["n"] for e in stored["events"]] == list(range(5, EVENTS_KEPT + 5))


def test_the_trail_is_read_with_the_scope_of_get(live: Live, token: Token) -> None:
    admin = token()
    job_id = create(live, admin, tasks=1, workspace_id=WS1).response.job.job_id
    assert trail(live, token(auth.WORKSPACE_MEMBER, workspace_id=WS1), job_id)
    for outsider in (token(domain_id=D2), token(auth.WORKSPACE_MEMBER, workspace_id=WS2)):
        with pytest.raises(grpc.RpcError) as refused:
            trail(live, outsider, job_id)
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND


QUERIES: list[dict[str, Any]] = [
    {"filter": [{"k": "events.type", "v": "created", "o": "eq"}]},
    {"only": ["events"]},
    {"sort": [{"key": "events.at"}]},
]


@pytest.mark.parametrize("query", QUERIES, ids=["filter", "only", "sort"])
def test_upstreams_query_language_cannot_reach_the_trail(
    live: Live, token: Token, query: dict[str, Any]
) -> None:
    admin = token()
    create(live, admin, tasks=1)
    request = json_format.ParseDict({"query": query}, job_pb2.JobQuery())
    answer = live.call("list", request, admin)
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, answer.details
    assert "events" in answer.details


@pytest.mark.parametrize("key", ["events", "events.type"])
def test_upstreams_stat_language_cannot_reach_the_trail(live: Live, token: Token, key: str) -> None:
    admin = token()
    create(live, admin, tasks=1)
    for body in (
        {"query": {"distinct": key}},
        {"query": {"aggregate": [{"group": {"keys": [{"key": key, "name": "k"}]}}]}},
    ):
        answer = live.call("stat", json_format.ParseDict(body, job_pb2.JobStatQuery()), admin)
        assert answer.code is grpc.StatusCode.INVALID_ARGUMENT, (body, answer.details)


def test_jobinfo_shows_nothing_of_the_trail(live: Live, token: Token) -> None:
    admin = token()
    job_id = create(live, admin, tasks=1).response.job.job_id
    got = live.call("get", job_pb2.JobRequest(job_id=job_id), admin).response
    listed = live.call("list", job_pb2.JobQuery(), admin).response.results[0]
    for info in (got, listed):
        assert "events" not in json_format.MessageToDict(info, preserving_proto_field_name=True)
    assert "events" not in job_pb2.JobInfo.DESCRIPTOR.fields_by_name


def test_a_watch_carries_the_jobs_own_events(live: Live, token: Token) -> None:
    admin = token(aud="operator")
    job_id = create(live, admin, tasks=1).response.job.job_id
    stub = producer_pb2_grpc.WatchStub(live.channel)
    stream = stub.watch(
        producer_pb2.WatchRequest(job_id=job_id), metadata=(("token", admin),), timeout=10
    )
    first = next(stream)
    assert [e.type for e in first.events] == ["created"]
    live.call("cancel", job_pb2.JobRequest(job_id=job_id), admin)
    last = list(stream)[-1]
    assert last.job.status == job_pb2.JobInfo.CANCELED
    assert [(e.type, e.by) for e in last.events] == [
        ("created", "user:operator"),
        ("canceled", "user:operator"),
    ]
