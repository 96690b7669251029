"""stat: pipelines checked against answers computed here, in plain Python, from the seeded jobs."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth
from spaceone_job.api.render import timestamp

from .conftest import D2, WS1, WS2, Answer, InProcess, Token, assert_refused

STATUSES = ("SUCCESS", "FAILURE", "CANCELED", "TIMEOUT", "IN_PROGRESS")
SOURCES = ("ds-000000000001", "ds-000000000002", "ds-000000000003")


@pytest.fixture
def jobs(add: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """60 jobs of D1 over three months, and a few of D2 that must never show up."""
    rng = random.Random(7)
    docs = []
    start = datetime(2024, 3, 1)
    for i in range(60):
        created = start + timedelta(hours=rng.randint(0, 24 * 90), milliseconds=rng.randint(0, 999))
        docs.append(
            add(
                job_id=f"job-{i:012x}",
                status=rng.choice(STATUSES),
                data_source_id=rng.choice(SOURCES),
                workspace_id=rng.choice((WS1, WS2, "*")),
                total_tasks=rng.randint(0, 4),
                created_at=created,
                updated_at=created + timedelta(minutes=5),
                changed=[{"start": created.strftime("%Y-%m")}] * rng.randint(0, 2),
                synced_accounts=[{"account_id": str(a)} for a in range(rng.randint(0, 3))],
            )
        )
    for i in range(5):
        add(job_id=f"job-ffff{i:08x}", domain_id=D2, status="SUCCESS")
    return docs


def stat(
    api: InProcess, token: Token, query: dict[str, Any], role: str = auth.DOMAIN_ADMIN
) -> Answer:
    request = json_format.ParseDict({"query": query}, job_pb2.JobStatQuery())
    return api.call("stat", request, token(role))


def results(answer: Answer) -> Any:
    assert answer.code is grpc.StatusCode.OK, answer.details
    return json_format.MessageToDict(answer.response)


def group(keys: list[dict[str, Any]], fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"group": {"keys": keys, "fields": fields}}


def test_jobs_per_status(api: InProcess, token: Token, jobs: list[dict[str, Any]]) -> None:
    query = {
        "aggregate": [
            group([{"key": "status", "name": "status"}], [{"name": "jobs", "operator": "count"}]),
            {"sort": [{"key": "status"}]},
        ]
    }
    expected = sorted(Counter(j["status"] for j in jobs).items())
    got = results(stat(api, token, query))
    assert [(r["status"], r["jobs"]) for r in got["results"]] == expected
    assert "total_count" not in got


def test_dashboard_jobs_per_status_per_month_with_conditional_count(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            group(
                [
                    {"key": "status", "name": "status"},
                    {"key": "created_at", "name": "month", "date_format": "%Y-%m"},
                ],
                [
                    {"name": "jobs", "operator": "count"},
                    {
                        "name": "big",
                        "operator": "count",
                        "conditions": [{"key": "total_tasks", "operator": "gte", "value": 3}],
                    },
                ],
            ),
            {"sort": [{"key": "month"}, {"key": "status"}]},
        ]
    }
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for j in jobs:
        cell = expected[(j["created_at"].strftime("%Y-%m"), j["status"])]
        cell[0] += 1
        cell[1] += j["total_tasks"] >= 3
    got = results(stat(api, token, query))["results"]
    assert [((r["month"], r["status"]), [r["jobs"], r["big"]]) for r in got] == sorted(
        expected.items()
    )


def test_dashboard_success_rate_per_data_source(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            group(
                [{"key": "data_source_id", "name": "source"}],
                [
                    {"name": "runs", "operator": "count"},
                    {
                        "name": "ok",
                        "operator": "count",
                        "conditions": [{"key": "status", "operator": "eq", "value": "SUCCESS"}],
                    },
                    {
                        "name": "not_failed",
                        "operator": "count",
                        "conditions": [{"key": "status", "operator": "not", "value": "FAILURE"}],
                    },
                ],
            ),
            {"sort": [{"key": "source"}]},
        ]
    }
    got = results(stat(api, token, query))["results"]
    for row in got:
        mine = [j for j in jobs if j["data_source_id"] == row["source"]]
        assert row["runs"] == len(mine)
        assert row["ok"] == sum(j["status"] == "SUCCESS" for j in mine)
        assert row["not_failed"] == sum(j["status"] != "FAILURE" for j in mine)
    assert [r["source"] for r in got] == sorted({j["data_source_id"] for j in jobs})


def test_dashboard_latest_run_per_source(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            group(
                [{"key": "data_source_id", "name": "source"}],
                [{"key": "created_at", "name": "latest", "operator": "max"}],
            ),
            {"sort": [{"key": "source"}]},
        ]
    }
    latest: dict[str, datetime] = {}
    for j in jobs:
        latest[j["data_source_id"]] = max(
            latest.get(j["data_source_id"], j["created_at"]), j["created_at"]
        )
    got = results(stat(api, token, query))["results"]
    assert got == [{"source": s, "latest": timestamp(latest[s])} for s in sorted(latest)]


def test_dashboard_distinct_values(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    got = results(stat(api, token, {"distinct": "data_source_id"}))
    assert got == {"results": sorted({j["data_source_id"] for j in jobs})}
    paged = results(stat(api, token, {"distinct": "status", "page": {"start": 2, "limit": 2}}))
    statuses = sorted({j["status"] for j in jobs})
    assert paged == {"results": statuses[1:3], "total_count": len(statuses)}


def test_distinct_on_a_datetime_field_renders_timestamps(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    got = results(stat(api, token, {"distinct": "created_at", "page": {"limit": 3}}))
    assert got["results"] == [timestamp(d) for d in sorted(j["created_at"] for j in jobs)[:3]]
    assert got["total_count"] == len(jobs)


def test_distinct_inside_arrays(api: InProcess, token: Token, jobs: list[dict[str, Any]]) -> None:
    got = results(stat(api, token, {"distinct": "changed.start"}))
    assert got["results"] == sorted({c["start"] for j in jobs for c in j["changed"]})


def test_group_sort_project_exclude_keys_limit(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            group(
                [{"key": "data_source_id", "name": "source"}],
                [{"key": "total_tasks", "name": "tasks", "operator": "sum"}],
            ),
            {"sort": [{"key": "tasks", "desc": True}, {"key": "source"}]},
            {
                "project": {
                    "fields": [{"key": "source", "name": "id"}, {"key": "tasks", "name": "tasks"}],
                    "exclude_keys": True,
                }
            },
            {"limit": 2},
        ]
    }
    sums: Counter[str] = Counter()
    for j in jobs:
        sums[j["data_source_id"]] += j["total_tasks"]
    ranked = sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    got = results(stat(api, token, query))["results"]
    assert got == [{"id": s, "tasks": t} for s, t in ranked]


def test_project_size_then_group(api: InProcess, token: Token, jobs: list[dict[str, Any]]) -> None:
    query = {
        "aggregate": [
            {
                "project": {
                    "fields": [
                        {"key": "synced_accounts", "name": "accounts", "operator": "size"},
                        {"key": "status", "name": "status"},
                    ]
                }
            },
            group(
                [{"key": "status", "name": "status"}],
                [{"key": "accounts", "name": "accounts", "operator": "sum"}],
            ),
            {"sort": [{"key": "status"}]},
        ]
    }
    sums: Counter[str] = Counter()
    for j in jobs:
        sums[j["status"]] += len(j["synced_accounts"] or [])
    got = results(stat(api, token, query))["results"]
    assert [(r["status"], r["accounts"]) for r in got] == sorted(sums.items())


@pytest.mark.parametrize(
    ("date_format", "part"),
    [
        ("month", lambda d: d.month),
        ("day", lambda d: d.day),
        ("year", lambda d: d.year),
        ("%Y-%m-%d", lambda d: d.strftime("%Y-%m-%d")),
    ],
)
def test_group_keys_by_date_part(
    api: InProcess,
    token: Token,
    jobs: list[dict[str, Any]],
    date_format: str,
    part: Callable[[datetime], Any],
) -> None:
    query = {
        "aggregate": [
            group(
                [{"key": "created_at", "name": "when", "date_format": date_format}],
                [{"name": "n", "operator": "count"}],
            ),
            {"sort": [{"key": "when"}]},
        ]
    }
    expected = sorted(Counter(part(j["created_at"]) for j in jobs).items())
    got = results(stat(api, token, query))["results"]
    assert [(r["when"], r["n"]) for r in got] == expected


def test_average_with_conditions_ignores_documents_that_fail_them(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            group(
                [],
                [
                    {
                        "key": "total_tasks",
                        "name": "avg",
                        "operator": "average",
                        "conditions": [{"key": "status", "operator": "eq", "value": "SUCCESS"}],
                    }
                ],
            )
        ]
    }
    wins = [j["total_tasks"] for j in jobs if j["status"] == "SUCCESS"]
    (row,) = results(stat(api, token, query))["results"]
    assert row == {"avg": pytest.approx(sum(wins) / len(wins))}


def test_unwind_then_group_and_count_stage(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            {"unwind": {"path": "synced_accounts"}},
            group(
                [{"key": "synced_accounts.account_id", "name": "account"}],
                [{"name": "n", "operator": "count"}],
            ),
            {"count": {"name": "accounts"}},
        ]
    }
    accounts = {a["account_id"] for j in jobs for a in (j["synced_accounts"] or [])}
    assert results(stat(api, token, query))["results"] == [{"accounts": len(accounts)}]


@pytest.mark.only_on(
    "embedded", why="mongomock answers a row of zeros; the embedded store groups as MongoDB does"
)
def test_a_group_without_keys_over_no_jobs_gives_no_row(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    # MongoDB's $group gives no row when no document reaches it (mongomock gave one of zeros).
    fields = [
        {"name": "n", "operator": "count"},
        {"name": "t", "key": "total_tasks", "operator": "sum"},
    ]
    query = {
        "filter": [{"k": "job_id", "v": "job-nope", "o": "eq"}],
        "aggregate": [group([], fields)],
    }
    assert results(stat(api, token, query)).get("results", []) == []
    query["filter"] = [{"k": "status", "v": "SUCCESS", "o": "eq"}]
    successes = [j for j in jobs if j["status"] == "SUCCESS"]
    expected = {"n": len(successes), "t": sum(j["total_tasks"] for j in successes)}
    assert results(stat(api, token, query))["results"] == [expected]


def test_push_add_to_set_first_last(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            {"sort": [{"key": "created_at"}]},
            group(
                [{"key": "data_source_id", "name": "source"}],
                [
                    {
                        "name": "runs",
                        "operator": "push",
                        "fields": [
                            {"key": "job_id", "name": "id"},
                            {"key": "created_at", "name": "at"},
                        ],
                    },
                    {"key": "status", "name": "statuses", "operator": "add_to_set"},
                    {"key": "job_id", "name": "first", "operator": "first"},
                    {"key": "job_id", "name": "last", "operator": "last"},
                ],
            ),
            {"sort": [{"key": "source"}]},
        ]
    }
    got = results(stat(api, token, query))["results"]
    for row in got:
        mine = sorted(
            (j for j in jobs if j["data_source_id"] == row["source"]), key=lambda j: j["created_at"]
        )
        assert row["runs"] == [{"id": j["job_id"], "at": timestamp(j["created_at"])} for j in mine]
        assert sorted(row["statuses"]) == sorted({j["status"] for j in mine})
        assert (row["first"], row["last"]) == (mine[0]["job_id"], mine[-1]["job_id"])


def test_page_gives_total_count_before_paging(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "aggregate": [
            group([{"key": "status", "name": "status"}], [{"name": "n", "operator": "count"}]),
            {"sort": [{"key": "status"}]},
        ],
        "page": {"start": 2, "limit": 2},
    }
    statuses = sorted(Counter(j["status"] for j in jobs).items())
    got = results(stat(api, token, query))
    assert [(r["status"], r["n"]) for r in got["results"]] == statuses[1:3]
    assert got["total_count"] == len(statuses)


def test_filters_and_workspace_scope_apply(
    api: InProcess, token: Token, jobs: list[dict[str, Any]]
) -> None:
    query = {
        "filter": [{"k": "total_tasks", "o": "gte", "v": 2}],
        "aggregate": [group([], [{"name": "n", "operator": "count"}])],
    }
    mine = [j for j in jobs if j["total_tasks"] >= 2 and j["workspace_id"] in (WS1, "*")]
    got = results(stat(api, token, query, auth.WORKSPACE_OWNER))
    assert got["results"] == [{"n": len(mine)}]


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({}, "ERROR_REQUIRED_PARAMETER", "aggregate"),
    ({"aggregate": [{}]}, "ERROR_INVALID_PARAMETER", "aggregate[0]"),
    ({"aggregate": [group([], [])]}, "ERROR_REQUIRED_PARAMETER", "aggregate[0].group.keys"),
    ({"aggregate": [group([{"key": "nope", "name": "x"}], [])]}, "ERROR_INVALID_PARAMETER", "nope"),
    (
        {"aggregate": [group([{"key": "status", "name": "a.b"}], [])]},
        "ERROR_INVALID_PARAMETER",
        "safe name",
    ),
    (
        {"aggregate": [group([{"key": "status", "name": "$x"}], [])]},
        "ERROR_INVALID_PARAMETER",
        "safe name",
    ),
    ({"aggregate": [group([{"key": "status"}], [])]}, "ERROR_REQUIRED_PARAMETER", "name"),
    (
        {"aggregate": [group([], [{"name": "x", "operator": "median"}])]},
        "ERROR_OPERATOR_NOT_SUPPORTED",
        "median",
    ),
    (
        {
            "aggregate": [
                group(
                    [],
                    [
                        {
                            "key": "status",
                            "name": "x",
                            "operator": "max",
                            "conditions": [{"key": "status", "operator": "eq", "value": "A"}],
                        }
                    ],
                )
            ]
        },
        "ERROR_INVALID_PARAMETER",
        "conditions",
    ),
    (
        {
            "aggregate": [
                group(
                    [],
                    [
                        {
                            "name": "x",
                            "operator": "count",
                            "conditions": [{"key": "status", "operator": "ne", "value": "SUCCESS"}],
                        }
                    ],
                )
            ]
        },
        "ERROR_OPERATOR_NOT_SUPPORTED",
        "ne",
    ),
    (
        {
            "aggregate": [
                group(
                    [],
                    [
                        {
                            "name": "x",
                            "operator": "count",
                            "conditions": [{"key": "status", "operator": "eq"}],
                        }
                    ],
                )
            ]
        },
        "ERROR_REQUIRED_PARAMETER",
        "value",
    ),
    (
        {"aggregate": [group([{"key": "status", "name": "s", "date_format": "month"}], [])]},
        "ERROR_INVALID_PARAMETER",
        "dates",
    ),
    (
        {"aggregate": [group([{"key": "created_at", "name": "s", "date_format": "%Q"}], [])]},
        "ERROR_INVALID_PARAMETER",
        "date_format",
    ),
    (
        {"aggregate": [group([{"key": "status", "name": "s"}], []), {"sort": [{"key": "job_id"}]}]},
        "ERROR_INVALID_PARAMETER",
        "aggregate[1].sort[0].key",
    ),
    ({"aggregate": [{"sort": []}]}, "ERROR_INVALID_PARAMETER", "sort"),
    (
        {
            "aggregate": [
                {"project": {"fields": [{"key": "status", "name": "s", "operator": "add"}]}}
            ]
        },
        "ERROR_OPERATOR_NOT_SUPPORTED",
        "fields list",
    ),
    (
        {
            "aggregate": [
                {"project": {"fields": [{"key": "status", "name": "s", "operator": "size"}]}}
            ]
        },
        "ERROR_INVALID_PARAMETER",
        "array",
    ),
    ({"aggregate": [{"project": {}}]}, "ERROR_REQUIRED_PARAMETER", "project.fields"),
    ({"aggregate": [{"limit": 0}]}, "ERROR_INVALID_PARAMETER", "aggregate[0].limit"),
    ({"aggregate": [{"skip": -1}]}, "ERROR_INVALID_PARAMETER", "aggregate[0].skip"),
    ({"aggregate": [{"unwind": {"path": "status"}}]}, "ERROR_INVALID_PARAMETER", "unwind"),
    ({"aggregate": [{"count": {}}]}, "ERROR_REQUIRED_PARAMETER", "count.name"),
    ({"aggregate": [{"limit": 1}] * 33}, "ERROR_INVALID_PARAMETER", "32"),
    ({"distinct": "nope"}, "ERROR_INVALID_PARAMETER", "nope"),
    ({"distinct": "options"}, "ERROR_INVALID_PARAMETER", "objects"),
]


@pytest.mark.parametrize(("query", "code", "mentions"), INVALID, ids=lambda v: str(v)[:70])
def test_invalid_stat_queries_are_invalid_argument(
    api: InProcess, token: Token, query: dict[str, Any], code: str, mentions: str
) -> None:
    answer = stat(api, token, query)
    assert_refused(answer, code, mentions)


def test_stat_without_query_is_invalid_argument(api: InProcess, token: Token) -> None:
    answer = api.call("stat", job_pb2.JobStatQuery(), token())
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT
    assert answer.details.endswith("(key = query)")


def test_null_dates_group_under_null(
    api: InProcess, token: Token, jobs: list[dict[str, Any]], add: Callable[..., dict[str, Any]]
) -> None:
    add(job_id="job-0000000fffff", finished_at=None)
    query = {
        "aggregate": [
            group(
                [{"key": "finished_at", "name": "month", "date_format": "month"}],
                [{"name": "n", "operator": "count"}],
            ),
            {"sort": [{"key": "month"}]},
        ]
    }
    got = results(stat(api, token, query))["results"]
    expected = Counter(j["finished_at"].month if j["finished_at"] else None for j in jobs)
    expected[None] += 1
    assert {r.get("month"): r["n"] for r in got} == dict(expected)
