"""JSON over HTTP: every route answers as its gRPC twin, and HTTP's own mistakes are refused in
the console's shape.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, message
from spaceone.api.cost_analysis.v1 import (
    job_pb2,
    job_pb2_grpc,
    job_task_pb2,
    job_task_pb2_grpc,
)
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth, errors
from spaceone_job.api import http
from spaceone_job.server import StartError

from .conftest import Live, Serve, Token
from .support.http_calls import Reply, get, post, stream
from .support.readme import section


def over_grpc(
    live: Live, stub: Any, method: str, request: message.Message, token: str | None
) -> tuple[grpc.StatusCode, Any]:
    metadata = (("token", token),) if token else ()
    try:
        return grpc.StatusCode.OK, getattr(stub(live.channel), method)(
            request, metadata=metadata, timeout=10
        )
    except grpc.RpcError as error:
        return error.code(), error.details()


@pytest.fixture
def served(serve: Serve) -> Live:
    return serve(http_port=0)


def alike_over_http(
    live: Live,
    path: str,
    request: message.Message,
    token: str | None,
    over_grpc: tuple[grpc.StatusCode, Any],
    send: Callable[[Live, str, dict[str, Any], dict[str, str]], tuple[int, Any]],
) -> None:
    """``request`` sent over HTTP by ``send`` (at the rule's path and the console's) answers as
    it did over gRPC: the same status as its code, then the same JSON answer, or the same code
    and message as the details."""
    code, expected = over_grpc
    body = json_format.MessageToDict(request, preserving_proto_field_name=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for where in (path, http.console_path(path)):
        status, answer = send(live, where, body, headers)
        assert status == http.HTTP_STATUS[code], (where, answer)
        if code is grpc.StatusCode.OK:
            assert answer == expected, where
        else:
            assert f"{answer['detail']['code']}: {answer['detail']['message']}" == expected


def as_json(answer: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(answer, preserving_proto_field_name=True)


def twin(
    live: Live, path: str, stub: Any, method: str, request: message.Message, token: str | None
) -> None:
    """The same request over gRPC and over HTTP answer alike."""
    code, answer = over_grpc(live, stub, method, request, token)
    expected = as_json(answer) if code is grpc.StatusCode.OK else answer

    def send(live: Live, where: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        status, answered, _ = post(live, where, body, headers)
        return status, answered

    alike_over_http(live, path, request, token, (code, expected), send)


def stream_twin(
    live: Live, path: str, method: str, request: message.Message, token: str | None
) -> None:
    """A stream of Watch over gRPC and over HTTP (one event a JSON line) answer alike: the
    same events, or the same refusal."""
    metadata = (("token", token),) if token else ()
    stub = producer_pb2_grpc.WatchStub(live.channel)
    try:
        calls = getattr(stub, method)(request, metadata=metadata, timeout=10)
        answered: tuple[grpc.StatusCode, Any] = (grpc.StatusCode.OK, [as_json(e) for e in calls])
    except grpc.RpcError as error:
        answered = (error.code(), error.details())

    def send(live: Live, where: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        status, lines, _ = stream(live, where, body, headers)
        if status == 200:
            return status, lines
        (refused,) = lines  # a refusal is one line, alone
        return status, refused

    alike_over_http(live, path, request, token, answered, send)


def test_every_route_answers_as_its_grpc_twin(served: Live, token: Token) -> None:
    admin, member = token(), token(auth.WORKSPACE_MEMBER)
    producer = producer_pb2_grpc.ProducerStub
    created = producer_pb2_grpc.ProducerStub(served.channel).create_job(
        producer_pb2.CreateJobRequest(
            request_id="r-1",
            data_source_id="ds-000000000001",
            tasks=[producer_pb2.TaskSpec(), producer_pb2.TaskSpec()],
        ),
        metadata=(("token", admin),),
        timeout=10,
    )
    job_id, task_id = created.job.job_id, created.tasks[0].job_task_id
    p = "/spaceone-job/v1/producer"
    job, task = job_pb2_grpc.JobStub, job_task_pb2_grpc.JobTaskStub
    cases: list[tuple[str, Any, str, message.Message, str | None]] = [
        ("/cost-analysis/v1/job/get", job, "get", job_pb2.JobRequest(job_id=job_id), admin),
        ("/cost-analysis/v1/job/get", job, "get", job_pb2.JobRequest(job_id="job-nope"), admin),
        ("/cost-analysis/v1/job/get", job, "get", job_pb2.JobRequest(job_id=job_id), None),
        ("/cost-analysis/v1/job/list", job, "list", job_pb2.JobQuery(), admin),
        (
            "/cost-analysis/v1/job/stat",
            job,
            "stat",
            json_format.ParseDict({"query": {"distinct": "status"}}, job_pb2.JobStatQuery()),
            admin,
        ),
        ("/cost-analysis/v1/job/stat", job, "stat", job_pb2.JobStatQuery(), admin),
        (
            "/cost-analysis/v1/job-task/get",
            task,
            "get",
            job_task_pb2.JobTaskRequest(job_task_id=task_id),
            admin,
        ),
        (
            "/cost-analysis/v1/job-task/list",
            task,
            "list",
            job_task_pb2.JobTaskQuery(job_id=job_id),
            admin,
        ),
        (
            "/cost-analysis/v1/job-task/stat",
            task,
            "stat",
            json_format.ParseDict(
                {"query": {"distinct": "status"}}, job_task_pb2.JobTaskStatQuery()
            ),
            admin,
        ),
        (
            f"{p}/create_job",
            producer,
            "create_job",
            producer_pb2.CreateJobRequest(request_id="r-1", data_source_id="ds-000000000001"),
            admin,
        ),
        (
            f"{p}/start_task",
            producer,
            "start_task",
            producer_pb2.TaskRequest(request_id="s-1", job_task_id=task_id),
            admin,
        ),
        (
            f"{p}/report_progress",
            producer,
            "report_progress",
            producer_pb2.ProgressRequest(request_id="p-1", job_task_id=task_id, created_count=3),
            admin,
        ),
        (
            f"{p}/finish_task",
            producer,
            "finish_task",
            producer_pb2.FinishTaskRequest(request_id="f-1", job_task_id=task_id),
            admin,
        ),
        (
            "/spaceone-job/v1/history/list_events",
            producer_pb2_grpc.HistoryStub,
            "list_events",
            producer_pb2.ListEventsRequest(job_id=job_id),
            admin,
        ),
        (
            "/spaceone-job/v1/history/list_events",
            producer_pb2_grpc.HistoryStub,
            "list_events",
            producer_pb2.ListEventsRequest(job_id="job-nope"),
            admin,
        ),
        ("/cost-analysis/v1/job/cancel", job, "cancel", job_pb2.JobRequest(job_id=job_id), member),
        ("/cost-analysis/v1/job/cancel", job, "cancel", job_pb2.JobRequest(job_id=job_id), admin),
    ]
    for case in cases:
        if case[2] == "cancel" and case[4] == admin:
            # A cancel answers the job as canceled, and its tasks are canceled just after:
            # both twins ask once the job has settled.
            over_grpc(served, job, "cancel", job_pb2.JobRequest(job_id=job_id), admin)
        twin(served, *case)
    watch = "/spaceone-job/v1/watch/watch"
    for watched, caller in ((job_id, admin), ("job-nope", admin), (job_id, None)):
        stream_twin(served, watch, "watch", producer_pb2.WatchRequest(job_id=watched), caller)
    jobs = "/spaceone-job/v1/watch/watch_jobs"
    for resumed, caller in (("from-elsewhere", admin), ("", None)):
        request = producer_pb2.WatchJobsRequest(resume_token=resumed)
        stream_twin(served, jobs, "watch_jobs", request, caller)
    router = served.app.http.runner.app.router
    served_paths = {r.resource.canonical for r in router.routes() if r.method == "POST"}
    tried = {p for c in cases for p in (c[0], http.console_path(c[0]))}
    tried |= {p for stream in (watch, jobs) for p in (stream, http.console_path(stream))}
    assert tried == served_paths, "every route the descriptors give is in the conformance test"


BAD: dict[str, tuple[Callable[[Live], Reply], int, str]] = {
    "not JSON": (lambda live: post(live, "/cost-analysis/v1/job/list", b"{nope"), 400, "JSON"),
    "not an object": (lambda live: post(live, "/cost-analysis/v1/job/list", b"[1]"), 400, "object"),
    "an unknown field": (
        lambda live: post(live, "/cost-analysis/v1/job/list", {"colour": 1}),
        400,
        "colour",
    ),
    "another content type": (
        lambda live: post(
            live, "/cost-analysis/v1/job/list", b"{}", {"Content-Type": "text/plain"}
        ),
        400,
        "Content-Type",
    ),
    "an unknown path": (lambda live: post(live, "/cost-analysis/v1/job/nope", {}), 404, "path"),
    "a GET": (
        lambda live: post(live, "/cost-analysis/v1/job/list", b"", method="GET"),
        405,
        "Method",
    ),
    "a body over the limit": (
        lambda live: post(live, "/cost-analysis/v1/job/list", b" " * 2048 + b"{}"),
        413,
        "",
    ),
    "a deadline that is no number": (
        lambda live: post(live, "/cost-analysis/v1/job/list", {}, {http.TIMEOUT_HEADER: "soon"}),
        400,
        http.TIMEOUT_HEADER,
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_http_mistakes_are_refused_in_the_consoles_shape(serve: Serve, case: str) -> None:
    live = serve(http_port=0, max_receive_message_bytes=1024)
    send, status, mention = BAD[case]
    got, body, headers = send(live)
    assert got == status, body
    assert set(body) == {"detail"} and body["detail"]["code"].startswith("ERROR_")
    assert mention in json.dumps(body)
    if status == 405:
        assert headers["Allow"] == "POST"


def test_two_tokens_are_refused_and_a_stopping_server_answers_503(
    serve: Serve, token: Token
) -> None:
    live = serve(http_port=0)
    both = {"Authorization": f"Bearer {token()}", "token": token()}
    status, body, _ = post(live, "/cost-analysis/v1/job/list", {}, both)
    assert (status, body["detail"]["code"]) == (401, "ERROR_AUTHENTICATE_FAILURE")
    live.app.gate.close()  # every call now refused: the stop's refusal is UNAVAILABLE
    status, body, _ = post(live, "/cost-analysis/v1/job/list", {}, {"token": token()})
    assert (status, body["detail"]["code"]) == (503, "ERROR_SERVER_STOPPING")


def test_too_many_calls_are_429_with_retry_after() -> None:
    refused = http.refusal(errors.ServiceError(errors.Code.TOO_MANY_REQUESTS, "Too many."))
    assert (refused.status, refused.headers["Retry-After"]) == (429, http.RETRY_AFTER_S)


def test_the_request_id_comes_back_as_a_header(served: Live, token: Token) -> None:
    headers = {"token": token(), "x-request-id": "http-7"}
    status, _, answered = post(served, "/cost-analysis/job/list", {}, headers)
    assert (status, answered["x-request-id"]) == (200, "http-7")


def test_the_readmes_curl_lines_work_as_written(
    repo: Path, serve: Serve, token: Token, add: Callable[..., Any]
) -> None:
    add(job_id="job-000000000000")
    live = serve(http_port=0)
    (block,) = re.findall(r"```sh\n(.*?)```", section(repo, "Calling it over HTTP"), flags=re.S)
    answers = []
    for line in block.strip().splitlines():
        command = line.replace("localhost:8080", f"localhost:{live.app.http_port}")
        done = subprocess.run(
            ["bash", "-c", f"TOKEN={token()}\n{command}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        answers.append(json.loads(done.stdout))
    listed, got = answers
    assert listed["total_count"] == 1 and len(listed["results"]) == 1
    assert got["job_id"] == "job-000000000000" and got["status"] == "IN_PROGRESS"


def test_an_http_port_in_use_stops_the_start_naming_it(serve: Serve) -> None:
    taken = serve(http_port=0).app.http_port
    with pytest.raises(StartError, match=rf"--http-port \(\S+\): 127.0.0.1:{taken} is in use"):
        serve(http_port=taken)


def test_the_http_probes_follow_grpc_health(served: Live) -> None:
    assert get(served, "/healthz") == (200, {"status": "SERVING"})
    assert get(served, "/readyz") == (200, {"status": "SERVING"})
    assert served.app.served is not None
    away = served.app.served.report(False)  # as when the database is away, or at SIGTERM
    served.app.served.run(away)
    assert get(served, "/readyz") == (503, {"status": "NOT_SERVING"})
    assert get(served, "/healthz") == (200, {"status": "SERVING"}), "alive all the same"


def test_an_http_call_logs_its_line_with_the_route_it_came_by(
    served: Live, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.calls")
    post(served, "/cost-analysis/job/list", {}, {"token": token(), "x-request-id": "http-9"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "spaceone_job.calls"]
    (line,) = [line for line in lines if line["request_id"] == "http-9"]
    assert (line["method"], line["code"], line["route"]) == (
        "list",
        "OK",
        "/cost-analysis/job/list",
    )


def https_list(live: Live, token: str, pki: dict[str, Path], client_cert: bool) -> int | str:
    """A list over HTTPS, trusting the test CA (with the client certificate, or none): its
    status, or "refused" when the handshake is."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if client_cert:
        context.load_cert_chain(pki["client"], pki["client_key"])
    url = f"https://localhost:{live.app.http_port}/cost-analysis/v1/job/list"
    headers = {"Content-Type": "application/json", "token": token}
    request = urllib.request.Request(url, data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return int(answer.status)
    except (urllib.error.URLError, ssl.SSLError, ConnectionError):
        return "refused"


def test_http_serves_tls_and_mutual_tls_from_the_grpc_ports_files(
    serve: Serve, token: Token, pki: dict[str, Path]
) -> None:
    files = {"tls_cert": str(pki["server"]), "tls_key": str(pki["server_key"])}
    tls = serve(host="localhost", http_port=0, **files)
    assert https_list(tls, token(), pki, client_cert=False) == 200
    mutual = serve(host="localhost", http_port=0, tls_client_ca=str(pki["ca"]), **files)
    assert https_list(mutual, token(), pki, client_cert=True) == 200
    assert https_list(mutual, token(), pki, client_cert=False) == "refused"
