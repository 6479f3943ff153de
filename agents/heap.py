"""The agent process's C heap (glibc malloc): its thresholds, fixed at
start, and free memory handed back to the system once the agent is idle.

Why: what gRPC and protobuf allocate for a request is freed when the call
ends, but glibc keeps freed memory inside its heaps (one per thread that
allocated, and gRPC serves each call on a thread of its own): only the free
space at a heap's very top goes back (M_TRIM_THRESHOLD). After a burst of
large or refused uploads the agent sat 100-170 MiB above its baseline with
nothing live in it. malloc_trim(0) gives back the free pages inside every
heap as well (glibc 2.8 and later, malloc/malloc.c mtrim), so the agent
calls it when no call is being served, no job is running and its resident
memory has grown by more than limits.HEAP_TRIM_GROWTH_BYTES since the last
trim. Never during a call or a job: it walks every heap under its lock.
Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Callable, Optional

import psutil

from harness.kernel import limits

log = logging.getLogger("harness.agent")

# <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def configure() -> None:
    """glibc raises its mmap threshold as large buffers are freed (up to
    32 MiB, mallopt(3) M_MMAP_THRESHOLD), so request buffers of a few MiB
    came from per-thread heaps that kept them: an agent that had taken a
    few large jobs stayed hundreds of MiB above its baseline. A fixed
    threshold keeps every buffer above it mmapped (returned when freed); the
    trim threshold bounds what a heap keeps of the smaller ones."""
    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, limits.MALLOC_MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, limits.MALLOC_TRIM_THRESHOLD_BYTES)


class IdleTrim:
    """`tick()` from a periodic thread: trims when `busy()` is False and
    the resident size grew enough since the last trim."""

    def __init__(self, busy: Callable[[], bool], rss: Optional[Callable[[], int]] = None):
        self._libc = _glibc()
        self._busy = busy
        self._rss = rss or (lambda: psutil.Process().memory_info().rss)
        self._floor = self._rss() if self._libc is not None else 0
        self.trims = 0

    def tick(self) -> bool:
        if self._libc is None:
            return False
        now = self._rss()
        if now - self._floor < limits.HEAP_TRIM_GROWTH_BYTES:
            self._floor = min(self._floor, now)
            return False
        if self._busy():
            return False
        self._libc.malloc_trim(0)
        after = self._rss()
        self.trims += 1
        log.debug("heap trimmed: %d -> %d MiB resident", now >> 20, after >> 20)
        self._floor = after
        return True
