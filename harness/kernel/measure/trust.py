"""Spread against trust: what a latency distribution looks like, and whether
the measurement of it can be believed.

*Spread* is a property of the workload on its platform: a 30 µs model on a
desktop CPU has runs twice its median because of interrupts and cache misses
on every quiet run. It is reported (`spread`), never flagged: a flag that
fires on every row teaches people to ignore it.

*Trust* is about the measurement: the figures describe the run only if the
run was one stationary process, long enough for the percentile it reports.
`problems` names what breaks that, and only those make a result `unstable`:

* **drift** — the medians of the first and last fifth of the run differ by
  more than SHIFT and a rank test says they are two distributions
  (throttling, a background job that started or stopped);
* **disturbance** — part of the run behaves differently from the rest: a
  stretch whose median is SHIFT away from the others' (rank test again), or
  stalls crowded into one stretch where chance would spread them
  (binomial test) — and leaving that stretch out moves the p90 by more than
  EFFECT;
* **target interval not reached** — the run ended at max_s with the p90's
  95 % interval wider than the policy's target_ci;
* **too few samples** — fewer than the p90's interval needs (36).

Stalls spread evenly over the run are the platform's tail: spread, not
distrust.

These judge one run. A job of several sessions runs them on each session
(`finding`: the message and which runs form the other regime), and a
session's finding makes the job unstable only when it moves the job's
headline (kernel.measure.job_trust).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from harness.kernel.measure.intervals import binom_cdf_table, percentile_interval
from harness.kernel.measure.ranks import change_point, mann_whitney_two_sided

# Medians this far apart (relative) are a different regime, not noise: far
# above what a stationary run's medians of >= WINDOW_MIN samples vary by, and
# below the 10-30 % a shared core or a thermal step moves a latency.
SHIFT = 0.10
# A stretch that moves the p90 by less than this does not change what the
# result says (the budgets and `harness compare` judge p90s to a few %).
EFFECT = 0.02
# Windows the run is cut into to find a disturbed stretch, and the fewest
# samples one needs for its median's interval to mean something.
WINDOWS = 10
WINDOW_MIN = 50
# Two stretches differ only when a rank test says so at this level (two-sided
# Mann-Whitney; a stretch against the rest is tested once per window, so the
# level is divided by the windows): a median 10 % away on a wide distribution
# is often chance in a few hundred runs, a shared core's step never is.
SHIFT_P = 1e-3
# A run slower than STALL_FACTOR x the median is a stall.
STALL_FACTOR = 5.0
# Stalls this unlikely to crowd into one window by chance (Bonferroni-
# corrected over the windows) are a disturbance.
STALL_P = 1e-3
# The p90 needs this many samples for its 95 % interval (see stats).
P90_MIN_SAMPLES = 36


def spread(samples: Sequence[float]) -> dict:
    """How wide the distribution is, as ratios that compare across models:
    IQR / median, p90 / p50, p99 / p50 (None below 368 samples), the
    coefficient of variation, and the share of stalls."""
    a = np.asarray(samples, dtype=np.float64)
    out = {"iqr_over_median": None, "p90_over_p50": None, "p99_over_p50": None, "cv": None, "stall_share": None}
    if a.size < 2:
        return out
    q25, q50, q75, q90, q99 = np.percentile(a, [25, 50, 75, 90, 99])
    if q50 > 0:
        out["iqr_over_median"] = float((q75 - q25) / q50)
        out["p90_over_p50"] = float(q90 / q50) if percentile_interval(a, 0.9) else None
        out["p99_over_p50"] = float(q99 / q50) if percentile_interval(a, 0.99) else None
        out["stall_share"] = float(np.mean(a > STALL_FACTOR * q50))
    mean = float(a.mean())
    out["cv"] = float(a.std(ddof=1) / mean) if mean > 0 else None
    return out


def _windows(n: int) -> list[tuple[int, int]]:
    w = min(WINDOWS, n // WINDOW_MIN)
    if w < 3:
        return []
    edges = np.linspace(0, n, w + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def shifted(x: np.ndarray, y: np.ndarray, fraction: float = SHIFT, p: float = SHIFT_P) -> bool:
    """x's median is more than `fraction` away from y's, and a rank test
    says the two are not one distribution (p below `p`)."""
    mx, my = float(np.median(x)), float(np.median(y))
    return my > 0 and abs(mx - my) / my > fraction and mann_whitney_two_sided(x, y) < p


def drift(a: np.ndarray) -> Optional[str]:
    n = a.size
    if n < 40:
        return None
    k = max(10, n // 5)
    head, tail = a[:k], a[-k:]
    first, last = float(np.median(head)), float(np.median(tail))
    if shifted(tail, head):
        direction = "slower" if last > first else "faster"
        return (f"drift: the last {k} runs are {100 * abs(last - first) / first:.0f}% {direction} than the first {k} "
                "(thermal throttling or background load?)")
    return None


def _odd_windows(a: np.ndarray) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """The windows the run is cut into, and those that behave differently
    from the rest (window index -> what is odd about it)."""
    wins = _windows(a.size)
    if not wins:
        return wins, {}
    med = float(np.median(a))
    odd: dict[int, str] = {}
    for i, (lo, hi) in enumerate(wins):
        part, rest = a[lo:hi], np.concatenate([a[:lo], a[hi:]])
        if shifted(part, rest, p=SHIFT_P / len(wins)):
            m, mr = float(np.median(part)), float(np.median(rest))
            odd[i] = f"median {100 * (m - mr) / mr:+.0f}%"
    stalls = a > STALL_FACTOR * med
    total = int(stalls.sum())
    if total >= 5:
        cdf = binom_cdf_table(total, 1.0 / len(wins))
        for i, (lo, hi) in enumerate(wins):
            c = int(stalls[lo:hi].sum())
            p_tail = 1.0 - (float(cdf[c - 1]) if c >= 1 else 0.0)
            if c and p_tail * len(wins) < STALL_P:
                odd[i] = (odd[i] + ", " if i in odd else "") + f"{c} of the run's {total} stalls"
    return wins, odd


def _disturbance(a: np.ndarray) -> Optional[tuple[str, np.ndarray]]:
    wins, odd = _odd_windows(a)
    if not odd:
        return None
    keep = [a[lo:hi] for i, (lo, hi) in enumerate(wins) if i not in odd]
    listed = sorted(odd.items())
    where = "; ".join(f"runs {wins[i][0] + 1}-{wins[i][1]}: {what}" for i, what in listed[:3])
    if len(listed) > 3:
        where += f"; and {len(listed) - 3} more stretch(es)"
    affected = np.zeros(a.size, dtype=bool)
    for i in odd:
        affected[wins[i][0]:wins[i][1]] = True
    rest = np.concatenate(keep) if keep else a[:0]
    if rest.size < P90_MIN_SAMPLES:
        return f"disturbance: most of the run differs from the rest ({where})", affected
    p90, p90_rest = float(np.percentile(a, 90)), float(np.percentile(rest, 90))
    effect = (p90 - p90_rest) / p90_rest if p90_rest > 0 else 0.0
    if abs(effect) <= EFFECT:
        return None
    return (f"disturbance: part of the run behaved differently ({where}); without it the p90 would be "
            f"{p90_rest:.4g} ms instead of {p90:.4g} ms ({100 * effect:+.1f}%)"), affected


def disturbance(a: np.ndarray) -> Optional[str]:
    got = _disturbance(a)
    return got[0] if got else None


@dataclass(frozen=True)
class Finding:
    """A run that is not one regime: what the checks say, and the runs of
    the other regime (a drift's runs after its change point, a disturbance's
    odd stretches) as a mask over the run."""
    message: str
    affected: np.ndarray

    def regimes(self, a: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The run's two regimes, the usual runs first, each named by its
        runs (1-based) so that "only its <name>" reads."""
        idx = np.flatnonzero(self.affected)
        if idx.size and idx[-1] - idx[0] + 1 == idx.size:
            lo, hi = int(idx[0]) + 1, int(idx[-1]) + 1
            inside = f"runs {lo}-{hi}"
            outside = (f"runs {hi + 1}-{a.size}" if lo == 1 else
                       f"runs 1-{lo - 1}" if hi == a.size else f"runs 1-{lo - 1} and {hi + 1}-{a.size}")
        else:
            inside, outside = "odd stretches", "runs outside the odd stretches"
        return [(outside, a[~self.affected]), (inside, a[self.affected])]


def finding(samples: Sequence[float]) -> Optional[Finding]:
    """The run's drift or, without one, its disturbance (`problems` reports
    the same two); None when it is one regime."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size < P90_MIN_SAMPLES:
        return None
    d = drift(a)
    if d:
        mask = np.zeros(a.size, dtype=bool)
        mask[change_point(a):] = True
        return Finding(d, mask)
    got = _disturbance(a)
    return Finding(*got) if got else None


def problems(samples: Sequence[float], *, stop_reason: Optional[str] = None,
             target_ci: Optional[float] = None) -> list[str]:
    """Why this measurement cannot be trusted; empty when it can."""
    a = np.asarray(samples, dtype=np.float64)
    out: list[str] = []
    if a.size < P90_MIN_SAMPLES:
        out.append(f"too few samples: {a.size} runs, the p90's 95% interval needs at least {P90_MIN_SAMPLES}")
        return out
    # A drift already says the run is not one regime; a stretch of it
    # behaving differently is then the same news (`finding` looks for a
    # disturbance only without a drift).
    f = finding(a)
    if f:
        out.append(f.message)
    if stop_reason == "max_s" and target_ci:
        ci = percentile_interval(a, 0.9)
        p90 = float(np.percentile(a, 90))
        half = (ci[1] - ci[0]) / 2 / p90 if ci and p90 > 0 else None
        if half is None or half > target_ci:
            got = "no interval" if half is None else f"±{100 * half:.1f}%"
            out.append(f"target interval not reached: stopped at max_s with the p90's 95% interval at {got} "
                       f"(target ±{100 * target_ci:.1f}%)")
    return out
