"""The store on its own: uniqueness of job_id and one-job lookups, embedded or on MongoDB."""

from __future__ import annotations

from collections.abc import Callable
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
