"""No caller's query outlives its time limit, and health answers meanwhile (embedded store).

On MongoDB ``maxTimeMS`` does this; the embedded store keeps the same promise with its own means
(see ``spaceone_job/store/embedded.py``), so these tests are about the embedded store.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import cpu
from spaceone_job.errors import as_service_error
from spaceone_job.store.documents import OutOfTime
from spaceone_job.store.protocol import Store
from spaceone_job.store.stages import MAX_ROWS

from .conftest import Answer, Live, Serve, ServeProcess, Token

pytestmark = pytest.mark.only_on(
    "embedded",
    why="the embedded store's own time limits (MongoDB ends queries at maxTimeMS: test_mongo_wire)",
)


# Catastrophic backtracking that the regex module does not optimise away.
SLOW_PATTERN = "(a|aa)+$"
SLOW_TEXT = "a" * 60 + "!"
LIMIT_S = 1.0
SLACK_S = 0.5


def probe_health(live: Live, stop: threading.Event, worst: list[float]) -> None:
    """Check health every 50 ms until ``stop``; record the slowest answer (inf on failure)."""
    stub = health_pb2_grpc.HealthStub(live.channel)
    while not stop.is_set():
        started = time.monotonic()
        try:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            worst.append(time.monotonic() - started)
        except grpc.RpcError:
            worst.append(float("inf"))
        stop.wait(0.05)


def timed_with_health(live: Live, call: Callable[[], Answer]) -> tuple[Answer, float, float]:
    """The answer, how long it took, and the slowest health answer while it ran."""
    stop, worst = threading.Event(), [0.0]
    prober = threading.Thread(target=probe_health, args=(live, stop, worst))
    prober.start()
    started = time.monotonic()
    answer = call()
    elapsed = time.monotonic() - started
    stop.set()
    prober.join(5)
    return answer, elapsed, max(worst)


def assert_timed_out(answer: Answer, elapsed: float, health_s: float) -> None:
    assert answer.code is grpc.StatusCode.DEADLINE_EXCEEDED, answer.details
    assert answer.error_code == "ERROR_REQUEST_TIMEOUT"
    assert elapsed < LIMIT_S + SLACK_S, elapsed
    assert health_s < 1.0, health_s


@pytest.mark.parametrize("operator", ["regex", "regex_in"])
def test_a_backtracking_pattern_stops_at_the_query_limit(
    serve: Serve, token: Token, store: Store, add: Callable[..., Any], operator: str
) -> None:
    for i in range(3):
        add(job_id=f"job-{i:012x}", error_message=SLOW_TEXT)
    live = serve(query_timeout_ms=int(LIMIT_S * 1000))
    value: Any = SLOW_PATTERN if operator == "regex" else [SLOW_PATTERN]
    request = json_format.ParseDict(
        {"query": {"filter": [{"k": "error_message", "v": value, "o": operator}]}},
        job_pb2.JobQuery(),
    )
    answer, elapsed, health_s = timed_with_health(
        live, lambda: live.call("list", request, token(), timeout=30)
    )
    assert_timed_out(answer, elapsed, health_s)
    # The server is not left busy: the next call answers at once.
    assert live.call("get", job_pb2.JobRequest(job_id="job-000000000000"), token()).code is (
        grpc.StatusCode.OK
    )


def test_the_client_deadline_bounds_a_backtracking_pattern(
    serve: Serve, token: Token, store: Store, add: Callable[..., Any]
) -> None:
    add(error_message=SLOW_TEXT)
    live = serve()  # query limit 10 s: the client's 0.5 s is sooner
    request = json_format.ParseDict(
        {"query": {"filter": [{"k": "error_message", "v": SLOW_PATTERN, "o": "regex"}]}},
        job_pb2.JobStatQuery(),
    )
    request.query.aggregate.add().count.name = "n"
    started = time.monotonic()
    answer = live.call("stat", request, token(), timeout=0.5)
    assert answer.code is grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler let go too: the very next call is served at once.
    assert live.call("list", job_pb2.JobQuery(), token()).code is grpc.StatusCode.OK
    assert time.monotonic() - started < 0.5 + SLACK_S


def test_a_pipeline_that_multiplies_rows_stops_at_the_query_limit(
    serve_process: ServeProcess, token: Token
) -> None:
    # Its own process: the 200,000 rows it makes and drops cost the heap they land in a full
    # collection, and the test's heap is large.
    jobs = [{"job_id": f"job-{i:012x}", "total_tasks": i} for i in range(450)]
    live = serve_process(jobs, "--query-timeout-ms", str(int(LIMIT_S * 1000)))
    stages = [
        {
            "group": {
                "fields": [
                    {"key": "total_tasks", "name": "a", "operator": "push"},
                    {"key": "total_tasks", "name": "b", "operator": "push"},
                ]
            }
        },
        {"unwind": {"path": "a"}},
        {"unwind": {"path": "b"}},  # 450 x 450 rows
        {"group": {"keys": [{"key": "a", "name": "a"}, {"key": "b", "name": "b"}]}},
        {"sort": [{"key": "a"}]},
    ]
    request = json_format.ParseDict({"query": {"aggregate": stages}}, job_pb2.JobStatQuery())
    answer, elapsed, health_s = timed_with_health(
        live, lambda: live.call("stat", request, token(), timeout=30)
    )
    assert_timed_out(answer, elapsed, health_s)


def test_an_unwind_past_the_row_cap_is_refused_before_it_runs(
    api: Any, token: Token, store: Store, add: Callable[..., Any]
) -> None:
    for i in range(600):
        add(job_id=f"job-{i:012x}")
    stages = [
        {
            "group": {
                "fields": [
                    {"key": "job_id", "name": "a", "operator": "push"},
                    {"key": "job_id", "name": "b", "operator": "push"},
                ]
            }
        },
        {"unwind": {"path": "a"}},
        {"unwind": {"path": "b"}},  # 360,000 rows > the cap
    ]
    request = json_format.ParseDict({"query": {"aggregate": stages}}, job_pb2.JobStatQuery())
    answer = api.call("stat", request, token())
    assert answer.code is grpc.StatusCode.INVALID_ARGUMENT
    assert str(MAX_ROWS) in answer.details


def test_the_watchdog_interrupts_again_when_an_interruption_is_swallowed() -> None:
    swallowed: list[BaseException] = []

    def work(deadline: float) -> None:
        while True:
            try:
                while True:
                    time.sleep(0.001)
            except BaseException as exc:  # lost once, as one raised inside a GC callback is
                if swallowed:
                    raise
                swallowed.append(exc)

    started = time.monotonic()
    with pytest.raises(OutOfTime):
        cpu.WATCHDOG.run(0.1, work)
    assert len(swallowed) == 1
    assert time.monotonic() - started < 0.1 + SLACK_S


def test_the_watchdog_interrupts_python_work_and_forgets_finished_work() -> None:
    started = time.monotonic()
    with pytest.raises(OutOfTime) as raised:
        cpu.WATCHDOG.run(0.2, lambda deadline: [None for _ in iter(int, 1)])
    assert as_service_error(raised.value).code == "ERROR_REQUEST_TIMEOUT"
    assert time.monotonic() - started < 0.2 + SLACK_S
    # Work that ends in time is never interrupted later, even when its deadline passes.
    assert cpu.WATCHDOG.run(0.05, lambda deadline: 42) == 42
    time.sleep(0.15)
    assert sum(range(1000)) == 499500


def test_no_interruption_outlives_the_guarded_work() -> None:
    """Work that stops itself at its deadline (as a regex timeout does) while the watchdog
    fires too: nothing may reach the thread once the guarded call has returned."""

    quiet, peer = socket.socketpair()  # the peer stays open and silent

    def until_deadline(deadline: float) -> None:
        # As a regex search: a C call that waits outside the interpreter lock past the deadline
        # and returns with its own timeout error, so the watchdog fires while that error is
        # already on its way out.
        quiet.settimeout(max(deadline - time.monotonic(), 0) + 0.002)
        try:
            quiet.recv(1)
        except TimeoutError:
            raise cpu.Interrupted from None

    for _ in range(200):
        with pytest.raises(OutOfTime):
            cpu.WATCHDOG.run(0.001, until_deadline)
    quiet.close()
    peer.close()
    stray_until = time.monotonic() + 0.3
    while time.monotonic() < stray_until:  # a stray interruption would land in this loop
        sum(range(100))
