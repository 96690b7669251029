"""The MongoDB store on a real socket: MongoDB's own replies and failures, from mockupdb.

Each command is answered as MongoDB does (replies, error codes, error labels), so that the driver
path the production store takes runs as written: pymongo's handshake, server selection,
retryable writes, cursors, and the store's mapping of MongoDB's failures to the caller's errors.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import pytest
from bson import ObjectId, Timestamp

from spaceone_job import auth
from spaceone_job.auth import Caller
from spaceone_job.background import ChangeFeed
from spaceone_job.changes import ChangeHub
from spaceone_job.errors import STATUS_BY_CODE
from spaceone_job.kinds import TASK
from spaceone_job.lifecycle import Lifecycle
from spaceone_job.query.filters import Limits
from spaceone_job.service import JobService
from spaceone_job.store.connect import connect
from spaceone_job.store.mongo import MongoStore

from .conftest import D1, NOW
from .support.wire_server import Wire, cursor, go, raised, refused

CALL_S = 2.0
JOB = {"job_id": "job-000000000001", "domain_id": D1, "status": "IN_PROGRESS"}


def test_every_read_carries_max_time_ms_within_the_calls_time(wire: Wire) -> None:
    listed = go(
        wire.store.page,
        {"domain_id": D1},
        projection=None,
        sort=[("created_at", -1)],
        skip=0,
        limit=10,
        count_only=False,
        timeout=CALL_S,
    )
    counted = wire.server.receives(
        {"aggregate": "job"}
    )  # count_documents is an aggregate on the wire
    counted.ok(cursor({"_id": 1, "n": 1}))
    found = wire.server.receives({"find": "job"})
    found.ok(cursor(JOB))
    assert listed() == ([{**JOB}], 1)
    rows = go(wire.store.aggregate, [{"$match": {"domain_id": D1}}], timeout=CALL_S)
    aggregated = wire.server.receives({"aggregate": "job"})
    aggregated.ok(cursor({"_id": "x", "n": 2}))
    assert rows() == [{"_id": "x", "n": 2}]
    for request in (counted, found, aggregated):
        assert 0 < request.doc["maxTimeMS"] <= CALL_S * 1000, request.doc


def test_a_query_past_max_time_ms_is_request_timeout(wire: Wire) -> None:
    wire.server.autoresponds(
        {"find": "job"}, refused(50, "MaxTimeMSExpired", "operation exceeded time limit")
    )
    found = go(wire.store.find, {}, projection=None, sort=[], skip=0, limit=1, timeout=CALL_S)
    error = raised(found)
    assert error.code == "ERROR_REQUEST_TIMEOUT"
    assert STATUS_BY_CODE[error.code].name == "DEADLINE_EXCEEDED"


def test_a_connection_reset_mid_query_is_db_unavailable_within_the_deadline(wire: Wire) -> None:
    wire.server.autoresponds({"find": "job"}, lambda request: request.hangup())
    started = time.monotonic()
    error = raised(
        go(wire.store.find, {}, projection=None, sort=[], skip=0, limit=1, timeout=CALL_S)
    )
    assert error.code == "ERROR_DB_UNAVAILABLE"
    assert STATUS_BY_CODE[error.code].name == "UNAVAILABLE"
    assert time.monotonic() - started < CALL_S


def test_no_server_answering_is_db_unavailable_within_the_db_timeout() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    store = connect(f"mongodb://127.0.0.1:{port}", "cost-analysis", db_timeout_ms=500)
    assert isinstance(store, MongoStore)
    try:
        for call in (
            lambda: store.find({}, projection=None, sort=[], skip=0, limit=1, timeout=10),
            lambda: store.update_one({"job_id": "x"}, {"$set": {"status": "CANCELED"}}, None, 10),
        ):
            started = time.monotonic()
            assert raised(go(call)).code == "ERROR_DB_UNAVAILABLE"
            assert time.monotonic() - started < 1.5
    finally:
        store.close()


UPDATE = ({"job_id": JOB["job_id"], "status": "IN_PROGRESS"}, {"$set": {"status": "CANCELED"}})
# What a primary that steps down, or shuts down, answers a write (MongoDB 4.4+ labels them).
STEP_DOWNS = [
    (10107, "NotWritablePrimary", "not primary"),
    (189, "PrimarySteppedDown", "Primary stepped down while waiting for replication"),
    (11600, "InterruptedAtShutdown", "interrupted at shutdown"),
]


@pytest.mark.parametrize(("code", "name", "message"), STEP_DOWNS)
def test_a_step_down_during_a_conditional_update_is_retried_once_as_the_same_write(
    wire: Wire, code: int, name: str, message: str
) -> None:
    updated = go(wire.store.update_one, *UPDATE, None, CALL_S)
    first = wire.server.receives({"findAndModify": "job"})
    refused(code, name, message, "RetryableWriteError")(first)
    again = wire.server.receives({"findAndModify": "job"})
    # The same lsid and txnNumber: the server applies a retried write at most once.
    assert again.doc["lsid"] == first.doc["lsid"]
    assert again.doc["txnNumber"] == first.doc["txnNumber"]
    again.ok(value={"_id": ObjectId(), **JOB, "status": "CANCELED"}, lastErrorObject={"n": 1})
    assert updated() == {**JOB, "status": "CANCELED"}


@pytest.mark.parametrize(("code", "name", "message"), STEP_DOWNS)
def test_a_write_refused_twice_by_a_stepping_down_primary_is_db_unavailable(
    wire: Wire, code: int, name: str, message: str
) -> None:
    wire.server.autoresponds(
        {"findAndModify": "job"}, refused(code, name, message, "RetryableWriteError")
    )
    error = raised(go(wire.store.update_one, *UPDATE, None, CALL_S))
    assert error.code == "ERROR_DB_UNAVAILABLE"


def test_the_services_missing_privileges_are_the_operators_problem(
    wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    wire.server.autoresponds(
        {"find": "job"},
        refused(13, "Unauthorized", "not authorized on cost-analysis to execute command find"),
    )
    error = raised(
        go(wire.store.find, {}, projection=None, sort=[], skip=0, limit=1, timeout=CALL_S)
    )
    assert error.code == "ERROR_DB_UNAVAILABLE", "the caller cannot fix the database's grants"
    (record,) = [r for r in caplog.records if "not authorized" in r.getMessage()]
    assert record.levelno == logging.ERROR


def service(store: MongoStore) -> JobService:
    return JobService(store, Limits(), query_timeout_ms=2000, clock=lambda: NOW)


ADMIN = Caller(D1, None, auth.DOMAIN_ADMIN)


def test_a_query_the_stored_values_do_not_fit_names_the_part_of_the_request(wire: Wire) -> None:
    wire.server.autoresponds(
        {"aggregate": "job"},
        refused(
            28651,
            "Location28651",
            "PlanExecutor error during aggregation :: caused by :: $dateToString requires that"
            " 'date' be a date, found: string",
        ),
    )
    query = {
        "aggregate": [
            {"group": {"keys": [{"key": "status", "name": "status"}], "fields": []}},
            {
                "group": {
                    "keys": [{"key": "created_at", "name": "month", "date_format": "%Y-%m"}],
                    "fields": [{"name": "n", "operator": "count"}],
                }
            },
        ]
    }
    error = raised(go(service(wire.store).stat, ADMIN, query, CALL_S))
    assert error.code == "ERROR_INVALID_PARAMETER"
    assert error.params["key"] == "query.aggregate[1].group.keys[0].key"


CHANGE_STREAM_REFUSALS = [
    (40573, "Location40573", "The $changeStream stage is only supported on replica sets"),
    (
        286,
        "ChangeStreamHistoryLost",
        "Resume of change stream was not possible, as the resume point may no longer be in the"
        " oplog.",
    ),
]


@pytest.mark.parametrize(("code", "name", "message"), CHANGE_STREAM_REFUSALS)
def test_a_change_stream_the_database_refuses_makes_watchers_re_read(
    wire: Wire, caplog: pytest.LogCaptureFixture, code: int, name: str, message: str
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.background")
    wire.server.autoresponds({"aggregate": "job"}, refused(code, name, message))
    hub = ChangeHub(lambda job_id: None, polling=True)
    asyncio.run(ChangeFeed(wire.store, hub, journaled=False).run())
    assert hub.polling
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records if "re-read" in r.getMessage())
    ) == 1


def test_history_lost_on_an_open_change_stream_makes_watchers_re_read(
    wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.background")
    hub = ChangeHub(lambda job_id: None, polling=True)
    feed = threading.Thread(target=asyncio.run, args=(ChangeFeed(wire.store, hub, False).run(),))
    feed.start()
    # A replica set's answer carries the operation's time: the stream resumes from it.
    opened = {**cursor(cursor_id=42), "operationTime": Timestamp(1_764_700_000, 1)}
    wire.server.receives({"aggregate": "job"}).ok(opened)
    lost = wire.server.receives({"getMore": 42})
    refused(286, *CHANGE_STREAM_REFUSALS[1][1:])(lost)
    feed.join(5)
    assert not feed.is_alive() and hub.polling
    assert sum("re-read" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("code", "name"), [(85, "IndexOptionsConflict"), (86, "IndexKeySpecsConflict")]
)
def test_an_index_conflict_at_start_is_logged_and_the_start_goes_on(
    wire: Wire, caplog: pytest.LogCaptureFixture, code: int, name: str
) -> None:
    wire.server.autoresponds(
        {"listIndexes": "job"}, cursor({"v": 2, "key": {"_id": 1}, "name": "_id_"})
    )
    wire.server.autoresponds(
        {"createIndexes": "job"}, refused(code, name, "An existing index has the same name")
    )
    assert wire.store.ensure_indexes() == []
    assert sum("not created" in r.getMessage() for r in caplog.records) == len(wire.store.indexes)


def test_a_reports_reads_and_write_carry_the_calls_time_and_its_write_names_the_scope(
    wire: Wire,
) -> None:
    lifecycle = Lifecycle(wire.store, wire.store.sibling(TASK), lambda: NOW)
    task = {"job_task_id": "job-task-000000000001", "job_id": JOB["job_id"], "domain_id": D1}
    scope = {"domain_id": D1}
    started = go(lifecycle.start_task, task["job_task_id"], None, scope, CALL_S)
    read = wire.server.receives({"find": "job_task"})
    read.ok(cursor({**task, "status": "PENDING", "created_count": 0}))
    job = wire.server.receives({"find": "job"})
    job.ok(cursor(JOB))
    write = wire.server.receives({"findAndModify": "job_task"})
    write.ok(value={"_id": ObjectId(), **task, "status": "IN_PROGRESS"}, lastErrorObject={"n": 1})
    assert started()["status"] == "IN_PROGRESS"
    for request in (read, job, write):
        assert 0 < request.doc["maxTimeMS"] <= CALL_S * 1000, request.doc
    assert write.doc["query"]["domain_id"] == D1, "the write is the scope check too"
