"""Seed files: JobInfo JSON lines, all or nothing, errors with their line number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spaceone_job import demo, seed
from spaceone_job.seed import SeedError
from spaceone_job.store.store import JobStore

from .conftest import NOW, REFERENCE_JOB

GOOD = {
    **REFERENCE_JOB,
    "resource_group": "DOMAIN",
    "workspace_id": "*",
    "synced_accounts": [{"account_id": "111122223333"}],
}


def write(tmp_path: Path, *lines: Any) -> Path:
    path = tmp_path / "seed.jsonl"
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def test_loads_jobs_with_defaults(store: JobStore, tmp_path: Path) -> None:
    minimal = {"domain_id": "domain-1", "data_source_id": "ds-1"}
    path = write(tmp_path, GOOD, "", minimal)
    assert seed.load(store, path, NOW) == 2
    stored = store.find_one({"job_id": GOOD["job_id"]})
    assert stored is not None and stored["finished_at"].isoformat() == "2022-04-02T09:19:47.715000"
    other = store.find_one({"domain_id": "domain-1"})
    assert other is not None
    assert (other["status"], other["created_at"], other["updated_at"]) == ("IN_PROGRESS", NOW, NOW)


BAD = {
    "bad JSON": ("{not json", "not valid JSON"),
    "missing domain_id": ({"data_source_id": "ds-1"}, "domain_id is required"),
    "missing data_source_id": ({"domain_id": "d"}, "data_source_id is required"),
    "unknown status": ({**GOOD, "job_id": "job-000000000001", "status": "DONE"}, "DONE"),
    "bad timestamp": (
        {**GOOD, "job_id": "job-000000000001", "created_at": "yesterday"},
        "created_at: 'yesterday' is not an ISO 8601 date-time",
    ),
    "camelCase field names": (
        {"domainId": "d", "dataSourceId": "ds"},
        "unknown field(s) dataSourceId, domainId; a line holds job_id, status,",
    ),
    "duplicate job_id": (GOOD, "repeats line 1"),
    "unknown field": (
        {**GOOD, "job_id": "job-000000000001", "owner": "me"},
        "unknown field(s) owner; a line holds job_id, status, options,",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_line_stops_the_load_and_nothing_is_loaded(
    store: JobStore, tmp_path: Path, case: str
) -> None:
    line, mentions = BAD[case]
    path = write(tmp_path, GOOD, line)
    with pytest.raises(SeedError) as raised:
        seed.load(store, path, NOW)
    assert f"{path}:2:" in str(raised.value) and mentions in str(raised.value)
    assert store.find_one({}) is None


def test_a_job_id_already_stored_is_refused(store: JobStore, tmp_path: Path) -> None:
    seed.load(store, write(tmp_path, GOOD), NOW)
    with pytest.raises(SeedError, match="already stored"):
        seed.load(store, write(tmp_path, {**GOOD, "job_id": "job-000000000009"}, GOOD), NOW)
    assert store.find_one({"job_id": "job-000000000009"}) is None


def test_the_demo_dataset_loads(store: JobStore, tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    path.write_text("".join(json.dumps(j) + "\n" for j in demo.jobs(NOW)))
    loaded = seed.load(store, path, NOW)
    assert 200 <= loaded <= 400
    statuses = {
        d["status"]
        for d in store.find({}, projection={"status": 1}, sort=[], skip=0, limit=0, timeout=5)
    }
    assert statuses == {"IN_PROGRESS", "SUCCESS", "FAILURE", "CANCELED", "TIMEOUT"}
