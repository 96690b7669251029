"""Parity, generated: valid list and stat requests answered as an independent plain-Python
evaluation of upstream's semantics (with the contract's Decisions) over the same jobs.

The evaluation here shares no code with the service: filters, sorting, paging, grouping, date
formats, projections and rendering are written again, from the contract, in plain Python.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spaceone.api.cost_analysis.v1 import job_pb2

from .conftest import D1, D2, WS1, WS2, InProcess, Token

# Per store: the suite runs each test on both stores (see conftest).
EXAMPLES = 3000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 200
STATUSES = ("IN_PROGRESS", "SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")
SOURCES = ("ds-000000000001", "ds-000000000002", "ds-000000000003")
WORKSPACES = (WS1, WS2, "*")
START = datetime(2025, 1, 1)


def _seed_documents() -> list[dict[str, Any]]:
    rng = random.Random(12)
    docs = []
    for i in range(36):
        status = STATUSES[i % 5]
        # Unique times, with microseconds that storage cuts to milliseconds.
        created = START + timedelta(days=rng.randint(0, 200), seconds=i, microseconds=i * 1013)
        changed = [
            {"start": created.strftime("%Y-%m"), **({"filter": {"k": str(i)}} if i % 3 else {})}
            for _ in range(i % 3)
        ]
        docs.append(
            {
                "job_id": f"job-{i:012x}",
                "status": status,
                "domain_id": D1,
                "workspace_id": WORKSPACES[i % 3],
                "data_source_id": SOURCES[i % 4 % 3],
                "total_tasks": rng.randint(0, 5),
                "remained_tasks": rng.randint(0, 2),
                "error_code": "ERROR_JOB_TASK" if status == "FAILURE" else None,
                "options": {"sync_mode": ("SCHEDULED", "MANUAL")[i % 2]},
                "created_at": created,
                "updated_at": created + timedelta(minutes=5),
                "finished_at": None if status == "IN_PROGRESS" else created + timedelta(hours=1),
                "changed": changed,
                "synced_accounts": [{"account_id": f"acct-{a}"} for a in range(i % 4)],
            }
        )
    return docs


SEED = _seed_documents()


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as MongoDB stores it: datetimes at millisecond precision."""
    return {key: ms(value) if isinstance(value, datetime) else value for key, value in doc.items()}


def ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


JOBS = [stored(doc) for doc in SEED]


@pytest.fixture
def seeded(add: Callable[..., dict[str, Any]]) -> None:
    for doc in SEED:
        add(**doc)
    add(job_id="job-ffff00000001", domain_id=D2)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# --- conditions --------------------------------------------------------------------------------

TEXT_FIELDS = {
    "status": STATUSES,
    "data_source_id": SOURCES,
    "workspace_id": WORKSPACES,
    "error_code": ("ERROR_JOB_TASK",),
    "job_id": tuple(d["job_id"] for d in SEED[:6]),
    "options.sync_mode": ("SCHEDULED", "MANUAL"),
}
INT_FIELDS = ("total_tasks", "remained_tasks")
DATE_FIELDS = ("created_at", "finished_at")
moments = st.sampled_from(SEED).flatmap(
    lambda d: st.integers(-2000, 2000).map(lambda us: d["created_at"] + timedelta(microseconds=us))
)


# Fields whose values are one of a set: exact operators take only those (others are refused).
CHOICE_FIELDS = ("status",)


def _text_values(field: str, exact: bool) -> st.SearchStrategy[Any]:
    choices = TEXT_FIELDS[field]
    if exact and field in CHOICE_FIELDS:
        return st.sampled_from(choices)
    return st.one_of(
        st.sampled_from(choices),
        st.sampled_from(choices).map(str.lower),
        st.sampled_from(choices).map(lambda c: c[2:6]),
    )


def _text_conditions(field: str) -> st.SearchStrategy[tuple[str, str, Any]]:
    return st.one_of(
        st.tuples(st.just(field), st.sampled_from(["eq", "not"]), _text_values(field, True)),
        st.tuples(
            st.just(field), st.sampled_from(["contain", "not_contain"]), _text_values(field, False)
        ),
        st.tuples(
            st.just(field),
            st.sampled_from(["in", "not_in"]),
            st.lists(_text_values(field, True), max_size=3),
        ),
        st.tuples(
            st.just(field),
            st.sampled_from(["contain_in", "not_contain_in"]),
            st.lists(_text_values(field, False), max_size=3),
        ),
    )


text_conditions = st.sampled_from(sorted(TEXT_FIELDS)).flatmap(_text_conditions)
int_conditions = st.one_of(
    st.tuples(
        st.sampled_from(INT_FIELDS),
        st.sampled_from(["eq", "not", "gt", "gte", "lt", "lte"]),
        st.one_of(st.integers(-1, 6), st.sampled_from([1.5, 2.5])),
    ),
    st.tuples(
        st.sampled_from(INT_FIELDS), st.sampled_from(["in", "not_in"]), st.lists(st.integers(0, 5))
    ),
)
date_conditions = st.tuples(
    st.sampled_from(DATE_FIELDS),
    st.sampled_from(["datetime_gt", "datetime_gte", "datetime_lt", "datetime_lte"]),
    moments.map(iso),
)
null_conditions = st.tuples(
    st.sampled_from(["error_code", "finished_at"]), st.sampled_from(["eq", "not"]), st.none()
)
conditions = st.one_of(text_conditions, int_conditions, date_conditions, null_conditions)


def value_at(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _contains(value: Any, word: str) -> bool:
    return isinstance(value, str) and word.lower() in value.lower()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(a: Any, b: Any, compare: Callable[[Any, Any], bool]) -> bool:
    """MongoDB compares within one type class only."""
    if _number(a) and _number(b):
        return compare(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return compare(a, b)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return compare(a, b)
    return False


def holds(doc: dict[str, Any], condition: tuple[str, str, Any]) -> bool:
    field, operator, value = condition
    have = value_at(doc, field)
    if operator.startswith("datetime_"):
        value, operator = ms(datetime.fromisoformat(value)), operator.removeprefix("datetime_")
    table: dict[str, Callable[[], bool]] = {
        "eq": lambda: have == value,
        "not": lambda: have != value,
        "in": lambda: have in value,
        "not_in": lambda: have not in value,
        "gt": lambda: _ordered(have, value, lambda a, b: a > b),
        "gte": lambda: _ordered(have, value, lambda a, b: a >= b),
        "lt": lambda: _ordered(have, value, lambda a, b: a < b),
        "lte": lambda: _ordered(have, value, lambda a, b: a <= b),
        "contain": lambda: _contains(have, value),
        "not_contain": lambda: not _contains(have, value),
        "contain_in": lambda: any(_contains(have, v) for v in value),
        "not_contain_in": lambda: not any(_contains(have, v) for v in value),
    }
    return table[operator]()


def as_filter(condition: tuple[str, str, Any]) -> dict[str, Any]:
    key, operator, value = condition
    return {"k": key, "o": operator, "v": value}


# --- list -------------------------------------------------------------------------------------

SORT_KEYS = ("job_id", "status", "total_tasks", "created_at", "finished_at", "data_source_id")
list_requests = st.fixed_dictionaries(
    {"filter": st.lists(conditions, max_size=3)},
    optional={
        "filter_or": st.lists(conditions, min_size=1, max_size=2),
        "sort": st.lists(
            st.tuples(st.sampled_from(SORT_KEYS), st.booleans()), min_size=1, max_size=2
        ),
        "page": st.fixed_dictionaries(
            {}, optional={"start": st.integers(1, 40), "limit": st.integers(0, 12)}
        ),
        "keyword": st.lists(st.sampled_from(["0001", "0a", "00b", "zz", "JOB-0000000000"])).map(
            " ".join
        ),
        "count_only": st.booleans(),
        "minimal": st.booleans(),
        "only": st.lists(st.sampled_from(["status", "changed", "total_tasks"])).map(
            lambda names: ["job_id", *names]
        ),
        "status": st.sampled_from(STATUSES),
        "data_source_id": st.sampled_from(SOURCES),
        "workspace_id": st.sampled_from([WS1, WS2]),
    },
)


def _bson_key(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)


def _by(key: str) -> Callable[[tuple[int, dict[str, Any]]], tuple[int, Any]]:
    return lambda pair: _bson_key(pair[1][key])


def expected_list(request: dict[str, Any]) -> tuple[list[str], int]:
    docs = [(i, d) for i, d in enumerate(JOBS)]
    docs = [
        (i, d)
        for i, d in docs
        if all(holds(d, c) for c in request["filter"])
        and (not request.get("filter_or") or any(holds(d, c) for c in request["filter_or"]))
        and all(request.get(k) in (None, d[k]) for k in ("status", "data_source_id"))
        and (
            request.get("workspace_id") is None
            or d["workspace_id"] in (request["workspace_id"], "*")
        )
        and (
            not request.get("keyword", "").split()
            or any(_contains(d["job_id"], w) for w in request["keyword"].split())
        )
    ]
    sort = request.get("sort")
    if sort:
        docs.sort(key=lambda pair: pair[0])  # ties: _id ascending (insertion order)
        for key, desc in reversed(sort):
            docs.sort(key=_by(key), reverse=desc)
    else:
        docs.sort(key=lambda pair: (pair[1]["created_at"], pair[0]), reverse=True)
    total = len(docs)
    page = request.get("page", {})
    limit = page.get("limit", 0)
    skip = page.get("start", 1) - 1 if limit else 0
    window = docs[skip : skip + limit] if limit else docs
    return ([] if request.get("count_only") else [d["job_id"] for _, d in window]), total


def expected_changed(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"start": c["start"], "filter": c.get("filter", {})} for c in doc["changed"]]


def list_message(request: dict[str, Any]) -> job_pb2.JobQuery:
    query: dict[str, Any] = {"filter": [as_filter(c) for c in request["filter"]]}
    if "filter_or" in request:
        query["filter_or"] = [as_filter(c) for c in request["filter_or"]]
    if "sort" in request:
        query["sort"] = [{"key": k, "desc": d} for k, d in request["sort"]]
    for name in ("page", "keyword", "count_only", "minimal", "only"):
        if name in request:
            query[name] = request[name]
    shortcuts: dict[str, Any] = {
        k: request[k] for k in ("status", "data_source_id", "workspace_id") if k in request
    }
    return json_format.ParseDict({"query": query, **shortcuts}, job_pb2.JobQuery())


def hypothesis_settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.mark.usefixtures("seeded")
@hypothesis_settings()
@given(request=list_requests)
def test_list_answers_as_upstream(api: InProcess, token: Token, request: dict[str, Any]) -> None:
    answer = api.call("list", list_message(request), token())
    assert answer.code is grpc.StatusCode.OK, answer.details
    ids, total = expected_list(request)
    assert answer.response.total_count == total
    assert [r.job_id for r in answer.response.results] == ids
    by_id = {d["job_id"]: d for d in JOBS}
    for info in answer.response.results:
        rendered = json_format.MessageToDict(info, preserving_proto_field_name=True)
        shown = set(request.get("only", [])) | (
            {"job_id", "status", "data_source_id", "workspace_id", "created_at"}
            if request.get("minimal")
            else set()
        )
        if not shown:
            assert rendered.get("changed", []) == expected_changed(by_id[info.job_id])
        elif "only" in request:
            assert set(rendered) <= shown | {"total_tasks", "remained_tasks"}


# --- stat -------------------------------------------------------------------------------------

GROUP_KEYS = ("status", "data_source_id", "workspace_id", "error_code")
DATE_FORMATS = {
    "year": lambda d: d.year,
    "month": lambda d: d.month,
    "day": lambda d: d.day,
    "%Y-%m": lambda d: d.strftime("%Y-%m"),
    "%Y-%m-%d %H": lambda d: d.strftime("%Y-%m-%d %H"),
}
FIELD_OPERATORS = ("count", "sum", "average", "max", "min", "push", "add_to_set")
stat_requests = st.fixed_dictionaries(
    {
        "keys": st.lists(st.sampled_from(GROUP_KEYS), min_size=1, max_size=2, unique=True),
        "fields": st.lists(st.sampled_from(FIELD_OPERATORS), min_size=1, max_size=3, unique=True),
        "filter": st.lists(conditions, max_size=2),
    },
    optional={
        "date": st.tuples(st.sampled_from(DATE_FIELDS), st.sampled_from(sorted(DATE_FORMATS))),
        "count_when": st.sampled_from(STATUSES),
        "project": st.booleans(),
        "limit": st.integers(1, 6),
        "page": st.fixed_dictionaries(
            {"limit": st.integers(1, 8)}, optional={"start": st.integers(1, 5)}
        ),
    },
)


def _field(operator: str) -> dict[str, Any]:
    key = "status" if operator == "add_to_set" else "total_tasks"
    return {"key": key, "name": f"f_{operator}", "operator": operator}


def stat_query(request: dict[str, Any]) -> dict[str, Any]:
    keys = [{"key": k, "name": k} for k in request["keys"]]
    if "date" in request:
        field, date_format = request["date"]
        keys.append({"key": field, "name": "when", "date_format": date_format})
    fields = [_field(op) for op in request["fields"]]
    if "count_when" in request and "count" in request["fields"]:
        fields[request["fields"].index("count")]["conditions"] = [
            {"key": "status", "operator": "eq", "value": request["count_when"]}
        ]
    stages: list[dict[str, Any]] = [{"group": {"keys": keys, "fields": fields}}]
    names = [k["name"] for k in keys]
    if request.get("project") and "push" in request["fields"]:
        stages.append(
            {
                "project": {
                    "fields": [
                        {"key": "f_push", "name": "pushed_sum", "operator": "sum"},
                        {"key": "f_push", "name": "pushed_size", "operator": "size"},
                    ]
                }
            }
        )
    stages.append({"sort": [{"key": n} for n in names]})
    if "limit" in request:
        stages.append({"limit": request["limit"]})
    query: dict[str, Any] = {
        "aggregate": stages,
        "filter": [as_filter(c) for c in request["filter"]],
    }
    if "page" in request:
        query["page"] = request["page"]
    return query


def _accumulate(operator: str, docs: list[dict[str, Any]], when: str | None) -> Any:
    tasks = [d["total_tasks"] for d in docs]
    table: dict[str, Callable[[], Any]] = {
        "count": lambda: sum(1 for d in docs if when is None or d["status"] == when),
        "sum": lambda: sum(tasks),
        "average": lambda: sum(tasks) / len(tasks),
        "max": lambda: max(tasks),
        "min": lambda: min(tasks),
        "push": lambda: sorted(tasks),
        "add_to_set": lambda: sorted({d["status"] for d in docs}),
    }
    return table[operator]()


def expected_stat(request: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    docs = [d for d in JOBS if all(holds(d, c) for c in request["filter"])]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        key = [doc[k] for k in request["keys"]]
        if "date" in request:
            field, date_format = request["date"]
            key.append(None if doc[field] is None else DATE_FORMATS[date_format](doc[field]))
        groups[tuple(key)].append(doc)
    names = [*request["keys"], *(["when"] if "date" in request else [])]
    rows = []
    for values, members in sorted(groups.items(), key=lambda kv: [_bson_key(v) for v in kv[0]]):
        row = dict(zip(names, values, strict=True))
        fields = {
            f"f_{op}": _accumulate(
                op, members, request.get("count_when") if op == "count" else None
            )
            for op in request["fields"]
        }
        if request.get("project") and "push" in request["fields"]:
            fields = {"pushed_sum": sum(fields["f_push"]), "pushed_size": len(fields["f_push"])}
        rows.append({**row, **fields})
    if "limit" in request:
        rows = rows[: request["limit"]]
    page = request.get("page")
    if page is None:
        return rows, None
    skip = page.get("start", 1) - 1
    return rows[skip : skip + page["limit"]], len(rows)


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, list):
            value = sorted(value, key=repr)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = round(float(value), 9)
        out[key] = value
    return out


@pytest.mark.usefixtures("seeded")
@hypothesis_settings()
@given(request=stat_requests)
def test_stat_answers_as_upstream(api: InProcess, token: Token, request: dict[str, Any]) -> None:
    message = json_format.ParseDict({"query": stat_query(request)}, job_pb2.JobStatQuery())
    answer = api.call("stat", message, token())
    assert answer.code is grpc.StatusCode.OK, answer.details
    got = json_format.MessageToDict(answer.response)
    rows, total = expected_stat(request)
    assert [_comparable(r) for r in got["results"]] == [_comparable(r) for r in rows]
    assert got.get("total_count") == total


distinct_keys = st.sampled_from(["status", "error_code", "data_source_id", "changed.start"])


@pytest.mark.usefixtures("seeded")
@hypothesis_settings()
@given(key=distinct_keys, filters=st.lists(conditions, max_size=1))
def test_distinct_answers_as_mongodb(
    api: InProcess, token: Token, key: str, filters: list[Any]
) -> None:
    query = {"distinct": key, "filter": [as_filter(c) for c in filters]}
    message = json_format.ParseDict({"query": query}, job_pb2.JobStatQuery())
    answer = api.call("stat", message, token())
    assert answer.code is grpc.StatusCode.OK, answer.details
    kept = [d for d in JOBS if all(holds(d, c) for c in filters)]
    values: set[Any] = set()
    for doc in kept:
        values |= set(c["start"] for c in doc["changed"]) if key == "changed.start" else {doc[key]}
    assert list(json_format.MessageToDict(answer.response)["results"]) == sorted(
        values, key=_bson_key
    )
