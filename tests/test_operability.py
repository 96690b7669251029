"""Operability: database outages, deadlines, load limits, replicas, request ids, metrics, TLS."""

from __future__ import annotations

import io
import json
import logging
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from pymongo.errors import AutoReconnect, ExecutionTimeout, NetworkTimeout
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc

from spaceone_job import auth, cli, observe
from spaceone_job.app import JOB_SERVICE, App
from spaceone_job.config import Settings
from spaceone_job.errors import Code, ServiceError
from spaceone_job.store.connect import connect
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.protocol import Store

from .conftest import Live, Serve, Token, together
from .support.tools import health_of

pytestmark = pytest.mark.only_on(
    "embedded",
    why="the server's logs, metrics, limits and drain; test_mongo_wire has MongoDB's failures",
)


CLOSED_PORT_URI = "mongodb://127.0.0.1:9/?directConnection=true"


def test_unreachable_database_answers_unavailable_fast_and_health_follows(
    serve: Serve, token: Token
) -> None:
    down = connect(CLOSED_PORT_URI, "cost-analysis", db_timeout_ms=300)
    live = serve(down, db_timeout_ms=300)
    started = time.monotonic()
    answer = live.call("get", job_pb2.JobRequest(job_id="job-000000000001"), token())
    assert time.monotonic() - started < 2
    assert answer.code is grpc.StatusCode.UNAVAILABLE
    assert answer.error_code == "ERROR_DB_UNAVAILABLE"
    monitor, served = live.app.monitor, live.app.served
    assert monitor is not None and served is not None and served.run(monitor.check()) is False
    assert health_of(live) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_of(live, "") == health_pb2.HealthCheckResponse.NOT_SERVING


def test_the_client_deadline_bounds_a_call_to_a_dead_database(serve: Serve, token: Token) -> None:
    down = connect(CLOSED_PORT_URI, "cost-analysis", db_timeout_ms=5000)
    live = serve(down)
    started = time.monotonic()
    answer = live.call("list", job_pb2.JobQuery(), token(), timeout=0.5)
    assert time.monotonic() - started < 1.5, "never the driver's 30 s"
    assert answer.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_health_recovers_when_the_database_returns(
    live: Live, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor, served = live.app.monitor, live.app.served
    assert monitor is not None and served is not None
    monkeypatch.setattr(store, "ping", lambda timeout=None: False)
    served.run(monitor.check())
    assert health_of(live) == health_pb2.HealthCheckResponse.NOT_SERVING
    monkeypatch.setattr(store, "ping", lambda timeout=None: True)
    served.run(monitor.check())
    assert health_of(live) == health_pb2.HealthCheckResponse.SERVING


class Failing:
    """A collection that raises a given driver error on every read."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        # Every collection of its database fails alike (the job tasks beside the jobs).
        self.database: defaultdict[str, Failing] = defaultdict(lambda: self)

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            ExecutionTimeout("operation exceeded time limit", 50),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "ERROR_REQUEST_TIMEOUT",
        ),
        (NetworkTimeout("timed out"), grpc.StatusCode.DEADLINE_EXCEEDED, "ERROR_REQUEST_TIMEOUT"),
        (AutoReconnect("connection reset"), grpc.StatusCode.UNAVAILABLE, "ERROR_DB_UNAVAILABLE"),
    ],
)
def test_database_failures_map_to_statuses(
    serve: Serve, token: Token, error: Exception, status: grpc.StatusCode, code: str
) -> None:
    live = serve(MongoStore(Failing(error), "failing"))
    calls = [("get", job_pb2.JobRequest(job_id="job-000000000001")), ("list", job_pb2.JobQuery())]
    for method, request in calls * 2:  # the server keeps answering
        answer = live.call(method, request, token())
        assert (answer.code, answer.error_code) == (status, code)


def test_calls_over_the_limit_are_refused_and_health_still_answers(
    serve: Serve, token: Token, add: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    add(job_id="job-000000000001")
    live = serve(max_concurrent_rpcs=1)
    entered, release = threading.Event(), threading.Event()
    original = live.app.service.list_documents

    def slow_list(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(live.app.service, "list_documents", slow_list)
    first: list[Any] = []
    blocked = threading.Thread(
        target=lambda: first.append(live.call("list", job_pb2.JobQuery(), token()))
    )
    blocked.start()
    assert entered.wait(10)
    # A get is answered on the event loop (a lookup in memory), and still counts against the limit.
    refused = live.call("get", job_pb2.JobRequest(job_id="job-000000000001"), token())
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.error_code == "ERROR_TOO_MANY_REQUESTS"
    assert health_of(live) == health_pb2.HealthCheckResponse.SERVING
    release.set()
    blocked.join(10)
    assert first[0].code is grpc.StatusCode.OK
    assert live.call("get", job_pb2.JobRequest(job_id="job-000000000001"), token()).code is (
        grpc.StatusCode.OK
    )


def test_a_call_cut_off_by_the_stop_leaves_no_thread_behind(
    serve: Serve, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread left waiting would keep the process from exiting after SIGTERM.
    live = serve()
    entered, release = threading.Event(), threading.Event()
    workers: list[threading.Thread] = []

    def slow_get(*args: Any, **kwargs: Any) -> Any:
        workers.append(threading.current_thread())
        entered.set()
        release.wait(10)
        raise ServiceError(Code.NOT_FOUND, "gone", resource_type="Job")

    monkeypatch.setattr(live.app.service, "get", slow_get)
    caller = threading.Thread(
        target=live.call, args=("get", job_pb2.JobRequest(job_id="job-000000000001"), token())
    )
    caller.start()
    assert entered.wait(10)
    live.app.stop(0)  # the call outlives a grace period of 0
    release.set()
    caller.join(10)
    workers[0].join(10)
    assert not workers[0].is_alive()


def test_a_stop_ends_the_background_tasks_and_their_threads(serve: Serve, store: Store) -> None:
    live = serve(health_interval_s=0.01, sweep_interval_s=0.01, timeout_s=60)
    assert sorted(live.app.background.names) == ["health-monitor", "sweeper"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _background_threads():
        time.sleep(0.01)
    assert _background_threads(), "each round's blocking part runs on a background thread"
    live.app.stop(0)
    assert live.app.background.names == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _background_threads():
        time.sleep(0.01)
    assert not _background_threads()


def _background_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("background_") and t.is_alive()]


def test_two_replicas_on_one_store_cancel_once(
    serve: Serve, token: Token, add: Callable[..., dict[str, Any]], writes: list[Any]
) -> None:
    add(job_id="job-000000000001")
    replicas = [serve(), serve()]
    request, caller = job_pb2.JobRequest(job_id="job-000000000001"), token()
    answers = together(12, lambda i: replicas[i % 2].call("cancel", request, caller))
    assert [a.code for a in answers] == [grpc.StatusCode.OK] * 12
    assert len(writes) == 1


def test_each_call_logs_one_line_and_returns_its_request_id(
    live: Live, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    stub = job_pb2_grpc.JobStub(live.channel)
    caplog.set_level(logging.INFO, logger="spaceone_job.calls")
    _, call = stub.list.with_call(
        job_pb2.JobQuery(), metadata=(("token", token()), ("x-request-id", "req-42")), timeout=5
    )
    assert ("x-request-id", "req-42") in call.trailing_metadata()
    with pytest.raises(grpc.RpcError) as raised:
        stub.get(job_pb2.JobRequest(job_id="job-nope"), metadata=(("token", token()),), timeout=5)
    generated = dict(raised.value.trailing_metadata())["x-request-id"]
    assert len(generated) == 32
    lines = [r.getMessage() for r in caplog.records if r.name == "spaceone_job.calls"]
    assert len(lines) == 2
    assert '"method":"list","code":"OK"' in lines[0] and '"request_id":"req-42"' in lines[0]
    assert '"code":"NOT_FOUND","error":"ERROR_NOT_FOUND"' in lines[1]
    assert (
        '"domain_id":"domain-aaaaaaaaaaaa"' in lines[1]
        and f'"request_id":"{generated}"' in lines[1]
    )


def test_prometheus_metrics_count_calls(serve: Serve, token: Token) -> None:
    live = serve(metrics_port=0)
    live.call("list", job_pb2.JobQuery(), token())
    live.call("get", job_pb2.JobRequest(job_id="job-nope"), token())
    with urllib.request.urlopen(
        f"http://127.0.0.1:{live.app.metrics_port}/metrics", timeout=5
    ) as page:
        text = page.read().decode()
    assert 'spaceone_job_calls_total{code="OK",method="list"}' in text
    assert 'spaceone_job_calls_total{code="NOT_FOUND",method="get"}' in text
    assert "spaceone_job_call_seconds_bucket" in text and "spaceone_job_calls_in_flight" in text
    assert "spaceone_job_log_lines_dropped_total" in text


def _secure_list(port: int, token: str, pki: dict[str, Path], client_cert: bool) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki["client_key"].read_bytes() if client_cert else None,
        certificate_chain=pki["client"].read_bytes() if client_cert else None,
    )
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        try:
            job_pb2_grpc.JobStub(channel).list(
                job_pb2.JobQuery(), metadata=(("token", token),), timeout=5
            )
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_tls(serve: Serve, token: Token, pki: dict[str, Path]) -> None:
    live = serve(host="localhost", tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]))
    assert _secure_list(live.port, token(), pki, client_cert=False) is grpc.StatusCode.OK


def test_mutual_tls_requires_a_clientcertificate(
    serve: Serve, token: Token, pki: dict[str, Path]
) -> None:
    live = serve(
        host="localhost",
        tls_cert=str(pki["server"]),
        tls_key=str(pki["server_key"]),
        tls_client_ca=str(pki["ca"]),
    )
    assert _secure_list(live.port, token(), pki, client_cert=True) is grpc.StatusCode.OK
    assert _secure_list(live.port, token(), pki, client_cert=False) is grpc.StatusCode.UNAVAILABLE


def test_overload_is_refused_at_once_and_health_always_answers(
    serve: Serve, token: Token, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = serve()  # the default call limit: 64
    limit = live.app.settings.max_concurrent_rpcs
    entered, release = threading.Semaphore(0), threading.Event()
    original = live.app.service.list_documents

    def slow_list(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(live.app.service, "list_documents", slow_list)
    stub = job_pb2_grpc.JobStub(live.channel)
    metadata = (("token", token()),)
    slow = [
        stub.list.future(job_pb2.JobQuery(), metadata=metadata, timeout=60) for _ in range(limit)
    ]
    for _ in range(limit):
        assert entered.acquire(timeout=20)
    sent = time.monotonic()
    extra = [
        stub.list.future(job_pb2.JobQuery(), metadata=metadata, timeout=60) for _ in range(300)
    ]
    health = health_pb2_grpc.HealthStub(live.channel)
    slowest = 0.0
    for _ in range(10):
        started = time.monotonic()
        health.Check(health_pb2.HealthCheckRequest(service=JOB_SERVICE), timeout=1)
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 1.0
    refusals = [call.exception() for call in extra]
    assert time.monotonic() - sent < 5, "refused at once, not queued behind the slow calls"
    assert all(isinstance(error, grpc.RpcError) for error in refusals)
    assert {error.code() for error in refusals} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all(error.details().startswith("ERROR_TOO_MANY_REQUESTS") for error in refusals)
    release.set()
    assert all(call.result() is not None for call in slow)


def test_metrics_listen_on_the_service_host_and_only_at_metrics(serve: Serve) -> None:
    live = serve(host="127.0.0.1", metrics_port=0)
    assert live.app.metrics is not None
    assert live.app.metrics.server_address[0] == "127.0.0.1"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{live.app.metrics_port}/", timeout=5)
    assert missing.value.code == 404
    apart = serve(host="127.0.0.1", metrics_port=0, metrics_host="127.0.0.2")
    assert apart.app.metrics is not None
    assert apart.app.metrics.server_address[0] == "127.0.0.2"


def test_a_token_from_other_keys_logs_where_the_development_keys_are(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spaceone_job.auth")
    other = auth.dev_keys(Path(tempfile.mkdtemp()))
    foreign = auth.mint_token(other.private_key, domain_id="domain-x")
    answer = live.call("list", job_pb2.JobQuery(), foreign)
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED
    assert str(live.app.settings.state_path) in caplog.text
    assert "spaceone-job token --state-dir" in caplog.text


def test_json_logs_keep_each_calls_fields_one_object_a_line(live: Live, token: Token) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observe.JsonFormatter())
    calls = logging.getLogger("spaceone_job.calls")
    calls.addHandler(handler)
    calls.setLevel(logging.INFO)
    try:
        live.call("get", job_pb2.JobRequest(job_id="job-nope"), token())
        logging.getLogger("spaceone_job.calls").error("boom", exc_info=ValueError("x"))
    finally:
        calls.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["logger"] == "spaceone_job.calls" and first["method"] == "get"
    assert (first["code"], first["error"]) == ("NOT_FOUND", "ERROR_NOT_FOUND")
    assert "does not exist" in first["reason"] and "duration_ms" in first
    assert second["message"] == "boom" and "ValueError" in second["exception"]


def test_reflection_v1_is_served_beside_v1alpha(live: Live) -> None:
    for service in (
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ):
        method = live.channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        (answer,) = method(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        assert JOB_SERVICE in {s.name for s in answer.list_services_response.service}


def test_the_banner_is_printed_while_the_database_is_down(tmp_path: Path) -> None:
    down = connect(CLOSED_PORT_URI, "cost-analysis", db_timeout_ms=300)
    app = App(Settings(host="127.0.0.1", port=0, state_dir=str(tmp_path)), store=down)
    started = time.monotonic()
    banner = cli._banner(app, 50051)
    assert time.monotonic() - started < 3
    assert "TOKEN=" in banner and "/list" in banner
    assert "/get" not in banner and "/cancel" not in banner, "no job to show"


def test_in_mtls_mode_the_banner_and_start_line_say_so(
    serve: Serve, pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.app")
    live = serve(
        host="localhost",
        tls_cert=str(pki["server"]),
        tls_key=str(pki["server_key"]),
        tls_client_ca=str(pki["ca"]),
    )
    banner = cli._banner(live.app, live.port)
    assert "-plaintext" not in banner
    assert f"-cacert {pki['ca']} -cert client.pem -key client.key" in banner
    started = [r.getMessage() for r in caplog.records if "listening on" in r.getMessage()]
    assert len(started) == 1 and "(mTLS)" in started[0], "one start-up line, saying mTLS"
