"""The process's memory given back once a load has passed (glibc; elsewhere nothing is done).

A burst of calls (a thousand watch streams, sixty-four queries compiling a thousand patterns each)
allocates in many threads; glibc keeps what they free in per-thread arenas and at the top of its
heaps, so the process's RSS stays at the burst's peak. Few arenas and a regular ``malloc_trim``
bring it back near where it started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

LOG = logging.getLogger(__name__)
# mallopt's parameters: arenas kept (one for the main thread, one for all others), and fixed
# thresholds of mmap and trimming (glibc raises them after a burst of large blocks is freed,
# keeping the next burst's in the heap, where they stay).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
ARENAS = 2
THRESHOLD = 128 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def few_arenas() -> None:
    """Let threads share ``ARENAS`` malloc arenas and fix the thresholds (call at start,
    before the threads)."""
    if _LIBC is None:
        return
    for parameter, value in (
        (_M_ARENA_MAX, ARENAS),
        (_M_MMAP_THRESHOLD, THRESHOLD),
        (_M_TRIM_THRESHOLD, THRESHOLD),
    ):
        if not _LIBC.mallopt(parameter, value):
            LOG.debug("mallopt(%d, %d) refused", parameter, value)


def trim() -> None:
    """Give the memory malloc holds free back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
