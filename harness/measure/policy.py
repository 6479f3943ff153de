"""The measurement policy and the stop rule every driver runs.

The rule is pure (samples and elapsed seconds in, a decision out) so that a
Python runner, a browser page driven in batches and an on-device runner
driven in batches all stop for the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class MeasurePolicy:
    warmup_runs: int = 10
    warmup_s: float = 1.0
    min_runs: int = 100
    min_s: float = 5.0
    max_s: float = 120.0
    # Stop once the p90's 95 % CI half-width <= target_ci * p90; 0 = off.
    target_ci: float = 0.02
    # Hard cap on measured runs; 0 = none.
    max_runs: int = 0

    def bound_s(self) -> float:
        """Upper bound on warm-up plus measurement time, for deadlines.

        Warm-up ends once both its run count and its time are met, so a slow
        model can spend up to warmup_runs runs there; that cost is unknown
        up front and is covered by the job overhead in `harness.limits`.
        """
        return self.warmup_s + self.max_s


def p90_ci_halfwidth(samples: Sequence[float]) -> Optional[float]:
    """Half-width of a distribution-free 95 % CI of the p90, in sample units.

    Order-statistic interval: the ranks n*p -/+ 1.96*sqrt(n*p*(1-p)) of the
    sorted samples bracket the true p90 with ~95 % coverage (normal
    approximation to the binomial; fine for n >= ~50). None when n is too
    small for the upper rank to exist.
    """
    import numpy as np

    n = len(samples)
    if n < 20:
        return None
    p = 0.9
    half = 1.96 * (n * p * (1 - p)) ** 0.5
    lo = int(np.floor(n * p - half)) - 1
    hi = int(np.ceil(n * p + half)) - 1
    if lo < 0 or hi >= n:
        return None
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    return float(ordered[hi] - ordered[lo]) / 2.0


class StopRule:
    """Decides when warm-up is over and when measurement may stop.

    Measurement stops at the first of: max_runs reached; max_s elapsed; or,
    once both min_runs and min_s are met, the p90's CI half-width within
    target_ci of the p90 (or immediately when target_ci is 0). Checking the
    CI sorts the samples, so it is evaluated after `check_every` new samples
    or 10 % more samples, whichever is more, to keep the timing loop's
    overhead negligible.
    """

    def __init__(self, policy: MeasurePolicy, check_every: int = 16, growth: float = 0.10):
        self.policy = policy
        self.check_every = max(1, check_every)
        self.growth = growth
        self._next_check = 0

    def warmup_complete(self, runs: int, elapsed_s: float) -> bool:
        p = self.policy
        return runs >= p.warmup_runs and elapsed_s >= p.warmup_s

    def minimums_met(self, runs: int, elapsed_s: float) -> bool:
        p = self.policy
        return runs >= p.min_runs and elapsed_s >= p.min_s

    def stop_reason(self, samples: Sequence[float], elapsed_s: float) -> Optional[str]:
        p = self.policy
        n = len(samples)
        if p.max_runs and n >= p.max_runs:
            return "max_runs"
        if elapsed_s >= p.max_s:
            return "max_s"
        if not self.minimums_met(n, elapsed_s):
            return None
        if p.target_ci <= 0:
            return "min_reached"
        if n < self._next_check:
            return None
        # Checks sort the samples: spacing them geometrically keeps the total
        # cost O(n log n) however long the run is.
        self._next_check = n + max(self.check_every, int(n * self.growth))
        half = p90_ci_halfwidth(samples)
        if half is None:
            return None
        import numpy as np

        p90 = float(np.percentile(np.asarray(samples, dtype=np.float64), 90))
        if p90 > 0 and half <= p.target_ci * p90:
            return "ci_reached"
        return None
