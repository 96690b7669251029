"""JobTask: the read API over tasks, with Job's scope table, languages and rendering."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_task_pb2

from spaceone_job import auth
from spaceone_job.kinds import TASK
from spaceone_job.store.model import new_document
from spaceone_job.store.protocol import Store

from .conftest import D1, NOW, WS1, InProcess, Live, Token
from .support.scopes import CALLERS, GET, JOBS, LIST
from .support.tools import grpcurl

JOB_TASK_SERVICE = "spaceone.api.cost_analysis.v1.JobTask"


def task(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job_id": "job-000000000001",
        "domain_id": D1,
        "workspace_id": WS1,
        "data_source_id": "ds-000000000001",
        "resource_group": "WORKSPACE",
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(minutes=30),
    }
    data.update(fields)
    return new_document(data, TASK.model)


@pytest.fixture
def scoped_tasks(tasks: Store) -> None:
    """One task in each place of the scope table (named as test_auth's jobs)."""
    tasks.insert(
        [
            task(job_task_id=f"job-task-{name:0>12}", domain_id=domain_id, workspace_id=ws)
            for name, (_, domain_id, ws) in JOBS.items()
        ]
    )


def _as(api: InProcess, token: Token, caller: str, method: str, request: Any) -> Any:
    role, metadata = CALLERS[caller]
    if role == "SYSTEM_TOKEN":
        return api.call(method, request, token(typ="SYSTEM_TOKEN"), metadata=metadata)
    return api.call(method, request, token(role))


@pytest.mark.usefixtures("scoped_tasks")
@pytest.mark.parametrize(
    ("caller", "where", "expected"),
    [(c, w, e) for c, row in GET.items() for w, e in row.items()],
)
def test_get_scope(api: InProcess, token: Token, caller: str, where: str, expected: Any) -> None:
    request = job_task_pb2.JobTaskRequest(job_task_id=f"job-task-{where:0>12}")
    assert _as(api, token, caller, "get", request).code is expected


@pytest.mark.usefixtures("scoped_tasks")
@pytest.mark.parametrize(("caller", "visible"), list(LIST.items()))
def test_list_and_stat_scope(api: InProcess, token: Token, caller: str, visible: set[str]) -> None:
    expected = {f"job-task-{name:0>12}" for name in visible}
    listed = _as(api, token, caller, "list", job_task_pb2.JobTaskQuery())
    assert listed.code is grpc.StatusCode.OK, listed.details
    assert {r.job_task_id for r in listed.response.results} == expected
    request = job_task_pb2.JobTaskStatQuery()
    request.query.distinct = "job_task_id"
    counted = _as(api, token, caller, "stat", request)
    assert set(counted.response["results"]) == expected


@pytest.mark.usefixtures("scoped_tasks")
def test_the_job_task_permission_is_its_own(api: InProcess, token: Token) -> None:
    request = job_task_pb2.JobTaskQuery()
    denied = api.call("list", request, token(permissions=["cost-analysis:Job.read"]))
    assert denied.code is grpc.StatusCode.PERMISSION_DENIED
    granted = api.call("list", request, token(permissions=["cost-analysis:JobTask.read"]))
    assert granted.code is grpc.StatusCode.OK


def test_a_task_renders_as_upstreams_info_plus_changed(
    api: InProcess, token: Token, tasks: Store
) -> None:
    tasks.insert(
        [
            task(
                job_task_id="job-task-0123456789ab",
                status="FAILURE",
                options={"secret_id": "secret-1", "start": "2024-05"},
                changed={"start": "2024-05", "end": "2024-06"},
                created_count=1234,
                error_code="ERROR_PLUGIN",
                error_message="plugin timeout",
                started_at=datetime(2026, 5, 15, 11, 0, 0, 123000),
                finished_at=datetime(2026, 5, 15, 11, 5, 0),
            )
        ]
    )
    got = api.call("get", job_task_pb2.JobTaskRequest(job_task_id="job-task-0123456789ab"), token())
    assert json_format.MessageToDict(got.response, preserving_proto_field_name=True) == {
        "job_task_id": "job-task-0123456789ab",
        "status": "FAILURE",
        "options": {"secret_id": "secret-1", "start": "2024-05"},
        "changed": {"start": "2024-05", "end": "2024-06", "filter": {}},
        "created_count": 1234,
        "error_code": "ERROR_PLUGIN",
        "error_message": "plugin timeout",
        "resource_group": "WORKSPACE",
        "domain_id": D1,
        "workspace_id": WS1,
        "job_id": "job-000000000001",
        "data_source_id": "ds-000000000001",
        "created_at": "2026-05-15T11:00:00.000Z",
        "started_at": "2026-05-15T11:00:00.123Z",
        "updated_at": "2026-05-15T11:30:00.000Z",
        "finished_at": "2026-05-15T11:05:00.000Z",
    }
    minimal = api.call(
        "list",
        json_format.ParseDict({"query": {"minimal": True}}, job_task_pb2.JobTaskQuery()),
        token(),
    ).response.results[0]
    assert set(json_format.MessageToDict(minimal, preserving_proto_field_name=True)) == {
        "job_task_id",
        "status",
        "created_count",
        "job_id",
        "data_source_id",
        "workspace_id",
    }


@pytest.fixture
def month_of_tasks(tasks: Store) -> list[dict[str, Any]]:
    docs = []
    for i in range(12):
        created = datetime(2026, 3 + i % 3, 10, 8, 0) + timedelta(hours=i)
        docs.append(
            task(
                job_task_id=f"job-task-{i:012x}",
                job_id=f"job-{i // 4:012x}",
                data_source_id=f"ds-00000000000{i % 2}",
                status=("SUCCESS", "FAILURE", "PENDING")[i % 3],
                created_count=100 * (i + 1),
                created_at=created,
                updated_at=created,
            )
        )
    tasks.insert(docs)
    return docs


def test_created_count_per_data_source_per_month(
    api: InProcess, token: Token, month_of_tasks: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            {
                "group": {
                    "keys": [
                        {"key": "data_source_id", "name": "source"},
                        {"key": "created_at", "name": "month", "date_format": "%Y-%m"},
                    ],
                    "fields": [{"key": "created_count", "name": "rows", "operator": "sum"}],
                }
            },
            {"sort": [{"key": "source"}, {"key": "month"}]},
        ]
    }
    request = json_format.ParseDict({"query": query}, job_task_pb2.JobTaskStatQuery())
    got = json_format.MessageToDict(api.call("stat", request, token()).response)["results"]
    expected: dict[tuple[str, str], int] = {}
    for doc in month_of_tasks:
        key = (doc["data_source_id"], doc["created_at"].strftime("%Y-%m"))
        expected[key] = expected.get(key, 0) + doc["created_count"]
    assert [(r["source"], r["month"], r["rows"]) for r in got] == [
        (*key, rows) for key, rows in sorted(expected.items())
    ]


@pytest.mark.usefixtures("month_of_tasks")
@pytest.mark.parametrize(
    ("shortcuts", "count"),
    [
        ({"job_id": "job-000000000001"}, 4),
        ({"status": "FAILURE"}, 4),
        ({"data_source_id": "ds-000000000001"}, 6),
        ({"job_task_id": "job-task-000000000003"}, 1),
        ({"workspace_id": WS1}, 12),
    ],
)
def test_list_shortcuts(
    api: InProcess, token: Token, shortcuts: dict[str, Any], count: int
) -> None:
    request = json_format.ParseDict(shortcuts, job_task_pb2.JobTaskQuery())
    assert api.call("list", request, token()).response.total_count == count


@pytest.mark.usefixtures("month_of_tasks")
def test_the_query_language_is_jobs_over_tasks_fields(api: InProcess, token: Token) -> None:
    query = {
        "filter": [{"k": "created_count", "v": 600, "o": "gte"}],
        "keyword": "00a 00b",
        "sort": [{"key": "created_count", "desc": True}],
    }
    request = json_format.ParseDict({"query": query}, job_task_pb2.JobTaskQuery())
    found = api.call("list", request, token()).response
    assert [r.job_task_id for r in found.results] == [
        "job-task-00000000000b",
        "job-task-00000000000a",
    ]
    unknown = json_format.ParseDict(
        {"query": {"filter": [{"k": "total_tasks", "v": 1, "o": "eq"}]}},
        job_task_pb2.JobTaskQuery(),
    )
    refused = api.call("list", unknown, token())
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "a job task field" in refused.details


def test_grpcurl_lists_and_describes_job_task(live: Live) -> None:
    listed = grpcurl("-plaintext", f"127.0.0.1:{live.port}", "list")
    assert JOB_TASK_SERVICE in listed.stdout.split()
    described = grpcurl("-plaintext", f"127.0.0.1:{live.port}", "describe", JOB_TASK_SERVICE)
    assert described.returncode == 0, described.stderr
    for method in ("get", "list", "stat"):
        assert f"rpc {method} (" in described.stdout


def test_grpcurl_lists_a_jobs_tasks(live: Live, token: Token, tasks: Store) -> None:
    tasks.insert([task(job_task_id=f"job-task-{i:012x}") for i in range(3)])
    done = grpcurl(
        "-plaintext",
        "-H",
        f"token: {token(auth.WORKSPACE_MEMBER)}",
        "-d",
        json.dumps({"job_id": "job-000000000001"}),
        f"127.0.0.1:{live.port}",
        f"{JOB_TASK_SERVICE}/list",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total_count"] == 3
