"""Watch/watch_jobs: the jobs a console shows, listed, then every change, each event with a
resume token that a reconnecting client resumes from without losing or repeating a change."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from spaceone.api.cost_analysis.v1 import job_pb2
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth
from spaceone_job.journal import Journal

from .conftest import D2, WS1, WS2, Clock, Live, Serve, Token
from .support.producing import create, report

pytestmark = pytest.mark.only_on("embedded", why="the list-watch over the server")
SOURCE = "ds-000000000001"
CLI = str(Path(sys.executable).parent / "spaceone-job")


def watch_jobs(live: Live, token: str, **fields: Any) -> Any:
    stub = producer_pb2_grpc.WatchStub(live.channel)
    request = producer_pb2.WatchJobsRequest(**fields)
    return stub.watch_jobs(request, metadata=(("token", token),), timeout=20)


def until_listed(stream: Any) -> tuple[list[Any], Any]:
    """The listed jobs, and the ``listed`` mark."""
    jobs: list[Any] = []
    for event in stream:
        if event.HasField("listed"):
            return jobs, event
        jobs.append(event.job)
    raise AssertionError("the stream ended before its list did")


def next_change(stream: Any) -> Any:
    """The next event that is not a keep-alive."""
    for event in stream:
        if not event.HasField("keep_alive"):
            return event
    raise AssertionError("the stream ended")


def state(info: job_pb2.JobInfo) -> tuple[Any, ...]:
    return (info.job_id, info.status, info.remained_tasks)


@pytest.fixture
def live(serve: Serve) -> Live:
    return serve(watch_keepalive_s=0.3)


def test_the_sources_jobs_are_listed_newest_first_then_each_change_follows(
    live: Live, token: Token, clock: Clock
) -> None:
    admin = token()
    first = create(live, admin, "r-1", data_source_id=SOURCE, workspace_id=WS1).response
    clock.advance(seconds=1)
    second = create(live, admin, "r-2", data_source_id=SOURCE, workspace_id=WS2).response
    create(live, admin, "r-3", data_source_id="ds-000000000009")  # another source
    create(live, token(domain_id=D2), "r-4", data_source_id=SOURCE)  # another domain
    stream = watch_jobs(live, admin, data_source_id=SOURCE)
    listed, mark = until_listed(stream)
    assert [job.job_id for job in listed] == [second.job.job_id, first.job.job_id]
    assert mark.listed.count == 2
    assert mark.resume_token
    third = create(live, admin, "r-5", data_source_id=SOURCE, tasks=1).response  # domain level
    created = next_change(stream)
    assert created.job.job_id == third.job.job_id and created.resume_token != mark.resume_token
    report(live, admin, "start_task", third.tasks[0].job_task_id, "s-1")
    report(live, admin, "finish_task", third.tasks[0].job_task_id, "f-1")
    ended = next_change(stream)
    while ended.job.status != job_pb2.JobInfo.SUCCESS:
        ended = next_change(stream)
    stream.cancel()


def test_a_job_that_leaves_the_status_filter_is_gone(live: Live, token: Token) -> None:
    admin = token()
    job_id = create(live, admin, data_source_id=SOURCE).response.job.job_id
    stream = watch_jobs(live, admin, data_source_id=SOURCE, status=job_pb2.JobQuery.IN_PROGRESS)
    listed, _ = until_listed(stream)
    assert [job.job_id for job in listed] == [job_id]
    live.call("cancel", job_pb2.JobRequest(job_id=job_id), admin)
    gone = next_change(stream)
    assert gone.HasField("gone") and gone.gone.job_id == job_id
    assert gone.gone.status == job_pb2.JobInfo.CANCELED
    stream.cancel()


def test_a_keep_alive_carries_the_latest_token(live: Live, token: Token) -> None:
    admin = token()
    stream = watch_jobs(live, admin, data_source_id=SOURCE)
    _, mark = until_listed(stream)
    alive = next(stream)
    assert alive.HasField("keep_alive") and alive.resume_token == mark.resume_token
    create(live, admin, data_source_id=SOURCE)
    created = next_change(stream)
    alive = next(stream)
    assert alive.HasField("keep_alive") and alive.resume_token == created.resume_token
    stream.cancel()


def test_a_client_that_resumes_mid_burst_loses_and_repeats_no_change(
    live: Live, token: Token
) -> None:
    admin = token()
    # One running job a data source (the duplicate rule): four sources, one workspace.
    jobs = [
        create(live, admin, f"r-{i}", data_source_id=f"ds-00000000000{i}", workspace_id=WS1)
        for i in range(4)
    ]
    stream = watch_jobs(live, admin, workspace_id=WS1)
    listed, mark = until_listed(stream)
    heard: dict[str, list[tuple[Any, ...]]] = {job.job_id: [state(job)] for job in listed}
    token_now = mark.resume_token

    made_jobs = [answer.response for answer in jobs]

    def burst() -> None:
        for i, made in enumerate(made_jobs):
            for task in made.tasks:
                report(live, admin, "start_task", task.job_task_id, f"s-{i}")
                report(live, admin, "finish_task", task.job_task_id, f"f-{i}")

    producer = threading.Thread(target=burst)
    producer.start()
    for _ in range(3):  # a few changes, then the connection drops
        event = next_change(stream)
        heard[event.job.job_id].append(state(event.job))
        token_now = event.resume_token
    stream.cancel()
    producer.join(30)
    resumed = watch_jobs(live, admin, workspace_id=WS1, resume_token=token_now)
    done = {made.job.job_id for made in made_jobs}
    while any(heard[job_id][-1][1] != job_pb2.JobInfo.SUCCESS for job_id in done):
        event = next_change(resumed)
        assert not event.HasField("listed"), "a resumed watch does not list again"
        heard[event.job.job_id].append(state(event.job))
    resumed.cancel()
    for job_id, states in heard.items():
        assert all(a != b for a, b in itertools.pairwise(states)), (job_id, states)
        final = live.call("get", job_pb2.JobRequest(job_id=job_id), admin).response
        assert states[-1] == state(final), "the last state heard is the job's"


@pytest.mark.parametrize("resume_token", ["from-another-server", "0-1", "not a token"])
def test_a_token_this_server_cannot_replay_is_refused_so_the_client_lists_again(
    live: Live, token: Token, resume_token: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        next(watch_jobs(live, token(), resume_token=resume_token))
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert (refused.value.details() or "").startswith("ERROR_RESUME_TOO_OLD")


def test_a_token_older_than_the_window_is_refused(serve: Serve, token: Token) -> None:
    live = serve()
    live.app.hub.journal = Journal(window=3)
    admin = token()
    stream = watch_jobs(live, admin, data_source_id=SOURCE)
    _, mark = until_listed(stream)
    stream.cancel()
    for i in range(5):
        create(live, admin, f"r-{i}", data_source_id=SOURCE)
    with pytest.raises(grpc.RpcError) as refused:
        next(watch_jobs(live, admin, data_source_id=SOURCE, resume_token=mark.resume_token))
    assert (refused.value.details() or "").startswith("ERROR_RESUME_TOO_OLD")


def test_the_watcher_limit_holds_for_list_watches(serve: Serve, token: Token) -> None:
    live = serve(max_watchers=1)
    held = watch_jobs(live, token(), data_source_id=SOURCE)
    until_listed(held)
    with pytest.raises(grpc.RpcError) as refused:
        next(watch_jobs(live, token(), data_source_id=SOURCE))
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    held.cancel()


def test_a_workspace_member_sees_its_workspace_and_domain_level_jobs_only(
    live: Live, token: Token
) -> None:
    admin = token()
    mine = create(live, admin, "r-1", data_source_id=SOURCE, workspace_id="ws-111111111111")
    theirs = create(live, admin, "r-2", data_source_id=SOURCE, workspace_id="ws-222222222222")
    member = token(auth.WORKSPACE_MEMBER, workspace_id="ws-111111111111")
    stream = watch_jobs(live, member, data_source_id=SOURCE)
    listed, _ = until_listed(stream)
    assert [job.job_id for job in listed] == [mine.response.job.job_id]
    live.call("cancel", job_pb2.JobRequest(job_id=theirs.response.job.job_id), admin)
    live.call("cancel", job_pb2.JobRequest(job_id=mine.response.job.job_id), admin)
    assert next_change(stream).job.job_id == mine.response.job.job_id, "theirs is never told"
    stream.cancel()


def test_the_journal_replays_from_a_place_within_its_window() -> None:
    journal = Journal(window=3)
    start = journal.head
    for job_id in ("a", "b", "c"):
        journal.record(job_id)
    assert journal.since(start) == [(start + 1, "a"), (start + 2, "b"), (start + 3, "c")]
    assert journal.place(journal.token(start + 1)) == start + 1
    journal.record("d")
    assert journal.since(start) is None and journal.place(journal.token(start)) is None
    assert journal.since(journal.head) == []


def test_the_watch_command_shows_a_data_sources_jobs_live(live: Live, token: Token) -> None:
    admin = token()
    first = create(live, admin, "r-1", data_source_id=SOURCE).response.job.job_id
    command = [CLI, "watch", "--data-source", SOURCE, "--token", admin]
    process = subprocess.Popen(
        [*command, "--address", f"127.0.0.1:{live.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"{first} IN_PROGRESS 0/2 tasks" in process.stdout.readline()
        assert process.stdout.readline().strip() == f"1 job(s) of {SOURCE}; changes:"
        live.call("cancel", job_pb2.JobRequest(job_id=first), admin)
        assert f"{first} CANCELED" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0, "interrupted: done"


def test_the_watch_command_wants_a_job_or_a_data_source() -> None:
    done = subprocess.run([CLI, "watch", "--token", "t"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "spaceone-job: watch needs a job id, or --data-source"


def test_replicas_fed_by_one_change_stream_resume_each_others_tokens() -> None:
    first, second = Journal(), Journal()
    second.record("job-000000000000", "8263A0")  # the second replica has watched longer
    for journal in (first, second):
        for n in (1, 2, 3):
            journal.record(f"job-00000000000{n}", f"8263A{n}")
    token = first.token(first.place("8263A2") or 0)
    assert token == "8263A2", "an event's token is its change's, as the stream gave it"
    place = second.place(token)
    assert place is not None
    assert second.since(place) == [(place + 1, "job-000000000003")]
    second.record("job-000000000003", "8263A3")
    assert second.head == place + 1, "a change the stream gave twice is taken once"


def test_a_status_no_job_has_is_refused_naming_it(live: Live, token: Token) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        next(watch_jobs(live, token(), status=99))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "key = status" in (refused.value.details() or "")


@pytest.mark.parametrize("opened", ["before", "after"])
def test_a_list_watch_ends_server_stopping_at_once_when_the_server_stops(
    serve: Serve, token: Token, opened: str
) -> None:
    """Opened before the stop, or during the drain after it (the order a stream that had just
    sent its list loses to the stop, made certain)."""
    live = serve(watch_keepalive_s=60)
    stream = watch_jobs(live, token(), data_source_id=SOURCE)
    if opened == "before":
        until_listed(stream)
    started = time.monotonic()
    live.app.hub.close()  # as at SIGTERM
    if opened == "after":
        until_listed(stream)
    with pytest.raises(grpc.RpcError) as ended:
        next(stream)
    assert (ended.value.details() or "").startswith("ERROR_SERVER_STOPPING")
    assert time.monotonic() - started < 2, "not at the next keep-alive, a minute away"
