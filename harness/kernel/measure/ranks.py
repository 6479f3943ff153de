"""The Mann-Whitney U rank test, shared by the trust checks within one run
(kernel.measure.trust) and the regression verdict between two runs
(analysis.compare). Distribution-free, as latencies need: it asks whether
one sample tends to be larger than the other, not whether means differ."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks from 1, equal values sharing their average rank, and the size
    of every group of equal values (for the tie correction)."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks, (ends - starts).astype(np.float64)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value for 'x tends to be larger than y' (normal
    approximation with tie correction and continuity correction)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks, ties = average_ranks(np.concatenate([x, y]))
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    var = n1 * n2 / 12.0 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_two_sided(x: Sequence[float], y: Sequence[float]) -> float:
    return min(1.0, 2.0 * min(mann_whitney_greater(x, y), mann_whitney_greater(y, x)))


def change_point(values: Sequence[float]) -> int:
    """Where a sequence most likely changes level: the split t (runs [0, t)
    against [t, n)) that maximises Pettitt's statistic |2 R_t - t (n + 1)|,
    R_t the rank sum of the first t runs (Pettitt, "A non-parametric approach
    to the change-point problem", Applied Statistics 28, 1979): the
    Mann-Whitney U of the two sides, centred, at every split at once."""
    a = np.asarray(values, dtype=np.float64)
    n = a.size
    if n < 2:
        return n
    ranks, _ = average_ranks(a)
    u = 2.0 * np.cumsum(ranks)[:-1] - np.arange(1, n) * (n + 1.0)
    return int(np.argmax(np.abs(u))) + 1
