"""Under load and abuse the promises hold (issue 28): the drain's order, odd messages, identity
floods, time limits at the call limit, stream and connection limits, watcher fan-out. Each load
is bounded in count and time, on loopback."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spaceone.api.cost_analysis.v1 import job_pb2

from .conftest import Serve, Token

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_no_call_sent_after_health_answered_not_serving_is_served(
    serve: Serve, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = serve(grace_s=2)
    admin = token()
    # Whatever the stop does between turning health NOT_SERVING and closing the port, it may
    # take its time: here, waking the watchers takes half a second.
    close = live.app.hub.close

    def slow_close() -> None:
        time.sleep(0.5)
        close()

    monkeypatch.setattr(live.app.hub, "close", slow_close)
    health = health_pb2_grpc.HealthStub(live.channel)
    stopping = threading.Thread(target=live.app.stop)
    stopping.start()
    after: list[Any] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(after) < 5:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
        except grpc.RpcError:
            break  # the port closed
        if status == NOT_SERVING:
            after.append(live.call("list", job_pb2.JobQuery(), admin, timeout=2).code)
    stopping.join(10)
    assert after, "health answered NOT_SERVING before the port closed"
    assert grpc.StatusCode.OK not in after, after
