"""The `cpu_affinity` target option: which CPU cores a runner is pinned to.

Spelled as Linux's cpulist format ("0-3", "0,2", "4-7,9"), the same on every
driver: the host pins its runner with sched_setaffinity, Android with taskset.
"""

from __future__ import annotations

# The largest core index accepted: far above any phone's or workstation's
# core count, and it keeps a taskset mask a short hex string.
MAX_CORE = 1023


def parse_cores(text: str) -> frozenset[int]:
    """"4-7" or "0,2" -> the core numbers; ValueError naming the option."""
    cores: set[int] = set()
    bad = ValueError(f"cpu_affinity={text!r}: expected cores like 0-3 or 0,2")
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first or last > MAX_CORE:
                raise bad
            cores.update(range(first, last + 1))
    except ValueError:
        raise bad from None
    if not cores:
        raise bad
    return frozenset(cores)
