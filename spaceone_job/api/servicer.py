"""The Job and JobTask servicers: protobuf in -> plain values -> service -> renderer -> out.

Each method is an :class:`Rpc`: one call body (gate, token, permission, the method, the call's
log line, metrics and request id) that the asyncio server (:class:`OnLoop`) and the HTTP front
both run; a refused gRPC call leaves through :func:`spaceone_job.errors.abort`, the one error
path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import json_format, message, message_factory, struct_pb2
from google.protobuf.descriptor import ServiceDescriptor
from spaceone.api.cost_analysis.v1 import job_pb2, job_task_pb2

from spaceone_job import auth, errors, observe
from spaceone_job.api import render
from spaceone_job.auth import Authenticator, Caller
from spaceone_job.producer import Producers
from spaceone_job.service import JobService, ReadService, Trails
from spaceone_job.v1 import producer_pb2

Request = TypeVar("Request", bound=message.Message)
Response = TypeVar("Response", bound=message.Message)
Method = Callable[[Any, Request, Caller, float | None], Response]
Metadata = tuple[tuple[str, str], ...]

# Without a client deadline grpcio reports a remaining time of years; treat that as none.
NO_DEADLINE_S = 10**6


def countdown(
    context: grpc.ServicerContext | grpc.aio.ServicerContext,
) -> Callable[[], float | None]:
    """Seconds left before the client's deadline, asked of grpc once (None: no deadline)."""
    return counting_down(context.time_remaining())


def counting_down(seconds: float | None) -> Callable[[], float | None]:
    """Seconds left of a client's ``seconds`` from now (None, or years: no deadline)."""
    if seconds is None or seconds > NO_DEADLINE_S:
        return lambda: None
    deadline = time.monotonic() + max(float(seconds), 0.0)
    return lambda: max(deadline - time.monotonic(), 0.0)


@dataclass(frozen=True)
class Outcome(Generic[Response]):
    """How a call ended: its response or the error it is refused with, and its trailers."""

    response: Response | None
    error: errors.ServiceError | None
    trailing_metadata: Metadata


class Rpc(Generic[Request, Response]):
    """One RPC: authenticate, authorize ``permission``, run the method, map any failure to a
    status. :class:`OnLoop` makes it a coroutine for the asyncio server.

    ``lookup``: the method reads one document by its id, so that on a store in memory, with keys
    that need no network, it never waits and may run on the event loop.
    """

    def __init__(self, method: Method[Request, Response], permission: str, lookup: bool) -> None:
        self.method = method
        self.name = method.__name__
        self.permission = permission
        self.lookup = lookup

    def answer(
        self,
        servicer: Servicer,
        request: Request,
        metadata: Metadata,
        left: Callable[[], float | None],
        route: str = "",
    ) -> Outcome[Response]:
        """The whole call, apart from grpc: gate, token, permission, method, log line (with
        the HTTP ``route`` it came by, if any)."""
        error: errors.ServiceError | None = None
        response: Response | None = None
        # The call's log line is made as the block ends, before the answer leaves (written by
        # observe's writer thread when there is one).
        with observe.observed(self.name, dict(metadata)) as call:
            call.route = route
            try:
                caller = servicer.let_in(call, metadata, left())
                with servicer.gate.slot():
                    permitted(caller, self.permission, request)
                    response = self.method(servicer, request, caller, left())
            except Exception as exc:
                error = errors.as_service_error(exc)
                call.code, call.error_code = error.status_code, error.code
                call.reason = error.message
        return Outcome(response, error, call.trailing_metadata)


def rpc(
    permission: str, *, lookup: bool = False
) -> Callable[[Method[Request, Response]], Rpc[Request, Response]]:
    """Make a servicer method an :class:`Rpc` needing ``permission``."""

    def wrap(method: Method[Request, Response]) -> Rpc[Request, Response]:
        return Rpc(method, permission, lookup)

    return wrap


@dataclass(frozen=True)
class Undecodable:
    """A request whose bytes protobuf could not parse (nested past its depth limit, or not a
    message of its type): answered INVALID_ARGUMENT by the call, like any other mistake, rather
    than by grpc with UNKNOWN and a logged traceback."""

    reason: str


def readable(request: Any) -> None:
    """Refuse a request that could not be parsed."""
    if isinstance(request, Undecodable):
        raise errors.ServiceError(
            errors.Code.INVALID_PARAMETER,
            "The request cannot be read: it is not a message of its type, or its values are"
            " nested too deeply.",
            key="request",
        )


def _lenient(kind: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return kind.FromString(data)
        except message.DecodeError as exc:
            return Undecodable(str(exc))

    return parse


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, implementation: Any) -> None:
    """Serve ``service``'s methods from ``implementation``'s coroutines of the same names, each
    request parsed by :func:`_lenient` (the generated ``add_*_to_server`` would let grpc answer
    a request it cannot parse)."""
    table = {}
    for method in service.methods:
        kind = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        table[method.name] = kind(
            getattr(implementation, method.name),
            request_deserializer=_lenient(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(
                method.output_type
            ).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, table),)
    )
    server.add_registered_method_handlers(service.full_name, table)


class OnLoop:
    """A servicer as the asyncio server wants it: each RPC a coroutine.

    A lookup on a store in memory, with keys that need no network, is answered on the event loop
    (it takes tens of microseconds; a hand-off to a thread and back costs more than that). Every
    other call runs on ``pool``: it may wait on the database, identity or a long query, and the
    loop must stay free for health checks and watch streams.
    """

    def __init__(self, servicer: Servicer, pool: Executor) -> None:
        self._servicer = servicer
        self._pool = pool
        for rpc_ in vars(type(servicer)).values():
            if isinstance(rpc_, Rpc):
                setattr(self, rpc_.name, self._coroutine(rpc_))

    def on_loop(self, rpc_: Rpc[Any, Any]) -> bool:
        """Whether ``rpc_`` is answered on the event loop."""
        servicer = self._servicer
        return rpc_.lookup and servicer.in_memory and not servicer.authenticator.may_wait

    def _coroutine(
        self, rpc_: Rpc[Request, Response]
    ) -> Callable[[Request, grpc.aio.ServicerContext], Coroutine[Any, Any, Response | None]]:
        servicer, pool, inline = self._servicer, self._pool, self.on_loop(rpc_)

        async def handler(request: Request, context: grpc.aio.ServicerContext) -> Response | None:
            metadata = tuple(context.invocation_metadata())
            left = countdown(context)
            if inline:
                outcome = rpc_.answer(servicer, request, metadata, left)
            else:
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(
                    pool, rpc_.answer, servicer, request, metadata, left
                )
            if outcome.error is not None:
                await errors.abort(context, outcome.error, outcome.trailing_metadata)
            context.set_trailing_metadata(outcome.trailing_metadata)
            return outcome.response

        return handler


def as_dict(request: message.Message) -> dict[str, Any]:
    """A request as upstream sees it: proto field names, unset fields left out."""
    try:
        return json_format.MessageToDict(request, preserving_proto_field_name=True)
    except json_format.SerializeToJsonError as exc:  # a Value holding NaN or infinity
        raise errors.ServiceError(
            errors.Code.INVALID_PARAMETER_TYPE,
            "NaN and infinity are not values.",
            key=_non_finite(request, "") or "request",
        ) from exc


def _non_finite(item: message.Message, path: str) -> str | None:
    """The path (``tasks[1].options.x``) of the first NaN or infinity in a message."""
    parts: list[tuple[str, Any]] = []
    if isinstance(item, struct_pb2.Value):
        which = item.WhichOneof("kind")
        if which == "number_value":
            return None if math.isfinite(item.number_value) else path
        if which in ("struct_value", "list_value"):
            parts = [(path, getattr(item, which))]
    elif isinstance(item, struct_pb2.Struct):
        parts = [(f"{path}.{key}", value) for key, value in item.fields.items()]
    elif isinstance(item, struct_pb2.ListValue):
        parts = [(f"{path}[{i}]", value) for i, value in enumerate(item.values)]
    else:
        for f, value in item.ListFields():
            name = f"{path}.{f.name}".lstrip(".")
            if f.message_type is None:
                continue
            if f.message_type.GetOptions().map_entry:
                parts += [(f"{name}.{key}", entry) for key, entry in value.items()]
            elif f.is_repeated:
                parts += [(f"{name}[{i}]", entry) for i, entry in enumerate(value)]
            else:
                parts.append((name, value))
    for where, part in parts:
        if isinstance(part, message.Message):
            found = _non_finite(part, where)
            if found is not None:
                return found
    return None


class Gate:
    """How many Job calls run at once, and whether new ones are let in at all."""

    # While stopping, the port closes only once no call has knocked for this long, so that calls
    # already on their way to the gate are refused (retryable) rather than cut off (CANCELLED).
    QUIET_S = 0.2

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy = 0
        self._closed = False
        self._knocked = 0.0
        self._cond = threading.Condition()

    def admit(self) -> None:
        """Refuse a call at once while the server is stopping."""
        with self._cond:
            self._refuse_if_closed()

    def _refuse_if_closed(self) -> None:
        if self._closed:
            self._knocked = time.monotonic()
            raise errors.ServiceError(
                errors.Code.SERVER_STOPPING, "The server is stopping; retry on another replica."
            )

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One of ``limit`` places: refused at once when none is free or the gate is closed."""
        with self._cond:
            self._refuse_if_closed()
            if self._busy >= self._limit:
                raise errors.ServiceError(
                    errors.Code.TOO_MANY_REQUESTS, "The server is at its call limit; retry later."
                )
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def close(self) -> None:
        """Let no new call in (those running go on)."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._knocked = time.monotonic()

    def drain(self, grace_s: float) -> bool:
        """Let no new call in; wait up to ``grace_s`` for those running to end and for the
        callers to stop knocking (``QUIET_S``). Whether every running call ended."""
        self.close()
        deadline = time.monotonic() + grace_s
        with self._cond:
            ended = self._cond.wait_for(lambda: self._busy == 0, timeout=grace_s)
            while ended:
                now = time.monotonic()
                wait = min(self._knocked + self.QUIET_S, deadline) - now
                if wait <= 0:
                    break
                self._cond.wait(wait)
            return ended


class Servicer:
    """What every servicer shares: who verifies tokens, the gate of the server's calls, and
    whether its documents are in this process's memory (the embedded store)."""

    def __init__(self, authenticator: Authenticator, gate: Gate, in_memory: bool = False) -> None:
        self.authenticator = authenticator
        self.gate = gate
        self.in_memory = in_memory

    def let_in(self, call: observe.Call, metadata: Metadata, left: float | None) -> Caller:
        """The caller of a new call: refused while the server stops, then its token verified
        (a key not cached yet may wait on identity, within ``left``: before any slot, so that
        callers whose keys are cached are never refused because others wait)."""
        self.gate.admit()
        caller = self.authenticator.authenticate(metadata, left)
        call.domain_id = caller.domain_id
        return dataclasses.replace(caller, request_id=call.request_id)


def permitted(caller: Caller, permission: str, request: Any) -> None:
    """Refuse a caller without ``permission``, or a request that could not be parsed."""
    auth.authorize(caller, permission)
    readable(request)


def _stat_query(request: job_pb2.JobStatQuery | job_task_pb2.JobTaskStatQuery) -> Any:
    return as_dict(request.query) if request.HasField("query") else None


class JobServicer(Servicer):
    """``spaceone.api.cost_analysis.v1.Job``."""

    def __init__(self, service: JobService, authenticator: Authenticator, gate: Gate) -> None:
        super().__init__(authenticator, gate, service.store.in_memory)
        self.service = service

    @rpc(auth.WRITE)
    def cancel(
        self, request: job_pb2.JobRequest, caller: Caller, timeout: float | None
    ) -> job_pb2.JobInfo:
        """Cancel a running job."""
        return render.job_info(self.service.cancel(caller, request.job_id, timeout))

    @rpc(auth.READ, lookup=True)
    def get(
        self, request: job_pb2.JobRequest, caller: Caller, timeout: float | None
    ) -> job_pb2.JobInfo:
        """One job."""
        return render.job_info(self.service.get(caller, request.job_id, timeout))

    @rpc(auth.READ)
    def list(
        self, request: job_pb2.JobQuery, caller: Caller, timeout: float | None
    ) -> job_pb2.JobsInfo:
        """A page of jobs and the total count."""
        found = self.service.list_documents(caller, as_dict(request), timeout)
        return render.jobs_info(found.documents, found.total_count, found.minimal)

    @rpc(auth.READ)
    def stat(
        self, request: job_pb2.JobStatQuery, caller: Caller, timeout: float | None
    ) -> struct_pb2.Struct:
        """Statistics over jobs."""
        return render.struct(self.service.stat(caller, _stat_query(request), timeout))


class JobTaskServicer(Servicer):
    """``spaceone.api.cost_analysis.v1.JobTask``."""

    def __init__(self, service: ReadService, authenticator: Authenticator, gate: Gate) -> None:
        super().__init__(authenticator, gate, service.store.in_memory)
        self.service = service

    @rpc(auth.TASK_READ, lookup=True)
    def get(
        self, request: job_task_pb2.JobTaskRequest, caller: Caller, timeout: float | None
    ) -> job_task_pb2.JobTaskInfo:
        """One job task."""
        return render.job_task_info(self.service.get(caller, request.job_task_id, timeout))

    @rpc(auth.TASK_READ)
    def list(
        self, request: job_task_pb2.JobTaskQuery, caller: Caller, timeout: float | None
    ) -> job_task_pb2.JobTasksInfo:
        """A page of job tasks and the total count."""
        found = self.service.list_documents(caller, as_dict(request), timeout)
        return render.job_tasks_info(found.documents, found.total_count, found.minimal)

    @rpc(auth.TASK_READ)
    def stat(
        self, request: job_task_pb2.JobTaskStatQuery, caller: Caller, timeout: float | None
    ) -> struct_pb2.Struct:
        """Statistics over job tasks."""
        return render.struct(self.service.stat(caller, _stat_query(request), timeout))


class HistoryServicer(Servicer):
    """``spaceone_job.v1.History``: a job's event trail."""

    def __init__(self, trails: Trails, authenticator: Authenticator, gate: Gate) -> None:
        super().__init__(authenticator, gate)
        self.trails = trails

    @rpc(auth.READ)
    def list_events(
        self, request: producer_pb2.ListEventsRequest, caller: Caller, timeout: float | None
    ) -> producer_pb2.EventsInfo:
        """What happened to a job and its tasks, oldest first."""
        found = self.trails.events(caller, request.job_id, timeout)
        return producer_pb2.EventsInfo(events=render.events(found))


class ProducerServicer(Servicer):
    """``spaceone_job.v1.Producer``: schedulers and workers."""

    def __init__(self, producers: Producers, authenticator: Authenticator, gate: Gate) -> None:
        super().__init__(authenticator, gate)
        self.producers = producers

    @rpc(auth.WRITE)
    def create_job(
        self, request: producer_pb2.CreateJobRequest, caller: Caller, timeout: float | None
    ) -> producer_pb2.CreatedJob:
        """A job with its tasks."""
        created = self.producers.create_job(caller, as_dict(request), timeout)
        return producer_pb2.CreatedJob(
            job=render.job_info(created.job),
            tasks=[render.job_task_info(task) for task in created.tasks],
        )

    @rpc(auth.WRITE)
    def start_task(
        self, request: producer_pb2.TaskRequest, caller: Caller, timeout: float | None
    ) -> job_task_pb2.JobTaskInfo:
        """A task starts."""
        return render.job_task_info(self.producers.start_task(caller, as_dict(request), timeout))

    @rpc(auth.WRITE)
    def report_progress(
        self, request: producer_pb2.ProgressRequest, caller: Caller, timeout: float | None
    ) -> job_task_pb2.JobTaskInfo:
        """A task stored more rows."""
        answer = self.producers.report_progress(caller, as_dict(request), timeout)
        return render.job_task_info(answer)

    @rpc(auth.WRITE)
    def finish_task(
        self, request: producer_pb2.FinishTaskRequest, caller: Caller, timeout: float | None
    ) -> job_task_pb2.JobTaskInfo:
        """A task ends."""
        answer = self.producers.finish_task(caller, as_dict(request), timeout)
        return render.job_task_info(answer)
