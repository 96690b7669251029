"""The producers' API and the timeout sweeper, with an injected clock."""

from __future__ import annotations

import threading

import pytest

from spaceone_job.errors import ServiceError
from spaceone_job.lifecycle import Lifecycle, Sweeper
from spaceone_job.store.store import JobStore

from .conftest import D1, WS1, Clock, together


@pytest.fixture
def lifecycle(store: JobStore, clock: Clock) -> Lifecycle:
    return Lifecycle(store, clock)


def test_create_normalises_options_and_counts_tasks(lifecycle: Lifecycle, clock: Clock) -> None:
    job = lifecycle.create(
        domain_id=D1,
        workspace_id=WS1,
        data_source_id="ds-000000000001",
        resource_group="WORKSPACE",
        options={"sync_mode": "MANUAL"},
        tasks=3,
        changed=[{"start": "2024-05"}],
        synced_accounts=["111"],
    )
    assert job["job_id"].startswith("job-") and len(job["job_id"]) == 16
    assert job["status"] == "IN_PROGRESS"
    assert job["options"] == {"sync_mode": "MANUAL", "no_preload_cache": False, "start": None}
    assert (job["total_tasks"], job["remained_tasks"]) == (3, 3)
    assert job["created_at"] == job["updated_at"] == clock.now and job["finished_at"] is None
    assert job["synced_accounts"] == [{"account_id": "111"}]


def test_create_refuses_invalid_jobs(lifecycle: Lifecycle) -> None:
    with pytest.raises(ServiceError) as raised:
        lifecycle.create(domain_id=D1, data_source_id="ds-1", resource_group="GALAXY")
    assert raised.value.code == "ERROR_INVALID_PARAMETER"


def test_tasks_finish_the_job_when_the_last_one_ends(lifecycle: Lifecycle, clock: Clock) -> None:
    job_id = lifecycle.create(domain_id=D1, data_source_id="ds-1", tasks=2)["job_id"]
    clock.advance(minutes=1)
    after_first = lifecycle.finish_task(job_id)
    assert after_first is not None
    assert (after_first["status"], after_first["remained_tasks"]) == ("IN_PROGRESS", 1)
    assert after_first["updated_at"] == clock.now
    clock.advance(minutes=1)
    done = lifecycle.finish_task(job_id)
    assert done is not None
    assert (done["status"], done["remained_tasks"], done["finished_at"]) == (
        "SUCCESS",
        0,
        clock.now,
    )


def test_a_failed_task_fails_the_job(lifecycle: Lifecycle) -> None:
    job_id = lifecycle.create(domain_id=D1, data_source_id="ds-1", tasks=2)["job_id"]
    failed = lifecycle.finish_task(job_id, failed=True, error="plugin timeout")
    assert failed is not None
    assert (failed["status"], failed["error_code"], failed["error_message"]) == (
        "FAILURE",
        "ERROR_JOB_TASK",
        "plugin timeout",
    )
    late = lifecycle.finish_task(job_id)
    assert late is not None and late["status"] == "FAILURE", "a finished job stays finished"
    assert late["remained_tasks"] == 0


def test_heartbeat_and_finish_only_touch_running_jobs(lifecycle: Lifecycle, clock: Clock) -> None:
    job_id = lifecycle.create(domain_id=D1, data_source_id="ds-1")["job_id"]
    clock.advance(minutes=3)
    beat = lifecycle.heartbeat(job_id)
    assert beat is not None and beat["updated_at"] == clock.now
    assert lifecycle.finish(job_id, "CANCELED") is not None
    assert lifecycle.heartbeat(job_id) is None
    assert lifecycle.finish(job_id, "SUCCESS") is None, "no transition out of a finished state"


def test_sweeper_times_out_jobs_without_updates(
    lifecycle: Lifecycle, clock: Clock, store: JobStore
) -> None:
    stale = lifecycle.create(domain_id=D1, data_source_id="ds-1")["job_id"]
    clock.advance(minutes=90)
    fresh = lifecycle.create(domain_id=D1, data_source_id="ds-2")["job_id"]
    clock.advance(minutes=31)
    assert lifecycle.sweep_timeouts(7200) == 1
    assert store.find_one({"job_id": stale})["status"] == "TIMEOUT"  # type: ignore[index]
    assert store.find_one({"job_id": stale})["finished_at"] == clock.now  # type: ignore[index]
    assert store.find_one({"job_id": fresh})["status"] == "IN_PROGRESS"  # type: ignore[index]
    assert lifecycle.sweep_timeouts(7200) == 0


def test_replicas_sweeping_at_once_move_each_job_once(lifecycle: Lifecycle, clock: Clock) -> None:
    for i in range(20):
        lifecycle.create(domain_id=D1, data_source_id=f"ds-{i}")
    clock.advance(hours=3)
    moved = together(4, lambda _: lifecycle.sweep_timeouts(7200))
    assert sum(moved) == 20


def test_sweeper_thread_runs_and_stops(lifecycle: Lifecycle, clock: Clock) -> None:
    lifecycle.create(domain_id=D1, data_source_id="ds-1")
    clock.advance(hours=3)
    swept = threading.Event()
    original = lifecycle.sweep_timeouts

    def watched(timeout_s: int) -> int:
        moved = original(timeout_s)
        swept.set()
        return moved

    lifecycle.sweep_timeouts = watched  # type: ignore[method-assign]
    sweeper = Sweeper(lifecycle, 7200, interval_s=3600)
    sweeper.start()
    assert swept.wait(5)
    sweeper.stop()
    sweeper.join(5)
    assert not sweeper.is_alive()
