"""The server's background work, as tasks on its event loop: health following the database, the
JWKS file read again, other replicas' changes handed to watchers, and the sweeper (from
:mod:`.lifecycle.sweeper`).

The blocking part of each (a ping, a file read, one wait on a change stream, a sweep round) runs
in :func:`asyncio.to_thread`, and each is bounded in time: a stop cancels the tasks at once, and
no thread is left waiting when the process exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from spaceone_job import memory
from spaceone_job.changes import ChangeHub
from spaceone_job.errors import as_service_error
from spaceone_job.server import Served
from spaceone_job.store.documents import ChangesUnavailable, StoreError
from spaceone_job.store.protocol import Store

LOG = logging.getLogger(__name__)


async def every(interval_s: float, work: Callable[[], object]) -> None:
    """``work()`` in a thread now, and again ``interval_s`` after each, until cancelled."""
    while True:
        await asyncio.to_thread(work)
        await asyncio.sleep(interval_s)


class Background:
    """The background tasks of one server: started on its loop, stopped together."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as the task ``name`` (call on the loop)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        task.add_done_callback(_logged)
        self._tasks.append(task)

    @property
    def names(self) -> list[str]:
        """The tasks running now, by name."""
        return [task.get_name() for task in self._tasks if not task.done()]

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _logged(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        LOG.error("%s ended", task.get_name(), exc_info=task.exception())


class HealthMonitor:
    """Keeps health in step with the database: NOT_SERVING while it is unreachable."""

    def __init__(self, store: Store, served: Served, interval_s: float, timeout_s: float):
        self.store = store
        self.served = served
        self.interval_s = interval_s
        self.timeout_s = timeout_s

    async def check(self) -> bool:
        """Ping the database once and report the result through health; whether it answered."""
        reachable = await asyncio.to_thread(self.store.ping, self.timeout_s)
        if reachable != self.served.serving:
            LOG.warning(
                "database %s: health %s",
                "is back" if reachable else "unreachable",
                "SERVING" if reachable else "NOT_SERVING",
            )
            await self.served.report(reachable)
        return reachable

    async def run(self) -> None:
        """Check, give freed memory back to the system, wait, repeat until cancelled (health is
        then the shutdown's)."""
        while True:
            await self.check()
            await asyncio.to_thread(memory.trim)
            await asyncio.sleep(self.interval_s)


# What the feed reads once the stream has ended (told apart by identity).
_ENDED = ("", "")


class ChangeFeed:
    """Wakes the watchers of jobs that any replica changed, from a store's change stream; with
    ``journaled`` (the jobs' stream), list-watchers hear of each change too, by its token."""

    def __init__(self, store: Store, hub: ChangeHub, journaled: bool) -> None:
        self.store = store
        self.hub = hub
        self.journaled = journaled

    def _opened(self) -> None:
        self.hub.set_polling(False)
        if self.journaled:
            self.hub.streamed = True

    async def run(self) -> None:
        """Forward changes until the stream ends (or the task is cancelled); without change
        streams, watchers re-read."""
        changes = self.store.changed_ids(opened=self._opened)
        try:
            while (change := await asyncio.to_thread(next, changes, _ENDED)) is not _ENDED:
                if change is None:  # a quiet wait
                    continue
                job_id, token = change
                self.hub.notify(job_id)
                if self.journaled:
                    self.hub.record(job_id, token)
        except ChangesUnavailable as exc:
            # Refused at the start (a standalone server), or later (its history lost).
            LOG.info("no change streams (%s): watchers re-read on a timer", exc)
        except StoreError as exc:
            reason = as_service_error(exc).details
            LOG.warning("change stream ended (%s): watchers re-read on a timer", reason)
        if self.journaled:
            self.hub.streamed = False
        self.hub.set_polling(True)
