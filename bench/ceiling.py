"""The ceiling: a bare grpcio Job servicer that answers every call with a prebuilt response.

It measures what Python gRPC itself costs for responses of the same sizes as ours, so the bench
can report our throughput as a share of it.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--responses", type=Path, required=True, help="pickle of prebuilt responses")
    args.add_argument("--threads", type=int, required=True)
    options = args.parse_args()
    responses = pickle.loads(options.responses.read_bytes())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=options.threads))
    job_pb2_grpc.add_JobServicer_to_server(Prebuilt(responses), server)
    server.add_insecure_port(f"127.0.0.1:{options.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
