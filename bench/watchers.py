"""`get` latency with and without 500 waiting watchers: watchers hold no worker thread.

Starts the server in-process on the embedded store, measures `get` at concurrency 1, opens 500
watch streams from an asyncio client, measures `get` again, and prints a small table.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc
from spaceone.api.cost_analysis.v1 import job_pb2, job_pb2_grpc
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

from spaceone_job import auth
from spaceone_job.app import App
from spaceone_job.config import Settings
from spaceone_job.lifecycle import TaskSpec

WATCHERS = 500
SAMPLES = 300


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


async def hold_watchers(port: int, token: str, job_id: str, opened: threading.Event) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = producer_pb2_grpc.WatchStub(channel)
        streams = [
            stub.watch(producer_pb2.WatchRequest(job_id=job_id), metadata=(("token", token),))
            for _ in range(WATCHERS)
        ]
        for stream in streams:
            await stream.read()
        opened.set()
        await asyncio.gather(*(s.read() for s in streams), return_exceptions=True)


def main() -> None:
    """Print p50 and p99 of `get` alone and with 500 watchers waiting."""
    with tempfile.TemporaryDirectory() as state:
        app = App(Settings(host="127.0.0.1", port=0, state_dir=state, max_concurrent_rpcs=16))
        port = app.start()
        token = auth.mint_token(auth.dev_keys(Path(state)).private_key, domain_id="domain-bench")
        job = app.lifecycle.create(
            domain_id="domain-bench", data_source_id="ds-bench", tasks=[TaskSpec()]
        ).job
        alone = get_latencies(port, token, job["job_id"])
        opened = threading.Event()
        loop = asyncio.new_event_loop()
        threading.Thread(
            target=loop.run_until_complete,
            args=(hold_watchers(port, token, job["job_id"], opened),),
            daemon=True,
        ).start()
        opened.wait(60)
        during = get_latencies(port, token, job["job_id"])
        app.stop(0)
    print(f"| get, concurrency 1 | p50 ms | p99 ms |  ({SAMPLES} calls; {WATCHERS} watchers)")
    print("|---|---|---|")
    for name, values in (("alone", alone), (f"with {WATCHERS} watchers", during)):
        p99 = statistics.quantiles(values, n=100)[98]
        print(f"| {name} | {statistics.median(values):.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
