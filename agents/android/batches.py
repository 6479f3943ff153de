"""The measurement policy, honoured with onnxruntime_perf_test in batches.

perf_test runs one untimed warm-up inference, then a fixed count (`-m times
-r N`) or a fixed number of whole seconds (`-m duration -t S`), and writes
every measured run's time to its result file. It cannot apply a stop rule
itself, so the driver runs it in batches, each a fresh process (a fresh
session, so each batch warms up again), and applies the shared StopRule
between batches:

* batch 1 runs for ceil(warmup_s + min_s) seconds (at least 1, at most the
  policy's bound): bounded in time whatever the model's speed, and it
  yields a per-run estimate;
* every batch's leading runs are warm-up until both warmup_runs (perf_test's
  own first run counts as one) and warmup_s are reached; the rest are samples;
* later batches run a counted number of runs sized from that estimate: what
  min_runs / min_s still need, or half as many again as held (so the p90's
  confidence interval gets a real chance to narrow), never more than the
  wall-clock budget left to warmup_s + max_s allows.
"""

from __future__ import annotations

import math
from typing import Sequence

from harness.kernel.measure.policy import MeasurePolicy

# Fewest runs worth a new process: below this the session setup dominates.
MIN_BATCH_RUNS = 16


def first_batch_seconds(policy: MeasurePolicy) -> int:
    want = math.ceil(policy.warmup_s + policy.min_s)
    return int(min(max(1, want), max(1, math.ceil(policy.bound_s()))))


def kept_wall_s(batch_ms: Sequence[float], cut: int, run_time_s: float | None) -> float:
    """Wall time of a batch's measured runs: perf_test's own run time less
    its warm-up runs (which keeps the gaps between runs, as a loop's wall
    clock does), or the runs' sum when it printed no run time."""
    kept = sum(batch_ms[cut:]) / 1e3
    if run_time_s is None:
        return kept
    return max(kept, run_time_s - sum(batch_ms[:cut]) / 1e3)


def warmup_cut(batch_ms: Sequence[float], first_run_ms: float, policy: MeasurePolicy) -> tuple[int, bool]:
    """(k, done): the first k runs of a batch are warm-up; done is False when
    the batch ended before warm-up did (then all of it was warm-up)."""
    runs, elapsed = 1, max(0.0, first_run_ms or 0.0) / 1e3
    k = 0
    while runs < policy.warmup_runs or elapsed < policy.warmup_s:
        if k >= len(batch_ms):
            return k, False
        elapsed += batch_ms[k] / 1e3
        runs += 1
        k += 1
    return k, True


def estimate_ms(batch_ms: Sequence[float], average_ms: float | None, first_run_ms: float | None) -> float:
    """Typical time of one run, for sizing the next batch."""
    if batch_ms:
        ordered = sorted(batch_ms)
        return max(ordered[len(ordered) // 2], 1e-3)
    return max(average_ms or first_run_ms or 1.0, 1e-3)


def next_batch_runs(policy: MeasurePolicy, n_have: int, measured_s: float, est_ms: float,
                    time_left_s: float, session_s: float = 0.0) -> int:
    """Runs to ask of the next perf_test process (its warm-up included);
    0 when the time left cannot hold a useful batch."""
    est_s = max(est_ms / 1e3, 1e-6)
    warm = max(policy.warmup_runs - 1, math.ceil(policy.warmup_s / est_s), 0)
    need = max(policy.min_runs - n_have, math.ceil(max(0.0, policy.min_s - measured_s) / est_s),
               MIN_BATCH_RUNS, n_have // 2)
    if policy.max_runs:
        need = min(need, policy.max_runs - n_have)
    # The new process also creates its session and runs its own first run.
    room = int((time_left_s - session_s) / est_s) - warm - 1
    n = min(need, room)
    return warm + n if n > 0 else 0
