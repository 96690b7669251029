"""Cross-tenant probes: no id, count or statistic of another tenant ever comes back.

Domain D2 reuses D1's workspace ids, so only the domain separates them. Every RPC is tried with
every role and every way a request could try to widen its scope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth

from .conftest import D1, D2, WS1, WS2, InProcess, Token

MINE = {  # job_id -> workspace_id, domain D1
    "job-a1a1a1a1a1a1": WS1,
    "job-a2a2a2a2a2a2": WS2,
    "job-a3a3a3a3a3a3": "*",
}
THEIRS = {  # domain D2, same workspace ids
    "job-d2d2d2d2d201": WS1,
    "job-d2d2d2d2d202": WS2,
    "job-d2d2d2d2d203": "*",
}
ROLES = {
    "domain admin": (auth.DOMAIN_ADMIN, None, {}),
    "workspace owner": (auth.WORKSPACE_OWNER, WS1, {}),
    "workspace member": (auth.WORKSPACE_MEMBER, WS1, {}),
    "system token": ("SYSTEM_TOKEN", None, {"x_domain_id": D1}),
    "system token, workspace": ("SYSTEM_TOKEN", WS1, {"x_domain_id": D1, "x_workspace_id": WS1}),
}


@pytest.fixture(autouse=True)
def tenants(add: Callable[..., dict[str, Any]]) -> None:
    for job_id, workspace_id in MINE.items():
        add(job_id=job_id, domain_id=D1, workspace_id=workspace_id, data_source_id="ds-shared")
    for job_id, workspace_id in THEIRS.items():
        add(job_id=job_id, domain_id=D2, workspace_id=workspace_id, data_source_id="ds-shared")


def visible(role: str) -> set[str]:
    _, workspace_id, _ = ROLES[role]
    return {j for j, ws in MINE.items() if workspace_id is None or ws in (workspace_id, "*")}


def call(api: InProcess, token: Token, role: str, method: str, request: Any) -> Any:
    rol, workspace_id, metadata = ROLES[role]
    if rol == "SYSTEM_TOKEN":
        return api.call(method, request, token(typ="SYSTEM_TOKEN"), metadata=metadata)
    return api.call(method, request, token(rol, workspace_id=workspace_id))


def assert_no_leak(answer: Any) -> None:
    text = str(answer.response) + answer.details
    assert D2 not in text and "d2d2" not in text, text


WIDENING_LISTS: dict[str, dict[str, Any]] = {
    "domain_id eq": {"query": {"filter": [{"k": "domain_id", "o": "eq", "v": D2}]}},
    "domain_id in": {"query": {"filter": [{"k": "domain_id", "o": "in", "v": [D1, D2]}]}},
    "filter_or domain": {
        "query": {
            "filter_or": [
                {"k": "domain_id", "o": "eq", "v": D2},
                {"k": "domain_id", "o": "not", "v": D1},
            ]
        }
    },
    "regex everything": {"query": {"filter": [{"k": "domain_id", "o": "regex", "v": ".*"}]}},
    "not_in nothing": {"query": {"filter": [{"k": "domain_id", "o": "not_in", "v": []}]}},
    "exists": {"query": {"filter": [{"k": "domain_id", "o": "exists", "v": True}]}},
    "keyword": {"query": {"keyword": "d2d2 a1a1"}},
    "job_id shortcut": {"job_id": "job-d2d2d2d2d201"},
    "workspace shortcut other": {"workspace_id": WS2},
    "workspace shortcut star": {"workspace_id": "*"},
    "workspace filter": {"query": {"filter": [{"k": "workspace_id", "o": "in", "v": [WS1, WS2]}]}},
    "unwind": {"query": {"unwind": {"path": "changed"}, "only": ["job_id"]}},
    "add_fields": {"query": {"add_fields": {"x": 1}, "sort": [{"key": "x"}]}},
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("probe", list(WIDENING_LISTS))
def test_list_never_widens(api: InProcess, token: Token, role: str, probe: str) -> None:
    request = json_format.ParseDict(WIDENING_LISTS[probe], job_pb2.JobQuery())
    answer = call(api, token, role, "list", request)
    assert_no_leak(answer)
    if answer.code is grpc.StatusCode.OK:
        assert {r.job_id for r in answer.response.results} <= visible(role)
        assert answer.response.total_count <= len(visible(role))


WIDENING_STATS: dict[str, dict[str, Any]] = {
    "distinct domain": {"distinct": "domain_id"},
    "distinct job": {"distinct": "job_id"},
    "group by domain": {
        "aggregate": [
            {
                "group": {
                    "keys": [{"key": "domain_id", "name": "domain"}],
                    "fields": [{"name": "n", "operator": "count"}],
                }
            }
        ]
    },
    "count everything with filter_or": {
        "filter_or": [{"k": "domain_id", "o": "eq", "v": D2}],
        "aggregate": [{"count": {"name": "n"}}],
    },
    "push every id": {
        "aggregate": [
            {
                "group": {
                    "keys": [{"key": "data_source_id", "name": "source"}],
                    "fields": [{"key": "job_id", "name": "ids", "operator": "push"}],
                }
            }
        ]
    },
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("probe", list(WIDENING_STATS))
def test_stat_never_widens(api: InProcess, token: Token, role: str, probe: str) -> None:
    request = json_format.ParseDict({"query": WIDENING_STATS[probe]}, job_pb2.JobStatQuery())
    answer = call(api, token, role, "stat", request)
    assert_no_leak(answer)
    assert answer.code is grpc.StatusCode.OK
    rows = json_format.MessageToDict(answer.response)["results"]
    if probe == "distinct job":
        assert set(rows) == visible(role)
    if probe == "group by domain":
        assert rows == [{"domain": D1, "n": len(visible(role))}]
    if probe == "count everything with filter_or":
        assert rows == [], "D2's jobs are out of scope, so nothing is left to count"
    if probe == "push every id":
        assert set(rows[0]["ids"]) == visible(role)


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("method", ["get", "cancel"])
@pytest.mark.parametrize("job_id", list(THEIRS))
def test_get_and_cancel_never_reach_another_domain(
    api: InProcess, token: Token, role: str, method: str, job_id: str
) -> None:
    answer = call(api, token, role, method, job_pb2.JobRequest(job_id=job_id))
    assert answer.code is grpc.StatusCode.NOT_FOUND
    after = api.call("get", job_pb2.JobRequest(job_id=job_id), token(domain_id=D2))
    assert after.response.status == job_pb2.JobInfo.IN_PROGRESS, "never canceled across domains"
