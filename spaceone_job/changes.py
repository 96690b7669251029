"""Who watches which job, and one read of a job per change, shared by all its watchers.

Every watched job has a :class:`Feed` on the server's loop. A write of this process notifies the
hub (the store calls it after each conditional update), and another replica's write arrives
through the store's change stream; either way the feed reads the job once, at most every
``MIN_INTERVAL_S`` (the changes in between are one), and wakes its watchers with the new
document: a write costs one wake-up and one read, however many watch. A transition (status,
remaining tasks) is told at once; progress alone (``updated_at``) at most every
``PROGRESS_INTERVAL_S``, so that a busy job's thousand watchers are not woken a thousand times a
second. Only when no change can
reach this process (MongoDB without change streams) does a feed re-read on a timer, backing off
from ``POLL_MIN_S`` to ``POLL_MAX_S``. A waiting watcher holds no thread.

Watchers are bounded: at most ``max_watchers`` on the server and ``max_per_token`` per token; a
watch beyond either is refused RESOURCE_EXHAUSTED ``ERROR_TOO_MANY_REQUESTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

import prometheus_client

from spaceone_job.errors import Code, ServiceError, as_service_error
from spaceone_job.journal import Journal
from spaceone_job.kinds import JOB

Document = dict[str, Any]
MIN_INTERVAL_S = 0.2
# A change of updated_at alone (a task's progress, a heartbeat) is told at most this often.
PROGRESS_INTERVAL_S = 1.0
POLL_MIN_S = 0.5
POLL_MAX_S = 8.0
# What a watcher tells apart: a transition (told at once) and progress (updated_at).
TRANSITION = JOB.transition
SEEN = (*TRANSITION, *JOB.progress)
WATCHERS = prometheus_client.Gauge("spaceone_job_watchers", "Watch streams open")


def _fields(doc: Document | None, names: tuple[str, ...]) -> tuple[Any, ...]:
    return () if doc is None else tuple(doc.get(name) for name in names)


def seen(doc: Document | None) -> tuple[Any, ...]:
    """What of a job its watchers are told about."""
    return _fields(doc, SEEN)


class Feed:
    """One watched job: its latest read, shared by its watchers (on the server's loop)."""

    def __init__(self, job_id: str, hub: ChangeHub) -> None:
        self.job_id = job_id
        self._hub = hub
        self.doc: Document | None = None
        # The read failed (the database is down): the watchers end with this.
        self.error: ServiceError | None = None
        self.version = 0
        self._published = -PROGRESS_INTERVAL_S
        self.watchers = 0
        self._fresh = asyncio.Event()
        self._dirty = False
        self._reading: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[None] | None = None

    async def next(self, version: int, timeout: float) -> None:
        """Wait until a version after ``version`` is read (or ``timeout`` passes, or the hub
        closes)."""
        if self.version == version:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fresh.wait(), timeout=max(timeout, 0))

    def changed(self) -> None:
        """The job changed: read it again soon, once for however many changes."""
        self._dirty = True
        if self._reading is None and self.watchers:
            self._reading = asyncio.get_running_loop().create_task(self._reads())

    async def _reads(self) -> None:
        loop = asyncio.get_running_loop()
        last = -MIN_INTERVAL_S
        try:
            while self._dirty and self.watchers and not self._hub.closed:
                await asyncio.sleep(max(last + MIN_INTERVAL_S - loop.time(), 0))
                self._dirty, last = False, loop.time()
                try:
                    doc = await self._hub.run(self._hub.read, self.job_id)
                except Exception as exc:
                    self._publish(None, as_service_error(exc))
                    continue
                if _fields(doc, TRANSITION) != _fields(self.doc, TRANSITION):
                    self._publish(doc, None)
                elif seen(doc) != seen(self.doc):
                    wait = self._published + PROGRESS_INTERVAL_S - loop.time()
                    if wait <= 0:
                        self._publish(doc, None)
                    else:  # progress only: read again, and tell, once the interval is over
                        self._dirty = True
                        await asyncio.sleep(wait)
        finally:
            self._reading = None

    def _publish(self, doc: Document | None, error: ServiceError | None) -> None:
        self.doc, self.error = doc, error
        self.version += 1
        self._published = asyncio.get_running_loop().time()
        self.wake()

    def wake(self) -> None:
        """Wake every watcher (a new version, or the hub closing)."""
        fresh, self._fresh = self._fresh, asyncio.Event()
        fresh.set()

    def poll(self) -> None:
        """Re-read on a timer while changes cannot reach this process."""
        if self._polling is None:
            self._polling = asyncio.get_running_loop().create_task(self._polls())

    async def _polls(self) -> None:
        wait = POLL_MIN_S
        try:
            while self._hub.polling and self.watchers and not self._hub.closed:
                version = self.version
                await asyncio.sleep(wait)
                self.changed()
                wait = POLL_MIN_S if self.version != version else min(wait * 2, POLL_MAX_S)
        finally:
            self._polling = None


class ChangeHub:
    """The feeds of the watched jobs, and the bounds on watchers."""

    def __init__(
        self,
        read: Callable[[str], Document | None],
        *,
        polling: bool,
        max_watchers: int = 1000,
        max_per_token: int = 100,
    ) -> None:
        # The job, by id, unscoped: a watcher's scope is checked once, when it starts.
        self.read = read
        # Whether feeds re-read on a timer (no change reaches this process otherwise).
        self.polling = polling
        self.max_watchers = max_watchers
        self.max_per_token = max_per_token
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: Executor | None = None
        self._feeds: dict[str, Feed] = {}
        self._per_token: Counter[str] = Counter()
        self._watchers = 0
        # The latest job changes, for list-watchers (on the loop), and whether the jobs' change
        # stream brings them (else this process's writes do).
        self.journal = Journal()
        self.streamed = False

    @property
    def watchers(self) -> int:
        """Watch streams open now."""
        return self._watchers

    def bind(self, loop: asyncio.AbstractEventLoop, pool: Executor) -> None:
        """The loop the watchers run on, and the pool their reads run on."""
        self._loop, self._pool = loop, pool

    async def run(self, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)`` on the server's pool (it may wait on the database)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    def notify(self, job_id: str) -> None:
        """``job_id`` changed (from any thread): its feed, if watched, reads it again."""
        loop = self._loop
        if loop is not None and job_id in self._feeds and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed, job_id)

    def job_changed(self, job_id: str) -> None:
        """This process changed a job (from any thread): its watchers read it again, and
        list-watchers hear of it through the journal, unless the change stream tells them (with
        the token every replica shares)."""
        self.notify(job_id)
        if not self.streamed:
            self.record(job_id)

    def record(self, job_id: str, token: str = "") -> None:
        """Add a change to the journal (from any thread; ``token``: the change stream's)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.journal.record, job_id, token)

    def _changed(self, job_id: str) -> None:
        feed = self._feeds.get(job_id)
        if feed is not None:
            feed.changed()

    def set_polling(self, polling: bool) -> None:
        """Whether changes made elsewhere can reach this process (a change stream is open)."""
        loop = self._loop
        self.polling = polling
        if polling and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._poll_all)

    def _poll_all(self) -> None:
        for feed in self._feeds.values():
            feed.poll()

    @contextlib.contextmanager
    def admitted(self, token: str) -> Iterator[None]:
        """A place among the watchers (call on the watchers' loop); refused
        ``ERROR_TOO_MANY_REQUESTS`` beyond the bounds."""
        if self._watchers >= self.max_watchers or self._per_token[token] >= self.max_per_token:
            raise ServiceError(
                Code.TOO_MANY_REQUESTS,
                "Too many watch streams are open; close some, or retry later.",
                max_watchers=self.max_watchers,
                max_per_token=self.max_per_token,
            )
        self._watchers += 1
        self._per_token[token] += 1
        WATCHERS.inc()
        try:
            yield
        finally:
            WATCHERS.dec()
            self._watchers -= 1
            self._per_token[token] -= 1
            if not self._per_token[token]:
                del self._per_token[token]

    @contextlib.contextmanager
    def watching(self, job_id: str, token: str) -> Iterator[Feed]:
        """A place among the watchers of ``job_id`` (:meth:`admitted`)."""
        with self.admitted(token):
            feed = self._feeds.get(job_id) or self._feeds.setdefault(job_id, Feed(job_id, self))
            feed.watchers += 1
            if self.polling:
                feed.poll()
            try:
                yield feed
            finally:
                feed.watchers -= 1
                if not feed.watchers:
                    del self._feeds[job_id]

    def close(self) -> None:
        """Wake every watcher for the last time: the server is stopping."""
        self.closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for feed in self._feeds.values():
            feed.wake()
        self.journal.wake()
