"""JSON over HTTP on the documented POST paths: a thin adapter onto the gRPC call body.

Routes come from the compiled descriptors: every unary method with a ``google.api.http`` rule is
served at the rule's path (``/cost-analysis/v1/job/get``) and at the path Cloudforet's console
proxy uses, without the version (``/cost-analysis/job/get``). A request's JSON body is parsed
strictly into the method's request message; the call then runs exactly as over gRPC
(:meth:`~spaceone_job.api.servicer.Rpc.answer`: gate, token, permission, limits, log line,
metrics, request id), and its answer is written as the console reads it: proto field names,
enum names, defaults left out, errors as ``{"detail": {"code", "message"}}`` with spaceone-core's
HTTP statuses (``RESOURCE_EXHAUSTED``: 429 and ``Retry-After``).

aiohttp serves it on the gRPC server's event loop: no thread per connection, keep-alive and
body limits built in, and a graceful ``cleanup`` at stop. What aiohttp leaves open is bounded
here, per connection (:class:`_Connection`): the time a request head may take, the connections
the port holds, and a request aiohttp cannot read answered in the API's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import grpc
import prometheus_client
from aiohttp import web
from google.api import annotations_pb2
from google.protobuf import json_format, message, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from spaceone_job import observe
from spaceone_job.api import openapi
from spaceone_job.api.servicer import NO_DEADLINE_S, Metadata, Rpc, Servicer, counting_down
from spaceone_job.errors import Code, ServiceError

# gRPC status -> HTTP status, as spaceone-core's console proxy answers; RESOURCE_EXHAUSTED is a
# Decision of ours (its table has none): 429 with Retry-After.
_C = grpc.StatusCode
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    _C.OK: 200,
    _C.INVALID_ARGUMENT: 400,
    _C.FAILED_PRECONDITION: 400,
    _C.OUT_OF_RANGE: 400,
    _C.UNAUTHENTICATED: 401,
    _C.PERMISSION_DENIED: 403,
    _C.NOT_FOUND: 404,
    _C.ALREADY_EXISTS: 409,
    _C.ABORTED: 409,
    _C.RESOURCE_EXHAUSTED: 429,
    _C.CANCELLED: 499,
    _C.UNKNOWN: 500,
    _C.INTERNAL: 500,
    _C.DATA_LOSS: 500,
    _C.UNIMPLEMENTED: 501,
    _C.UNAVAILABLE: 503,
    _C.DEADLINE_EXCEEDED: 504,
}
RETRY_AFTER_S = "1"
# The client's deadline, in seconds (the query limit still caps it).
TIMEOUT_HEADER = "X-Request-Timeout"
# Request headers carried as the call's metadata, under gRPC's names.
METADATA_HEADERS = ("token", "authorization", "x_domain_id", "x_workspace_id", "x-request-id")
_VERSION = re.compile(r"/v\d+/")
# A request line or header field up to 8 KiB, and up to 100 fields (nginx's and aiohttp's sizes).
MAX_HEADER_BYTES = 8190
MAX_HEADERS = 100
LOG = logging.getLogger(__name__)
REFUSED_CONNECTIONS = prometheus_client.Counter(
    "spaceone_job_http_connections_refused",
    "HTTP connections closed unserved: the port held its most (full), or a request head or"
    " body took too long (slow)",
    ["reason"],
)


@dataclass(frozen=True)
class Limits:
    """What the HTTP port takes: ``max_connections`` at once, each request's head within
    ``head_timeout_s`` of its first byte (or of the connection's opening) and its body within as
    long again; an idle connection is kept ``idle_s``."""

    max_connections: int
    head_timeout_s: float
    idle_s: float


NDJSON = "application/x-ndjson"


class Streaming(Protocol):
    """A servicer of server-streaming methods, as any transport drives them."""

    def observed(
        self, metadata: Metadata, route: str = "", method: str = ...
    ) -> AbstractContextManager[observe.Call]: ...

    @property
    def streams(
        self,
    ) -> Mapping[str, Callable[[Any, Metadata, observe.Call], AsyncGenerator[Any, None]]]: ...


@dataclass(frozen=True)
class Route:
    """One served method: where it answers, what it parses, who runs it (a unary ``rpc`` of
    ``servicer``, or, for a stream, the ``servicer``'s events)."""

    paths: tuple[str, ...]
    servicer: Any
    rpc: Rpc[Any, Any] | None
    method: MethodDescriptor
    request: type[message.Message]


def console_path(path: str) -> str:
    """The console proxy's path of a rule's path: the version segment left out."""
    return _VERSION.sub("/", path, count=1)


def routes(served: Iterable[tuple[ServiceDescriptor, Servicer | Streaming]]) -> list[Route]:
    """A route for every method of ``served`` that has a ``google.api.http`` rule: a unary one
    runs its servicer's :class:`Rpc`, a server-streaming one its servicer's events."""
    found = []
    for service, servicer in served:
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            if not rule.post:
                continue
            rpc_ = None if method.server_streaming else vars(type(servicer))[method.name]
            paths = tuple(dict.fromkeys((rule.post, console_path(rule.post))))
            kind = message_factory.GetMessageClass(method.input_type)
            found.append(Route(paths, servicer, rpc_, method, kind))
    return found


def refusal(
    error: ServiceError, trailers: Metadata = (), status: int | None = None
) -> web.Response:
    """The answer to a refused call: ``{"detail": {...}}`` with the HTTP status of its gRPC
    status (or ``status``: HTTP's own refusals), and ``Retry-After`` on a 429."""
    status = HTTP_STATUS[error.status_code] if status is None else status
    headers = dict(trailers)
    if status == 429:
        headers["Retry-After"] = RETRY_AFTER_S
    return web.json_response({"detail": _detail(error)}, status=status, headers=headers)


def _detail(error: ServiceError) -> dict[str, Any]:
    """The gRPC answer's code and message exactly; its parameters beside them."""
    return {**error.params, "code": error.code.value, "message": error.message}


def _refused(reason: str, **params: Any) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, reason, **params)


def _metadata(request: web.Request) -> Metadata:
    pairs = tuple(
        (name, value) for name in METADATA_HEADERS if (value := request.headers.get(name))
    )
    names = {name for name, _ in pairs}
    if {"token", "authorization"} <= names:
        raise ServiceError(
            Code.AUTHENTICATE_FAILURE,
            "Send the token once: Authorization: Bearer <token>, or token: <token>.",
        )
    return pairs


def _countdown(request: web.Request) -> Callable[[], float | None]:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return lambda: None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < NO_DEADLINE_S:
        raise _refused(f"{TIMEOUT_HEADER} is a number of seconds.", header=TIMEOUT_HEADER)
    return counting_down(seconds)


class _TooSlow(Exception):
    """The body did not arrive within its time."""


async def _body(request: web.Request) -> bytes:
    timeout = request.protocol.head_timeout_s if isinstance(request.protocol, _Connection) else 0
    try:
        return await asyncio.wait_for(request.read(), timeout or None)
    except TimeoutError:
        raise _TooSlow() from None


async def _parsed(request: web.Request, kind: type[message.Message]) -> message.Message:
    if request.content_type != "application/json":
        raise _refused("The body is JSON: Content-Type: application/json.")
    try:
        data = json.loads(await _body(request) or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refused(f"The body is not JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise _refused("The body is a JSON object.")
    try:
        return json_format.ParseDict(data, kind())
    except json_format.ParseError as exc:
        raise _refused(f"The body does not fit {kind.DESCRIPTOR.name}: {exc}.") from None


async def _read(request: web.Request, route: Route) -> tuple[message.Message, Metadata]:
    """The call's request message and metadata (:class:`ServiceError` or :class:`_TooSlow`)."""
    return await _parsed(request, route.request), _metadata(request)


def _late_body() -> web.Response:
    REFUSED_CONNECTIONS.labels("slow").inc()
    late = ServiceError(Code.REQUEST_TIMEOUT, "The request's body came too slowly.")
    response = refusal(late, status=408)
    response.force_close()
    return response


def _as_json_dict(answer: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(answer, preserving_proto_field_name=True)


def _handler(route: Route, pool: Executor) -> Callable[[web.Request], Awaitable[web.Response]]:
    assert route.rpc is not None
    rpc_ = route.rpc

    async def handle(request: web.Request) -> web.Response:
        try:
            parsed, metadata = await _read(request, route)
            left = _countdown(request)
        except ServiceError as error:
            return refusal(error)
        except _TooSlow:
            return _late_body()
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            pool, rpc_.answer, route.servicer, parsed, metadata, left, request.path
        )
        if outcome.error is not None:
            return refusal(outcome.error, outcome.trailing_metadata)
        assert outcome.response is not None
        body = _as_json_dict(outcome.response)
        return web.json_response(body, headers=dict(outcome.trailing_metadata))

    return handle


def _stream_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A stream as newline-delimited JSON: one event a line. An error before the first event is
    answered as any call's; one after it is the last line, ``{"detail": {...}}``."""
    streaming: Streaming = route.servicer
    method = route.method.name

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            parsed, metadata = await _read(request, route)
        except ServiceError as error:
            return refusal(error)
        except _TooSlow:
            return _late_body()
        with streaming.observed(metadata, request.path, method) as call:
            trailers = call.trailing_metadata
            # Closed within the call: a client that goes away is in its line.
            events = streaming.streams[method](parsed, metadata, call)
            async with contextlib.aclosing(events) as items:
                first = await anext(items)
                if isinstance(first, ServiceError):
                    return refusal(first, trailers)
                response = web.StreamResponse(headers={"Content-Type": NDJSON, **dict(trailers)})
                await response.prepare(request)
                await _write_line(response, _as_json_dict(first))
                async for item in items:
                    if isinstance(item, ServiceError):
                        await _write_line(response, {"detail": _detail(item)})
                    else:
                        await _write_line(response, _as_json_dict(item))
                await response.write_eof()
                return response

    return handle


async def _write_line(response: web.StreamResponse, item: dict[str, Any]) -> None:
    await response.write(json.dumps(item, separators=(",", ":")).encode() + b"\n")


@web.middleware
async def _as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no such path, not POST, a body too large) in the API's shape."""
    connection = request.protocol
    if isinstance(connection, _Connection):
        connection.call_began()
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            error = ServiceError(Code.NOT_FOUND, "No such path.", path=request.path)
        else:
            error = _refused(exc.reason)
        response = refusal(error, status=exc.status)
        allow = exc.headers.get("Allow")
        if allow:
            response.headers["Allow"] = allow
        return response
    finally:
        if isinstance(connection, _Connection):
            connection.call_ended()


class _Connection(web.RequestHandler):
    """aiohttp's handler of one connection, which closes it when a request head takes longer
    than ``head_timeout_s`` from its first byte (or from the opening: a connection that says
    nothing), and answers a request it cannot read (too many or too long header fields, not
    HTTP) in the API's shape rather than in plain text."""

    def __init__(self, manager: web.Server, *, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, loop=asyncio.get_running_loop(), **kwargs)
        self.head_timeout_s = head_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._in_call = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._in_call:  # the first bytes of a request head
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def call_began(self) -> None:
        """A whole request head has arrived."""
        self._in_call = True
        self._disarm()

    def call_ended(self) -> None:
        """The call is answered: the connection waits for its next request (aiohttp's
        keep-alive time bounds the wait)."""
        self._in_call = False

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a fault of ours: its traceback goes to the log, never to the caller
            self.log_exception("HTTP call failed", exc_info=exc)
            error = ServiceError(Code.UNKNOWN, "The call failed.")
        else:
            reason = message or HTTPStatus(status).phrase
            error = _refused(f"The request cannot be read: {reason}")
        response = refusal(error, status=status)
        response.force_close()
        return response

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.head_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        if not self._in_call:
            REFUSED_CONNECTIONS.labels("slow").inc()
            self.force_close()


class _Full(asyncio.Protocol):
    """A connection past the port's bound: closed as it opens."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        REFUSED_CONNECTIONS.labels("full").inc()
        transport.close()


OPENAPI_PATH = "/openapi.json"


def _probes(ready: Callable[[], bool]) -> list[web.RouteDef]:
    """Kubernetes' httpGet probes: alive while the process serves; ready while gRPC health says
    SERVING (the database answers, and no SIGTERM yet)."""

    async def alive(request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def readiness(request: web.Request) -> web.Response:
        serving = ready()
        body = {"status": "SERVING" if serving else "NOT_SERVING"}
        return web.json_response(body, status=200 if serving else 503)

    return [web.get("/healthz", alive), web.get("/readyz", readiness)]


def application(
    routes_: Sequence[Route],
    pool: Executor,
    max_body_bytes: int,
    ready: Callable[[], bool],
    version: str,
) -> web.Application:
    """The aiohttp application serving ``routes_`` (bodies up to ``max_body_bytes``), the
    probes (``ready``: whether health answers SERVING) and their OpenAPI document."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_as_json])
    probes = _probes(ready)
    operations = [
        (r.method.full_name, r.paths, r.method.input_type, r.method.output_type, r.rpc is None)
        for r in routes_
    ]
    gets = [probe.path for probe in probes if isinstance(probe, web.RouteDef)] + [OPENAPI_PATH]
    described = openapi.document(operations, gets, version)

    async def document(request: web.Request) -> web.Response:
        return web.json_response(described)

    app.router.add_routes([*probes, web.get(OPENAPI_PATH, document)])
    for route in routes_:
        handler = _handler(route, pool) if route.rpc is not None else _stream_handler(route)
        for path in route.paths:
            app.router.add_post(path, handler)
    return app


@dataclass
class HttpServer:
    """The HTTP port being served: aiohttp's runner and the listening socket."""

    runner: web.AppRunner
    listener: asyncio.Server

    @property
    def port(self) -> int:
        """The bound port (the one picked, when asked for 0)."""
        return int(self.listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop taking connections, finish the calls in flight, and let go of the app."""
        self.listener.close()
        await self.runner.cleanup()


async def serve(
    app: web.Application, host: str, port: int, tls: ssl.SSLContext | None, limits: Limits
) -> HttpServer:
    """Serve ``app`` on ``host:port`` on the running loop, within ``limits``."""
    # A handler is cancelled when its client goes away: a stream ends then, not at its next write.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    server = runner.server
    assert server is not None

    def connection() -> asyncio.BaseProtocol:
        if len(server.connections) >= limits.max_connections:
            return _Full()
        return _Connection(
            server,
            head_timeout_s=limits.head_timeout_s,
            keepalive_timeout=limits.idle_s,
            # After an answer, what is left of a body is read (so the client sees the answer
            # before the connection closes) for as long as a body may take, no longer.
            lingering_time=limits.head_timeout_s,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            max_headers=MAX_HEADERS,
            access_log=None,
        )

    handshake_s = limits.head_timeout_s if tls else None
    try:
        listener = await asyncio.get_running_loop().create_server(
            connection, host, port, ssl=tls, ssl_handshake_timeout=handshake_s
        )
    except OSError:
        await runner.cleanup()
        raise
    return HttpServer(runner, listener)
