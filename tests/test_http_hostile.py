"""The HTTP port against callers who do not play by the rules: heads too large, connections
that say nothing or dribble, bodies that never end, more connections than the port holds."""

from __future__ import annotations

import json
import logging
import time

import prometheus_client
import pytest

from spaceone_job.api import http

from .conftest import Live, Serve
from .support.http_calls import answer_on, closed_after, connect, get, head

LIST = "/cost-analysis/v1/job/list"
pytestmark = pytest.mark.only_on("embedded", why="the HTTP port's own limits, before any call")
TIGHT = {"http_port": 0, "handshake_timeout_s": 0.5, "idle_connection_s": 1.0}


def holding(live: Live, count: int) -> None:
    """Wait (5 s at most) until the HTTP port holds ``count`` connections."""
    deadline = time.monotonic() + 5
    while len(live.app.http.runner.server.connections) != count:
        assert time.monotonic() < deadline, "the port never held them"
        time.sleep(0.01)


def refused_count(reason: str) -> float:
    name = "spaceone_job_http_connections_refused_total"
    return prometheus_client.REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0


UNREADABLE = {
    "too many header fields": head(LIST, *(f"x-f{i}: v" for i in range(http.MAX_HEADERS + 1))),
    "a header field too long": head(LIST, "x-long: " + "v" * (http.MAX_HEADER_BYTES + 1)),
    "a request line too long": head("/" + "p" * (http.MAX_HEADER_BYTES + 1)),
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_request_that_cannot_be_read_is_400_in_the_consoles_shape_and_logs_no_traceback(
    serve: Serve, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = serve(http_port=0)
    caplog.set_level(logging.DEBUG)
    with connect(live) as connection:
        connection.sendall(UNREADABLE[case])
        status, content_type, body = answer_on(connection)
        assert closed_after(connection) < 1.0
    assert (status, content_type) == (400, "application/json")
    detail = json.loads(body)["detail"]
    assert detail["code"] == "ERROR_INVALID_ARGUMENT"
    assert detail["message"].startswith("The request cannot be read")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_a_connection_that_says_nothing_is_closed_within_the_handshake_time(
    serve: Serve,
) -> None:
    live = serve(**{**TIGHT, "idle_connection_s": 300.0})
    before = refused_count("slow")
    with connect(live) as connection:
        assert closed_after(connection) < 0.5 + 0.5
    assert refused_count("slow") == before + 1


@pytest.mark.parametrize("dribble", [False, True], ids=["half a head", "a dribbled head"])
def test_a_request_head_that_takes_longer_than_the_handshake_time_is_closed(
    serve: Serve, dribble: bool
) -> None:
    live = serve(**{**TIGHT, "idle_connection_s": 300.0})
    request = head(LIST, "Content-Type: application/json")
    with connect(live) as connection:
        if dribble:  # a byte every 0.1 s: never silent, never done
            assert closed_after(connection, dribble=request) < 0.5 + 0.5
        else:
            connection.sendall(request[:30])
            assert closed_after(connection) < 0.5 + 0.5


def test_a_body_that_comes_too_slowly_is_refused_408(serve: Serve) -> None:
    live = serve(**TIGHT)
    with connect(live) as connection:
        whole = head(LIST, "Content-Type: application/json", body=b'{"query": {}}')
        connection.sendall(whole[:-5])  # the head and half the body, then nothing
        status, content_type, body = answer_on(connection)
        assert (status, content_type) == (408, "application/json")
        assert json.loads(body)["detail"]["code"] == "ERROR_REQUEST_TIMEOUT"
        assert closed_after(connection) < 1.0


def test_an_idle_connection_is_closed_after_the_idle_time(serve: Serve) -> None:
    live = serve(**{**TIGHT, "handshake_timeout_s": 5.0})
    with connect(live) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer_on(connection)[0] == 200
        assert 0.5 < closed_after(connection) < 1.0 + 1.0


def test_connections_past_the_bound_are_closed_and_those_held_are_served(serve: Serve) -> None:
    live: Live = serve(http_port=0, max_connections=3)
    before = refused_count("full")
    held = [connect(live) for _ in range(3)]
    try:
        holding(live, 3)
        with connect(live) as fourth:
            assert closed_after(fourth) < 1.0
        assert refused_count("full") == before + 1
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer_on(held[0])[0] == 200
        held.pop().close()
        holding(live, 2)
        assert get(live, "/healthz")[0] == 200, "a place freed is taken again"
    finally:
        for connection in held:
            connection.close()
