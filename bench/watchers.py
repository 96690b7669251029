"""Watch streams cost the other calls little.

1. `get` at concurrency 1, alone and with 500 watch streams waiting (the server in this process,
   the watchers on an asyncio client): waiting watchers hold no worker thread.
2. `report_progress` from one worker, alone and with 1,000 watchers of its job (server, watchers
   and worker in three processes): the watchers of a job share one read per change, so a write
   costs about as much however many watch. Target: at least 50 % of the rate without watchers.

``--record`` writes both tables to bench/RESULTS.md (section "Watch streams").
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import sections
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth
from spaceone_job.app import App
from spaceone_job.config import Settings
from spaceone_job.lifecycle import TaskSpec

WATCHERS = 500
SAMPLES = 300
FAN_OUT = 1000
# Watch streams per token (the server's default cap is 100) and per connection.
PER_TOKEN = 100
REPORT_SECONDS = 3.0
DOMAIN = "domain-bench"
BIN = Path(sys.executable).parent


def get_latencies(port: int, token: str, job_id: str) -> list[float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = job_pb2_grpc.JobStub(channel)
        request, metadata = job_pb2.JobRequest(job_id=job_id), (("token", token),)
        stub.get(request, metadata=metadata)
        out = []
        for _ in range(SAMPLES):
            started = time.perf_counter()
            stub.get(request, metadata=metadata)
            out.append((time.perf_counter() - started) * 1000)
        return out


async def hold_watchers(
    port: int, tokens: list[str], job_id: str, count: int, opened: threading.Event
) -> None:
    """``count`` watch streams of ``job_id``, ``PER_TOKEN`` per token and per channel, read to
    their end; ``opened`` once each has its first event."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in tokens]
    streams = [
        producer_pb2_grpc.WatchStub(channels[n // PER_TOKEN]).watch(
            producer_pb2.WatchRequest(job_id=job_id),
            metadata=(("token", tokens[n // PER_TOKEN]),),
        )
        for n in range(count)
    ]
    for stream in streams:
        await stream.read()
    opened.set()
    await asyncio.gather(*(drain(s) for s in streams), return_exceptions=True)
    for channel in channels:
        await channel.close()


async def drain(stream: grpc.aio.UnaryStreamCall) -> None:
    async for _ in stream:
        pass


def tokens_for(private_key: Path, count: int) -> list[str]:
    """Enough tokens for ``count`` watchers at ``PER_TOKEN`` each."""
    return [
        auth.mint_token(private_key, domain_id=DOMAIN, extra={"n": n})
        for n in range(-(-count // PER_TOKEN))
    ]


def get_with_watchers() -> tuple[list[float], list[float]]:
    """`get` latencies alone and with ``WATCHERS`` watch streams waiting."""
    with tempfile.TemporaryDirectory() as state:
        app = App(Settings(host="127.0.0.1", port=0, state_dir=state, max_concurrent_rpcs=16))
        port = app.start()
        key = auth.dev_keys(Path(state)).private_key
        job = app.lifecycle.create(domain_id=DOMAIN, data_source_id="ds-bench", tasks=[TaskSpec()])
        job_id = job.job["job_id"]
        token = tokens_for(key, 1)[0]
        alone = get_latencies(port, token, job_id)
        opened = threading.Event()
        loop = asyncio.new_event_loop()
        threading.Thread(
            target=loop.run_until_complete,
            args=(hold_watchers(port, tokens_for(key, WATCHERS), job_id, WATCHERS, opened),),
            daemon=True,
        ).start()
        opened.wait(60)
        during = get_latencies(port, token, job_id)
        app.stop(0)
    return alone, during


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def report_rate(port: int, token: str, task_ids: list[str], seconds: float) -> tuple[float, float]:
    """report_progress calls per second from one worker, and their p50 in ms."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = producer_pb2_grpc.ProducerStub(channel)
        metadata = (("token", token),)
        latencies, n = [], 0
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            request = producer_pb2.ProgressRequest(
                request_id=f"r-{time.time_ns()}-{n}",
                job_task_id=task_ids[n % len(task_ids)],
                created_count=1,
            )
            started = time.perf_counter()
            stub.report_progress(request, metadata=metadata, timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1
    return n / seconds, statistics.median(latencies)


def progress_with_watchers() -> tuple[tuple[float, float], tuple[float, float]]:
    """report_progress rate and p50, alone and with ``FAN_OUT`` watchers of the job."""
    with tempfile.TemporaryDirectory() as state:
        port = free_port()
        key = auth.dev_keys(Path(state)).private_key
        command = [str(BIN / "spaceone-job"), "serve", "--host", "127.0.0.1", "--port"]
        server = subprocess.Popen(
            [*command, str(port), "--state-dir", state, "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_serving(port)
            token = tokens_for(key, 1)[0]
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                created = producer_pb2_grpc.ProducerStub(channel).create_job(
                    producer_pb2.CreateJobRequest(
                        request_id="bench",
                        data_source_id="ds-bench",
                        tasks=[producer_pb2.TaskSpec() for _ in range(100)],
                    ),
                    metadata=(("token", token),),
                )
            task_ids = [t.job_task_id for t in created.tasks]
            alone = report_rate(port, token, task_ids, REPORT_SECONDS)
            watchers = subprocess.Popen(
                [sys.executable, __file__, "--hold", str(port), created.job.job_id, state],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert watchers.stdout is not None and watchers.stdin is not None
            assert watchers.stdout.readline().strip() == "open"
            during = report_rate(port, token, task_ids, REPORT_SECONDS)
            watchers.stdin.close()
            watchers.kill()
            watchers.wait(30)
        finally:
            server.terminate()
            server.wait(30)
    return alone, during


def wait_serving(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def hold(port: int, job_id: str, state: str) -> None:
    """The watchers' process: ``FAN_OUT`` streams, "open" once they all have their first
    event, until stdin closes."""
    opened = threading.Event()
    tokens = tokens_for(auth.dev_keys(Path(state)).private_key, FAN_OUT)
    loop = asyncio.new_event_loop()
    threading.Thread(
        target=loop.run_until_complete,
        args=(hold_watchers(port, tokens, job_id, FAN_OUT, opened),),
        daemon=True,
    ).start()
    opened.wait(120)
    print("open", flush=True)
    sys.stdin.read()


def main() -> None:
    """Print (and with --record, write) both tables."""
    alone, during = get_with_watchers()
    (rate, p50), (rate_during, p50_during) = progress_with_watchers()
    lines = [
        f"`get` at concurrency 1 ({SAMPLES} calls), alone and with {WATCHERS} watch streams"
        " waiting (server and watchers in one process):",
        "",
        "| get | p50 ms | p99 ms |",
        "|---|---|---|",
    ]
    for name, values in (("alone", alone), (f"with {WATCHERS} watchers", during)):
        p99 = statistics.quantiles(values, n=100)[98]
        lines.append(f"| {name} | {statistics.median(values):.2f} | {p99:.2f} |")
    share = 100 * rate_during / rate
    lines += [
        "",
        f"`report_progress` from one worker for {REPORT_SECONDS:g} s, alone and with {FAN_OUT}"
        " watchers of its job (server, watchers and worker in three processes):",
        "",
        "| report_progress | calls/s | p50 ms | share of the rate alone |",
        "|---|---|---|---|",
        f"| alone | {rate:.0f} | {p50:.2f} | 100 % |",
        f"| with {FAN_OUT} watchers | {rate_during:.0f} | {p50_during:.2f} | {share:.0f} % |",
        "",
        f"**Target: with {FAN_OUT} watchers at least 50 % of the rate alone: {share:.0f} %.**",
    ]
    text = "\n".join(lines)
    if "--record" in sys.argv[1:]:
        sections.record("Watch streams", text)
    print(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hold"]:
        hold(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        main()
