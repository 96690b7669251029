"""Who watches which job, and waking them when it changes.

Writes of this process notify the hub (the store calls it after each conditional update); a
watcher waits on an asyncio event, on the server's loop, and so holds no thread while it waits.
Changes made by other replicas reach watchers by their own re-reads (see ``api/watch.py``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class ChangeHub:
    """Events per job id, set when the job changes; all set, for good, when the hub closes."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the watchers run on."""
        self._loop = loop

    def notify(self, job_id: str) -> None:
        """``job_id`` changed (from any thread)."""
        loop = self._loop
        if loop is not None and job_id in self._waiting and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, job_id)

    def _wake(self, job_id: str) -> None:
        for event in self._waiting.get(job_id, ()):
            event.set()

    @contextmanager
    def subscription(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``job_id`` changes (call on the watchers' loop)."""
        event = asyncio.Event()
        self._waiting[job_id].add(event)
        try:
            yield event
        finally:
            self._waiting[job_id].discard(event)
            if not self._waiting[job_id]:
                del self._waiting[job_id]

    def close(self) -> None:
        """Wake every watcher for the last time: the server is stopping."""
        self.closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()
