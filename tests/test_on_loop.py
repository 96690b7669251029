"""Which calls run on the server's event loop, and that they answer as they would on the pool.

A get on the embedded store, with keys that need no network, is answered on the event loop (a
hand-off to a pool thread and back costs more than the lookup); everything that may wait (a
database, identity, a long query) runs on the pool, so that health checks and watch streams never
wait behind it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2, job_task_pb2_grpc

from spaceone_job import auth
from spaceone_job.api.servicer import JobServicer, JobTaskServicer, OnLoop
from spaceone_job.store.mongo import MongoStore

from .conftest import D2, WS1, WS2, Answer, Live, Serve, Token
from .support.tools import health_of


def _threads_of_gets(live: Live, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads the service's get runs on, from now on."""
    names: list[str] = []
    original = live.app.service.get

    def get(*args: Any, **kwargs: Any) -> Any:
        names.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(live.app.service, "get", get)
    return names


def test_a_get_on_the_embedded_store_is_answered_on_the_event_loop(
    live: Live, token: Token, add: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    add(job_id="job-000000000001")
    names = _threads_of_gets(live, monkeypatch)
    answer = live.call("get", job_pb2.JobRequest(job_id="job-000000000001"), token())
    assert answer.code is grpc.StatusCode.OK
    if live.app.store.in_memory:
        assert names == ["grpc-loop"]
    else:  # SPACEONE_JOB_TEST_MONGODB_URI: the driver blocks, so the pool
        assert len(names) == 1 and names[0].startswith("rpc"), names


class SlowCollection:
    """A MongoDB collection that takes ``delay_s`` to answer any read (and finds nothing)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.database: defaultdict[str, SlowCollection] = defaultdict(lambda: self)

    def find_one(self, *args: Any, **kwargs: Any) -> None:
        time.sleep(self.delay_s)

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("no change streams here")


def test_a_get_that_waits_on_the_database_runs_on_the_pool_and_holds_up_nothing(
    serve: Serve, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = serve(MongoStore(SlowCollection(2.0), "slow"), timeout_s=0)  # no sweeper
    names = _threads_of_gets(live, monkeypatch)
    request = job_pb2.JobRequest(job_id="job-000000000001")
    answers: list[Answer] = []
    waiting = [
        threading.Thread(target=lambda: answers.append(live.call("get", request, token())))
        for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    while len(names) < 2:
        time.sleep(0.01)
    began = time.monotonic()
    assert health_of(live) == health_pb2.HealthCheckResponse.SERVING
    assert time.monotonic() - began < 0.5, "health waited behind the database"
    for thread in waiting:
        thread.join(10)
    assert all(name.startswith("rpc") for name in names), names
    assert [a.code for a in answers] == [grpc.StatusCode.NOT_FOUND] * 2


class _Servicer:
    def __init__(self, in_memory: bool, may_wait: bool) -> None:
        self.in_memory = in_memory
        self.authenticator = type("Keys", (), {"may_wait": may_wait})()


@pytest.mark.parametrize(
    ("rpc", "in_memory", "may_wait", "on_loop"),
    [
        (JobServicer.get, True, False, True),
        (JobTaskServicer.get, True, False, True),
        (JobServicer.get, False, False, False),  # MongoDB: the driver blocks
        (JobServicer.get, True, True, False),  # keys or app permissions from identity
        (JobServicer.list, True, False, False),  # a scan: may take long
        (JobServicer.stat, True, False, False),
        (JobServicer.cancel, True, False, False),  # writes wait for the store's lock
    ],
)
def test_only_lookups_that_cannot_wait_run_on_the_loop(
    rpc: Any, in_memory: bool, may_wait: bool, on_loop: bool
) -> None:
    servicer: Any = _Servicer(in_memory, may_wait)
    with ThreadPoolExecutor(1) as pool:
        assert OnLoop(servicer, pool).on_loop(rpc) is on_loop


def test_keys_that_may_ask_identity_may_wait(dev_keys: auth.DevKeys) -> None:
    assert not auth.Authenticator.from_jwks_file(dev_keys.jwks).may_wait
    identity: Any = object()
    assert auth.Authenticator(auth.DomainKeys(identity), identity=identity).may_wait
    assert auth.Authenticator(auth.JwksKeys(dev_keys.jwks), identity=identity).may_wait


def _job_task_get(live: Live, job_task_id: str, token: str) -> Answer:
    stub = job_task_pb2_grpc.JobTaskStub(live.channel)
    try:
        response, call = stub.get.with_call(
            job_task_pb2.JobTaskRequest(job_task_id=job_task_id),
            metadata=(("token", token),),
            timeout=10,
        )
    except grpc.RpcError as error:
        return Answer(None, error.code(), error.details() or "", error.trailing_metadata() or ())
    return Answer(response, call.code(), call.details() or "", call.trailing_metadata() or ())


def _seen(answer: Answer) -> tuple[Any, ...]:
    """What a caller sees of an answer, but the request id (new on every call)."""
    trailers = tuple(sorted((k, v) for k, v in answer.trailing if k != "x-request-id"))
    return answer.response, answer.code, answer.details, trailers


def test_the_loop_and_the_pool_answer_gets_alike(
    serve: Serve, token: Token, add: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    add(job_id="job-000000000001")
    add(job_id="job-000000000002", workspace_id="*")
    add(job_id="job-000000000003", workspace_id=WS2)
    add(job_id="job-000000000004", domain_id=D2)
    member = token(auth.WORKSPACE_MEMBER, workspace_id=WS1)
    calls: list[tuple[str, str | None]] = [
        *((f"job-00000000000{n}", token()) for n in range(1, 6)),
        *((f"job-00000000000{n}", member) for n in range(1, 4)),
        ("  job-000000000001  ", token()),
        ("", token()),
        ("j" * 10_000, token()),
        ("job-000000000001", None),
        ("job-000000000001", "not-a-token"),
        ("job-000000000001", token(exp=int(time.time()) - 3600)),
        ("job-000000000001", token(domain_id="")),
    ]
    on_loop = serve()
    monkeypatch.setattr(OnLoop, "on_loop", lambda self, rpc: False)
    on_pool = serve()
    assert on_loop.port != on_pool.port
    codes: set[grpc.StatusCode] = set()
    for job_id, caller in calls:
        request = job_pb2.JobRequest(job_id=job_id)
        ours, theirs = (_seen(live.call("get", request, caller)) for live in (on_loop, on_pool))
        assert ours == theirs, job_id[:40]
        codes.add(ours[1])
    assert codes == {
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
    }
    tasks = {_seen(_job_task_get(live, "task-nope", token())) for live in (on_loop, on_pool)}
    assert len(tasks) == 1
