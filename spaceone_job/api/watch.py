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
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import grpc

from spaceone_job import auth, errors, observe
from spaceone_job.api import render
from spaceone_job.api.servicer import Gate, Metadata, Servicer, permitted
from spaceone_job.auth import Authenticator, Caller
from spaceone_job.changes import ChangeHub, Feed, seen
from spaceone_job.lifecycle import FINISHED
from spaceone_job.service import JobService
from spaceone_job.store.documents import Document
from spaceone_job.v1 import producer_pb2

# The method name of its call line and metrics, as the other calls have theirs.
METHOD = "watch"


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
    def observed(self, metadata: Metadata, route: str = "") -> Iterator[observe.Call]:
        """One call line when the stream ends: how long it lasted, why it ended, and the HTTP
        ``route`` it came by, if any."""
        with observe.observed(METHOD, dict(metadata), stream=True) as call:
            call.route = route
            yield call

    async def events(
        self, request: producer_pb2.WatchRequest, metadata: Metadata, call: observe.Call
    ) -> AsyncGenerator[producer_pb2.WatchEvent | errors.ServiceError, None]:
        """The stream, whatever it goes over: the job now, at each change, keep-alives between,
        until the job finishes; or, as its last item, the error it ends with."""
        try:
            caller = await self.hub.run(self._caller, call, metadata, request)
            with self.hub.watching(request.job_id, auth.token_from(metadata)) as feed:
                # Watching first, then the read: a change in between is not missed.
                doc = await self.hub.run(self._get, caller, request.job_id)
                async for event in self._events(caller, feed, doc):
                    yield event
            call.ended = "finished"
        except Exception as exc:
            error = errors.as_service_error(exc)
            call.code, call.error_code, call.reason = error.status_code, error.code, error.message
            call.ended = error.code
            yield error
        except BaseException:  # the client went away: the generator is closed or cancelled
            call.code, call.ended = grpc.StatusCode.CANCELLED, "client went away"
            raise

    async def watch(
        self, request: producer_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[producer_pb2.WatchEvent]:
        """The stream over gRPC: its error as the call's status."""
        metadata = tuple(context.invocation_metadata() or ())
        with self.observed(metadata) as call:
            context.set_trailing_metadata(call.trailing_metadata)
            # Closed within the call: a client that goes away is in its line.
            async with contextlib.aclosing(self.events(request, metadata, call)) as items:
                async for item in items:
                    if isinstance(item, errors.ServiceError):
                        await errors.abort(context, item, call.trailing_metadata)
                    else:
                        yield item

    async def _events(
        self, caller: Caller, feed: Feed, doc: Document
    ) -> AsyncIterator[producer_pb2.WatchEvent]:
        shown, version = seen(doc), feed.version
        sent = time.monotonic()
        yield render.watch_event(doc)
        while doc.get("status") not in FINISHED:
            left = self.authenticator.seconds_left(caller)
            keepalive = sent + self.keepalive_s - time.monotonic()
            await feed.next(version, keepalive if left is None else min(keepalive, left))
            if self.hub.closed:
                raise errors.ServiceError(
                    errors.Code.SERVER_STOPPING, "The server is stopping; watch again."
                )
            if left is not None and self.authenticator.seconds_left(caller) == 0:
                raise auth.expired()
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
