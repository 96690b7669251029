"""The store on its own: uniqueness of job_id and one-job lookups, embedded or on MongoDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from spaceone_job.store.store import DuplicateJobId, JobStore

from .conftest import D1, D2, job


def test_a_job_id_is_stored_once(store: JobStore, add: Callable[..., dict[str, Any]]) -> None:
    add(job_id="job-000000000001")
    with pytest.raises(DuplicateJobId):
        store.insert([job(job_id="job-000000000001", domain_id=D2)])
    with pytest.raises(DuplicateJobId):
        store.insert([job(job_id="job-000000000002"), job(job_id="job-000000000002")])
    assert store.count({"domain_id": D2}, timeout=5) == 0


def test_lookups_of_one_job_apply_the_whole_filter(
    store: JobStore, add: Callable[..., dict[str, Any]]
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
def test_embedded_pages_match_mongomocks_own(
    store: JobStore,
    add: Callable[..., dict[str, Any]],
    sort: list[tuple[str, int]],
    skip: int,
    limit: int,
    projection: dict[str, int] | None,
) -> None:
    if not store.embedded:
        pytest.skip("compares the embedded store's paging with mongomock's")
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
    ours = store.find({"domain_id": D1}, **args)
    theirs = JobStore.find(store, {"domain_id": D1}, **args)
    assert ours == theirs
