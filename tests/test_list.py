"""list: the complete query language through the servicer, and its INVALID_ARGUMENT paths."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth

from .conftest import D2, NOW, WS1, Answer, InProcess, Token, assert_refused

A, B, C, D = "job-aaaa00000001", "job-bbbb00000002", "job-cccc00000003", "job-dddd00000004"
ALL = {A, B, C, D}


@pytest.fixture(autouse=True)
def jobs(add: Callable[..., dict[str, Any]]) -> None:
    add(
        job_id=A,
        status="SUCCESS",
        total_tasks=3,
        remained_tasks=0,
        options={"sync_mode": "SCHEDULED", "no_preload_cache": False, "retries": 2},
        created_at=datetime(2024, 5, 1, 10),
        updated_at=datetime(2024, 5, 1, 11),
        finished_at=datetime(2024, 5, 1, 11),
        changed=[{"start": "2024-04"}],
        synced_accounts=[{"account_id": "111"}],
        data_source_id="ds-000000000001",
    )
    add(
        job_id=B,
        status="FAILURE",
        total_tasks=2,
        remained_tasks=1,
        error_code="ERROR_JOB_TASK",
        error_message="One or more job tasks failed.",
        options={"sync_mode": "MANUAL", "no_preload_cache": True, "retries": 5},
        created_at=datetime(2024, 5, 2, 10),
        updated_at=datetime(2024, 5, 2, 11),
        finished_at=datetime(2024, 5, 2, 11),
        changed=[{"start": "2024-05", "end": "2024-05", "filter": {"region": "kr"}}],
        data_source_id="ds-000000000002",
    )
    add(
        job_id=C,
        status="IN_PROGRESS",
        total_tasks=0,
        options={},
        created_at=datetime(2024, 5, 3, 10),
        updated_at=NOW,
        data_source_id="ds-000000000001",
    )
    add(
        job_id=D,
        status="CANCELED",
        total_tasks=5,
        remained_tasks=5,
        workspace_id="*",
        resource_group="DOMAIN",
        options={"sync_mode": "SCHEDULED"},
        created_at=datetime(2024, 4, 1, 10),
        updated_at=datetime(2024, 4, 1, 12),
        finished_at=datetime(2024, 4, 1, 12),
        synced_accounts=[{"account_id": "222"}, {"account_id": "333"}],
        data_source_id="ds-000000000003",
    )
    add(job_id="job-eeee00000005", domain_id=D2, status="SUCCESS")


def listing(
    api: InProcess, token: Token, request: dict[str, Any], role: str = auth.DOMAIN_ADMIN
) -> Answer:
    return api.call("list", json_format.ParseDict(request, job_pb2.JobQuery()), token(role))


def ids(answer: Answer) -> set[str]:
    assert answer.code is grpc.StatusCode.OK, answer.details
    return {r.job_id for r in answer.response.results}


def where(*conditions: tuple[str, str, Any]) -> dict[str, Any]:
    return {"query": {"filter": [{"k": k, "o": o, "v": v} for k, o, v in conditions]}}


MATCHES: list[tuple[tuple[str, str, Any], set[str]]] = [
    # strings: case-sensitive equality, lexicographic comparison
    (("status", "eq", "SUCCESS"), {A}),
    (("status", "not", "SUCCESS"), {B, C, D}),
    (("job_id", "lt", "job-bbbb"), {A}),
    (("data_source_id", "in", ["ds-000000000001", "ds-000000000003"]), {A, C, D}),
    (("data_source_id", "not_in", ["ds-000000000001"]), {B, D}),
    (("data_source_id", "in", []), set()),
    (("data_source_id", "not_in", []), ALL),
    # null and missing
    (("error_code", "eq", None), {A, C, D}),
    (("error_code", "not", None), {B}),
    (("error_code", "exists", True), ALL),
    (("finished_at", "eq", None), {C}),
    (("options.sync_mode", "exists", False), {C}),
    # text search: literal, case-insensitive
    (("error_message", "contain", "TASKS failed."), {B}),
    (("job_id", "contain", "."), set()),
    (("error_message", "not_contain", "task"), {A, C, D}),
    (("job_id", "contain_in", ["AAAA", "cccc"]), {A, C}),
    (("job_id", "contain_in", []), set()),
    (("job_id", "not_contain_in", ["aaaa", "cccc"]), {B, D}),
    (("job_id", "not_contain_in", []), ALL),
    (("job_id", "regex", "^JOB-(a|d)"), {A, D}),
    (("job_id", "regex_in", ["b{4}", "c{4}"]), {B, C}),
    (("job_id", "regex_in", []), set()),
    # integers compare as numbers
    (("total_tasks", "gt", 2.5), {A, D}),
    (("total_tasks", "gte", 3), {A, D}),
    (("total_tasks", "lte", 2), {B, C}),
    (("total_tasks", "eq", 0), {C}),
    (("remained_tasks", "in", [1, 5]), {B, D}),
    # datetimes
    (("created_at", "gte", "2024-05-02"), {B, C}),
    (("created_at", "lt", "2024-05-01T10:00:00Z"), {D}),
    (("created_at", "datetime_gt", "2024-05-01T10:00:00+00:00"), {B, C}),
    (("created_at", "datetime_lte", "2024-05-01T19:00:00+09:00"), {A, D}),
    (("updated_at", "timediff_gte", "now-1h"), {C}),
    (("updated_at", "timediff_lt", "now/d - 30d"), {A, B, D}),
    # free-form options and array sub-fields
    (("options.sync_mode", "eq", "MANUAL"), {B}),
    (("options.retries", "gt", 2), {B}),
    (("options.no_preload_cache", "eq", True), {B}),
    (("changed.start", "eq", "2024-05"), {B}),
    (("changed.filter.region", "eq", "kr"), {B}),
    (("synced_accounts.account_id", "in", ["333"]), {D}),
    (("changed", "match", {"start": {"$gte": "2024-05"}, "end": "2024-05"}), {B}),
    (("synced_accounts", "match", {"account_id": {"in": ["111", "222"]}}), {A, D}),
    (("changed.start", "exists", True), {A, B}),
    (("resource_group", "eq", "DOMAIN"), {D}),
]


@pytest.mark.parametrize(("condition", "expected"), MATCHES, ids=lambda v: str(v)[:60])
def test_operator(
    api: InProcess, token: Token, condition: tuple[str, str, Any], expected: set[str]
) -> None:
    assert ids(listing(api, token, where(condition))) == expected


def test_long_aliases_work_like_short_ones(api: InProcess, token: Token) -> None:
    request = {"query": {"filter": [{"key": "status", "operator": "eq", "value": "FAILURE"}]}}
    assert ids(listing(api, token, request)) == {B}


def test_filter_and_filter_or_and_keyword_all_narrow(api: InProcess, token: Token) -> None:
    request = {
        "query": {
            "filter": [{"k": "total_tasks", "o": "gte", "v": 2}],
            "filter_or": [
                {"k": "status", "o": "eq", "v": "SUCCESS"},
                {"k": "status", "o": "eq", "v": "FAILURE"},
            ],
        }
    }
    assert ids(listing(api, token, request)) == {A, B}
    request["query"]["keyword"] = "  bbbb  zzzz "
    assert ids(listing(api, token, request)) == {B}, "keyword is ANDed, not ORed into filter_or"


def test_shortcut_fields(api: InProcess, token: Token) -> None:
    assert ids(listing(api, token, {"status": "CANCELED"})) == {D}
    assert ids(listing(api, token, {"data_source_id": "ds-000000000001"})) == {A, C}
    assert ids(listing(api, token, {"job_id": B})) == {B}


def test_default_sort_is_newest_first(api: InProcess, token: Token) -> None:
    answer = listing(api, token, {})
    assert [r.job_id for r in answer.response.results] == [C, B, A, D]


def test_sort_by_several_keys(api: InProcess, token: Token) -> None:
    request = {
        "query": {"sort": [{"key": "options.sync_mode", "desc": True}, {"key": "total_tasks"}]}
    }
    answer = listing(api, token, request)
    assert [r.job_id for r in answer.response.results] == [A, D, B, C]


def test_page_is_one_based_and_total_count_ignores_it(api: InProcess, token: Token) -> None:
    answer = listing(api, token, {"query": {"page": {"start": 2, "limit": 2}}})
    assert [r.job_id for r in answer.response.results] == [B, A]
    assert answer.response.total_count == 4
    beyond = listing(api, token, {"query": {"page": {"start": 9, "limit": 2}}})
    assert list(beyond.response.results) == [] and beyond.response.total_count == 4


def test_count_only(api: InProcess, token: Token) -> None:
    answer = listing(api, token, {"query": {"count_only": True}, "status": "SUCCESS"})
    assert list(answer.response.results) == [] and answer.response.total_count == 1


def test_minimal_includes_workspace_id(api: InProcess, token: Token) -> None:
    answer = listing(api, token, {"query": {"minimal": True}, "job_id": A})
    (info,) = answer.response.results
    assert info.workspace_id == WS1 and info.status == job_pb2.JobInfo.SUCCESS
    assert info.total_tasks == 3 and info.created_at == "" and not info.HasField("options")


def test_only_leaves_other_fields_unset(api: InProcess, token: Token) -> None:
    answer = listing(api, token, {"query": {"only": ["job_id", "options.sync_mode"]}, "job_id": B})
    (info,) = answer.response.results
    assert info.job_id == B
    assert dict(info.options) == {"sync_mode": "MANUAL"}
    assert info.status == job_pb2.JobInfo.SCOPE_NONE, "never upstream's IN_PROGRESS default"
    assert info.data_source_id == "" and info.created_at == ""


def test_only_with_parent_and_child_paths(api: InProcess, token: Token) -> None:
    answer = listing(api, token, {"query": {"only": ["changed", "changed.start"]}, "job_id": B})
    assert answer.response.results[0].changed[0].end == "2024-05"


def test_unwind_lists_one_row_per_element(api: InProcess, token: Token) -> None:
    request = {
        "query": {
            "unwind": {
                "path": "synced_accounts",
                "filter": [{"k": "synced_accounts.account_id", "o": "not", "v": "222"}],
            },
            "only": ["job_id", "synced_accounts"],
            "sort": [{"key": "synced_accounts.account_id"}],
        }
    }
    answer = listing(api, token, request)
    rows = [(r.job_id, [a.account_id for a in r.synced_accounts]) for r in answer.response.results]
    assert rows == [(A, ["111"]), (D, ["333"])]
    assert answer.response.total_count == 2


def test_add_fields_can_be_sorted_on(api: InProcess, token: Token) -> None:
    request = {
        "query": {
            "add_fields": {
                "failed": {"if": {"__eq": ["$status", "FAILURE"]}, "then": 0, "else": 1}
            },
            "sort": [{"key": "failed"}, {"key": "created_at"}],
        }
    }
    answer = listing(api, token, request)
    assert [r.job_id for r in answer.response.results] == [B, D, A, C]
    assert answer.response.total_count == 4


def test_list_without_a_page_limit_is_capped(
    api: InProcess, token: Token, add: Callable[..., dict[str, Any]], service: Any
) -> None:
    service.limits = type(service.limits)(max_page_limit=3)
    answer = listing(api, token, {})
    assert len(answer.response.results) == 3 and answer.response.total_count == 4


INVALID: list[tuple[dict[str, Any], str, str]] = [
    (where(("nope", "eq", 1)), "ERROR_INVALID_PARAMETER", "nope"),
    (where(("options.$where", "eq", 1)), "ERROR_INVALID_PARAMETER", "options.$where"),
    (where(("status", "like", "x")), "ERROR_OPERATOR_NOT_SUPPORTED", "like"),
    ({"query": {"filter": [{"k": "status", "v": "x"}]}}, "ERROR_REQUIRED_PARAMETER", "operator"),
    ({"query": {"filter": [{"o": "eq", "v": "x"}]}}, "ERROR_REQUIRED_PARAMETER", "key"),
    (where(("status", "in", "SUCCESS")), "ERROR_OPERATOR_LIST_VALUE_TYPE", "in"),
    (where(("status", "eq", ["SUCCESS"])), "ERROR_OPERATOR_VALUE_TYPE", "eq"),
    (where(("changed", "match", "2024-05")), "ERROR_OPERATOR_DICT_VALUE_TYPE", "match"),
    (where(("error_code", "exists", "yes")), "ERROR_OPERATOR_BOOLEAN_TYPE", "exists"),
    (where(("total_tasks", "eq", "3")), "ERROR_INVALID_PARAMETER_TYPE", "total_tasks"),
    (where(("total_tasks", "eq", True)), "ERROR_INVALID_PARAMETER_TYPE", "total_tasks"),
    (where(("job_id", "eq", 5)), "ERROR_INVALID_PARAMETER_TYPE", "job_id"),
    (where(("status", "eq", "success")), "ERROR_INVALID_PARAMETER", "SUCCESS"),
    (where(("created_at", "gt", "yesterday")), "ERROR_INVALID_PARAMETER_TYPE", "ISO 8601"),
    (where(("created_at", "datetime_gt", "2024-13-01")), "ERROR_INVALID_PARAMETER", "ISO 8601"),
    (where(("created_at", "timediff_gt", "now-1y")), "ERROR_INVALID_PARAMETER", "now-1y"),
    (where(("total_tasks", "contain", "3")), "ERROR_INVALID_PARAMETER", "does not apply"),
    (where(("job_id", "contain", 5)), "ERROR_INVALID_PARAMETER_TYPE", "text"),
    (where(("job_id", "regex", "(")), "ERROR_INVALID_PARAMETER", "Invalid regex"),
    (where(("job_id", "regex", "a" * 257)), "ERROR_INVALID_PARAMETER", "256"),
    (
        where(("changed", "match", {"start": {"$where": "1"}})),
        "ERROR_OPERATOR_NOT_SUPPORTED",
        "$where",
    ),
    (where(("changed", "match", {"nope": 1})), "ERROR_INVALID_PARAMETER", "changed.nope"),
    (where(("status", "lt", None)), "ERROR_INVALID_PARAMETER", "needs a value"),
    ({"query": {"sort": [{"key": "nope"}]}}, "ERROR_INVALID_PARAMETER", "nope"),
    ({"query": {"sort": [{"desc": True}]}}, "ERROR_REQUIRED_PARAMETER", "sort"),
    ({"query": {"only": ["password"]}}, "ERROR_INVALID_PARAMETER", "password"),
    ({"query": {"lookup": [{"from": "secrets"}]}}, "ERROR_INVALID_PARAMETER", "lookup"),
    ({"query": {"unwind": {}}}, "ERROR_REQUIRED_PARAMETER", "unwind.path"),
    ({"query": {"unwind": {"path": "status"}}}, "ERROR_INVALID_PARAMETER", "unwind"),
    ({"query": {"add_fields": {"domain_id": "x"}}}, "ERROR_INVALID_PARAMETER", "domain_id"),
    (
        {"query": {"add_fields": {"x": {"if": {"$function": []}}}}},
        "ERROR_OPERATOR_NOT_SUPPORTED",
        "$function",
    ),
    (
        {"query": {"add_fields": {"x": {"if": {"__eq": ["$secret", 1]}}}}},
        "ERROR_INVALID_PARAMETER",
        "secret",
    ),
]


@pytest.mark.parametrize(("request_", "code", "mentions"), INVALID, ids=lambda v: str(v)[:70])
def test_invalid_queries_are_invalid_argument(
    api: InProcess, token: Token, request_: dict[str, Any], code: str, mentions: str
) -> None:
    answer = listing(api, token, request_)
    assert_refused(answer, code, mentions)


def test_in_lists_are_bounded(api: InProcess, token: Token) -> None:
    answer = listing(api, token, where(("job_id", "in", [f"job-{i:012x}" for i in range(1001)])))
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "1000" in answer.details
