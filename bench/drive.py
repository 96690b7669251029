"""The load driver: one client process, N threads, each calling one RPC back to back.

Prints one JSON line: requests per second, p50 and p99 latency (ms), errors.
"""

from __future__ import annotations

import argparse
import json
import pickle
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any

import grpc
from spaceone.api.cost_analysis.v1 import job_pb2_grpc


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
    metadata = (("token", options.token),)
    channel = grpc.insecure_channel(options.target)
    call = getattr(job_pb2_grpc.JobStub(channel), options.method)
    call(requests[0], metadata=metadata, timeout=30)  # warm the connection
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
                call(request, metadata=metadata, timeout=30)
            except grpc.RpcError:
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
