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
    # Independent sessions (runner processes) the controller measures a job
    # in, each its own agent job running `for_session()`; an agent always
    # sees 1 (harness.kernel.measure.sessions has the statistics across them).
    sessions: int = 1

    def sustained(self, duration_s: float) -> "MeasurePolicy":
        """Run for exactly duration_s after warm-up: no early stop, no cap,
        one session (load over time needs one continuous process)."""
        from dataclasses import replace

        return replace(self, min_runs=1, min_s=duration_s, max_s=duration_s, target_ci=0.0, max_runs=0,
                       sessions=1)

    def for_session(self) -> "MeasurePolicy":
        """What one of `sessions` sessions runs: the minimums, max_s and
        max_runs split between them; the full warm-up, since every session is
        a cold process."""
        import math
        from dataclasses import replace

        k = max(1, self.sessions)
        if k == 1:
            return self
        return replace(self, min_runs=math.ceil(self.min_runs / k), min_s=self.min_s / k,
                       max_s=max(self.max_s / k, self.min_s / k),
                       max_runs=math.ceil(self.max_runs / k) if self.max_runs else 0, sessions=1)

    def bound_s(self) -> float:
        """Upper bound on warm-up plus measurement time, for deadlines.

        Warm-up ends once both its run count and its time are met, so a slow
        model can spend up to warmup_runs runs there; that cost is unknown
        up front and is covered by the job overhead in `harness.kernel.limits`.
        """
        return self.warmup_s + self.max_s


def p90_ci_halfwidth(samples: Sequence[float]) -> Optional[float]:
    """Half-width of the distribution-free 95 % interval of the p90, in sample
    units; None while the sample is too small for one."""
    from harness.kernel.measure.intervals import percentile_interval

    ci = percentile_interval(samples, 0.9)
    return None if ci is None else (ci[1] - ci[0]) / 2.0


# The first and last fifths of the run whose medians differ by more than this
# mean the latency is still moving (throttling, background load): an
# interval over a moving target is narrow but meaningless, so the rule keeps
# measuring and the run ends at max_s, flagged.
DRIFT_FRACTION = 0.05


def _still_drifting(samples: Sequence[float]) -> bool:
    import numpy as np

    from harness.kernel.measure.trust import shifted

    n = len(samples)
    if n < 50:
        return False
    k = n // 5
    head = np.asarray(samples[:k], dtype=np.float64)
    tail = np.asarray(samples[-k:], dtype=np.float64)
    # Only a move a rank test resolves: on a wide distribution the fifths'
    # medians differ by chance, and waiting on chance costs time.
    return shifted(tail, head, DRIFT_FRACTION)


class StopRule:
    """Decides when warm-up is over and when measurement may stop.

    Measurement stops at the first of: max_runs reached; max_s elapsed; or,
    once both min_runs and min_s are met and the latency has stopped drifting,
    the p90's CI half-width within target_ci of the p90 (or immediately when
    target_ci is 0). Checking the
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
        if _still_drifting(samples):
            return None
        half = p90_ci_halfwidth(samples)
        if half is None:
            return None
        import numpy as np

        p90 = float(np.percentile(np.asarray(samples, dtype=np.float64), 90))
        if p90 > 0 and half <= p.target_ci * p90:
            return "ci_reached"
        return None
