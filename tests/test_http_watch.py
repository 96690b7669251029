"""Watch over HTTP: one event a JSON line, as the job changes, until it finishes."""

from __future__ import annotations

import http.client
import json
import logging
import time
from typing import Any

import prometheus_client
import pytest

from .conftest import Live, Serve, Token
from .support.producing import create, report

WATCH = "/spaceone-job/watch/watch"
pytestmark = pytest.mark.only_on("embedded", why="the HTTP stream; test_watch runs both stores")


def open_watch(live: Live, token: str, job_id: str) -> http.client.HTTPResponse:
    """A watch stream over HTTP, its head read."""
    connection = http.client.HTTPConnection("127.0.0.1", live.app.http_port, timeout=10)
    body = json.dumps({"job_id": job_id})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    connection.request("POST", WATCH, body, headers)
    return connection.getresponse()


def next_line(answer: http.client.HTTPResponse) -> dict[str, Any]:
    line = answer.readline()
    assert line.endswith(b"\n"), line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def watchers() -> float:
    return prometheus_client.REGISTRY.get_sample_value("spaceone_job_watchers") or 0.0


def test_a_watch_streams_each_change_as_a_line_and_ends_when_the_job_finishes(
    serve: Serve, token: Token
) -> None:
    live = serve(http_port=0, watch_keepalive_s=0.3)
    admin = token()
    created = create(live, admin, tasks=1).response
    job_id, task_id = created.job.job_id, created.tasks[0].job_task_id
    answer = open_watch(live, admin, job_id)
    assert (answer.status, answer.getheader("Content-Type")) == (200, "application/x-ndjson")
    assert answer.getheader("x-request-id")
    assert next_line(answer)["job"]["status"] == "IN_PROGRESS"
    assert set(next_line(answer)) == {"keep_alive"}, "nothing changed: a keep-alive line"
    report(live, admin, "start_task", task_id, "s-1")
    report(live, admin, "finish_task", task_id, "f-1")
    lines = [json.loads(line) for line in answer]  # to the end of the stream
    assert lines[-1]["job"]["status"] == "SUCCESS"
    assert all(set(line) <= {"job", "events", "keep_alive"} for line in lines)


def test_an_error_after_the_first_event_is_the_last_line(serve: Serve, token: Token) -> None:
    live = serve(http_port=0)
    admin = token()
    job_id = create(live, admin, tasks=1).response.job.job_id
    answer = open_watch(live, admin, job_id)
    assert next_line(answer)["job"]["job_id"] == job_id
    live.app.hub.close()  # as at SIGTERM: watchers are sent to another replica
    (last,) = [json.loads(line) for line in answer]
    assert last["detail"]["code"] == "ERROR_SERVER_STOPPING"


def test_a_client_that_goes_away_ends_its_watch_at_once_and_in_its_line(
    serve: Serve, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spaceone_job.calls")
    live = serve(http_port=0, watch_keepalive_s=60)
    admin = token()
    job_id = create(live, admin, tasks=1).response.job.job_id
    before = watchers()
    answer = open_watch(live, admin, job_id)
    next_line(answer)
    assert watchers() == before + 1
    answer.close()
    deadline = time.monotonic() + 5
    while watchers() > before:  # not at the next keep-alive, a minute away
        assert time.monotonic() < deadline, "the watch outlived its client"
        time.sleep(0.02)
    deadline = time.monotonic() + 5
    while not [r for r in caplog.records if '"method":"watch"' in r.getMessage()]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if "watch" in r.getMessage()]
    assert (line["code"], line["ended"], line["route"]) == ("CANCELLED", "client went away", WATCH)


def test_the_watcher_limit_holds_over_http(serve: Serve, token: Token) -> None:
    live = serve(http_port=0, max_watchers=1)
    admin = token()
    job_id = create(live, admin, tasks=1).response.job.job_id
    held = open_watch(live, admin, job_id)
    next_line(held)
    refused = open_watch(live, admin, job_id)
    assert refused.status == 429 and refused.getheader("Retry-After")
    assert json.loads(refused.read())["detail"]["code"] == "ERROR_TOO_MANY_REQUESTS"
    held.close()
