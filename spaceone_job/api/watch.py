"""``spaceone_job.v1.Watch``: a job at once, then at every change, until it finishes.

A coroutine on the server's loop: while it waits it holds no thread. It wakes when this process
changes the job (:class:`~spaceone_job.changes.ChangeHub`) and re-reads on a timer that backs off
from ``POLL_MIN_S`` to ``POLL_MAX_S`` (changes made by other replicas); it sends a keep-alive when
nothing was sent for ``keepalive_s``; at shutdown it ends UNAVAILABLE ``ERROR_SERVER_STOPPING``,
so clients reconnect to another replica. Reads (the token, the job) run on the loop's executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from spaceone_job import auth, errors
from spaceone_job.api import render
from spaceone_job.api.servicer import readable
from spaceone_job.auth import Authenticator, Caller
from spaceone_job.changes import ChangeHub
from spaceone_job.lifecycle import FINISHED
from spaceone_job.service import JobService
from spaceone_job.store.store import Document
from spaceone_job.v1 import producer_pb2, producer_pb2_grpc

POLL_MIN_S = 0.5
POLL_MAX_S = 8.0
# What a watcher tells apart: a change it reports.
SEEN = ("status", "remained_tasks", "total_tasks", "updated_at", "finished_at", "error_code")


def _seen(doc: Document) -> tuple[Any, ...]:
    return tuple(doc.get(name) for name in SEEN)


class WatchServicer(producer_pb2_grpc.WatchServicer):
    """Follows one job for a caller who may read it."""

    def __init__(
        self, service: JobService, authenticator: Authenticator, hub: ChangeHub, keepalive_s: float
    ) -> None:
        self.service = service
        self.authenticator = authenticator
        self.hub = hub
        self.keepalive_s = keepalive_s

    def _first(self, metadata: Any, request: Any) -> tuple[Caller, Document]:
        caller = self.authenticator.authenticate(metadata)
        auth.authorize(caller, auth.READ)
        readable(request)
        return caller, self.service.get(caller, request.job_id)

    async def watch(
        self, request: producer_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[producer_pb2.WatchEvent]:
        """The job now, at each change, keep-alives between; ends when the job finishes."""
        loop = asyncio.get_running_loop()
        metadata = tuple(context.invocation_metadata() or ())
        try:
            caller, doc = await loop.run_in_executor(None, self._first, metadata, request)
        except Exception as exc:
            await errors.abort_on_loop(context, errors.as_service_error(exc))
        job_id = doc["job_id"]
        with self.hub.subscription(job_id) as changed:
            yield producer_pb2.WatchEvent(job=render.job_info(doc))
            seen, sent, poll = _seen(doc), time.monotonic(), POLL_MIN_S
            while doc.get("status") not in FINISHED:
                wait = min(poll, max(sent + self.keepalive_s - time.monotonic(), 0))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=wait)
                changed.clear()
                if self.hub.closed:
                    await errors.abort_on_loop(
                        context,
                        errors.ServiceError(
                            "ERROR_SERVER_STOPPING", "The server is stopping; watch again."
                        ),
                    )
                try:
                    doc = await loop.run_in_executor(None, self.service.get, caller, job_id)
                except Exception as exc:
                    await errors.abort_on_loop(context, errors.as_service_error(exc))
                if _seen(doc) != seen:
                    seen, sent, poll = _seen(doc), time.monotonic(), POLL_MIN_S
                    yield producer_pb2.WatchEvent(job=render.job_info(doc))
                    continue
                poll = min(poll * 2, POLL_MAX_S)
                if time.monotonic() - sent >= self.keepalive_s:
                    sent = time.monotonic()
                    at = render.timestamp(self.service.clock())
                    yield producer_pb2.WatchEvent(keep_alive=producer_pb2.KeepAlive(at=at))
