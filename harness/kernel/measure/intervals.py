"""Distribution-free intervals for latency percentiles.

A sample of n latencies says, for the true p-quantile q, that the number of
samples below q is Binomial(n, p). Order statistics therefore bracket q with
known coverage whatever the latency distribution (no normality assumed):
* a two-sided 95 % interval: the ranks whose binomial probabilities leave
  2.5 % out on each side;
* a one-sided upper bound at confidence c, as MLPerf's "early stopping"
  estimate does: the smallest order statistic X_(k) with
  P(Binomial(n, p) <= k-1) >= c. If even the largest sample cannot give that
  confidence, there are too few samples to bound the percentile (None).
Exact binomial sums for n <= EXACT_N, the normal approximation with
continuity correction above (its error there is far below one rank).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import numpy as np

EXACT_N = 3000
Z = {0.90: 1.2815515655446004, 0.95: 1.6448536269514722, 0.975: 1.959963984540054,
     0.99: 2.3263478740408408, 0.995: 2.5758293035489004}


def _z(c: float) -> float:
    if c in Z:
        return Z[c]
    # Acklam-free fallback: bisection on the normal CDF (erf), plenty precise here.
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < c:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@functools.lru_cache(maxsize=1)
def _log_factorials() -> np.ndarray:
    """log(i!) for i = 0..EXACT_N, computed once: building it per call cost
    ~n lgamma calls in Python for every interval of every record (a run's
    controller spent 10-45 ms per result on them; bench/fanout.py)."""
    return np.array([math.lgamma(i + 1) for i in range(EXACT_N + 1)])


def binom_cdf_table(n: int, p: float) -> np.ndarray:
    """P(Binomial(n, p) <= k) for k = 0..n (exact, log-space)."""
    k = np.arange(n + 1)
    lg = _log_factorials()[: n + 1] if n <= EXACT_N else np.array([math.lgamma(i + 1) for i in range(n + 1)])
    logpmf = lg[n] - lg - lg[::-1] + k * math.log(p) + (n - k) * math.log1p(-p)
    pmf = np.exp(logpmf - logpmf.max())
    pmf /= pmf.sum()
    return np.cumsum(pmf)


@functools.lru_cache(maxsize=1024)
def _cdf_rank(n: int, p: float, target: float) -> int:
    """Smallest k (0..n) with P(Binomial(n, p) <= k) >= target, or n+1.
    Cached: runs of one policy share n, and a history of 500 runs asked the
    same two ranks 500 times (bench/store.py); 1,024 (n, p, target) keys is
    a few kB."""
    if n <= EXACT_N:
        cdf = binom_cdf_table(n, p)
        idx = int(np.searchsorted(cdf, target - 1e-12))
        return idx if idx <= n else n + 1
    mu, sd = n * p, math.sqrt(n * p * (1 - p))
    k = math.ceil(mu + _z(target) * sd - 0.5)
    return k if k <= n else n + 1


def percentile_interval(samples: Sequence[float], p: float, confidence: float = 0.95
                        ) -> Optional[tuple[float, float]]:
    """Two-sided distribution-free interval for the p-quantile, or None when
    the sample is too small for one."""
    s = np.sort(np.asarray(samples, dtype=np.float64))
    n = s.size
    if n < 2:
        return None
    tail = (1 - confidence) / 2
    # X_(lo+1) <= q with prob P(B >= lo+1); X_(hi+1) >= q with prob P(B <= hi).
    hi = _cdf_rank(n, p, 1 - tail)  # 0-based index of the upper order statistic
    lo_rank = _cdf_rank(n, p, tail)  # P(B <= lo_rank) >= tail: below that, miss
    lo = lo_rank - 1
    if lo < 0 or hi > n - 1:
        return None
    return float(s[lo]), float(s[hi])


def upper_bound(samples: Sequence[float], p: float, confidence: float = 0.99) -> Optional[float]:
    """One-sided bound: with `confidence`, the true p-quantile is at most this
    (MLPerf's early-stopping estimate). None when n is too small."""
    s = np.sort(np.asarray(samples, dtype=np.float64))
    n = s.size
    if n == 0:
        return None
    k = _cdf_rank(n, p, confidence)  # need P(B <= k) >= c, then X_(k+1) (1-based) bounds q
    if k > n - 1:
        return None
    return float(s[k])


def min_samples_for_bound(p: float, confidence: float = 0.99) -> int:
    """Fewest samples for which upper_bound() exists: all n samples must be
    needed at most, i.e. P(Binomial(n, p) <= n-1) = 1 - p^n >= confidence."""
    return math.ceil(math.log(1 - confidence) / math.log(p))
