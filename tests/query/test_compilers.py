"""The compilers alone: a request's parts in, the MongoDB filter, plan or pipeline out.

The end-to-end tests (test_list, test_stat, test_parity*) show that these answer as upstream
does on both stores; these pin what each part compiles to, without a store or a server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from spaceone_job import kinds
from spaceone_job.errors import ServiceError
from spaceone_job.query.filters import Context, Limits, condition, resolve_timediff
from spaceone_job.query.listing import compile_list
from spaceone_job.query.schema import Schema
from spaceone_job.query.stat import compile_stat

NOW = datetime(2026, 5, 15, 12, 0, 0)
CTX = Context(Schema(kinds.JOB), Limits(), NOW)
SCOPE = [{"domain_id": "domain-1"}]


@pytest.mark.parametrize(
    ("raw", "compiled"),
    [
        ({"k": "status", "v": "SUCCESS", "o": "eq"}, {"status": {"$eq": "SUCCESS"}}),
        (
            {"k": "options.sync_mode", "v": "MANUAL", "o": "not"},
            {"options.sync_mode": {"$ne": "MANUAL"}},
        ),
        (
            {"k": "status", "v": ["SUCCESS", "FAILURE"], "o": "in"},
            {"status": {"$in": ["SUCCESS", "FAILURE"]}},
        ),
        # contain matches the text as written: its regex characters are escaped.
        (
            {"k": "error_code", "v": "a.b*", "o": "contain"},
            {"error_code": {"$regex": r"a\.b\*", "$options": "i"}},
        ),
        (
            {"k": "job_id", "v": "^job-", "o": "regex"},
            {"job_id": {"$regex": "^job-", "$options": "i"}},
        ),
        ({"k": "total_tasks", "v": 3, "o": "gte"}, {"total_tasks": {"$gte": 3}}),
        ({"k": "finished_at", "v": True, "o": "exists"}, {"finished_at": {"$exists": True}}),
        (
            {"k": "created_at", "v": "2026-05-01", "o": "datetime_lt"},
            {"created_at": {"$lt": datetime(2026, 5, 1)}},
        ),
        (
            {"k": "created_at", "v": "now-1d", "o": "timediff_gte"},
            {"created_at": {"$gte": datetime(2026, 5, 14, 12, 0)}},
        ),
    ],
    ids=lambda value: value.get("o") if isinstance(value, dict) and "o" in value else "",
)
def test_each_operator_compiles_to_its_mongodb_filter(
    raw: dict[str, Any], compiled: dict[str, Any]
) -> None:
    assert condition(raw, "query.filter[0]", CTX) == compiled


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("now", NOW),
        ("now-1d", datetime(2026, 5, 14, 12, 0)),
        ("now/d", datetime(2026, 5, 15)),
        ("now+2h", datetime(2026, 5, 15, 14, 0)),
    ],
)
def test_time_differences_are_counted_from_the_calls_now(text: str, moment: datetime) -> None:
    assert resolve_timediff(text, NOW) == moment


def test_a_condition_on_a_field_no_job_has_names_its_place() -> None:
    with pytest.raises(ServiceError) as refused:
        condition({"k": "no_such", "v": 1, "o": "eq"}, "query.filter[2]", CTX)
    assert refused.value.params["key"].startswith("query.filter[2]")


def test_a_list_is_scoped_first_then_shortcuts_then_filters_and_pages_from_one() -> None:
    plan = compile_list(
        {
            "filter": [{"k": "status", "v": "SUCCESS", "o": "eq"}],
            "sort": [{"key": "created_at", "desc": True}],
            "page": {"start": 3, "limit": 10},
            "only": ["job_id"],
        },
        SCOPE,
        [{"data_source_id": "ds-1"}],
        CTX,
    )
    assert plan.filter == {
        "$and": [
            {"domain_id": "domain-1"},
            {"data_source_id": "ds-1"},
            {"status": {"$eq": "SUCCESS"}},
        ]
    }
    # _id breaks ties, so that pages never repeat or skip a job with an equal sort value.
    assert plan.sort == (("created_at", -1), ("_id", 1))
    assert (plan.skip, plan.limit, plan.projection) == (2, 10, {"job_id": 1})
    assert plan.stages is None and not plan.count_only


def test_a_stat_groups_sorts_and_pages_and_counts_the_same_rows() -> None:
    plan = compile_stat(
        {
            "aggregate": [
                {
                    "group": {
                        "keys": [{"key": "status", "name": "s"}],
                        "fields": [{"name": "n", "operator": "count"}],
                    }
                },
                {"sort": [{"key": "n", "desc": True}]},
            ],
            "page": {"start": 1, "limit": 5},
        },
        SCOPE,
        CTX,
    )
    rows = [
        {"$match": {"$and": SCOPE}},
        {"$group": {"_id": {"s": "$status"}, "n": {"$sum": 1}}},
        {"$sort": {"n": -1}},
    ]
    assert plan.pipeline == [*rows, {"$limit": 5}]
    assert plan.count_pipeline == [*rows, {"$count": "total_count"}]
    assert plan.shape([{"_id": {"s": "SUCCESS"}, "n": 3}]) == [{"s": "SUCCESS", "n": 3}]


def test_a_distinct_lists_each_present_value_once_in_order() -> None:
    plan = compile_stat({"distinct": "data_source_id"}, SCOPE, CTX)
    assert plan.distinct and plan.count_pipeline is None
    assert plan.pipeline == [
        {"$match": {"$and": SCOPE}},
        {"$match": {"data_source_id": {"$exists": True}}},
        {"$group": {"_id": "$data_source_id"}},
        {"$sort": {"_id": 1}},
    ]
    assert plan.shape([{"_id": "ds-1"}, {"_id": "ds-2"}]) == ["ds-1", "ds-2"]
