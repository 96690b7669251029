"""The latest job changes this server saw, in order, for list-watchers that resume.

Every change of a job is appended with its token; the newest :data:`WINDOW` are kept. On MongoDB
with a change stream the changes come from it, every replica's writes alike, and a change's
token is the stream's resume token: each replica watches the same stream, so a token one replica
gave is found in another's journal. Otherwise (the embedded store, or MongoDB without change
streams) they are this process's writes, with tokens of its own. A resume token names a place:
the place after the change it names, or (``<epoch>-<n>``) a place of this process's. A token
from before the window, from another process's own numbering, or of no shape at all cannot be
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
    """A bounded window of changed job ids, each with its token."""

    def __init__(self, window: int = WINDOW) -> None:
        self._epoch = secrets.token_hex(4)
        self._changes: deque[tuple[str, str]] = deque()  # (token, job id)
        self._numbers: dict[str, int] = {}  # a change's token -> its number
        self._window = window
        self._next = 1  # the number the next change gets
        self._fresh: asyncio.Event | None = None

    @property
    def head(self) -> int:
        """The place after every change so far."""
        return self._next

    @property
    def _first(self) -> int:
        return self._next - len(self._changes)

    def token(self, place: int) -> str:
        """The resume token of ``place``: that of the change before it, when it is kept."""
        if self._first < place <= self._next:
            return self._changes[place - 1 - self._first][0]
        return f"{self._epoch}-{place}"

    def place(self, token: str) -> int | None:
        """The place ``token`` names, or None when it cannot be resumed from here."""
        number = self._numbers.get(token)
        if number is not None:
            return number + 1
        epoch, _, digits = token.partition("-")
        if epoch != self._epoch or not digits.isdigit():
            return None
        place = int(digits)
        return place if self._first <= place <= self._next else None

    def record(self, job_id: str, token: str = "") -> None:
        """``job_id`` changed (call on the loop); ``token``: the change stream's, if it came
        from one (a change it holds already is not taken twice)."""
        if token in self._numbers:
            return
        token = token or f"{self._epoch}-{self._next + 1}"
        self._changes.append((token, job_id))
        self._numbers[token] = self._next
        self._next += 1
        if len(self._changes) > self._window:
            dropped, _ = self._changes.popleft()
            del self._numbers[dropped]
        self.wake()

    def wake(self) -> None:
        """Wake every waiter (a change, or the server stopping)."""
        if self._fresh is not None:
            self._fresh.set()
            self._fresh = None

    def since(self, place: int) -> list[tuple[int, str]] | None:
        """The changes from ``place`` on, each with the place after it; None when ``place``
        has left the window."""
        if place < self._first:
            return None
        start = place - self._first
        later = itertools.islice(self._changes, start, None)
        return [(place + i + 1, job_id) for i, (_, job_id) in enumerate(later)]

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
