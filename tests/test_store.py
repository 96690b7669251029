"""The store on its own: uniqueness of job_id and one-job lookups, embedded or on MongoDB."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import mongomock
import mongomock.collection
import pymongo
import pytest
from pymongo.errors import OperationFailure

from spaceone_job import config
from spaceone_job.app import App
from spaceone_job.config import Settings
from spaceone_job.store.documents import DuplicateJobId
from spaceone_job.store.embedded import EmbeddedStore
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.protocol import Store

from .conftest import D1, D2, TEST_MONGODB_URI, job


def test_a_job_id_is_stored_once(store: Store, add: Callable[..., dict[str, Any]]) -> None:
    add(job_id="job-000000000001")
    with pytest.raises(DuplicateJobId):
        store.insert([job(job_id="job-000000000001", domain_id=D2)])
    with pytest.raises(DuplicateJobId):
        store.insert([job(job_id="job-000000000002"), job(job_id="job-000000000002")])
    assert store.count({"domain_id": D2}, timeout=5) == 0


def test_a_creates_request_key_is_stored_once_and_never_read_back_unasked(
    store: Store, add: Callable[..., dict[str, Any]]
) -> None:
    record = {"key": "k" * 32, "fingerprint": "f" * 32}
    add(job_id="job-000000000001", request=record)
    add(job_id="job-000000000002")
    add(job_id="job-000000000003")  # many jobs have no request: the index is sparse
    with pytest.raises(DuplicateJobId):
        store.insert([job(job_id="job-000000000004", request=dict(record))])
    assert store.count({}, timeout=5) == 3
    pinned = store.find_one({"request.key": "k" * 32, "domain_id": D1}, {"job_id": 1, "request": 1})
    assert pinned == {"job_id": "job-000000000001", "request": record}
    reads = [
        store.find_one({"job_id": "job-000000000001"}),
        *store.find({}, projection=None, sort=[], skip=0, limit=0, timeout=5),
        *store.page({}, projection=None, sort=[], skip=0, limit=0, count_only=False, timeout=5)[0],
        *store.aggregate([{"$match": {"domain_id": D1}}], timeout=5),
    ]
    assert reads and all(doc is not None and "request" not in doc for doc in reads)
    assert store.delete_many({"job_id": "job-000000000001"}, timeout=5) == 1
    store.insert([job(job_id="job-000000000004", request=dict(record))])  # the key is free again


def test_the_mongodb_store_reports_a_duplicate_among_many_as_a_duplicate() -> None:
    # insert_many answers a bulk write error whose write errors hold the duplicate key (11000).
    mongo = MongoStore(mongomock.MongoClient().db.job, "MongoDB (mongomock)")
    mongo.ensure_indexes()
    mongo.insert([job(job_id="job-000000000001")])
    with pytest.raises(DuplicateJobId):
        mongo.insert([job(job_id="job-000000000002"), job(job_id="job-000000000001")])


def test_lookups_of_one_job_apply_the_whole_filter(
    store: Store, add: Callable[..., dict[str, Any]]
) -> None:
    add(job_id="job-000000000001", status="SUCCESS")
    pinned = {"$and": [{"domain_id": D1}, {"job_id": "job-000000000001"}]}
    found = store.find_one(pinned, timeout=5)
    assert found is not None and found["status"] == "SUCCESS" and "_id" not in found
    assert store.find_one({"$and": [{"domain_id": D2}, {"job_id": "job-000000000001"}]}) is None
    assert store.find_one({"job_id": "job-000000000009"}) is None
    moved = store.update_one(
        {"job_id": "job-000000000001", "status": "IN_PROGRESS"}, {"$set": {"status": "CANCELED"}}
    )
    assert moved is None, "the status condition is part of the match"
    moved = store.update_one(
        {"job_id": "job-000000000001", "status": "SUCCESS"}, {"$set": {"error_code": "X"}}
    )
    assert moved is not None and moved["error_code"] == "X"


@pytest.mark.parametrize(
    ("job_id", "clause", "found"),
    [
        ("job-000000000001", {"workspace_id": "ws-1"}, True),
        ("job-000000000001", {"workspace_id": "ws-2"}, False),
        ("job-000000000002", {"workspace_id": "ws-1"}, False),  # stored null
        ("job-000000000003", {"workspace_id": "ws-1"}, False),  # no such field
        ("job-000000000004", {"workspace_id": "ws-2"}, True),  # an array matches by element
        ("job-000000000005", {"data_source_id": "42"}, False),  # 42 is not "42"
        ("job-000000000002", {"workspace_id": None}, True),
        ("job-000000000003", {"workspace_id": None}, True),  # null matches a missing field
        ("job-000000000001", {"options.sync_mode": "SCHEDULED"}, True),
        ("job-000000000001", {"workspace_id": {"$in": ["ws-1"]}}, True),
    ],
)
def test_lookups_of_one_job_match_as_mongodb_does(
    store: Store, job_id: str, clause: dict[str, Any], found: bool
) -> None:
    third = job(job_id="job-000000000003")
    del third["workspace_id"]
    # As a hand-edited or older database may hold them.
    store.insert(
        [
            job(job_id="job-000000000001", workspace_id="ws-1"),
            job(job_id="job-000000000002", workspace_id=None),
            third,
            {**job(job_id="job-000000000004"), "workspace_id": ["ws-1", "ws-2"]},
            {**job(job_id="job-000000000005"), "data_source_id": 42},
        ]
    )
    pinned = {"$and": [{"domain_id": D1}, {"job_id": job_id}, clause]}
    assert (store.find_one(pinned, timeout=5) is not None) is found


@pytest.mark.only_on("embedded", why="the embedded store's _id lookup; MongoDB has its _id index")
def test_the_embedded_store_updates_one_job_without_scanning_the_others(
    store: Store, add: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(300):
        add(job_id=f"job-{i:012x}", status="IN_PROGRESS")
    checked: list[Any] = []
    original = mongomock.collection.filter_applies

    def counted(filter: Any, document: Any) -> Any:
        checked.append(document)
        return original(filter, document)

    monkeypatch.setattr(mongomock.collection, "filter_applies", counted)
    target = {"$and": [{"domain_id": D1}, {"job_id": "job-000000000007"}], "status": "IN_PROGRESS"}
    moved = store.update_one(target, {"$set": {"status": "CANCELED"}})
    assert moved is not None and moved["job_id"] == "job-000000000007"
    assert len(checked) < 10, "a scan of the collection"
    canceled = store.count({"status": "CANCELED"}, timeout=5)
    assert canceled == 1  # that job, and only that one, changed
    assert store.update_one(target, {"$set": {"status": "CANCELED"}}) is None


SORTS = [
    [("created_at", -1), ("_id", -1)],
    [("finished_at", 1), ("_id", 1)],
    [("options.sync_mode", -1), ("total_tasks", 1), ("_id", 1)],
    [("options.mixed", 1), ("_id", 1)],
    [("changed.start", 1), ("_id", 1)],  # inside an array: mongomock's own path
    [("synced_accounts", -1), ("_id", 1)],
]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: s[0][0])
@pytest.mark.parametrize(("skip", "limit"), [(0, 0), (2, 3), (9, 5)])
@pytest.mark.parametrize("projection", [None, {"job_id": 1, "options.sync_mode": 1}])
@pytest.mark.only_on("embedded", why="compares the embedded store's paging with mongomock's")
def test_embedded_pages_match_mongomocks_own(
    store: Store,
    add: Callable[..., dict[str, Any]],
    sort: list[tuple[str, int]],
    skip: int,
    limit: int,
    projection: dict[str, int] | None,
) -> None:
    mixed: list[Any] = [None, 3, 2.5, "b", "a", True, datetime(2024, 1, 1)]
    for i in range(12):
        add(
            job_id=f"job-{i:012x}",
            created_at=datetime(2024, 1, 1 + i % 4),
            finished_at=None if i % 3 else datetime(2024, 2, i + 1),
            total_tasks=i % 5,
            options={"sync_mode": "MANUAL" if i % 2 else "SCHEDULED", "mixed": mixed[i % 7]},
            changed=[{"start": f"2024-{i % 3 + 1:02d}"}],
            synced_accounts=[{"account_id": str(i % 4)}],
        )
    args: dict[str, Any] = {
        "projection": projection,
        "sort": sort,
        "skip": skip,
        "limit": limit,
        "timeout": 5,
    }
    assert isinstance(store, EmbeddedStore)
    ours = store.find({"domain_id": D1}, **args)
    theirs = store._driver.find({"domain_id": D1}, **args)  # mongomock's own, as MongoDB's
    assert ours == theirs


# What upstream's MongoEngine model has created in an existing database.
UPSTREAM_INDEXES = [
    ([("job_id", 1)], {"unique": True}),
    *[
        ([(name, 1)], {})
        for name in (
            "status",
            "resource_group",
            "data_source_id",
            "workspace_id",
            "domain_id",
            "created_at",
        )
    ],
]


@pytest.fixture
def upstream_collection() -> Iterator[Any]:
    """A collection with upstream's indexes (on the test MongoDB when one is named)."""
    client: Any = (
        pymongo.MongoClient(TEST_MONGODB_URI) if TEST_MONGODB_URI else mongomock.MongoClient()
    )
    database = f"spaceone-job-test-{uuid.uuid4().hex[:8]}"
    collection = client[database]["job"]
    for keys, options in UPSTREAM_INDEXES:
        collection.create_index(keys, **options)
    yield collection
    client.drop_database(database)
    client.close()


def test_an_upstream_database_keeps_its_indexes_and_gets_ours(upstream_collection: Any) -> None:
    plain = MongoStore(upstream_collection, "upstream")
    created = plain.ensure_indexes()
    assert set(created) == {spec["name"] for spec in plain.indexes if "name" in spec}
    keys = [tuple(index["key"].items()) for index in upstream_collection.list_indexes()]
    assert keys.count((("job_id", 1),)) == 1, "upstream's unique job_id index counts as ours"
    assert plain.ensure_indexes() == [], "a second start creates nothing"


class Conflicting:
    """A collection that refuses every new index, as MongoDB does on an options conflict."""

    def list_indexes(self) -> list[dict[str, Any]]:
        return [{"key": {"_id": 1}, "name": "_id_"}]

    def create_index(self, keys: Any, **options: Any) -> str:
        raise OperationFailure("Index already exists with a different name", code=85)


def test_an_index_conflict_is_logged_and_the_start_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="spaceone_job.store.mongo")
    conflicting = MongoStore(Conflicting(), "conflicting")
    assert conflicting.ensure_indexes() == []
    assert len(caplog.records) == len(conflicting.indexes)
    assert "different name" in caplog.records[0].getMessage()


def test_index_creation_can_be_turned_off(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    called: list[bool] = []

    def ensure_indexes() -> list[str]:
        called.append(True)
        return []

    monkeypatch.setattr(store, "ensure_indexes", ensure_indexes)
    settings = config.from_sources({}, {"SPACEONE_JOB_CREATE_INDEXES": "false"})
    assert settings.create_indexes is False
    App(dataclasses.replace(settings, state_dir=str(tmp_path)), store=store).prepare_store()
    assert called == []
    App(Settings(state_dir=str(tmp_path)), store=store).prepare_store()
    assert called == [True]
