"""The ceiling: a bare grpcio Job servicer that answers every call with a prebuilt response.

It measures what Python gRPC itself costs for responses of the same sizes as ours, so the bench
can report our throughput as a share of it. ``--shape sync`` is grpcio's thread-pool server;
``--shape aio`` is our server's shape: an asyncio server (what lets a watch stream wait without
holding a thread) answering ``get`` on its event loop and running the other handlers on a thread
pool, at the price of a hand-off between threads on each of those calls.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from spaceone.api.cost_analysis.v1 import job_pb2_grpc


class Prebuilt(job_pb2_grpc.JobServicer):
    """Looks the response up by method and request bytes (any request of a method falls back to
    that method's first response)."""

    def __init__(self, responses: dict[tuple[str, bytes], Any]) -> None:
        self.responses = responses
        self.fallback = {method: response for (method, _), response in reversed(responses.items())}

    def _answer(self, method: str, request: Any) -> Any:
        return self.responses.get((method, request.SerializeToString()), self.fallback[method])

    def cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("cancel", request)

    def get(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("get", request)

    def list(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("list", request)

    def stat(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("stat", request)


class OnLoop(Prebuilt):
    """``get`` as our server answers it on the embedded store: a coroutine on the event loop."""

    async def get(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return self._answer("get", request)


def serve_sync(servicer: Prebuilt, port: int, threads: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    job_pb2_grpc.add_JobServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop(0)


async def serve_aio(servicer: Prebuilt, port: int, threads: int) -> None:
    server = grpc.aio.server(migration_thread_pool=futures.ThreadPoolExecutor(threads))
    job_pb2_grpc.add_JobServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--responses", type=Path, required=True, help="pickle of prebuilt responses")
    args.add_argument("--threads", type=int, required=True)
    args.add_argument("--shape", choices=("sync", "aio"), default="sync")
    options = args.parse_args()
    responses = pickle.loads(options.responses.read_bytes())
    if options.shape == "aio":
        asyncio.run(serve_aio(OnLoop(responses), options.port, options.threads))
    else:
        serve_sync(Prebuilt(responses), options.port, options.threads)


if __name__ == "__main__":
    main()
