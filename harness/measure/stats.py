"""Statistics recomputed from raw samples, never from other statistics.

Percentiles use linear interpolation between order statistics (numpy's
default). Confidence intervals for a percentile are distribution-free:
the ranks n*p -/+ 1.96*sqrt(n*p*(1-p)) of the sorted sample (normal
approximation to the binomial count of samples below the true percentile).
A percentile whose interval does not fit inside the sample is not reported:
p99 from 50 samples is refused (None), not printed.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

Z95 = 1.959963984540054


def ci_ranks(n: int, p: float, z: float = Z95) -> Optional[tuple[int, int]]:
    """0-based ranks (lo, hi) of the order statistics bracketing the p-th
    quantile with ~95 % coverage, or None when the sample is too small."""
    if n <= 0:
        return None
    half = z * math.sqrt(n * p * (1 - p))
    lo = math.floor(n * p - half) - 1
    hi = math.ceil(n * p + half) - 1
    if lo < 0 or hi > n - 1:
        return None
    return lo, hi


def min_samples_for(p: float) -> int:
    """Smallest n for which the p-quantile's 95 % CI fits inside the sample."""
    n = 2
    while ci_ranks(n, p) is None:
        n += 1
        if n > 10_000_000:
            break
    return n


def percentile_ci(sorted_samples: np.ndarray, p: float) -> Optional[tuple[float, float]]:
    r = ci_ranks(len(sorted_samples), p)
    if r is None:
        return None
    return float(sorted_samples[r[0]]), float(sorted_samples[r[1]])


def summarize(samples: Sequence[float]) -> dict:
    """The timing statistics of the result record from raw samples (ms)."""
    a = np.asarray(samples, dtype=np.float64)
    n = int(a.size)
    out: dict = {"n": n}
    if n == 0:
        for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms"):
            out[k] = None
        out["p90_ci_ms"] = None
        out["p99_ci_ms"] = None
        return out
    s = np.sort(a)
    qs = np.percentile(s, [50, 90, 95, 99])
    for key, p, q in (("p50_ms", 0.5, qs[0]), ("p90_ms", 0.9, qs[1]), ("p95_ms", 0.95, qs[2]), ("p99_ms", 0.99, qs[3])):
        # The median is always shown; tail percentiles only with enough samples.
        out[key] = float(q) if (p == 0.5 or ci_ranks(n, p) is not None) else None
    out["mean_ms"] = float(a.mean())
    out["std_ms"] = float(a.std(ddof=1)) if n > 1 else 0.0
    out["min_ms"] = float(s[0])
    out["max_ms"] = float(s[-1])
    ci90 = percentile_ci(s, 0.9)
    ci99 = percentile_ci(s, 0.99)
    out["p90_ci_ms"] = list(ci90) if ci90 else None
    out["p99_ci_ms"] = list(ci99) if ci99 else None
    return out


def stability_warnings(samples: Sequence[float]) -> list[str]:
    """pyperf-style flags: high relative spread, far outliers, drift."""
    a = np.asarray(samples, dtype=np.float64)
    warnings: list[str] = []
    n = a.size
    if n < 2:
        return ["fewer than 2 samples: no statistics"]
    mean = float(a.mean())
    std = float(a.std(ddof=1))
    if mean > 0 and std >= 0.10 * mean:
        warnings.append(f"unstable: std is {100 * std / mean:.0f}% of the mean (>= 10%)")
    med = float(np.median(a))
    mad = float(np.median(np.abs(a - med))) * 1.4826
    if mad > 0:
        far = int(np.sum(np.abs(a - med) > 10 * mad))
        if far:
            warnings.append(f"{far} outlier sample(s) more than 10 MADs from the median")
    if n >= 40:
        k = max(10, n // 5)
        first, last = float(np.median(a[:k])), float(np.median(a[-k:]))
        if first > 0 and abs(last - first) / first > 0.10:
            direction = "slower" if last > first else "faster"
            warnings.append(
                f"drift: the last {k} runs are {100 * abs(last - first) / first:.0f}% {direction} than the first {k} "
                "(thermal throttling or background load?)")
    return warnings
