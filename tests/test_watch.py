"""Watching a job over a real channel: every transition in order, keep-alives, scope, many
watchers holding no worker thread, and watchers told to reconnect at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pymongo.errors import OperationFailure
from spaceone.api.cost_analysis.v1 import job_pb2
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth
from spaceone_job.background import ChangeFeed
from spaceone_job.changes import ChangeHub
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.protocol import Store

from .conftest import Clock, Live, Serve, Token
from .support.producing import create, report


class Watcher(threading.Thread):
    """Collects one watch stream's events until it ends."""

    def __init__(self, live: Live, token: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.live, self.token, self.job_id = live, token, job_id
        self.events: list[Any] = []
        self.code: grpc.StatusCode = grpc.StatusCode.OK
        self.details = ""
        self.first = threading.Event()

    def run(self) -> None:
        stub = producer_pb2_grpc.WatchStub(self.live.channel)
        request = producer_pb2.WatchRequest(job_id=self.job_id)
        try:
            for event in stub.watch(request, metadata=(("token", self.token),), timeout=60):
                self.events.append(event)
                self.first.set()
        except grpc.RpcError as error:
            self.code, self.details = error.code(), error.details() or ""
        self.first.set()

    def jobs(self) -> list[tuple[int, int]]:
        return [(e.job.status, e.job.remained_tasks) for e in self.events if e.HasField("job")]


def test_a_watcher_sees_every_transition_in_order_and_the_stream_ends(
    live: Live, token: Token
) -> None:
    admin = token()
    created = create(live, admin).response
    watcher = Watcher(live, admin, created.job.job_id)
    watcher.start()
    assert watcher.first.wait(10)
    first, second = (t.job_task_id for t in created.tasks)
    for step, (kind, task_id) in enumerate(
        [
            ("start_task", first),
            ("finish_task", first),
            ("start_task", second),
            ("finish_task", second),
        ]
    ):
        report(live, admin, kind, task_id, f"r-{step}")
        time.sleep(0.2)
    watcher.join(15)
    assert not watcher.is_alive(), "the stream ends when the job finishes"
    assert watcher.code is grpc.StatusCode.OK, watcher.details
    seen = watcher.jobs()
    assert seen[0] == (job_pb2.JobInfo.IN_PROGRESS, 2)
    assert (job_pb2.JobInfo.IN_PROGRESS, 1) in seen
    assert seen[-1] == (job_pb2.JobInfo.SUCCESS, 0)
    assert seen == sorted(seen, key=lambda s: -s[1]), "in order"


def test_keep_alives_while_nothing_changes(serve: Serve, token: Token) -> None:
    live = serve(watch_keepalive_s=0.3)
    admin = token()
    created = create(live, admin).response
    watcher = Watcher(live, admin, created.job.job_id)
    watcher.start()
    time.sleep(1.5)
    live.call("cancel", job_pb2.JobRequest(job_id=created.job.job_id), admin)
    watcher.join(10)
    keep_alives = [e for e in watcher.events if e.HasField("keep_alive")]
    assert len(keep_alives) >= 2 and keep_alives[0].keep_alive.at.endswith("Z")
    assert watcher.jobs()[-1][0] == job_pb2.JobInfo.CANCELED


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("another workspace", grpc.StatusCode.NOT_FOUND),
        ("another domain", grpc.StatusCode.NOT_FOUND),
        ("no token", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_watch_reads_within_the_callers_scope(
    live: Live, token: Token, who: str, code: grpc.StatusCode
) -> None:
    created = create(live, token(auth.WORKSPACE_OWNER)).response
    caller = {
        "another workspace": token(auth.WORKSPACE_MEMBER, workspace_id="ws-333333333333"),
        "another domain": token(domain_id="domain-cccccccccccc"),
        "no token": "",
    }[who]
    watcher = Watcher(live, caller, created.job.job_id)
    watcher.run()
    assert watcher.code is code and watcher.events == []


def test_a_hundred_watchers_hold_no_worker_thread(serve: Serve, token: Token) -> None:
    live = serve(max_concurrent_rpcs=4)  # 12 worker threads in all
    admin = token()
    created = create(live, admin, tasks=1).response
    job_id = created.job.job_id
    request = job_pb2.JobRequest(job_id=job_id)

    def get_ms() -> float:
        started = time.perf_counter()
        assert live.call("get", request, admin).code is grpc.StatusCode.OK
        return (time.perf_counter() - started) * 1000

    alone = statistics.median(get_ms() for _ in range(20))
    watchers = [Watcher(live, admin, job_id) for _ in range(100)]
    for watcher in watchers:
        watcher.start()
    assert all(w.first.wait(20) for w in watchers)
    during = statistics.median(get_ms() for _ in range(20))
    assert during < alone * 3 + 20, (alone, during)
    task_id = created.tasks[0].job_task_id
    report(live, admin, "start_task", task_id, "s")
    report(live, admin, "finish_task", task_id, "f")
    for watcher in watchers:
        watcher.join(20)
    assert all(w.jobs()[-1][0] == job_pb2.JobInfo.SUCCESS for w in watchers)


def test_watchers_are_told_to_reconnect_at_shutdown(serve: Serve, token: Token) -> None:
    live = serve()
    admin = token()
    created = create(live, admin).response
    watchers = [Watcher(live, admin, created.job.job_id) for _ in range(3)]
    for watcher in watchers:
        watcher.start()
    assert all(w.first.wait(10) for w in watchers)
    live.app.stop(2)
    for watcher in watchers:
        watcher.join(10)
    assert {w.code for w in watchers} == {grpc.StatusCode.UNAVAILABLE}
    assert all(w.details.startswith("ERROR_SERVER_STOPPING") for w in watchers)


def test_a_watch_opened_while_the_server_stops_ends_at_once(serve: Serve, token: Token) -> None:
    live = serve(watch_keepalive_s=60)
    admin = token()
    job_id = create(live, admin).response.job.job_id
    live.app.hub.close()  # as at SIGTERM, while the port still takes calls
    started = time.monotonic()
    stub = producer_pb2_grpc.WatchStub(live.channel)
    stream = stub.watch(producer_pb2.WatchRequest(job_id=job_id), metadata=(("token", admin),))
    assert next(stream).job.job_id == job_id
    with pytest.raises(grpc.RpcError) as ended:
        next(stream)
    assert (ended.value.details() or "").startswith("ERROR_SERVER_STOPPING")
    assert time.monotonic() - started < 2, "not at the next keep-alive, a minute away"


CLI = str(Path(sys.executable).parent / "spaceone-job")


@pytest.mark.parametrize(("cancel", "status"), [(False, 0), (True, 1)])
def test_the_watch_command_follows_a_job_to_its_end(
    live: Live, token: Token, cancel: bool, status: int
) -> None:
    admin = token()
    created = create(live, admin).response
    process = subprocess.Popen(
        [CLI, "watch", created.job.job_id, "--token", admin, "--address", f"127.0.0.1:{live.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert "IN_PROGRESS 0/2 tasks" in process.stdout.readline()
    if cancel:
        live.call("cancel", job_pb2.JobRequest(job_id=created.job.job_id), admin)
    else:
        for n, task in enumerate(created.tasks):
            report(live, admin, "start_task", task.job_task_id, f"s-{n}")
            report(live, admin, "finish_task", task.job_task_id, f"f-{n}")
    out, err = process.communicate(timeout=30)
    assert process.returncode == status, err
    assert out.strip().splitlines()[-1] == ("CANCELED" if cancel else "SUCCESS")


class Streaming:
    """A collection with a change stream of the given changes, or none (``refusal``)."""

    def __init__(self, changes: list[dict[str, Any]], refusal: Exception | None = None) -> None:
        self.changes, self.refusal = changes, refusal

    @contextlib.contextmanager
    def watch(self, pipeline: Any, **options: Any) -> Iterator[Stream]:
        if self.refusal is not None:
            raise self.refusal
        yield Stream(self.changes)


class Stream:
    """A change stream of the given changes, each after a quiet wait, then closed."""

    def __init__(self, changes: list[dict[str, Any]]) -> None:
        self._left = [item for change in changes for item in (None, change)]

    @property
    def alive(self) -> bool:
        return bool(self._left)

    def try_next(self) -> dict[str, Any] | None:
        return self._left.pop(0)


class Recording(ChangeHub):
    def __init__(self) -> None:
        super().__init__(lambda job_id: None, polling=True)
        self.woken: list[str] = []
        self.recorded: list[tuple[str, str]] = []

    def notify(self, job_id: str) -> None:
        assert not self.polling, "an open change stream brings every change: no re-reads"
        self.woken.append(job_id)

    def record(self, job_id: str, token: str = "") -> None:
        assert self.streamed, "list-watchers hear of changes from the stream while it is open"
        self.recorded.append((job_id, token))


@pytest.mark.parametrize("journaled", [True, False], ids=["jobs", "tasks"])
def test_a_change_stream_wakes_the_watchers_of_jobs_any_replica_changed(journaled: bool) -> None:
    changes: list[dict[str, Any]] = [
        {"_id": {"_data": "8263A1"}, "fullDocument": {"job_id": "job-000000000001"}},
        {"_id": {"_data": "8263A2"}, "fullDocument": {}},
    ]
    hub = Recording()
    asyncio.run(ChangeFeed(MongoStore(Streaming(changes), "streaming"), hub, journaled).run())
    assert hub.woken == ["job-000000000001"]
    assert hub.recorded == ([("job-000000000001", "8263A1")] if journaled else [])
    assert hub.polling and not hub.streamed, "once the stream has ended, watchers re-read"


def test_without_change_streams_watchers_re_read(caplog: pytest.LogCaptureFixture) -> None:
    refusal = OperationFailure("The $changeStream stage is only supported on replica sets", 40573)
    caplog.set_level(logging.INFO, logger="spaceone_job.background")
    hub = ChangeHub(lambda job_id: None, polling=True)
    asyncio.run(ChangeFeed(MongoStore(Streaming([], refusal), "standalone"), hub, True).run())
    assert "watchers re-read on a timer" in caplog.text and hub.polling


class Counting:
    """Counts the store's reads of one job."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        read = store.find_one

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return read(*args, **kwargs)

        monkeypatch.setattr(store, "find_one", counted)


def start_watchers(live: Live, token: str, job_id: str, count: int) -> list[Watcher]:
    watchers = [Watcher(live, token, job_id) for _ in range(count)]
    for watcher in watchers:
        watcher.start()
    assert all(w.first.wait(20) for w in watchers)
    return watchers


def test_the_watchers_of_a_job_share_one_read_per_change(
    live: Live, token: Token, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    task_id = created.tasks[0].job_task_id
    watchers = start_watchers(live, admin, created.job.job_id, 50)
    counting = Counting(store, monkeypatch)
    for n in range(10):
        report(live, admin, "report_progress", task_id, f"p-{n}", created_count=1)
        time.sleep(0.05)
    report(live, admin, "finish_task", task_id, "f")
    for watcher in watchers:
        watcher.join(20)
    assert all(w.jobs()[-1][0] == job_pb2.JobInfo.SUCCESS for w in watchers)
    # The producers' own reads of the job, and one read per change for all 50 watchers.
    assert counting.reads <= 3 * 11, counting.reads


@pytest.mark.only_on(
    "embedded", why="in one process, writes reach watchers; MongoDB without streams re-reads"
)
def test_idle_watchers_read_nothing_when_every_change_reaches_them(
    live: Live, token: Token, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    watchers = start_watchers(live, admin, created.job.job_id, 20)
    counting = Counting(store, monkeypatch)
    time.sleep(2)
    assert counting.reads == 0, "no re-reads on a timer"
    live.call("cancel", job_pb2.JobRequest(job_id=created.job.job_id), admin)
    for watcher in watchers:
        watcher.join(10)
    assert all(w.jobs()[-1][0] == job_pb2.JobInfo.CANCELED for w in watchers)


def test_watchers_are_bounded_per_token_and_in_all(serve: Serve, token: Token) -> None:
    live = serve(max_watchers=5, max_watchers_per_token=3)
    first, second = token(), token(n=2)
    job_id = create(live, first, tasks=1).response.job.job_id
    kept = start_watchers(live, first, job_id, 3)
    extra = Watcher(live, first, job_id)
    extra.run()
    assert extra.code is grpc.StatusCode.RESOURCE_EXHAUSTED, extra.details
    assert extra.details.startswith("ERROR_TOO_MANY_REQUESTS")
    kept += start_watchers(live, second, job_id, 2)
    over = Watcher(live, second, job_id)
    over.run()
    assert over.code is grpc.StatusCode.RESOURCE_EXHAUSTED, "five in all"
    live.call("cancel", job_pb2.JobRequest(job_id=job_id), first)
    for watcher in kept:
        watcher.join(10)
    assert {w.code for w in kept} == {grpc.StatusCode.OK}


def test_a_watch_ends_unauthenticated_when_its_token_expires(live: Live, token: Token) -> None:
    admin = token()
    job_id = create(live, admin, tasks=1).response.job.job_id
    # Expired 28 s ago: valid for another 2 s of the 30 s leeway.
    expiring = token(exp=int(time.time()) - 28)
    watcher = Watcher(live, expiring, job_id)
    started = time.monotonic()
    watcher.start()
    watcher.join(15)
    assert watcher.code is grpc.StatusCode.UNAUTHENTICATED, watcher.details
    assert watcher.jobs() and time.monotonic() - started < 6


def test_progress_is_told_about_once_a_second_and_a_transition_at_once(
    live: Live, token: Token, clock: Clock
) -> None:
    admin = token()
    created = create(live, admin, tasks=1).response
    task_id = created.tasks[0].job_task_id
    watcher = Watcher(live, admin, created.job.job_id)
    watcher.start()
    assert watcher.first.wait(10)
    started = time.monotonic()
    for n in range(30):
        clock.advance(seconds=1)  # each report moves the job's updated_at
        report(live, admin, "report_progress", task_id, f"p-{n}", created_count=1)
        time.sleep(0.05)
    progress_s = time.monotonic() - started
    report(live, admin, "finish_task", task_id, "f")
    finished = time.monotonic()
    watcher.join(10)
    assert watcher.jobs()[-1][0] == job_pb2.JobInfo.SUCCESS
    assert time.monotonic() - finished < 1.0, "a transition is told at once"
    told = len(watcher.jobs()) - 2  # less the first event and the last
    assert 1 <= told <= progress_s / 1.0 + 2, (told, progress_s)


def _watch_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "spaceone_job.calls"]
    return [line for line in lines if line["method"] == "watch"]


def test_a_watch_logs_one_call_line_when_it_ends_saying_how_long_and_why(
    live: Live, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.calls")
    admin = token()
    job_id = create(live, admin, tasks=1).response.job.job_id
    stub = producer_pb2_grpc.WatchStub(live.channel)
    metadata = (("token", admin), ("x-request-id", "watch-1"))
    stream = stub.watch(producer_pb2.WatchRequest(job_id=job_id), metadata=metadata, timeout=30)
    next(stream)
    time.sleep(0.3)
    live.call("cancel", job_pb2.JobRequest(job_id=job_id), admin)
    assert [e.job.status for e in stream] == [job_pb2.JobInfo.CANCELED]
    assert ("x-request-id", "watch-1") in stream.trailing_metadata()
    with pytest.raises(grpc.RpcError) as missing:
        next(stub.watch(producer_pb2.WatchRequest(job_id="job-nope"), metadata=metadata[:1]))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    running = create(live, admin, request_id="run-2", tasks=1).response.job.job_id
    gone = stub.watch(producer_pb2.WatchRequest(job_id=running), metadata=metadata[:1])
    next(gone)
    gone.cancel()
    deadline = time.monotonic() + 5
    while len(_watch_lines(caplog)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    finished, not_found, cancelled = _watch_lines(caplog)
    assert finished["code"] == "OK" and finished["ended"] == "finished"
    assert finished["request_id"] == "watch-1" and finished["domain_id"] == "domain-aaaaaaaaaaaa"
    assert finished["duration_ms"] >= 300
    assert not_found["code"] == "NOT_FOUND" and not_found["ended"] == "ERROR_NOT_FOUND"
    assert cancelled["code"] == "CANCELLED" and cancelled["ended"] == "client went away"
