"""The agent gives the free memory inside its C heap back once idle
(agents.heap): glibc keeps what a burst of requests freed below the top of
its heaps, so without a trim an idle agent stays far above its baseline."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# In a process of its own: the heap under test is that process's only.
# 2,000 blocks of 64 KiB (below every mmap threshold, so on the heap), then
# all freed but every 100th, so the heap's top is never free and glibc's
# own trim at the top gives nothing back.
SCRIPT = textwrap.dedent("""
    import ctypes, json, sys
    from agents import heap
    busy = [sys.argv[1] == "busy"]
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    trim = heap.IdleTrim(lambda: busy[0])
    before = trim._rss()
    blocks = [libc.malloc(64 * 1024) for _ in range(2000)]
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    for i, b in enumerate(blocks):
        if i % 100:
            libc.free(b)
    held = trim._rss()
    first = trim.tick()
    busy[0] = False
    second = trim.tick()
    print(json.dumps({"before": before, "held": held, "first": first, "second": second,
                      "after": trim._rss(), "trims": trim.trims}))
""")
MiB = 1 << 20


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux); a no-op elsewhere")
def test_an_idle_agent_gives_back_the_free_memory_inside_its_heap():
    got = _run("idle")
    assert got["held"] - got["before"] > 100 * MiB, got  # freed, yet still resident
    assert got["first"] is True and got["trims"] == 1
    assert got["held"] - got["after"] > 90 * MiB, got


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux); a no-op elsewhere")
def test_a_busy_agent_is_not_trimmed_and_is_once_it_goes_idle():
    got = _run("busy")
    assert got["first"] is False, got  # a call or a job in progress: no trim under it
    assert got["second"] is True and got["trims"] == 1
    assert got["held"] - got["after"] > 90 * MiB, got
