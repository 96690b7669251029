"""The load driver: one client process, N threads, each calling one RPC back to back, over gRPC
or, for a target ``http://host:port``, as JSON over HTTP (a keep-alive connection a thread, the
way the console's proxy calls).

Prints one JSON line: requests per second, p50 and p99 latency (ms), errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pickle
import threading
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from spaceone.api.cost_analysis.v1 import job_pb2_grpc

HTTP = "http://"


class Refused(Exception):
    """An HTTP answer other than 200."""


def grpc_caller(target: str, method: str, token: str) -> Callable[[Any], None]:
    """A call of ``method`` over one gRPC channel."""
    metadata = (("token", token),)
    stub_method = getattr(job_pb2_grpc.JobStub(grpc.insecure_channel(target)), method)

    def call(request: Any) -> None:
        stub_method(request, metadata=metadata, timeout=30)

    return call


def http_caller(target: str, method: str, token: str) -> Callable[[Any], None]:
    """A POST of a JSON body to ``method``'s documented path, on a connection of the thread."""
    host, port = target.removeprefix(HTTP).rsplit(":", 1)
    path = f"/cost-analysis/v1/job/{method}"
    headers = {"Content-Type": "application/json", "token": token}
    local = threading.local()

    def call(body: bytes) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        local.connection.request("POST", path, body, headers)
        answer = local.connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise Refused(answer.status)

    return call


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--target", required=True)
    args.add_argument("--method", required=True)
    args.add_argument("--requests", type=Path, required=True, help="pickle list of requests")
    args.add_argument("--token", required=True)
    args.add_argument("--concurrency", type=int, required=True)
    args.add_argument("--seconds", type=float, required=True)
    options = args.parse_args()
    requests: list[Any] = pickle.loads(options.requests.read_bytes())
    if options.target.startswith(HTTP):
        call = http_caller(options.target, options.method, options.token)
        requests = [
            json.dumps(json_format.MessageToDict(r, preserving_proto_field_name=True)).encode()
            for r in requests
        ]
    else:
        call = grpc_caller(options.target, options.method, options.token)
    call(requests[0])  # warm the connection
    tickets = count()
    latencies: list[list[float]] = [[] for _ in range(options.concurrency)]
    errors = [0] * options.concurrency
    stop_at = time.perf_counter() + options.seconds

    def worker(slot: int) -> None:
        mine = latencies[slot]
        while time.perf_counter() < stop_at:
            request = requests[next(tickets) % len(requests)]
            began = time.perf_counter()
            try:
                call(request)
            except (grpc.RpcError, Refused):
                errors[slot] += 1
            mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(options.concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    flat = sorted(x for slot in latencies for x in slot)
    print(
        json.dumps(
            {
                "rps": len(flat) / elapsed,
                "p50_ms": flat[len(flat) // 2] * 1000,
                "p99_ms": flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000,
                "errors": sum(errors),
            }
        )
    )


if __name__ == "__main__":
    main()
