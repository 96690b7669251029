"""Jobs and their tasks through the producers' API and the timeout sweeper (injected clock)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job.background import every
from spaceone_job.errors import ServiceError
from spaceone_job.idempotency import Request
from spaceone_job.lifecycle import Created, Lifecycle, Sweeper, TaskSpec
from spaceone_job.lifecycle import jobs as lifecycle_jobs
from spaceone_job.lifecycle import sweeper as sweeper_module
from spaceone_job.lifecycle.jobs import Jobs
from spaceone_job.store.documents import Unreachable
from spaceone_job.store.protocol import Store

from .conftest import D1, WS1, Clock, InProcess, Token, together
from .support.background import run_until


def running(lifecycle: Lifecycle, tasks: int = 2, source: str = "ds-1", **fields: Any) -> Created:
    specs = [TaskSpec(options={"part": i}, changed={"start": "2024-05"}) for i in range(tasks)]
    return lifecycle.create(domain_id=D1, data_source_id=source, tasks=specs, **fields)


def job_of(store: Store, created: Created) -> dict[str, Any]:
    found = store.find_one({"job_id": created.job["job_id"]})
    assert found is not None
    return found


def statuses(tasks: Store, created: Created) -> list[str]:
    found = tasks.find(
        {"job_id": created.job["job_id"]}, projection=None, sort=[], skip=0, limit=0, timeout=5
    )
    return sorted(t["status"] for t in found)


def test_create_normalises_options_and_makes_pending_tasks(
    lifecycle: Lifecycle, clock: Clock, tasks: Store
) -> None:
    created = lifecycle.create(
        domain_id=D1,
        workspace_id=WS1,
        data_source_id="ds-000000000001",
        resource_group="WORKSPACE",
        options={"sync_mode": "MANUAL"},
        tasks=[TaskSpec(changed={"start": "2024-05", "end": "2024-06"})] * 3,
        changed=[{"start": "2024-05"}],
        synced_accounts=["111"],
    )
    job = created.job
    assert job["job_id"].startswith("job-") and len(job["job_id"]) == 16
    assert job["status"] == "IN_PROGRESS"
    assert job["options"] == {"sync_mode": "MANUAL", "no_preload_cache": False, "start": None}
    assert (job["total_tasks"], job["remained_tasks"]) == (3, 3)
    assert job["created_at"] == job["updated_at"] == clock.now and job["finished_at"] is None
    assert job["synced_accounts"] == [{"account_id": "111"}]
    assert len(created.tasks) == 3
    for task in created.tasks:
        assert task["job_task_id"].startswith("job-task-") and len(task["job_task_id"]) == 21
        assert (task["status"], task["job_id"], task["workspace_id"]) == (
            "PENDING",
            job["job_id"],
            WS1,
        )
        assert task["changed"]["start"] == "2024-05" and task["created_count"] == 0
    assert statuses(tasks, created) == ["PENDING"] * 3


def test_a_job_without_tasks_succeeds_at_once(lifecycle: Lifecycle, clock: Clock) -> None:
    created = lifecycle.create(domain_id=D1, data_source_id="ds-1")
    assert created.job["status"] == "SUCCESS" and created.job["finished_at"] == clock.now
    assert created.tasks == []


def test_create_refuses_invalid_jobs(lifecycle: Lifecycle) -> None:
    with pytest.raises(ServiceError) as raised:
        lifecycle.create(domain_id=D1, data_source_id="ds-1", resource_group="GALAXY")
    assert raised.value.code == "ERROR_INVALID_PARAMETER"


def test_tasks_run_and_the_last_one_finishes_the_job(
    lifecycle: Lifecycle, clock: Clock, store: Store
) -> None:
    created = running(lifecycle)
    first, second = (t["job_task_id"] for t in created.tasks)
    clock.advance(minutes=1)
    started = lifecycle.start_task(first)
    assert (started["status"], started["started_at"]) == ("IN_PROGRESS", clock.now)
    clock.advance(minutes=1)
    assert lifecycle.progress(first, 40)["created_count"] == 40
    assert lifecycle.progress(first, 2)["created_count"] == 42
    assert job_of(store, created)["updated_at"] == clock.now, "progress is the heartbeat"
    done = lifecycle.finish_task(first)
    assert (done["status"], done["finished_at"]) == ("SUCCESS", clock.now)
    assert (job_of(store, created)["status"], job_of(store, created)["remained_tasks"]) == (
        "IN_PROGRESS",
        1,
    )
    lifecycle.start_task(second)
    lifecycle.finish_task(second)
    job = job_of(store, created)
    assert (job["status"], job["remained_tasks"], job["finished_at"]) == ("SUCCESS", 0, clock.now)


def test_a_task_ends_once(lifecycle: Lifecycle, store: Store) -> None:
    created = running(lifecycle, tasks=3)
    task_id = created.tasks[0]["job_task_id"]
    lifecycle.finish_task(task_id)
    again = lifecycle.finish_task(task_id, error_code="ERROR_X")
    assert again["status"] == "SUCCESS", "a finished task is answered as it is"
    job = job_of(store, created)
    assert (job["status"], job["remained_tasks"]) == ("IN_PROGRESS", 2)


def test_a_failed_task_fails_the_job_and_the_others_are_refused(
    lifecycle: Lifecycle, store: Store, tasks: Store
) -> None:
    created = running(lifecycle, tasks=3)
    failing, working, waiting = (t["job_task_id"] for t in created.tasks)
    lifecycle.start_task(failing)
    lifecycle.start_task(working)
    failed = lifecycle.finish_task(failing, error_code="ERROR_PLUGIN", error_message="timeout")
    assert (failed["status"], failed["error_code"]) == ("FAILURE", "ERROR_PLUGIN")
    job = job_of(store, created)
    assert (job["status"], job["error_code"]) == ("FAILURE", "ERROR_JOB_TASK")
    with pytest.raises(ServiceError) as refused:
        lifecycle.progress(working, 10)
    assert refused.value.code == "ERROR_JOB_STATE"
    assert statuses(tasks, created) == ["CANCELED", "CANCELED", "FAILURE"]
    assert job_of(store, created)["remained_tasks"] == 0
    with pytest.raises(ServiceError):
        lifecycle.start_task(waiting)


def test_twelve_workers_finishing_one_jobs_tasks_at_once(
    lifecycle: Lifecycle, store: Store, writes: list[Any]
) -> None:
    created = running(lifecycle, tasks=12)
    ids = [t["job_task_id"] for t in created.tasks]
    for task_id in ids:
        lifecycle.start_task(task_id)
    writes.clear()
    answers = together(12, lambda i: lifecycle.finish_task(ids[i]))
    assert [a["status"] for a in answers] == ["SUCCESS"] * 12
    job = job_of(store, created)
    assert (job["status"], job["remained_tasks"]) == ("SUCCESS", 0)
    transitions = [w for w in writes if w.get("job_id") == job["job_id"] and "job_task_id" not in w]
    assert sum(w["status"] == "SUCCESS" for w in transitions) == 1, "exactly one job transition"
    again = together(12, lambda i: lifecycle.finish_task(ids[i]))
    assert len(again) == 12 and job_of(store, created)["remained_tasks"] == 0, "never below 0"


def test_a_retried_finish_completes_what_a_crash_left_undone(
    lifecycle: Lifecycle, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = running(lifecycle, tasks=1)
    task_id = created.tasks[0]["job_task_id"]
    request = Request.of("finish_task", {"request_id": "f", "job_task_id": task_id})

    def crash(task: Any) -> None:
        raise ConnectionError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(lifecycle.jobs, "settle", crash)
        with pytest.raises(ConnectionError):
            lifecycle.finish_task(task_id, error_code="ERROR_PLUGIN", request=request)
    assert job_of(store, created)["status"] == "IN_PROGRESS", "the task ended, its job did not"
    again = lifecycle.finish_task(task_id, error_code="ERROR_PLUGIN", request=request)
    assert again["status"] == "FAILURE"
    job = job_of(store, created)
    assert (job["status"], job["error_code"], job["remained_tasks"]) == (
        "FAILURE",
        "ERROR_JOB_TASK",
        0,
    )


def test_a_create_that_fails_half_way_leaves_no_task_behind(
    lifecycle: Lifecycle, store: Store, tasks: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise Unreachable

    monkeypatch.setattr(store, "insert", unreachable)
    with pytest.raises(Unreachable):
        running(lifecycle, tasks=3)
    assert tasks.count({}, timeout=5) == 0


def test_a_clash_of_a_new_id_draws_another(
    lifecycle: Lifecycle, store: Store, tasks: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = running(lifecycle, tasks=2, source="ds-1").job["job_id"]
    drawn = iter([taken, "job-00000000000b"])
    monkeypatch.setattr(lifecycle_jobs, "new_job_id", lambda: next(drawn))
    created = running(lifecycle, tasks=2, source="ds-2")
    assert created.job["job_id"] == "job-00000000000b"
    assert {t["job_id"] for t in created.tasks} == {"job-00000000000b"}
    assert tasks.count({"job_id": taken}, timeout=5) == 2, "the other job's tasks are untouched"
    assert tasks.count({}, timeout=5) == 4


def test_cancel_cascades_to_pending_tasks_and_a_worker_is_stopped(
    api: InProcess, token: Token, lifecycle: Lifecycle, tasks: Store, store: Store
) -> None:
    created = running(lifecycle, tasks=3)
    busy = created.tasks[0]["job_task_id"]
    lifecycle.start_task(busy)
    answer = api.call("cancel", job_pb2.JobRequest(job_id=created.job["job_id"]), token())
    assert answer.response.status == job_pb2.JobInfo.CANCELED
    assert statuses(tasks, created) == ["CANCELED", "CANCELED", "IN_PROGRESS"]
    with pytest.raises(ServiceError) as refused:
        lifecycle.progress(busy, 5)
    assert refused.value.code == "ERROR_JOB_STATE"
    assert statuses(tasks, created) == ["CANCELED"] * 3
    assert job_of(store, created)["remained_tasks"] == 0


def test_duplicate_check(lifecycle: Lifecycle, clock: Clock, store: Store) -> None:
    first = running(lifecycle)
    clock.advance(minutes=5)
    second = running(lifecycle)
    assert (second.job["status"], second.job["error_code"]) == ("FAILURE", "ERROR_DUPLICATE_JOB")
    assert second.tasks == []
    clock.advance(minutes=30)
    third = running(lifecycle)
    assert third.job["status"] == "IN_PROGRESS", "an older scheduled job is superseded"
    assert job_of(store, first)["status"] == "CANCELED"


def test_a_manual_job_updated_within_a_day_is_a_duplicate(
    lifecycle: Lifecycle, clock: Clock, store: Store
) -> None:
    manual = running(lifecycle, options={"sync_mode": "MANUAL"})
    clock.advance(hours=2)
    lifecycle.heartbeat(manual.job["job_id"])
    clock.advance(hours=1)
    assert running(lifecycle).job["error_code"] == "ERROR_DUPLICATE_JOB"
    clock.advance(hours=25)
    assert running(lifecycle).job["status"] == "IN_PROGRESS"
    assert job_of(store, manual)["status"] == "IN_PROGRESS", "manual jobs are never superseded"


def test_heartbeat_and_finish_only_touch_running_jobs(lifecycle: Lifecycle, clock: Clock) -> None:
    job_id = running(lifecycle).job["job_id"]
    clock.advance(minutes=3)
    beat = lifecycle.heartbeat(job_id)
    assert beat is not None and beat["updated_at"] == clock.now
    assert lifecycle.finish(job_id, "CANCELED") is not None
    assert lifecycle.heartbeat(job_id) is None
    assert lifecycle.finish(job_id, "SUCCESS") is None, "no transition out of a finished state"


def test_sweeper_times_out_jobs_without_updates_and_cancels_their_tasks(
    lifecycle: Lifecycle, clock: Clock, store: Store, tasks: Store
) -> None:
    stale = running(lifecycle, source="ds-1")
    lifecycle.start_task(stale.tasks[0]["job_task_id"])
    clock.advance(minutes=90)
    fresh = running(lifecycle, source="ds-2")
    clock.advance(minutes=31)
    assert lifecycle.sweep_timeouts(7200) == 1
    job = job_of(store, stale)
    assert (job["status"], job["finished_at"], job["remained_tasks"]) == ("TIMEOUT", clock.now, 0)
    assert statuses(tasks, stale) == ["CANCELED", "CANCELED"]
    assert job_of(store, fresh)["status"] == "IN_PROGRESS"
    assert lifecycle.sweep_timeouts(7200) == 0


@pytest.mark.only_on(
    "embedded",
    why="mongomock's conditional update is read-then-write across threads; MongoDB's is atomic",
)
def test_replicas_sweeping_at_once_move_each_job_once(lifecycle: Lifecycle, clock: Clock) -> None:
    for i in range(20):
        running(lifecycle, source=f"ds-{i}")
    clock.advance(hours=3)
    moved = together(4, lambda _: lifecycle.sweep_timeouts(7200))
    assert sum(moved) == 20


def test_the_sweeper_runs_its_rounds_and_stops(
    lifecycle: Lifecycle, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    running(lifecycle)
    clock.advance(hours=3)
    swept = threading.Event()
    original = sweeper_module.sweep_timeouts

    def watched(jobs: Jobs, timeout_s: int) -> int:
        moved = original(jobs, timeout_s)
        swept.set()
        return moved

    monkeypatch.setattr(sweeper_module, "sweep_timeouts", watched)
    sweeper = Sweeper(lifecycle.jobs, 7200, interval_s=3600)
    assert run_until(every(sweeper.interval_s, sweeper.round), swept)


def test_a_sweeper_round_that_fails_unexpectedly_is_logged_and_the_next_comes(
    lifecycle: Lifecycle, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rounds: list[int] = []
    again = threading.Event()

    def failing(jobs: Jobs, timeout_s: int) -> int:
        rounds.append(timeout_s)
        if len(rounds) == 1:
            raise RuntimeError("a bug")
        again.set()
        return 0

    monkeypatch.setattr(sweeper_module, "sweep_timeouts", failing)
    sweeper = Sweeper(lifecycle.jobs, 7200, interval_s=0.01)
    died = "the sweeper died with its first round"
    assert run_until(every(sweeper.interval_s, sweeper.round), again), died
    assert "sweeper: the round failed" in caplog.text
