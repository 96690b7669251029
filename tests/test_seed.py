"""Seed files: JobInfo JSON lines, all or nothing, errors with their line number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spaceone_job import demo, seed
from spaceone_job.seed import SeedError
from spaceone_job.store.protocol import Store

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


def test_loads_jobs_with_defaults(store: Store, tasks: Store, tmp_path: Path) -> None:
    minimal = {"domain_id": "domain-1", "data_source_id": "ds-1"}
    path = write(tmp_path, GOOD, "", minimal)
    assert seed.load(store, tasks, path, NOW) == (2, 0)
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
    store: Store, tasks: Store, tmp_path: Path, case: str
) -> None:
    line, mentions = BAD[case]
    path = write(tmp_path, GOOD, line)
    with pytest.raises(SeedError) as raised:
        seed.load(store, tasks, path, NOW)
    assert f"{path}:2:" in str(raised.value) and mentions in str(raised.value)
    assert store.find_one({}) is None


def test_a_job_id_already_stored_is_refused(store: Store, tasks: Store, tmp_path: Path) -> None:
    seed.load(store, tasks, write(tmp_path, GOOD), NOW)
    with pytest.raises(SeedError, match="already stored"):
        seed.load(store, tasks, write(tmp_path, {**GOOD, "job_id": "job-000000000009"}, GOOD), NOW)
    assert store.find_one({"job_id": "job-000000000009"}) is None


def every(store: Store) -> list[dict[str, Any]]:
    return store.find({}, projection=None, sort=[], skip=0, limit=0, timeout=5)


def test_the_demo_dataset_loads_with_consistent_tasks(
    store: Store, tasks: Store, tmp_path: Path
) -> None:
    path = tmp_path / "demo.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in demo.lines(NOW)))
    jobs_loaded, tasks_loaded = seed.load(store, tasks, path, NOW)
    assert 200 <= jobs_loaded <= 400 and tasks_loaded > jobs_loaded
    by_job: dict[str, list[dict[str, Any]]] = {}
    for task in every(tasks):
        by_job.setdefault(task["job_id"], []).append(task)
    statuses = set()
    for job in every(store):
        statuses.add(job["status"])
        mine = by_job.get(job["job_id"], [])
        assert len(mine) == job["total_tasks"]
        unfinished = [t for t in mine if t["status"] in ("PENDING", "IN_PROGRESS")]
        assert len(unfinished) == job["remained_tasks"]
        if job["status"] == "IN_PROGRESS":
            assert {t["status"] for t in unfinished} >= {"IN_PROGRESS"}
        if job.get("error_code") == "ERROR_JOB_TASK":
            failed = [t for t in mine if t["status"] == "FAILURE"]
            assert len(failed) == 1 and failed[0]["error_message"]
    assert statuses == {"IN_PROGRESS", "SUCCESS", "FAILURE", "CANCELED", "TIMEOUT"}


TASK = {
    "job_task_id": "job-task-000000000001",
    "job_id": GOOD["job_id"],
    "status": "IN_PROGRESS",
    "domain_id": GOOD["domain_id"],
    "workspace_id": GOOD["workspace_id"],
    "data_source_id": GOOD["data_source_id"],
    "changed": {"start": "2021-01"},
    "created_count": 7,
}


def test_a_task_line_loads_beside_its_job_or_a_stored_one(
    store: Store, tasks: Store, tmp_path: Path
) -> None:
    assert seed.load(store, tasks, write(tmp_path, TASK, GOOD), NOW) == (1, 1)
    later = {**TASK, "job_task_id": "job-task-000000000002"}
    assert seed.load(store, tasks, write(tmp_path, later), NOW) == (0, 1)
    stored = tasks.find_one({"job_task_id": "job-task-000000000001"})
    assert stored is not None and stored["changed"]["start"] == "2021-01"


def test_a_task_line_takes_what_it_leaves_out_of_its_jobs_workspace_and_resource_group(
    store: Store, tasks: Store, tmp_path: Path
) -> None:
    line = {name: value for name, value in TASK.items() if name != "workspace_id"}
    seed.load(store, tasks, write(tmp_path, GOOD, line), NOW)
    stored = tasks.find_one({"job_task_id": TASK["job_task_id"]})
    assert stored is not None
    assert (stored["workspace_id"], stored["resource_group"]) == ("*", "DOMAIN")


@pytest.mark.parametrize(
    ("line", "mentions"),
    [
        ({**TASK, "job_id": "job-00000000dead"}, "its job job-00000000dead is neither here"),
        ({**TASK, "domain_id": "domain-other"}, "domain_id 'domain-other' is not its job's"),
        ({**TASK, "workspace_id": "ws-other"}, "workspace_id 'ws-other' is not its job's"),
        ({**TASK, "resource_group": "WORKSPACE"}, "resource_group 'WORKSPACE' is not its job's"),
        ({**TASK, "status": "TIMEOUT"}, "['status']"),
        ({**TASK, "total_tasks": 3}, "unknown field(s) total_tasks"),
    ],
)
def test_a_bad_task_line_names_its_line_and_loads_nothing(
    store: Store, tasks: Store, tmp_path: Path, line: dict[str, Any], mentions: str
) -> None:
    path = write(tmp_path, GOOD, line)
    with pytest.raises(SeedError) as raised:
        seed.load(store, tasks, path, NOW)
    assert f"{path}:2:" in str(raised.value) and mentions in str(raised.value)
    assert store.find_one({}) is None and tasks.find_one({}) is None
