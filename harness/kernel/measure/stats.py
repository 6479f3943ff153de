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

from harness.kernel.measure import trust
from harness.kernel.measure.intervals import percentile_interval, upper_bound

PERCENTILES = (("p50_ms", 0.50), ("p90_ms", 0.90), ("p95_ms", 0.95), ("p99_ms", 0.99))
BOUND_CONFIDENCE = 0.99


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


def resolution_of(samples: Sequence[float], timer_resolution: Optional[float] = None) -> float:
    """The clock's tick: the one the driver reports, or the step between the
    samples' values where they are a handful of discrete ones; 0 when
    neither says."""
    a = np.asarray(samples, dtype=np.float64)
    # A coarse clock (browsers round performance.now(); some phones tick in
    # microseconds) makes small latencies a handful of discrete values.
    distinct = np.unique(a)
    step = float(np.min(np.diff(distinct))) if distinct.size > 1 else 0.0
    return max(timer_resolution or 0.0, step if distinct.size <= max(5, a.size // 50) else 0.0)


def timer_warnings(samples: Sequence[float], timer_resolution: Optional[float] = None) -> list[str]:
    """A timer too coarse for the latency (a note: the figures are quantised,
    not untrustworthy)."""
    a = np.asarray(samples, dtype=np.float64)
    n = a.size
    if n < 2:
        return []
    med = float(np.median(a))
    resolution = resolution_of(a, timer_resolution)
    if resolution > 0 and med < 20 * resolution:
        return [f"timer too coarse: resolution ~{resolution:.4g} ms against a median of {med:.4g} ms "
                "(latencies below ~20 ticks are quantised)"]
    return []


def stability_warnings(samples: Sequence[float], timer_resolution: Optional[float] = None) -> list[str]:
    """What the samples say against trusting them (drift, a disturbed
    stretch, too few samples: `trust.problems`), then the timer note.

    The spread of the distribution is not here: a wide but stationary run is
    the workload's nature (`trust.spread` reports it)."""
    if len(samples) < 2:
        return ["fewer than 2 samples: no statistics"]
    return trust.problems(samples) + timer_warnings(samples, timer_resolution)
