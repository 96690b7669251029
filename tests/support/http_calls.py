"""Calls to the server's HTTP port: JSON calls as a client makes them, and raw bytes as a
hostile one sends them."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from ..conftest import Live

Reply = tuple[int, dict[str, Any], dict[str, str]]


def post(
    live: Live,
    path: str,
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Reply:
    """An HTTP call to the server's HTTP port: status, JSON body, headers."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    url = f"http://127.0.0.1:{live.app.http_port}{path}"
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), dict(answer.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read()), dict(refused.headers)


def get(live: Live, path: str) -> tuple[int, dict[str, Any]]:
    """A GET to the server's HTTP port: status and JSON body."""
    url = f"http://127.0.0.1:{live.app.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def connect(live: Live) -> socket.socket:
    """A bare TCP connection to the HTTP port."""
    return socket.create_connection(("127.0.0.1", live.app.http_port), timeout=10)


def answer_on(connection: socket.socket) -> tuple[int, str, bytes]:
    """The next answer on ``connection``: status, media type, body."""
    response = http.client.HTTPResponse(connection)
    response.begin()
    media_type = response.getheader("Content-Type", "").split(";")[0]
    return response.status, media_type, response.read()


def closed_after(connection: socket.socket, dribble: bytes = b"", every_s: float = 0.1) -> float:
    """Seconds until the server closes ``connection`` (read as end of stream or a reset),
    sending ``dribble`` a byte at a time every ``every_s`` meanwhile; at most the socket's
    timeout (``socket.timeout`` past it)."""
    started = time.monotonic()
    connection.settimeout(every_s if dribble else connection.gettimeout())
    left = list(dribble)
    while True:
        try:
            if not connection.recv(4096):
                return time.monotonic() - started
        except TimeoutError:
            if time.monotonic() - started > 10:
                raise
            if left:
                connection.sendall(bytes([left.pop(0)]))
        except ConnectionResetError:
            return time.monotonic() - started


def head(path: str, *fields: str, body: bytes = b"") -> bytes:
    """A POST request's bytes, with ``fields`` as its header lines."""
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", *fields, f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def stream(
    live: Live, path: str, body: dict[str, Any], headers: dict[str, str], timeout: float = 10
) -> tuple[int, list[dict[str, Any]], dict[str, str]]:
    """A streaming HTTP call: status, the JSON lines (or the one refusal), headers."""
    sent = {"Content-Type": "application/json", **headers}
    url = f"http://127.0.0.1:{live.app.http_port}{path}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            assert answer.headers["Content-Type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in answer]
            return answer.status, lines, dict(answer.headers)
    except urllib.error.HTTPError as refused:
        return refused.code, [json.loads(refused.read())], dict(refused.headers)
