"""Change points in a series of runs: where a candidate's latency (or memory)
stepped to a new level, and whether the step is more than noise.

The unit of evidence is the run, not the sample: samples of one run share
its process, its device state and its neighbours on the machine, so the
spread between runs is usually larger than the spread within one, and a
test that pooled samples across runs would call every run-to-run wobble a
change. Each run contributes one value (its p90 or p50, recomputed from its
raw samples by the caller); the test works on the logarithm of those values,
so a step is a ratio and noise proportional to the level is even.

Method (stated in every history document as TEST):
* binary segmentation: find the split of a segment that maximises |t|, test
  it, and when it is significant split both halves again;
* the test is a two-sample Student t-test with pooled variance on the log
  values either side (df = n - 2), two-sided, Bonferroni-corrected for the
  n - 1 split positions tried in that segment;
* a change is reported when the corrected p-value is below `alpha` and the
  step (ratio of the two sides' geometric means) is larger than
  `min_effect`, the same practical threshold `harness compare` uses.
The t distribution's tail comes from the regularised incomplete beta
function (Abramowitz & Stegun 26.7.1 with the continued fraction 26.5.8).
Binary segmentation can miss two changes that cancel inside one segment
(a spike and a recovery of equal size); each found change is reported with
its own interval, never hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

ALPHA = 0.01
MIN_EFFECT = 0.05
TEST = ("binary segmentation over runs; each run's statistic recomputed from its raw samples; each split "
        "tested by a two-sided pooled-variance Student t-test on log values, Bonferroni-corrected over the "
        "split positions; a change needs corrected p < alpha and a step larger than min_effect")
_CF_MAX_ITER = 300  # the continued fraction converges in well under 100 terms for the df used here
_CF_EPS = 1e-14


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, _CF_MAX_ITER + 1):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < _CF_EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile (q > 0.5) of Student's t, by bisection on the tail."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_p(mid, df) / 2 > 1 - q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Change:
    index: int  # first position of the new segment
    before: float  # geometric mean of the segment before
    after: float  # and of the one from `index`
    ratio: float  # after / before
    ratio_ci: tuple[float, float]  # 95 % interval of the ratio (t-based, pooled variance)
    p_value: float  # corrected for the split positions tried

    @property
    def direction(self) -> str:
        return "up" if self.ratio > 1 else "down"


def _best_split(y: np.ndarray) -> Optional[tuple[int, float, float, float]]:
    """(k, t, pooled variance, df) of the split of y maximising |t|; y has >= 3 values."""
    n = y.size
    k = np.arange(1, n)
    c1, c2 = np.cumsum(y)[:-1], np.cumsum(y * y)[:-1]
    tot1, tot2 = y.sum(), (y * y).sum()
    n1, n2 = k.astype(float), (n - k).astype(float)
    m1, m2 = c1 / n1, (tot1 - c1) / n2
    ss = (c2 - n1 * m1 ** 2) + ((tot2 - c2) - n2 * m2 ** 2)
    df = n - 2
    var = np.maximum(ss, 0.0) / df
    diff = m2 - m1
    se = np.sqrt(var * (1 / n1 + 1 / n2))
    scale = max(float(np.abs(y).max()), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A perfectly flat side makes se 0: a real step is then infinitely
        # significant, no step is no evidence at all.
        t = np.where(se > 1e-12 * scale, diff / se, np.where(np.abs(diff) > 1e-12 * scale, np.inf, 0.0))
    i = int(np.argmax(np.abs(t)))
    return int(k[i]), float(t[i]), float(var[i]), float(df)


def detect(values: Sequence[float], alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> list[Change]:
    """Change points of a series of positive values, in order of position."""
    y = np.log(np.asarray(values, dtype=np.float64))
    found: list[Change] = []

    def split(lo: int, hi: int) -> None:
        seg = y[lo:hi]
        if seg.size < 3:
            return
        k, t, var, df = _best_split(seg)
        p = min(1.0, t_two_sided_p(t, df) * (seg.size - 1))
        m1, m2 = float(seg[:k].mean()), float(seg[k:].mean())
        ratio = math.exp(m2 - m1)
        if p >= alpha or abs(ratio - 1.0) <= min_effect:
            return
        half = t_quantile(0.975, df) * math.sqrt(var * (1 / k + 1 / (seg.size - k)))
        found.append(Change(lo + k, math.exp(m1), math.exp(m2), ratio,
                            (math.exp(m2 - m1 - half), math.exp(m2 - m1 + half)), p))
        split(lo, lo + k)
        split(lo + k, hi)

    split(0, y.size)
    return sorted(found, key=lambda c: c.index)


def segments(n: int, changes: Sequence[Change]) -> list[tuple[int, int]]:
    cuts = [0] + [c.index for c in changes] + [n]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
