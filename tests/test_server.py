"""The real server: health, reflection through the real grpcurl binary, signals, the dev banner."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc

from spaceone_job import cli
from spaceone_job.app import JOB_SERVICE, JOB_TASK_SERVICE

from .conftest import Live, Serve, Token
from .support.tools import grpcurl

pytestmark = pytest.mark.only_on(
    "embedded", why="transport, TLS and the server's start, not storage"
)


CLI = str(Path(sys.executable).parent / "spaceone-job")


@pytest.mark.parametrize("service", ["", JOB_SERVICE, JOB_TASK_SERVICE])
def test_health_answers_serving(live: Live, service: str) -> None:
    health = health_pb2_grpc.HealthStub(live.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_grpcurl_lists_and_describes_the_job_service(live: Live) -> None:
    listed = grpcurl("-plaintext", f"127.0.0.1:{live.port}", "list")
    assert listed.returncode == 0, listed.stderr
    assert JOB_SERVICE in listed.stdout.split()
    described = grpcurl("-plaintext", f"127.0.0.1:{live.port}", "describe", JOB_SERVICE)
    assert described.returncode == 0, described.stderr
    for method in ("cancel", "get", "list", "stat"):
        assert f"rpc {method} (" in described.stdout


def test_unknown_methods_are_unimplemented_not_unauthenticated(live: Live) -> None:
    call = live.channel.unary_unary(f"/{JOB_SERVICE}/delete")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"", timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_calls_without_a_token_are_unauthenticated(live: Live) -> None:
    answer = live.call("get", job_pb2.JobRequest(job_id="job-000000000000"))
    assert answer.code is grpc.StatusCode.UNAUTHENTICATED
    assert answer.error_code == "ERROR_AUTHENTICATE_FAILURE"


@pytest.fixture
def served(tmp_path: Path, repo: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``spaceone-job serve`` in its own process on the demo data, with its printed banner."""
    seed_file = tmp_path / "demo.jsonl"
    subprocess.run([sys.executable, "-m", "spaceone_job.demo", "--out", str(seed_file)], check=True)
    env = {**os.environ, "SPACEONE_JOB_STATE_DIR": str(tmp_path / "state")}
    process = subprocess.Popen(
        [
            CLI,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(seed_file),
            "--grace-s",
            "3",
            "--http-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=repo,
    )
    assert process.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        banner.append(line.rstrip("\n"))
        if line.startswith("More tokens"):
            break
    yield process, banner
    if process.poll() is None:
        process.kill()
        process.wait()


def test_banner_commands_work_as_printed(
    served: tuple[subprocess.Popen[str], list[str]], repo: Path
) -> None:
    _, banner = served
    assignment = token_line(banner)
    assert sum(assignment.split("=", 1)[1] in line for line in banner) == 1, "printed once"
    commands = [line.strip() for line in banner if "grpcurl" in line or "curl -s" in line]
    assert len(commands) == 8
    outputs = []
    for command in commands:
        # As a person pastes them: the TOKEN line first, then the command, in a shell.
        done = subprocess.run(
            ["bash", "-c", f"{assignment}\n{command}"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=repo,
        )
        assert done.returncode == 0, f"{command[:80]}...: {done.stderr}"
        outputs.append(done.stdout)
    assert JOB_SERVICE in outputs[0]
    assert len(json.loads(outputs[2])["results"]) == 3
    job = json.loads(outputs[3])
    assert job["status"] == "IN_PROGRESS"
    tasks = json.loads(outputs[4])
    assert tasks["total_count"] == job["total_tasks"] >= 1
    assert {t["job_id"] for t in tasks["results"]} == {job["job_id"]}
    assert json.loads(outputs[5])["status"] == "CANCELED"
    # Over HTTP, the same calls: a page of three, and the job (canceled by now).
    assert len(json.loads(outputs[6])["results"]) == 3
    assert json.loads(outputs[7])["job_id"] == job["job_id"]


def token_line(banner: list[str]) -> str:
    return next(line for line in banner if line.startswith("TOKEN="))


def test_sigterm_drains_and_exits_zero(served: tuple[subprocess.Popen[str], list[str]]) -> None:
    process, _ = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    log = process.stderr.read()
    assert sum(line.endswith(": stopped") for line in log.splitlines()) == 1, log
    assert "Traceback" not in log


def test_sigterm_under_load_lets_in_flight_calls_finish(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    process, banner = served
    token = token_line(banner).split("=", 1)[1]
    address = next(w for w in " ".join(banner).split() if w.startswith("localhost:"))
    request = job_pb2.JobQuery()
    request.query.page.limit = 1000
    outcomes: list[tuple[float, grpc.StatusCode, str]] = []
    started = threading.Barrier(17)

    def stream() -> None:
        with grpc.insecure_channel(address) as channel:
            stub = job_pb2_grpc.JobStub(channel)
            for n in range(10_000):
                if n == 3:
                    started.wait()
                began = time.monotonic()
                try:
                    stub.list(request, metadata=(("token", token),), timeout=10)
                except grpc.RpcError as error:
                    outcomes.append((began, error.code(), error.details() or ""))
                    return
                outcomes.append((began, grpc.StatusCode.OK, ""))

    threads = [threading.Thread(target=stream) for _ in range(16)]
    for t in threads:
        t.start()
    started.wait()
    sigterm_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert process.wait(timeout=10) == 0
    failed = [(began, code, details) for began, code, details in outcomes if code.value[0]]
    # Calls that reach the server once it is stopping are refused UNAVAILABLE with an ERROR_*
    # code, which retry policies retry (never CANCELLED); calls under way all completed.
    assert len(failed) == 16
    assert {code for _, code, _ in failed} == {grpc.StatusCode.UNAVAILABLE}
    assert all(details.startswith("ERROR_SERVER_STOPPING") for _, _, details in failed), failed
    assert all(began > sigterm_at - 0.05 for began, _, _ in failed)
    ok_before = sum(began < sigterm_at for began, code, _ in outcomes if not code.value[0])
    assert ok_before >= 48


def test_a_log_reader_that_stalls_never_stalls_the_server(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    """Nobody reads the server's stderr here: once the pipe is full (64 KB, a few hundred
    lines), the lines wait in memory while calls and health go on; none is lost."""
    process, banner = served
    token = token_line(banner).split("=", 1)[1]
    address = next(w for w in " ".join(banner).split() if w.startswith("localhost:"))
    calls = 1500
    with grpc.insecure_channel(address) as channel:
        stub = job_pb2_grpc.JobStub(channel)
        for _ in range(calls):
            with pytest.raises(grpc.RpcError) as raised:
                stub.get(
                    job_pb2.JobRequest(job_id="job-nope"), metadata=(("token", token),), timeout=5
                )
            assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=JOB_SERVICE), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    process.send_signal(signal.SIGTERM)
    _, log = process.communicate(timeout=30)
    assert process.returncode == 0
    assert sum('"method":"get","code":"NOT_FOUND"' in line for line in log.splitlines()) == calls
    assert log.splitlines()[-1].endswith(": stopped")


def test_a_bad_seed_file_stops_the_start_with_its_line_number(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.jsonl"
    seed_file.write_text('{"domain_id": "d", "data_source_id": "ds"}\n{"domain_id": "d"}\n')
    done = subprocess.run(
        [CLI, "serve", "--port", "0", "--seed", str(seed_file), "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{seed_file}:2: data_source_id is required" in done.stderr


def test_requests_over_the_size_limit_are_refused(serve: Serve, token: Token) -> None:
    live = serve(max_receive_message_bytes=1024)
    request = job_pb2.JobQuery()
    request.query.keyword = "x" * 2048
    answer = live.call("list", request, token())
    assert answer.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert live.call("list", job_pb2.JobQuery(), token()).code is grpc.StatusCode.OK


@pytest.mark.parametrize("ports", [1, 2], ids=["grpc", "grpc and http"])
def test_serve_raises_its_open_files_limit_and_keeps_its_connection_cap_below_it(
    tmp_path: Path, ports: int
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2048:
        pytest.skip("needs a hard limit of open files above the soft one used here")
    env = {**os.environ, "SPACEONE_JOB_STATE_DIR": str(tmp_path / "state")}
    command = (
        f"ulimit -Sn 512 && exec {CLI} serve --host 127.0.0.1 --port 0 --max-connections {hard * 2}"
        + (" --http-port 0" if ports == 2 else "")
    )
    process = subprocess.Popen(
        ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not process.stdout.readline().startswith("More tokens"):
        pass
    limits = Path(f"/proc/{process.pid}/limits").read_text()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    (row,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft_now, hard_now = row.split()[3:5]
    assert int(soft_now) == int(hard_now) == hard, row
    assert f"open files limit raised from 512 to {hard}" in err
    lowered = f"lowered from {hard * 2} to {(hard - cli.RESERVED_FILES) // ports}:"
    assert f"--max-connections (SPACEONE_JOB_MAX_CONNECTIONS) {lowered}" in err
