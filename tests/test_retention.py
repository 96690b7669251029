"""Retention of finished runs: finished jobs past --retain-finished-days, or beyond the
--keep-finished-per-source newest of their data source, go with their tasks; nothing that is
not finished ever goes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import mongomock
import prometheus_client
import pytest

from spaceone_job.background import every
from spaceone_job.config import MAX_RETAIN_DAYS, SettingError, Settings
from spaceone_job.lifecycle import Created, Lifecycle, Sweeper, TaskSpec
from spaceone_job.lifecycle import sweeper as sweeper_module
from spaceone_job.lifecycle.jobs import Jobs
from spaceone_job.lifecycle.retention import (
    BATCH,
    TTL_GRACE,
    Retention,
    expire,
    sweep_retention,
)
from spaceone_job.store.mongo import TTL_INDEX, MongoStore
from spaceone_job.store.protocol import Store

from .conftest import D1, D2, WS1, WS2, Clock, Serve
from .support.background import run_until
from .support.wire_server import Wire, cursor, go

DAY_S = 86400
DAYS_8 = timedelta(days=8)


def finished(
    lifecycle: Lifecycle, source: str = "ds-1", domain: str = D1, workspace: str = WS1
) -> Created:
    """A job of two tasks that ended SUCCESS now."""
    specs = [TaskSpec(options={"part": i}) for i in range(2)]
    created = lifecycle.create(
        domain_id=domain, workspace_id=workspace, data_source_id=source, tasks=specs
    )
    for task in created.tasks:
        lifecycle.finish_task(task["job_task_id"])
    return created


def running(lifecycle: Lifecycle, source: str = "ds-1") -> Created:
    return lifecycle.create(domain_id=D1, data_source_id=source, tasks=[TaskSpec()])


def kept(store: Store, *jobs: Created) -> list[bool]:
    """Whether each job is still stored."""
    return [store.find_one({"job_id": job.job["job_id"]}) is not None for job in jobs]


def tasks_of(tasks: Store, job: Created) -> int:
    return tasks.count({"job_id": job.job["job_id"]}, timeout=5)


def deleted(kind: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "spaceone_job_deleted_total", {"kind": kind}
    )
    return value or 0.0


def test_a_job_finished_d_days_ago_goes_with_its_tasks_and_one_a_second_younger_stays(
    lifecycle: Lifecycle, store: Store, tasks: Store, clock: Clock
) -> None:
    older = finished(lifecycle, "ds-1")
    clock.advance(seconds=2)
    younger = finished(lifecycle, "ds-2")
    clock.advance(days=30, seconds=-1)  # older: 30 days and a second ago; younger: a second less
    before = deleted("job"), deleted("job_task")
    assert sweep_retention(lifecycle.jobs, Retention(days=30)) == 1
    assert kept(store, older, younger) == [False, True]
    assert (tasks_of(tasks, older), tasks_of(tasks, younger)) == (0, 2)
    assert (deleted("job"), deleted("job_task")) == (before[0] + 1, before[1] + 2)


def test_a_job_that_is_not_finished_stays_however_old(
    lifecycle: Lifecycle, store: Store, tasks: Store, clock: Clock
) -> None:
    old = running(lifecycle)
    clock.advance(days=400)
    assert sweep_retention(lifecycle.jobs, Retention(days=1, per_source=1)) == 0
    assert kept(store, old) == [True] and tasks_of(tasks, old) == 1


def test_the_newest_k_finished_jobs_of_each_source_stay_across_workspaces_and_domains(
    lifecycle: Lifecycle, store: Store, tasks: Store, clock: Clock
) -> None:
    ours = []
    for i in range(5):
        ours.append(finished(lifecycle, "ds-1", workspace=(WS1, WS2)[i % 2]))
        clock.advance(minutes=1)
    other_domain = [finished(lifecycle, "ds-1", domain=D2) for _ in range(2)]
    other_source = [finished(lifecycle, "ds-2") for _ in range(2)]
    still_running = running(lifecycle, "ds-1")
    assert sweep_retention(lifecycle.jobs, Retention(per_source=2)) == 3
    assert kept(store, *ours) == [False, False, False, True, True], "the two newest stay"
    assert kept(store, *other_domain, *other_source, still_running) == [True] * 5
    assert [tasks_of(tasks, job) for job in ours] == [0, 0, 0, 2, 2]


def test_a_round_deletes_in_batches_and_logs_one_line_a_batch(
    lifecycle: Lifecycle, store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(BATCH + 3):
        lifecycle.create(domain_id=D1, data_source_id="ds-1")  # no tasks: SUCCESS at once
    clock.advance(days=2)
    caplog.set_level(logging.INFO, logger="spaceone_job.lifecycle.retention")
    assert sweep_retention(lifecycle.jobs, Retention(days=1)) == BATCH + 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"retention: {BATCH} job(s) and 0 task(s) deleted (finished more than 1 day(s) ago)",
        "retention: 3 job(s) and 0 task(s) deleted (finished more than 1 day(s) ago)",
    ]
    assert store.count({}, timeout=5) == 0


def test_the_sweeper_applies_retention_with_timeouts_off(
    lifecycle: Lifecycle, store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = finished(lifecycle)
    clock.advance(days=10)
    swept = threading.Event()
    original = sweep_retention

    def watched(jobs: Jobs, retention: Retention) -> int:
        moved = original(jobs, retention)
        swept.set()
        return moved

    monkeypatch.setattr(sweeper_module, "sweep_retention", watched)
    sweeper = Sweeper(lifecycle.jobs, 0, 3600, Retention(days=7))
    assert sweeper.needed
    assert run_until(every(sweeper.interval_s, sweeper.round), swept)
    assert kept(store, old) == [False]
    assert not Sweeper(lifecycle.jobs, 0, 3600).needed, "nothing to sweep: no task"


@pytest.mark.parametrize("name", ["retain_finished_days", "keep_finished_per_source"])
def test_a_negative_retention_is_refused_naming_the_setting(name: str) -> None:
    with pytest.raises(SettingError, match=f"--{name.replace('_', '-')}"):
        Settings(**{name: -1})  # type: ignore[arg-type]


def test_a_retention_past_mongodbs_longest_ttl_is_refused_and_the_longest_sweeps(
    lifecycle: Lifecycle,
) -> None:
    with pytest.raises(
        SettingError, match=rf"--retain-finished-days \(\S+\) is at most {MAX_RETAIN_DAYS}"
    ):
        Settings(retain_finished_days=MAX_RETAIN_DAYS + 1)
    longest = Retention(days=Settings(retain_finished_days=MAX_RETAIN_DAYS).retain_finished_days)
    assert longest.ttl_s <= 2**31 - 1
    assert sweep_retention(lifecycle.jobs, longest) == 0


def index_list(*indexes: dict[str, Any]) -> dict[str, Any]:
    rows = [{"v": 2, "key": {"_id": 1}, "name": "_id_"}, *indexes]
    return cursor(*rows)


def ttl(seconds: int) -> dict[str, Any]:
    return {"v": 2, "key": {"finished_at": 1}, "name": TTL_INDEX, "expireAfterSeconds": seconds}


@pytest.mark.only_on("mongo", why="the database's own TTL index, on the wire")
def test_the_ttl_index_follows_d_from_one_start_to_the_next(wire: Wire) -> None:
    thirty = Retention(days=30).ttl_s
    assert thirty == 30 * DAY_S + TTL_GRACE.total_seconds()
    created = go(wire.store.expire_finished, thirty)
    wire.server.receives({"listIndexes": "job"}).ok(index_list())
    made = wire.server.receives({"createIndexes": "job"})
    assert made.doc["indexes"] == [
        {"key": {"finished_at": 1}, "name": TTL_INDEX, "expireAfterSeconds": thirty}
    ]
    made.ok()
    assert created() == "created"

    seven = Retention(days=7).ttl_s
    changed = go(wire.store.expire_finished, seven)
    wire.server.receives({"listIndexes": "job"}).ok(index_list(ttl(thirty)))
    modified = wire.server.receives({"collMod": "job"})
    assert modified.doc["index"] == {"name": TTL_INDEX, "expireAfterSeconds": seven}
    modified.ok()
    assert changed() == "changed"

    same = go(wire.store.expire_finished, seven)
    wire.server.receives({"listIndexes": "job"}).ok(index_list(ttl(seven)))
    assert same() == ""

    dropped = go(wire.store.expire_finished, 0)
    wire.server.receives({"listIndexes": "job"}).ok(index_list(ttl(seven)))
    wire.server.receives({"dropIndexes": "job", "index": TTL_INDEX}).ok()
    assert dropped() == "dropped"


@pytest.mark.only_on("mongo", why="the database's own TTL index")
def test_d_set_creates_the_ttl_index_on_finished_at_and_d_zero_drops_it() -> None:
    collection: Any = mongomock.MongoClient()["cost-analysis"]["job"]
    jobs = MongoStore(collection, "job")
    expire(jobs, Retention(days=30))
    index = collection.index_information()[TTL_INDEX]
    assert (index["key"], index["expireAfterSeconds"]) == ([("finished_at", 1)], 31 * DAY_S)
    expire(jobs, Retention(days=0, per_source=5))
    assert TTL_INDEX not in collection.index_information()


def test_a_server_with_retention_on_and_timeouts_off_sweeps_old_finished_jobs(
    serve: Serve, add: Callable[..., dict[str, Any]], store: Store, clock: Clock
) -> None:
    old = add(job_id="job-00000000000a", status="SUCCESS", finished_at=clock.now)
    young = add(job_id="job-00000000000b", status="SUCCESS", finished_at=clock.now)
    running_long = add(job_id="job-00000000000c", status="IN_PROGRESS")
    store.update_one({"job_id": old["job_id"]}, {"$set": {"finished_at": clock.now - DAYS_8}})
    serve(timeout_s=0, retain_finished_days=7, sweep_interval_s=1)
    deadline = time.monotonic() + 10
    while store.find_one({"job_id": old["job_id"]}) is not None:
        assert time.monotonic() < deadline, "the old finished job was never deleted"
        time.sleep(0.05)
    for job in (young, running_long):
        assert store.find_one({"job_id": job["job_id"]}) is not None
