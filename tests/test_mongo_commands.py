"""What MongoDB receives, pinned: the commands the MongoDB store sends for a representative set
of get, list, stat, cancel, producer and sweeper requests, as they arrive on the wire.

mockupdb receives each command and :class:`~tests.support.wire_server.Backing` answers it from the
documents it holds, so each request runs its whole course (a producer's create, start, report
and finish; a cancel that finds its job). The commands are compared with
``tests/mongodb_commands.json``; a change to any filter, pipeline, projection, sort or option
shows here as a difference to read, and the file is rewritten with
``SPACEONE_JOB_PIN_COMMANDS=write``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from mockupdb import Matcher

from spaceone_job import auth
from spaceone_job.auth import Caller
from spaceone_job.kinds import TASK
from spaceone_job.lifecycle import Lifecycle
from spaceone_job.producer import Producers
from spaceone_job.query.filters import Limits
from spaceone_job.service import JobService, ReadService

from .conftest import D1, NOW, WS1
from .support.wire_server import Backing, Wire

PINNED = Path(__file__).with_name("mongodb_commands.json")
# What changes from run to run, or belongs to the driver rather than to the query.
DRIVER_FIELDS = ("lsid", "txnNumber", "$db", "$readPreference", "$clusterTime")
RANDOM_IDS = re.compile(r"\b(job|task)-[0-9a-f]{12}\b")
# A request's key and fingerprint are hashes that take in the random ids.
HASHES = re.compile(r"^[0-9a-f]{32}$")
ADMIN = Caller(D1, None, auth.DOMAIN_ADMIN)
OWNER = Caller(D1, WS1, auth.WORKSPACE_OWNER)
WORKER = Caller(D1, None, auth.DOMAIN_ADMIN, system=True)


def normalised(value: Any) -> Any:
    """A command as JSON, with what varies between runs named instead of shown."""
    if isinstance(value, dict):
        return {
            key: "<set>" if key == "maxTimeMS" else normalised(item)
            for key, item in value.items()
            if key not in DRIVER_FIELDS
        }
    if isinstance(value, list | tuple):
        return [normalised(item) for item in value]
    if isinstance(value, ObjectId):
        return "<ObjectId>"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and HASHES.match(value):
        return "<hash>"
    if isinstance(value, str):
        return RANDOM_IDS.sub(lambda m: f"{m.group(1)}-<id>", value)
    return value


@pytest.fixture
def backed() -> Iterator[tuple[Wire, Backing]]:
    wire, backing = Wire(), Backing()
    wire.server.autoresponds(Matcher(), backing)
    yield wire, backing
    wire.close()


def requests(wire: Wire) -> dict[str, Callable[[], Any]]:
    """The representative requests, by name, in the order they run."""
    jobs = wire.store
    tasks = jobs.sibling(TASK)
    lifecycle = Lifecycle(jobs, tasks, lambda: NOW)
    service = JobService(jobs, Limits(), 2000, lambda: NOW, on_cancel=lifecycle.cancel_tasks)
    task_service = ReadService(tasks, Limits(), 2000, lambda: NOW)
    producers = Producers(lifecycle)
    created: dict[str, Any] = {}

    def create() -> None:
        job = producers.create_job(
            WORKER,
            {
                "request_id": "nightly-1",
                "data_source_id": "ds-000000000001",
                "workspace_id": WS1,
                "tasks": [{"options": {"part": i}} for i in range(2)],
            },
        )
        created["job"] = job.job
        created["tasks"] = job.tasks

    def run_tasks() -> None:
        first, second = (task["job_task_id"] for task in created["tasks"])
        producers.start_task(WORKER, {"job_task_id": first, "request_id": "s1"})
        producers.report_progress(WORKER, {"job_task_id": first, "request_id": "r1"})
        producers.finish_task(WORKER, {"job_task_id": first, "request_id": "f1"})
        producers.start_task(WORKER, {"job_task_id": second, "request_id": "s2"})
        producers.finish_task(
            WORKER, {"job_task_id": second, "request_id": "f2", "error_code": "ERROR_PLUGIN"}
        )

    def job_id() -> str:
        found: str = created["job"]["job_id"]
        return found

    return {
        "create_job": create,
        "a replayed create_job": create,
        "start, report and finish tasks": run_tasks,
        "get": lambda: service.get(OWNER, job_id()),
        "list with shortcuts, a filter, sort and page": lambda: service.list_documents(
            OWNER,
            {
                "data_source_id": "ds-000000000001",
                "status": "FAILURE",
                "query": {
                    "filter": [{"k": "total_tasks", "v": 1, "o": "gte"}],
                    "filter_or": [{"k": "error_code", "v": "PLUGIN", "o": "contain"}],
                    "sort": [{"key": "created_at", "desc": True}],
                    "page": {"start": 1, "limit": 15},
                    "only": ["job_id", "status"],
                },
            },
        ),
        "list counting only, regex": lambda: service.list_documents(
            ADMIN,
            {
                "query": {
                    "filter": [{"k": "job_id", "v": "^job-", "o": "regex"}],
                    "count_only": True,
                }
            },
        ),
        "list with unwind": lambda: service.list_documents(
            ADMIN, {"query": {"unwind": {"path": "changed"}, "page": {"limit": 5}}}
        ),
        "stat: group, sort, page": lambda: service.stat(
            ADMIN,
            {
                "aggregate": [
                    {
                        "group": {
                            "keys": [
                                {"key": "status", "name": "status"},
                                {"key": "created_at", "name": "day", "date_format": "%Y-%m-%d"},
                            ],
                            "fields": [{"name": "n", "operator": "count"}],
                        }
                    },
                    {"sort": [{"key": "n", "desc": True}]},
                ],
                "page": {"start": 1, "limit": 10},
            },
        ),
        "stat: distinct": lambda: service.stat(
            OWNER,
            {"distinct": "data_source_id", "filter": [{"k": "status", "v": "SUCCESS", "o": "eq"}]},
        ),
        "task list of the job": lambda: task_service.list_documents(
            ADMIN, {"job_id": job_id(), "query": {}}
        ),
        "cancel a finished job": lambda: _refused(lambda: service.cancel(ADMIN, job_id())),
        "sweep timeouts": lambda: lifecycle.sweep_timeouts(7200),
    }


def _refused(call: Callable[[], Any]) -> None:
    """A request the service refuses: what it asked MongoDB first is what is pinned."""
    try:
        call()
    except Exception as exc:
        assert type(exc).__name__ == "ServiceError", exc


def test_what_mongodb_receives_is_pinned(backed: tuple[Wire, Backing]) -> None:
    wire, backing = backed
    sent: dict[str, list[Any]] = {}
    for name, request in requests(wire).items():
        before = len(backing.received)
        request()
        sent[name] = normalised(backing.received[before:])
    text = json.dumps(sent, indent=1, sort_keys=False) + "\n"
    if os.environ.get("SPACEONE_JOB_PIN_COMMANDS") == "write":
        PINNED.write_text(text)
    assert PINNED.exists(), "run once with SPACEONE_JOB_PIN_COMMANDS=write, then read the file"
    assert json.loads(text) == json.loads(PINNED.read_text())
