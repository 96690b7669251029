"""The latest job changes this server saw, numbered, for list-watchers that resume.

Every change of a job (this process's writes, and on MongoDB every replica's through the change
stream) is appended with the next number; the newest :data:`WINDOW` are kept. A resume token
names a place in the journal: the number after the last change a watcher was told. A token
from before the window, from another process (its epoch differs) or of no shape at all cannot be
resumed from: the watcher lists again, as Kubernetes' clients do on ``410 Gone``. Lives on the
server's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque

WINDOW = 10_000


class Journal:
    """A bounded, numbered window of changed job ids."""

    def __init__(self, window: int = WINDOW) -> None:
        self._epoch = secrets.token_hex(4)
        self._ids: deque[str] = deque(maxlen=window)
        self._next = 1  # the number the next change gets
        self._fresh: asyncio.Event | None = None

    @property
    def head(self) -> int:
        """The place after every change so far."""
        return self._next

    def token(self, place: int) -> str:
        """The resume token of ``place``."""
        return f"{self._epoch}-{place}"

    def place(self, token: str) -> int | None:
        """The place ``token`` names, or None when it cannot be resumed from here."""
        epoch, _, number = token.partition("-")
        if epoch != self._epoch or not number.isdigit():
            return None
        place = int(number)
        return place if self._first <= place <= self._next else None

    @property
    def _first(self) -> int:
        return self._next - len(self._ids)

    def record(self, job_id: str) -> None:
        """``job_id`` changed (call on the loop)."""
        self._ids.append(job_id)
        self._next += 1
        if self._fresh is not None:
            self._fresh.set()
            self._fresh = None

    def since(self, place: int) -> list[tuple[int, str]] | None:
        """The changes from ``place`` on, each with the place after it; None when ``place``
        has left the window."""
        if place < self._first:
            return None
        start = place - self._first
        later = itertools.islice(self._ids, start, None)
        return [(place + i + 1, job_id) for i, job_id in enumerate(later)]

    async def wait(self, place: int, timeout: float) -> None:
        """Until a change at ``place`` or later is recorded, or ``timeout`` seconds."""
        if self._next > place:
            return
        if self._fresh is None:
            self._fresh = asyncio.Event()
        fresh = self._fresh
        try:
            await asyncio.wait_for(fresh.wait(), timeout)
        except TimeoutError:
            return
