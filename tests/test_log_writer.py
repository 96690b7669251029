"""The log writer: lines leave on a thread of their own, in order, and a stalled output loses lines
(counted) rather than stalling the server."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from spaceone_job import observe


class Held(logging.Handler):
    """An output that takes each record only once the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.entered = threading.Event()
        self.go = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.go.wait(10)
        self.records.append(record)


@pytest.fixture
def held() -> Iterator[tuple[observe.LogWriter, Held]]:
    output = Held()
    writer = observe.LogWriter(output, capacity=3)
    yield writer, output
    output.go.set()
    writer.close()


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 0, message, (), None)


def _dropped() -> float:
    return observe.LOG_LINES_DROPPED._value.get()  # type: ignore[no-any-return]


def test_lines_wait_in_order_and_past_the_backlog_are_dropped_and_counted(
    held: tuple[observe.LogWriter, Held],
) -> None:
    writer, output = held
    dropped = _dropped()
    writer.handle(_record("first"))
    assert output.entered.wait(5)  # the writer holds "first"; the output is stalled
    began = time.monotonic()
    for n in range(2, 7):
        writer.handle(_record(f"line {n}"))
    assert time.monotonic() - began < 0.5, "a stalled output held up the caller"
    assert _dropped() - dropped == 2
    output.go.set()
    writer.close()
    assert [r.getMessage() for r in output.records] == ["first", "line 2", "line 3", "line 4"]


def test_close_writes_what_waits_and_later_lines_are_written_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = Held()
    output.go.set()
    writer = observe.LogWriter(output)
    process_writer = observe.LogWriter(Held())
    monkeypatch.setattr(observe, "_writer", process_writer)
    root = logging.getLogger()
    kept = root.handlers[:]
    root.handlers.append(writer)
    try:
        for n in range(50):
            writer.handle(_record(f"line {n}"))
        writer.close()
        assert len(output.records) == 50
        assert writer not in root.handlers and output in root.handlers
        assert observe._writer is process_writer, "another writer's close left it in place"
        logging.getLogger("spaceone_job.test").warning("after close")
        assert output.records[-1].getMessage() == "after close"
    finally:
        root.handlers[:] = kept
        process_writer.close()


def test_a_call_line_is_made_a_record_on_the_writer_thread_with_the_call_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.calls")
    output = Held()
    writer = observe.LogWriter(output)
    monkeypatch.setattr(observe, "_writer", writer)
    try:
        with observe.observed("get", {"x-request-id": "req-7"}) as call:
            call.domain_id = "domain-aaaaaaaaaaaa"
        logged_at = time.time()
        assert output.entered.wait(5)
        time.sleep(0.2)  # the record's time is the call's, not the writing's
        output.go.set()
    finally:
        writer.close()
    (record,) = output.records
    assert abs(record.created - logged_at) < 0.1
    assert record.name == "spaceone_job.calls" and record.levelno == logging.INFO
    fields: dict[str, Any] = json.loads(record.getMessage())
    assert fields["method"] == "get" and fields["request_id"] == "req-7"
    assert fields["domain_id"] == "domain-aaaaaaaaaaaa" and fields["code"] == "OK"
    line = json.loads(observe.JsonFormatter().format(record))
    assert line["logger"] == "spaceone_job.calls" and line["request_id"] == "req-7"
    text = logging.Formatter("%(asctime)s %(message)s").format(record)
    assert text.startswith(time.strftime("%Y-%m-%d %H:%M", time.localtime(logged_at)))
