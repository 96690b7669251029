"""Answers as upstream gives them, request by request, except where the contract decides
otherwise: the differences a comparison with upstream's own query code found."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job.api.servicer import Gate, JobServicer
from spaceone_job.auth import Authenticator
from spaceone_job.query.filters import Limits
from spaceone_job.service import JobService
from spaceone_job.store.protocol import Store

from .conftest import Clock, InProcess, Token

Add = Callable[..., dict[str, Any]]


def listing(query: dict[str, Any], **shortcuts: Any) -> job_pb2.JobQuery:
    return json_format.ParseDict({"query": query, **shortcuts}, job_pb2.JobQuery())


def stat(query: dict[str, Any]) -> job_pb2.JobStatQuery:
    return json_format.ParseDict({"query": query}, job_pb2.JobStatQuery())


def as_json(info: Any) -> dict[str, Any]:
    return json_format.MessageToDict(info, preserving_proto_field_name=True)


def test_every_changed_entry_renders_its_filter_even_empty(
    api: InProcess, token: Token, add: Add
) -> None:
    add(job_id="job-000000000001", changed=[{"start": "2025-02"}, {"start": "2025-03"}])
    got = api.call("get", job_pb2.JobRequest(job_id="job-000000000001"), token()).response
    assert as_json(got)["changed"] == [
        {"start": "2025-02", "filter": {}},
        {"start": "2025-03", "filter": {}},
    ]
    listed = api.call("list", listing({}), token()).response
    assert as_json(listed.results[0])["changed"][0] == {"start": "2025-02", "filter": {}}


def test_a_page_start_without_a_limit_pages_nothing(api: InProcess, token: Token, add: Add) -> None:
    for i in range(4):
        add(job_id=f"job-{i:012x}", status="TIMEOUT")
    found = api.call("list", listing({"page": {"start": 3}}, status="TIMEOUT"), token()).response
    assert len(found.results) == 4 and found.total_count == 4


@pytest.fixture
def capped(store: Store, clock: Clock, authenticator: Authenticator) -> InProcess:
    service = JobService(store, Limits(max_page_limit=5), query_timeout_ms=10_000, clock=clock)
    return InProcess(JobServicer(service, authenticator, Gate(64)))


@pytest.mark.parametrize("limit", [0, 6, 5000])
def test_a_page_limit_over_the_cap_is_coerced_down(
    capped: InProcess, token: Token, add: Add, limit: int
) -> None:
    for i in range(8):
        add(job_id=f"job-{i:012x}")
    found = capped.call("list", listing({"page": {"limit": limit}}), token())
    assert found.code is grpc.StatusCode.OK, found.details
    assert (len(found.response.results), found.response.total_count) == (5, 8)
    counted = capped.call(
        "stat",
        stat(
            {
                "aggregate": [{"group": {"keys": [{"key": "job_id", "name": "id"}]}}],
                "page": {"limit": limit or 7000},
            }
        ),
        token(),
    ).response
    assert len(counted["results"]) == 5 and counted["total_count"] == 8


def test_distinct_keeps_null_first_as_mongodb(api: InProcess, token: Token, add: Add) -> None:
    add(job_id="job-000000000001", status="FAILURE", error_code="ERROR_JOB_TASK")
    add(job_id="job-000000000002", status="SUCCESS")
    add(job_id="job-000000000003", status="FAILURE", error_code="ERROR_JOB_TASK")
    found = api.call("stat", stat({"distinct": "error_code"}), token()).response
    assert list(found["results"]) == [None, "ERROR_JOB_TASK"]


def test_project_sum_over_an_array_sums_it(api: InProcess, token: Token, add: Add) -> None:
    for i, (status, tasks) in enumerate(
        [("SUCCESS", 3), ("SUCCESS", 4), ("FAILURE", 5), ("CANCELED", 0)]
    ):
        add(job_id=f"job-{i:012x}", status=status, total_tasks=tasks)
    query = {
        "aggregate": [
            {
                "group": {
                    "keys": [{"key": "status", "name": "status"}],
                    "fields": [{"key": "total_tasks", "name": "tasks", "operator": "push"}],
                }
            },
            {"project": {"fields": [{"key": "tasks", "name": "total", "operator": "sum"}]}},
            {"sort": [{"key": "status"}]},
        ]
    }
    found = api.call("stat", stat(query), token()).response
    assert [(r["status"], r["total"]) for r in found["results"]] == [
        ("CANCELED", 0),
        ("FAILURE", 5),
        ("SUCCESS", 7),
    ]


@pytest.mark.only_on(
    "embedded",
    why="mongomock's $sum fails on null and text; the embedded store sums as MongoDB does",
)
def test_project_sum_of_null_missing_and_text_is_zero(
    api: InProcess, token: Token, add: Add
) -> None:
    add(job_id="job-000000000001", options={"n": None, "t": "x", "v": 4})
    fields = [
        {"key": f"options.{k}", "name": k, "operator": "sum"} for k in ("n", "t", "v", "missing")
    ]
    found = api.call("stat", stat({"aggregate": [{"project": {"fields": fields}}]}), token())
    assert found.code is grpc.StatusCode.OK, found.details
    row = found.response["results"][0]
    assert (row["n"], row["t"], row["v"], row["missing"]) == (0, 0, 4, 0)


def test_filter_datetimes_compare_at_stored_precision_on_every_path(
    api: InProcess, token: Token, add: Add
) -> None:
    stored = datetime(2025, 6, 29, 16, 44, 0, 814000)
    add(job_id="job-000000000001", created_at=stored, updated_at=stored)
    add(job_id="job-000000000002", created_at=stored - timedelta(seconds=1), updated_at=stored)
    for value in ("2025-06-29T16:44:00.814500", "2025-06-29T16:44:00.814999Z"):
        condition = {"k": "created_at", "v": value, "o": "datetime_gte"}
        found = api.call("list", listing({"filter": [condition]}), token()).response
        assert [r.job_id for r in found.results] == ["job-000000000001"]
        assert found.total_count == 1
        typed = {"k": "created_at", "v": value, "o": "gte"}
        again = api.call("list", listing({"filter": [typed]}), token()).response
        assert again.total_count == len(again.results) == 1


def test_unwind_sorts_by_its_keys_even_when_only_leaves_them_out(
    api: InProcess, token: Token, add: Add
) -> None:
    add(job_id="job-000000000001", changed=[{"start": "2024-03"}, {"start": "2024-01"}])
    add(job_id="job-000000000002", changed=[{"start": "2024-02"}])
    query = {
        "unwind": {"path": "changed"},
        "only": ["job_id"],
        "sort": [{"key": "changed.start", "desc": True}],
    }
    found = api.call("list", listing(query), token()).response
    assert [r.job_id for r in found.results] == [
        "job-000000000001",
        "job-000000000002",
        "job-000000000001",
    ]
    assert not found.results[0].changed


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("contain", "east", 1),
        ("not_contain", "EAST", 1),
        ("contain_in", ["EaSt"], 1),
    ],
)
def test_unwind_filters_ignore_case_as_everywhere(
    api: InProcess, token: Token, add: Add, operator: str, value: Any, expected: int
) -> None:
    add(
        job_id="job-000000000001",
        synced_accounts=[{"account_id": "US-EAST-1"}, {"account_id": "eu-west-1"}],
    )
    query = {
        "unwind": {
            "path": "synced_accounts",
            "filter": [{"k": "synced_accounts.account_id", "v": value, "o": operator}],
        }
    }
    assert api.call("list", listing(query), token()).response.total_count == expected
