"""CPU-bound work of a call, kept within the call's time: admitted one at a time, and
interrupted at its deadline.

Python runs one thread at a time. Work that only computes (compiling a caller's patterns, the
embedded store's scans and pipelines) cannot be stopped by the database's ``maxTimeMS``, and
sixty-four of it at once would each run sixty-four times slower than alone. So it runs in one of
:data:`AT_ONCE` places (one: the ``regex`` module's matching is the only part that lets go of
the interpreter), waiting for one within its own time, and a :class:`Watchdog` interrupts
the thread that outlives its deadline (the work is pure Python, so the interruption lands at the
next bytecode).
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from spaceone_job.store.documents import OutOfTime

T = TypeVar("T")
REFIRE_S = 0.05
# How long a computing thread keeps the interpreter once another thread asks for it. The event
# loop asks at every wake-up (each new call is one); at Python's 5 ms, a burst of 200 calls
# during a query waited up to half a second before their handlers began, at 1 ms a fifth of it.
SWITCH_INTERVAL_S = 0.001


def share_the_interpreter() -> None:
    """Hand the interpreter over within :data:`SWITCH_INTERVAL_S` (the whole process)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


class Interrupted(BaseException):
    """Raised in a thread whose query ran out of time.

    A BaseException, so that no ``except Exception`` inside mongomock swallows it.
    """


@dataclass
class _Guard:
    thread_id: int
    deadline: float
    active: bool = True
    fired: bool = False


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    """Raise ``exception`` asynchronously in a thread (None clears a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exception is None else ctypes.py_object(exception)
    )


class Watchdog:
    """Interrupts guarded work in its own thread once its deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def run(self, timeout: float | None, work: Callable[[float], T]) -> T:
        """``work(deadline)`` with ``deadline`` = now + ``timeout`` (monotonic clock).

        Past the deadline, ``work`` is interrupted and ``ERROR_REQUEST_TIMEOUT`` raised.
        """
        if timeout is None:
            return work(float("inf"))
        guard = _Guard(threading.get_ident(), time.monotonic() + timeout)
        try:
            try:
                self._arm(guard)
                return work(guard.deadline)
            finally:
                # First, and with no call before it (where Python could deliver a pending
                # interruption): from here the watchdog fires no more at this thread, so at most
                # one interruption is still pending, and it is delivered or cleared right here.
                guard.active = False
                self._clear(guard)
        except Interrupted:
            raise OutOfTime() from None

    def _arm(self, guard: _Guard) -> None:
        with self._cond:
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _clear(self, guard: _Guard) -> None:
        with self._cond:
            if guard.fired:
                _raise_in(guard.thread_id, None)

    def _loop(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, guard = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                if guard.active:
                    guard.fired = True
                    _raise_in(guard.thread_id, Interrupted)
                    # Python swallows an exception raised inside a GC callback or a __del__;
                    # the work is interrupted again until it has really stopped.
                    again = time.monotonic() + REFIRE_S
                    heapq.heappush(self._heap, (again, next(self._order), guard))


WATCHDOG = Watchdog()
# CPU-bound work that runs at once (every call's compiling and every embedded scan together):
# the interpreter runs one thread at a time, so more would only share it, each running slower
# than its time limit allows, and leave the event loop (health, lookups) waiting. The rest wait
# their turn within their own time.
AT_ONCE = 1
_PLACES = threading.BoundedSemaphore(AT_ONCE)


_HOLDING = threading.local()


def run(timeout: float | None, work: Callable[[float], T]) -> T:
    """``work(deadline)`` once one of ``AT_ONCE`` places is free, interrupted at its deadline;
    the wait for a place counts against ``timeout`` (``ERROR_REQUEST_TIMEOUT`` when it uses it
    up). No timeout: no deadline, but a place all the same. Inside work that holds a place,
    ``work`` just runs, within the place and the deadline it is already in."""
    if getattr(_HOLDING, "place", False):
        return work(float("inf") if timeout is None else time.monotonic() + timeout)
    started = time.monotonic()
    if not _PLACES.acquire(timeout=None if timeout is None else max(timeout, 0)):
        raise OutOfTime()
    _HOLDING.place = True
    try:
        left = None if timeout is None else timeout - (time.monotonic() - started)
        if left is not None and left <= 0:
            raise OutOfTime()
        return WATCHDOG.run(left, work)
    finally:
        _HOLDING.place = False
        _PLACES.release()
