"""Background work (:mod:`spaceone_job.background`) run by a test, on a loop of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


def run_until(work: Coroutine[Any, Any, None], done: threading.Event, timeout: float = 5) -> bool:
    """Run ``work`` until ``done`` is set or ``timeout`` passes, then cancel it; whether
    ``done`` was set."""

    async def until() -> bool:
        task = asyncio.create_task(work)
        try:
            return await asyncio.to_thread(done.wait, timeout)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return asyncio.run(until())
