"""What a call leaves behind: one structured log line, a request id, Prometheus metrics.

Every Job call runs inside :func:`observed`, which takes the request id from ``x-request-id``
metadata (or makes one), returns it in the trailing metadata, and on the way out logs one line
(method, code, duration, domain, request id) and updates the metrics.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import prometheus_client

LOG = logging.getLogger("spaceone_job.calls")
REQUEST_ID = "x-request-id"

CALLS = prometheus_client.Counter(
    "spaceone_job_calls", "Job API calls by method and status code", ["method", "code"]
)
LATENCY = prometheus_client.Histogram(
    "spaceone_job_call_seconds", "Job API call latency in seconds", ["method"]
)
IN_FLIGHT = prometheus_client.Gauge("spaceone_job_calls_in_flight", "Job API calls in progress")
DB_ERRORS = prometheus_client.Counter(
    "spaceone_job_database_errors", "Calls that failed on the database", ["code"]
)
_DB_ERROR_CODES = frozenset({"ERROR_DB_UNAVAILABLE", "ERROR_REQUEST_TIMEOUT"})


@dataclass
class Call:
    """One call in progress: filled in by the servicer as it learns more."""

    method: str
    request_id: str
    domain_id: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    error_code: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """What the call returns in its trailers besides the status."""
        return ((REQUEST_ID, self.request_id),)


def request_id(metadata: Mapping[str, str]) -> str:
    """The caller's ``x-request-id`` (up to 128 printable characters) or a new one."""
    given = metadata.get(REQUEST_ID, "")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return uuid.uuid4().hex


@contextmanager
def observed(method: str, metadata: Mapping[str, str]) -> Iterator[Call]:
    """Measure, count and log one call."""
    call = Call(method, request_id(metadata))
    IN_FLIGHT.inc()
    try:
        yield call
    finally:
        IN_FLIGHT.dec()
        elapsed = time.perf_counter() - call.started
        CALLS.labels(method, call.code.name).inc()
        LATENCY.labels(method).observe(elapsed)
        if call.error_code in _DB_ERROR_CODES:
            DB_ERRORS.labels(call.error_code).inc()
        LOG.info(
            json.dumps(
                {
                    "method": method,
                    "code": call.code.name,
                    "error": call.error_code or None,
                    "duration_ms": round(elapsed * 1000, 3),
                    "domain_id": call.domain_id or None,
                    "request_id": call.request_id,
                },
                separators=(",", ":"),
            )
        )


def serve_metrics(port: int) -> int:
    """Expose the metrics over HTTP on ``port`` (0 = any free port); the bound port."""
    server, _ = prometheus_client.start_http_server(port)
    return int(server.server_port)
