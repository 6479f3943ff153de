"""Statistics recomputed from raw samples, never from other statistics.

Percentiles interpolate linearly between order statistics (numpy's default).
Their 95 % intervals and 99 % upper bounds are distribution-free order
statistics (see `intervals`). A tail percentile whose interval does not fit
inside the sample is not reported: p99 from 50 samples is refused (None),
not printed.
"""

from __future__ import annotations

import functools
import time
from typing import Optional, Sequence

import numpy as np

from harness.measure.intervals import percentile_interval, upper_bound

PERCENTILES = (("p50_ms", 0.50), ("p90_ms", 0.90), ("p95_ms", 0.95), ("p99_ms", 0.99))
BOUND_CONFIDENCE = 0.99
# A run slower than STALL_FACTOR x the median is a stall; more than
# STALL_SHARE of the runs stalling makes the measurement unstable.
STALL_FACTOR = 5.0
STALL_SHARE = 0.01


@functools.lru_cache(maxsize=None)
def min_samples_for(p: float) -> int:
    """Smallest n for which the p-quantile's 95 % interval fits in the sample."""
    n = 2
    while percentile_interval(np.arange(n, dtype=float), p) is None:
        n += 1 if n < 64 else max(1, n // 32)
    # The step above may overshoot by a few; walk back to the exact edge.
    while n > 2 and percentile_interval(np.arange(n - 1, dtype=float), p) is not None:
        n -= 1
    return n


def summarize(samples: Sequence[float]) -> dict:
    """The timing statistics of the result record from raw samples (ms)."""
    a = np.asarray(samples, dtype=np.float64)
    n = int(a.size)
    out: dict = {"n": n}
    keys = [k for k, _ in PERCENTILES] + ["mean_ms", "std_ms", "min_ms", "max_ms", "p90_ci_ms", "p99_ci_ms",
                                          "p90_bound_ms", "p99_bound_ms"]
    if n == 0:
        return {**out, **{k: None for k in keys}}
    s = np.sort(a)
    qs = np.percentile(s, [p * 100 for _, p in PERCENTILES])
    for (key, p), q in zip(PERCENTILES, qs):
        ok = p == 0.5 or percentile_interval(s, p) is not None
        out[key] = float(q) if ok else None
    out["mean_ms"] = float(a.mean())
    out["std_ms"] = float(a.std(ddof=1)) if n > 1 else 0.0
    out["min_ms"] = float(s[0])
    out["max_ms"] = float(s[-1])
    for name, p in (("p90", 0.9), ("p99", 0.99)):
        ci = percentile_interval(s, p)
        out[f"{name}_ci_ms"] = list(ci) if ci else None
        out[f"{name}_bound_ms"] = upper_bound(s, p, BOUND_CONFIDENCE)
    return out


def timer_resolution_ms() -> float:
    return time.get_clock_info("perf_counter").resolution * 1e3


def stability_warnings(samples: Sequence[float], timer_resolution: Optional[float] = None) -> list[str]:
    """pyperf-style flags: high relative spread, stalls and outliers (runs
    far slower than the median), drift between the first and last fifth, and
    a timer too coarse for the latency."""
    a = np.asarray(samples, dtype=np.float64)
    warnings: list[str] = []
    n = a.size
    if n < 2:
        return ["fewer than 2 samples: no statistics"]
    med = float(np.median(a))
    # Spread the way pyperf judges it (std against the mean), over the runs
    # between the 1st and 99th percentiles: single runs of a fast model carry
    # rare scheduler stalls that would swamp the figure; stalls are counted
    # on their own below.
    lo, hi = np.percentile(a, [1, 99])
    core = a[(a >= lo) & (a <= hi)]
    mean = float(core.mean())
    std = float(core.std(ddof=1)) if core.size > 1 else 0.0
    if mean > 0 and std >= 0.10 * mean:
        warnings.append(f"unstable: std is {100 * std / mean:.0f}% of the mean (>= 10%; the fastest and slowest "
                        "1% set aside)")
    if med > 0:
        stalls = int(np.sum(a > STALL_FACTOR * med))
        if stalls:
            share = stalls / n
            warnings.append(f"{'outliers' if share > STALL_SHARE else 'stalls'}: {stalls} run(s) "
                            f"({100 * share:.2g}%) took more than {STALL_FACTOR:g}x the median "
                            "(preemption, page faults, garbage collection)")
    if n >= 40:
        k = max(10, n // 5)
        first, last = float(np.median(a[:k])), float(np.median(a[-k:]))
        if first > 0 and abs(last - first) / first > 0.10:
            direction = "slower" if last > first else "faster"
            warnings.append(
                f"drift: the last {k} runs are {100 * abs(last - first) / first:.0f}% {direction} than the first {k} "
                "(thermal throttling or background load?)")
    # A coarse clock (browsers round performance.now(); some phones tick in
    # microseconds) makes small latencies a handful of discrete values.
    distinct = np.unique(a)
    step = float(np.min(np.diff(distinct))) if distinct.size > 1 else 0.0
    resolution = max(timer_resolution or 0.0, step if distinct.size <= max(5, n // 50) else 0.0)
    if resolution > 0 and med < 20 * resolution:
        warnings.append(f"timer too coarse: resolution ~{resolution:.4g} ms against a median of {med:.4g} ms "
                        "(latencies below ~20 ticks are quantised)")
    return warnings
