"""The Mann-Whitney U rank test, shared by the trust checks within one run
(kernel.measure.trust) and the regression verdict between two runs
(analysis.compare). Distribution-free, as latencies need: it asks whether
one sample tends to be larger than the other, not whether means differ."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value for 'x tends to be larger than y' (normal
    approximation with tie correction and continuity correction)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return 1.0
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty(allv.size, dtype=np.float64)
    # Average ranks over runs of equal values.
    boundaries = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [allv.size]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    ties = (ends - starts).astype(np.float64)
    var = n1 * n2 / 12.0 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_two_sided(x: Sequence[float], y: Sequence[float]) -> float:
    return min(1.0, 2.0 * min(mann_whitney_greater(x, y), mann_whitney_greater(y, x)))
