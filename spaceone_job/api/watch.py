"""``spaceone_job.v1.Watch``: a job at once, then at every change, until it finishes.

A coroutine on the server's loop: while it waits it holds no thread. Its first read goes the way
of every call (the gate, the token, a place among the running calls, on the server's pool);
after that it follows the job's :class:`~spaceone_job.changes.Feed`, which reads the job once
per change for all its watchers. It sends a keep-alive when nothing was sent for
``keepalive_s``; it ends UNAUTHENTICATED when its token expires, and at shutdown UNAVAILABLE
``ERROR_SERVER_STOPPING``, so clients reconnect to another replica.
"""

from __future__ import annotations

import contextlib
import functools
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth, errors, observe
from spaceone_job.api import render
from spaceone_job.api.servicer import Gate, Metadata, Servicer, permitted
from spaceone_job.auth import Authenticator, Caller
from spaceone_job.changes import ChangeHub, Feed, seen
from spaceone_job.lifecycle import FINISHED
from spaceone_job.service import JobService
from spaceone_job.store.documents import Document
from spaceone_job.v1 import producer_pb2

# The method names of its call lines and metrics, as the other calls have theirs.
METHOD = "watch"
JOBS_METHOD = "watch_jobs"
T = TypeVar("T")
# A streaming method's body: (request, metadata, call) -> its events, then maybe its error.
Stream = Callable[[Any, Metadata, observe.Call], AsyncGenerator[Any, None]]


class WatchServicer(Servicer):
    """Follows one job for a caller who may read it."""

    def __init__(
        self,
        service: JobService,
        authenticator: Authenticator,
        hub: ChangeHub,
        keepalive_s: float,
        gate: Gate,
    ) -> None:
        super().__init__(authenticator, gate)
        self.service = service
        self.hub = hub
        self.keepalive_s = keepalive_s
        self._rendered: weakref.WeakKeyDictionary[Feed, tuple[int, producer_pb2.WatchEvent]] = (
            weakref.WeakKeyDictionary()
        )

    def _caller(self, call: observe.Call, metadata: Metadata, request: Any) -> Caller:
        caller = self.let_in(call, metadata, None)
        permitted(caller, auth.READ, request)
        return caller

    def _get(self, caller: Caller, job_id: str) -> Document:
        with self.gate.slot():
            return self.service.get(caller, job_id, also=("events",))

    @contextlib.contextmanager
    def observed(
        self, metadata: Metadata, route: str = "", method: str = METHOD
    ) -> Iterator[observe.Call]:
        """One call line when the stream ``method`` ends: how long it lasted, why it ended, and
        the HTTP ``route`` it came by, if any."""
        with observe.observed(method, dict(metadata), stream=True) as call:
            call.route = route
            yield call

    @property
    def streams(self) -> dict[str, Stream]:
        """Each streaming method's events, by method name, whatever they go over."""
        return {METHOD: self.events, JOBS_METHOD: self.jobs_events}

    def events(
        self, request: producer_pb2.WatchRequest, metadata: Metadata, call: observe.Call
    ) -> AsyncGenerator[producer_pb2.WatchEvent | errors.ServiceError, None]:
        """The stream, whatever it goes over: the job now, at each change, keep-alives between,
        until the job finishes; or, as its last item, the error it ends with."""
        return _ended(call, self._watched(request, metadata, call))

    async def _watched(
        self, request: producer_pb2.WatchRequest, metadata: Metadata, call: observe.Call
    ) -> AsyncGenerator[producer_pb2.WatchEvent, None]:
        caller = await self.hub.run(self._caller, call, metadata, request)
        with self.hub.watching(request.job_id, auth.token_from(metadata)) as feed:
            # Watching first, then the read: a change in between is not missed.
            doc = await self.hub.run(self._get, caller, request.job_id)
            async for event in self._events(caller, feed, doc):
                yield event

    async def watch(
        self, request: producer_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[producer_pb2.WatchEvent]:
        """One job's stream over gRPC."""
        async for event in self._over_grpc(METHOD, request, context):
            yield event

    async def watch_jobs(
        self, request: producer_pb2.WatchJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[producer_pb2.JobsEvent]:
        """The list-watch over gRPC."""
        async for event in self._over_grpc(JOBS_METHOD, request, context):
            yield event

    async def _over_grpc(
        self, method: str, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """A stream over gRPC: its error as the call's status."""
        metadata = tuple(context.invocation_metadata() or ())
        with self.observed(metadata, method=method) as call:
            context.set_trailing_metadata(call.trailing_metadata)
            # Closed within the call: a client that goes away is in its line.
            async with contextlib.aclosing(self.streams[method](request, metadata, call)) as items:
                async for item in items:
                    if isinstance(item, errors.ServiceError):
                        await errors.abort(context, item, call.trailing_metadata)
                    else:
                        yield item

    def jobs_events(
        self, request: producer_pb2.WatchJobsRequest, metadata: Metadata, call: observe.Call
    ) -> AsyncGenerator[producer_pb2.JobsEvent | errors.ServiceError, None]:
        """The list-watch, whatever it goes over: the matching jobs now (newest first, at most
        a page), a ``listed`` mark, then every change to a job that matches or stops matching;
        or, from a resume token, every change since. Each event carries the token to resume
        after it; keep-alives carry the latest (bookmarks). Its error, if any, is its last
        item."""
        return _ended(call, self._jobs_watched(request, metadata, call))

    async def _jobs_watched(
        self, request: producer_pb2.WatchJobsRequest, metadata: Metadata, call: observe.Call
    ) -> AsyncGenerator[producer_pb2.JobsEvent, None]:
        caller = await self.hub.run(self._caller, call, metadata, request)
        wanted = _wanted(request)
        journal = self.hub.journal
        with self.hub.admitted(auth.token_from(metadata)):
            told: dict[str, tuple[Any, ...]] | None = None
            if request.resume_token:
                place = journal.place(request.resume_token)
                if place is None:
                    raise _too_old()
            else:  # the list, from where the journal is now: no change after it is missed
                place = journal.head
                listed = await self.hub.run(self._listed, caller, wanted)
                told = {doc["job_id"]: seen(doc) for doc in listed}
                for doc in listed:
                    info = render.job_info(doc)
                    yield producer_pb2.JobsEvent(job=info, resume_token=journal.token(place))
                mark = producer_pb2.Listed(count=len(listed))
                yield producer_pb2.JobsEvent(listed=mark, resume_token=journal.token(place))
            async for event in self._changes(caller, wanted, place, told):
                yield event

    async def _changes(
        self,
        caller: Caller,
        wanted: dict[str, str],
        place: int,
        told: dict[str, tuple[Any, ...]] | None,
    ) -> AsyncGenerator[producer_pb2.JobsEvent, None]:
        journal = self.hub.journal
        sent = time.monotonic()
        while True:
            await self._wait(caller, sent, functools.partial(journal.wait, place))
            changes = journal.since(place)
            if changes is None:
                raise _too_old()
            if not changes:
                if time.monotonic() - sent >= self.keepalive_s:
                    sent = time.monotonic()
                    at = render.timestamp(self.service.clock())
                    bookmark = journal.token(place)
                    alive = producer_pb2.KeepAlive(at=at)
                    yield producer_pb2.JobsEvent(keep_alive=alive, resume_token=bookmark)
                continue
            # Each job once, at the place after its last change: it is told as it is now.
            latest = {job_id: after for after, job_id in changes}
            place = changes[-1][0]
            docs = await self.hub.run(self._readable, caller, list(latest))
            for job_id, after in sorted(latest.items(), key=lambda item: item[1]):
                event = _told(job_id, docs.get(job_id), wanted, told)
                if event is not None:
                    sent = time.monotonic()
                    event.resume_token = journal.token(after)
                    yield event

    async def _wait(
        self, caller: Caller, sent: float, until: Callable[[float], Awaitable[object]]
    ) -> None:
        """``until(seconds)``: a stream's wait for news, at most until its next keep-alive is
        due (``sent`` was its last event) or its token expires; then the stream ends if the
        server is stopping or the token has expired."""
        left = self.authenticator.seconds_left(caller)
        keepalive = sent + self.keepalive_s - time.monotonic()
        # Not closed now: the hub's wake-up, queued on this loop after it closes, comes after
        # this wait begins (a wake-up with no one waiting yet would be lost).
        if not self.hub.closed:
            await until(keepalive if left is None else min(keepalive, left))
        if self.hub.closed:
            raise errors.ServiceError(
                errors.Code.SERVER_STOPPING, "The server is stopping; watch again."
            )
        if left is not None and self.authenticator.seconds_left(caller) == 0:
            raise auth.expired()

    def _listed(self, caller: Caller, wanted: dict[str, str]) -> list[Document]:
        query = {"page": {"limit": self.service.limits.max_page_limit}}
        query["sort"] = [{"key": "created_at", "desc": True}]  # type: ignore[assignment]
        with self.gate.slot():
            return self.service.list_documents(caller, {**wanted, "query": query}).documents

    def _readable(self, caller: Caller, job_ids: list[str]) -> dict[str, Document]:
        with self.gate.slot():
            return self.service.readable(caller, job_ids)

    async def _events(
        self, caller: Caller, feed: Feed, doc: Document
    ) -> AsyncIterator[producer_pb2.WatchEvent]:
        shown, version = seen(doc), feed.version
        sent = time.monotonic()
        yield render.watch_event(doc)
        while doc.get("status") not in FINISHED:
            await self._wait(caller, sent, functools.partial(feed.next, version))
            if feed.version != version:
                version = feed.version
                if feed.error is not None:
                    raise feed.error
                if feed.doc is None:
                    raise errors.ServiceError(
                        errors.Code.NOT_FOUND, "The job no longer exists.", job_id=feed.job_id
                    )
                if seen(feed.doc) != shown:
                    doc, shown, sent = feed.doc, seen(feed.doc), time.monotonic()
                    yield self._event(feed)
            elif time.monotonic() - sent >= self.keepalive_s:
                sent = time.monotonic()
                at = render.timestamp(self.service.clock())
                yield producer_pb2.WatchEvent(keep_alive=producer_pb2.KeepAlive(at=at))

    def _event(self, feed: Feed) -> producer_pb2.WatchEvent:
        """The event of the feed's current version, rendered once for all its watchers."""
        rendered = self._rendered.get(feed)
        if rendered is None or rendered[0] != feed.version:
            assert feed.doc is not None
            rendered = feed.version, render.watch_event(feed.doc)
            self._rendered[feed] = rendered
        return rendered[1]


# A job status's name by its number in the request.
_STATUSES = {number: name for name, number in job_pb2.JobQuery.Status.items()}


def _wanted(request: producer_pb2.WatchJobsRequest) -> dict[str, str]:
    """The console's filter: the fields it names."""
    wanted = {
        "data_source_id": request.data_source_id.strip(),
        "workspace_id": request.workspace_id.strip(),
    }
    if request.status:
        if request.status not in _STATUSES:
            raise errors.invalid("status", f"no job status is numbered {request.status}.")
        wanted["status"] = _STATUSES[request.status]
    return {name: value for name, value in wanted.items() if value}


def _told(
    job_id: str,
    doc: Document | None,
    wanted: dict[str, str],
    told: dict[str, tuple[Any, ...]] | None,
) -> producer_pb2.JobsEvent | None:
    """What a list-watcher hears of a change to ``job_id`` (now ``doc``, None when it is gone
    or out of the caller's reach): the job when it matches and changed since it was told; gone
    when it no longer matches and was told, or may have been (a resumed watch); else nothing."""
    matches = doc is not None and all(doc.get(k) == v for k, v in wanted.items())
    if matches:
        assert doc is not None
        if told is not None and told.get(job_id) == seen(doc):
            return None
        if told is not None:
            told[job_id] = seen(doc)
        return producer_pb2.JobsEvent(job=render.job_info(doc))
    if told is not None and told.pop(job_id, None) is None:
        return None
    if doc is None and told is None:
        return None  # never in the caller's reach: nothing to take back
    info = render.job_info(doc) if doc is not None else job_pb2.JobInfo(job_id=job_id)
    return producer_pb2.JobsEvent(gone=info)


def _too_old() -> errors.ServiceError:
    return errors.ServiceError(
        errors.Code.RESUME_TOO_OLD,
        "The resume token is older than this server can replay; watch again without it.",
    )


async def _ended(call: observe.Call, items: AsyncGenerator[T, None]) -> AsyncGenerator[Any, None]:
    """``items``, then, when they end in an error, that error as the last item; the call's
    line says how the stream ended."""
    try:
        async with contextlib.aclosing(items):
            async for item in items:
                yield item
        call.ended = "finished"
    except Exception as exc:
        error = errors.as_service_error(exc)
        call.code, call.error_code, call.reason = error.status_code, error.code, error.message
        call.ended = error.code
        yield error
    except BaseException:  # the client went away: the stream is closed or cancelled
        call.code, call.ended = grpc.StatusCode.CANCELLED, "client went away"
        raise
