"""The embedded store's shortcuts give mongomock's own answers (see spaceone_job/store/stages.py).

The embedded store evaluates leading ``$match`` stages on the stored documents, ``$group`` with
each expression evaluated once and keys sorted by a stand-in, and a list page and its count in
one scan. Here generated pipelines and list requests, over documents with null and missing
dates, array and document keys, mixed types and ties, are run both ways and must agree exactly,
failures included, and the stored documents must come out unchanged.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import mongomock
import pytest
from bson import ObjectId

from spaceone_job.store.documents import Document, QueryRefused, copied, without_object_ids
from spaceone_job.store.embedded import EmbeddedStore

CASES = 1200  # of each: pipelines and list requests
CHUNKS = 4
STATUSES = ["SUCCESS", "FAILURE", "CANCELED", "IN_PROGRESS"]
EPOCH = datetime(2026, 1, 1)


def documents(rng: random.Random) -> list[Document]:
    """Jobs-like documents with every awkward value a key or a sort can meet."""
    docs = []
    for i in range(40):
        doc: Document = {"_id": ObjectId(), "job_id": f"job-{i:03d}", "name": f"n{i % 7}"}
        maybe: list[tuple[str, Callable[[], Any]]] = [
            ("status", lambda: rng.choice([*STATUSES, None])),
            ("n", lambda: rng.choice([0, 1, 2, 2.5, -1, True, False, None, "2"])),
            (
                "created_at",
                lambda: rng.choice(
                    [
                        None,
                        EPOCH + timedelta(days=rng.randint(0, 120), milliseconds=rng.randint(0, 9)),
                    ]
                ),
            ),
            ("tags", lambda: rng.choice([[], ["a"], ["b", "a"], [1, "a"], [True], [1], "a", None])),
            ("nested", lambda: rng.choice([{"a": 1}, {"a": 1, "b": "x"}, {"b": "x", "a": 1}, {}])),
            ("flag", lambda: rng.choice([True, False, 1, 0])),
        ]
        for name, value in maybe:
            if rng.random() < 0.85:
                doc[name] = value()
        docs.append(doc)
    return docs


def a_filter(rng: random.Random) -> Document:
    clauses: list[Document] = [
        {"status": rng.choice(STATUSES)},
        {"status": {"$in": rng.sample(STATUSES, 2)}},
        {"n": {"$gte": rng.choice([0, 1, 2])}},
        {"created_at": {"$gte": EPOCH + timedelta(days=rng.randint(0, 120))}},
        {"created_at": None},
        {"tags": rng.choice(["a", "b", 1])},
        {
            "name": {
                "$regex": rng.choice(["^n[0-3]", "5$", "N1"]),
                "$options": rng.choice(["", "i"]),
            }
        },
        {"flag": {"$exists": rng.choice([True, False])}},
        {"nested.a": 1},
    ]
    chosen = rng.sample(clauses, rng.randint(0, 3))
    return {"$and": chosen} if chosen else {}


def date_key(path: str, rng: random.Random) -> Document:
    date_format = rng.choice(["%Y-%m", "%Y-%m-%d", "%Y"])
    date = {"$dateToString": {"format": date_format, "date": path}}
    return {"$cond": [{"$ifNull": [path, False]}, date, None]}


def a_group(rng: random.Random) -> Document:
    keys: dict[str, Any] = {
        "status": "$status",
        "n": "$n",
        "tags": "$tags",
        "nested": "$nested",
        "nested_a": "$nested.a",
        "month": date_key("$created_at", rng),
        "flag": "$flag",
    }
    shape = rng.random()
    if shape < 0.1:
        group_id: Any = None
    elif shape < 0.3:
        group_id = rng.choice(list(keys.values()))
    else:
        group_id = {name: keys[name] for name in rng.sample(list(keys), rng.randint(1, 3))}
    condition = {
        "$and": [
            {"$gte": ["$n", {"$literal": rng.choice([0, 1, 2])}]},
            {"$ne": ["$status", rng.choice(STATUSES)]},
        ]
    }
    fields: dict[str, Any] = {
        "count": {"$sum": 1},
        "sum_n": {"$sum": "$n"},
        "conditional": {"$sum": {"$cond": [condition, 1, 0]}},
        "either": {"$sum": {"$cond": [{"$or": [{"$eq": ["$flag", True]}, "$n"]}, 1, 0]}},
        "first": {"$first": "$name"},
        "last": {"$last": "$job_id"},
        "pushed": {"$push": "$n"},
        "dated": {"$push": {"job": "$job_id", "at": "$created_at"}},
        "rows": {"$push": "$$ROOT"},
        "statuses": {"$addToSet": "$status"},
        "low": {"$min": "$n"},
        "high": {"$max": "$created_at"},
        "mean": {"$avg": "$n"},
    }
    chosen = rng.sample(list(fields), rng.randint(1, 4))
    return {"$group": {"_id": group_id, **{name: fields[name] for name in chosen}}}


def a_stage(rng: random.Random) -> Document:
    kinds = ["match", "unwind", "group", "group", "sort", "skip", "limit", "project", "add"]
    kind = rng.choice(kinds)
    if kind == "match":
        return {"$match": a_filter(rng)}
    if kind == "unwind":
        return {"$unwind": "$tags"}
    if kind == "group":
        return a_group(rng)
    if kind == "sort":
        fields = rng.sample(["_id", "status", "n", "count", "job_id"], rng.randint(1, 2))
        return {"$sort": {name: rng.choice([1, -1]) for name in fields}}
    if kind == "add":  # a dotted name sets a field inside a nested document
        return {"$addFields": {rng.choice(["nested.c", "extra"]): "$n"}}
    if kind == "skip":
        return {"$skip": rng.randint(0, 5)}
    if kind == "limit":
        return {"$limit": rng.randint(1, 10)}
    return {"$project": {name: 1 for name in rng.sample(["status", "n", "tags", "count"], 2)}}


def a_pipeline(rng: random.Random) -> list[Document]:
    leading = [{"$match": a_filter(rng)} for _ in range(rng.choice([0, 1, 1, 2]))]
    return leading + [a_stage(rng) for _ in range(rng.randint(0, 4))]


def a_list_request(rng: random.Random) -> dict[str, Any]:
    paths = ["status", "n", "created_at", "name", "job_id", "tags", "nested.a", "flag"]
    return {
        "filter": a_filter(rng),
        "sort": [(path, rng.choice([1, -1])) for path in rng.sample(paths, rng.randint(0, 2))],
        "skip": rng.choice([0, 0, 1, 3, 50]),
        "limit": rng.choice([0, 1, 5, 20]),
        "projection": rng.choice([None, {"status": 1, "n": 1, "job_id": 1}]),
    }


def outcome(run: Callable[[list[Document]], Any], pipeline: list[Document]) -> Any:
    """What a run of ``pipeline`` gave: its answer, or that it was refused."""
    try:
        return run(pipeline)
    except (QueryRefused, *REFUSED) as exc:
        return ("refused", type(exc).__name__)


REFUSED = (TypeError, ValueError, AttributeError, ArithmeticError, NotImplementedError)


@pytest.fixture(autouse=True)
def mongodbs_empty_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference with the one difference the store makes on purpose: MongoDB's $group gives
    no group over no rows; mongomock gives one of zeros when the key is constant."""
    handlers = mongomock.aggregate._PIPELINE_HANDLERS
    mongomocks = handlers["$group"]
    monkeypatch.setitem(
        handlers, "$group", lambda rows, *rest: mongomocks(rows, *rest) if rows else []
    )


def both(seed: int) -> tuple[EmbeddedStore, Any, list[Document], random.Random]:
    rng = random.Random(seed)
    docs = documents(rng)
    database: Any = mongomock.MongoClient().db
    store = EmbeddedStore(database.job, "embedded")
    store.insert(copied(docs))
    reference: Any = mongomock.MongoClient().db.job
    reference.insert_many(copied(docs))
    return store, reference, docs, rng


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_pipelines_give_mongomocks_own_answers(chunk: int) -> None:
    store, reference, _, rng = both(chunk)
    before = copied(store._stored())
    compared = 0
    for _ in range(CASES // CHUNKS):
        pipeline = a_pipeline(rng)
        ours = outcome(lambda stages: store.aggregate(stages, timeout=30), pipeline)
        theirs = outcome(
            lambda stages: without_object_ids(list(reference.aggregate(stages))), pipeline
        )
        if isinstance(theirs, tuple):  # mongomock refused: ours must refuse too
            assert isinstance(ours, tuple), pipeline
        else:
            assert ours == theirs, pipeline
            compared += 1
    assert store._stored() == before  # no stage changed a stored document
    assert compared > CASES // CHUNKS * 0.8  # most pipelines are answers, not refusals


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_list_pages_and_counts_give_mongomocks_own_answers(chunk: int) -> None:
    store, reference, _, rng = both(100 + chunk)
    for _ in range(CASES // CHUNKS):
        request = a_list_request(rng)
        count_only = rng.random() < 0.1
        ours = store.page(
            request["filter"],
            projection=request["projection"],
            sort=request["sort"],
            skip=request["skip"],
            limit=request["limit"],
            count_only=count_only,
            timeout=30,
        )
        total = reference.count_documents(request["filter"])
        page = reference.find(
            request["filter"],
            request["projection"],
            sort=request["sort"] or None,
            skip=request["skip"],
            limit=request["limit"],
        )
        expected = [] if count_only else [without_id(doc) for doc in page]
        assert ours == (expected, total), request


def without_id(doc: Document) -> Document:
    return {key: value for key, value in doc.items() if key != "_id"}


def a_page(rng: random.Random) -> tuple[list[Document], int]:
    """The stages that page a pipeline list's rows, as ListPlan.page makes them; and its skip."""
    fields = rng.sample(["_id", "status", "n", "count", "job_id"], rng.randint(1, 2))
    skip = rng.choice([0, 0, 1, 3, 50])
    page: list[Document] = [
        {"$sort": {name: rng.choice([1, -1]) for name in fields}},
        *([{"$skip": skip}] if skip else []),
        {"$limit": rng.choice([1, 5, 20])},
    ]
    if rng.random() < 0.3:
        page.append({"$project": {"_id": 0, "status": 1, "n": 1}})
    return page, skip


def refused(answer: Any) -> bool:
    return isinstance(answer, tuple) and answer[:1] == ("refused",)


def store_page(
    store: EmbeddedStore, page: list[Document], skip: int, count_only: bool, rows: Any
) -> Any:
    return store.page_pipeline(rows, page, skip=skip, count_only=count_only, timeout=30)


def reference_page(
    reference: Any, page: list[Document], skip: int, count_only: bool, rows: Any
) -> Any:
    """What the MongoDB store does: a count pipeline, then the page's unless past the count."""
    counted = list(reference.aggregate([*rows, {"$count": "total_count"}]))
    total = counted[0]["total_count"] if counted else 0
    if count_only or skip >= total:
        return [], total
    return without_object_ids(list(reference.aggregate([*rows, *page]))), total


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_pipeline_pages_and_counts_give_mongomocks_own_answers(chunk: int) -> None:
    """A list in pipeline mode: its count and its page from one pass here."""
    store, reference, _, rng = both(200 + chunk)
    compared = 0
    for _ in range(CASES // CHUNKS):
        rows, (page, skip), count_only = a_pipeline(rng), a_page(rng), rng.random() < 0.1
        case = (page, skip, count_only)
        expected = outcome(functools.partial(reference_page, reference, *case), rows)
        ours = outcome(functools.partial(store_page, store, *case), rows)
        if refused(expected):
            assert refused(ours), rows
        else:
            assert ours == expected, (rows, page)
            compared += 1
    assert compared > CASES // CHUNKS * 0.8
