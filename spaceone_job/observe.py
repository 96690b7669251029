"""What a call leaves behind: one structured log line, a request id, Prometheus metrics.

Every Job call runs inside :func:`observed`, which takes the request id from ``x-request-id``
metadata (or makes one), returns it in the trailing metadata, and on the way out logs one line
(method, code, duration, domain, request id) and updates the metrics.
"""

from __future__ import annotations

import functools
import json
import logging
import logging.handlers
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
import prometheus_client
from prometheus_client.exposition import ThreadingWSGIServer

from spaceone_job.errors import Code

LOG = logging.getLogger("spaceone_job.calls")
REQUEST_ID = "x-request-id"
# The attribute of a log record that holds a call's fields.
FIELDS = "call_fields"
METRICS_PATH = "/metrics"

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
# New request ids: 128 random bits, unique but not secret (no system call per call).
_REQUEST_IDS = random.Random()
LOG_LINES_DROPPED = prometheus_client.Counter(
    "spaceone_job_log_lines_dropped", "Log lines dropped because the log output did not keep up"
)
# Log lines that may wait for the writer thread (see LogWriter): a few MB of call lines.
LOG_BACKLOG = 10_000
# The writer's pause after writing what waited: lines leave within this, in batches.
WRITE_PAUSE_S = 0.05
_DB_ERROR_CODES = frozenset({Code.DB_UNAVAILABLE, Code.REQUEST_TIMEOUT})


@dataclass
class Call:
    """One call in progress: filled in by the servicer as it learns more."""

    method: str
    request_id: str
    domain_id: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    error_code: str = ""
    # Why the call failed, in the caller's error's words (logged, never more than it was told).
    reason: str = ""
    # How a stream ended: finished, an ERROR_* code, or "client went away".
    ended: str = ""
    # The HTTP path a call came by (none over gRPC).
    route: str = ""
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
    return f"{_REQUEST_IDS.getrandbits(128):032x}"


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object on one line; a call's line keeps its fields."""

    def format(self, record: logging.LogRecord) -> str:
        """``{"time", "level", "logger", ...}``: the call's fields, or ``message``."""
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


# A call's log line as it waits for the writer thread: when it was made, and its fields.
CallLine = tuple[float, dict[str, Any]]


class LogWriter(logging.handlers.QueueHandler):
    """Hands records to a thread that formats and writes them, so that no call (nor the event
    loop) waits on the log output; a call's own line is even made into a record there. Past
    ``capacity`` waiting lines, new ones are dropped and counted (``LOG_LINES_DROPPED``): a
    stalled log reader never stalls the server, nor grows its memory without bound."""

    def __init__(self, handler: logging.Handler, capacity: int = LOG_BACKLOG) -> None:
        self._waiting: queue.SimpleQueue[logging.LogRecord | CallLine | None] = queue.SimpleQueue()
        super().__init__(self._waiting)
        self.capacity = capacity
        self._output = handler
        self._thread = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self._thread.start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record as it is: it is formatted on the writer thread, in this process."""
        return record

    def enqueue(self, record: logging.LogRecord | CallLine | None) -> None:
        """Queue a record (or a call's line), or drop and count it when ``capacity`` wait."""
        if record is not None and self._waiting.qsize() >= self.capacity:
            LOG_LINES_DROPPED.inc()
            return
        self._waiting.put(record)

    def _write(self) -> None:
        while True:
            batch = [self._waiting.get()]
            with suppress(queue.Empty):
                while batch[-1] is not None:
                    batch.append(self._waiting.get_nowait())
            for item in batch:
                if item is None:
                    return
                self._output.handle(
                    item if isinstance(item, logging.LogRecord) else _call_record(item)
                )
            # Lines gather meanwhile: a busy server wakes this thread once a pause, not per line.
            time.sleep(WRITE_PAUSE_S)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what waits (for up to ``timeout_s``), then let later records be written at once."""
        global _writer
        if _writer is self:
            _writer = None
        root = logging.getLogger()
        if self in root.handlers:
            root.handlers[root.handlers.index(self)] = self._output
        self.enqueue(None)
        self._thread.join(timeout_s)
        super().close()


# The writer of the process's log output, once configure_logging has set one up.
_writer: LogWriter | None = None


def configure_logging(level: str, log_format: str) -> LogWriter:
    """The root logger at ``level``, one line per record as ``text`` or ``json``, written by a
    :class:`LogWriter` (close it as the process ends)."""
    global _writer
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    _writer = LogWriter(handler)
    root = logging.getLogger()
    root.handlers[:] = [_writer]
    root.setLevel(level.upper())
    return _writer


def _call_record(line: CallLine) -> logging.LogRecord:
    created, fields = line
    record = LOG.makeRecord(
        LOG.name, logging.INFO, __file__, 0, "%s", (_Line(fields),), None, extra={FIELDS: fields}
    )
    record.created, record.msecs = created, (created - int(created)) * 1000 // 1
    return record


def _log_call(fields: dict[str, Any]) -> None:
    """A call's line: queued as it is for the writer thread when there is one (the hot path),
    else logged at once (tests, embedding)."""
    writer = _writer
    if writer is not None and LOG.isEnabledFor(logging.INFO):
        writer.enqueue((time.time(), fields))
    else:
        LOG.info("%s", _Line(fields), extra={FIELDS: fields})


class _Line:
    """A call's fields as the text of its log line, made only when a text formatter asks (the
    JSON formatter writes the fields themselves)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return json.dumps(self.fields, separators=(",", ":"))


@functools.cache
def _series(method: str, code: str) -> tuple[Any, Any]:
    """The call counter and latency histogram of one method and code (labels() looks them up
    under a lock on every call; they never change)."""
    return CALLS.labels(method, code), LATENCY.labels(method)


@contextmanager
def observed(method: str, metadata: Mapping[str, str], stream: bool = False) -> Iterator[Call]:
    """Measure, count and log one call (a ``stream`` is counted by its own gauge, not among
    the calls in flight)."""
    call = Call(method, request_id(metadata))
    in_flight = IN_FLIGHT if not stream else None
    if in_flight is not None:
        in_flight.inc()
    try:
        yield call
    finally:
        if in_flight is not None:
            in_flight.dec()
        elapsed = time.perf_counter() - call.started
        calls, latency = _series(method, call.code.name)
        calls.inc()
        latency.observe(elapsed)
        if call.error_code in _DB_ERROR_CODES:
            DB_ERRORS.labels(call.error_code).inc()
        fields = {
            "method": method,
            "code": call.code.name,
            "error": call.error_code or None,
            "duration_ms": round(elapsed * 1000, 3),
            "domain_id": call.domain_id or None,
            "request_id": call.request_id,
        }
        if call.reason:
            fields["reason"] = call.reason
        if call.ended:
            fields["ended"] = call.ended
        if call.route:
            fields["route"] = call.route
        _log_call(fields)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


def serve_metrics(host: str, port: int) -> WSGIServer:
    """Serve the metrics at ``http://host:port/metrics`` (0 = any free port) on a thread of
    their own; every other path is 404. The running server (``server_address``, ``shutdown``).
    """
    metrics = prometheus_client.make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"The metrics are at {METRICS_PATH}.\n".encode()]
        body: Iterable[bytes] = metrics(environ, start_response)
        return body

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
