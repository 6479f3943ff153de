"""The simulated-latency model: a device's latency distribution, and the
timeline of one job under a measurement policy's warm-up and stop rule.

Pure: a latency model, a policy and a seeded generator in, a timeline out.
The `sim` driver plays its jobs with `simulate_job` and the controller's
capacity estimate (harness.controller.estimate) uses the same function, so
an estimate for a simulated device and what that device then does agree by
construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np

from harness.kernel.measure.policy import MeasurePolicy, StopRule

DISTRIBUTIONS = ("lognormal", "normal", "fixed", "empirical")
# A simulated latency never reaches zero: the fastest real kernel launch is
# still microseconds, and a zero would make ratios meaningless.
MIN_LATENCY_MS = 1e-3
# A drifting device never becomes more than 10x faster than it started.
MIN_DRIFT_FACTOR = 0.1
# Samples drawn per numpy call while simulating a job.
_BLOCK = 1024


@dataclass(frozen=True)
class LatencyModel:
    """One device's latency: a distribution, plus drift over the job's time.

    `spread` is sigma of log-latency for lognormal, the standard deviation in
    ms for normal, unused for fixed. `drift_per_s` scales each sample by
    (1 + drift_per_s * t), t the simulated seconds since the first run began
    (positive: slows down, as a phone heating up does).
    """

    dist: str
    p50_ms: float
    spread: float = 0.0
    drift_per_s: float = 0.0
    load_ms: float = 0.0
    first_run_ms: Optional[float] = None
    samples: tuple[float, ...] = ()  # the empirical distribution's samples

    def __post_init__(self) -> None:
        if self.dist not in DISTRIBUTIONS:
            raise ValueError(f"dist {self.dist!r}: expected one of {', '.join(DISTRIBUTIONS)}")
        if self.dist == "empirical" and not self.samples:
            raise ValueError("an empirical latency model needs samples")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n latencies in ms, before drift."""
        if self.dist == "lognormal":
            x = self.p50_ms * np.exp(self.spread * rng.standard_normal(n))
        elif self.dist == "normal":
            x = self.p50_ms + self.spread * rng.standard_normal(n)
        elif self.dist == "fixed":
            x = np.full(n, self.p50_ms)
        else:
            x = rng.choice(np.asarray(self.samples, dtype=np.float64), size=n, replace=True)
        return np.maximum(x, MIN_LATENCY_MS)

    def first_ms(self) -> float:
        # A first run pays for lazy allocation and kernel selection; twice a
        # steady-state run is a modest default when nothing says otherwise.
        return self.first_run_ms if self.first_run_ms is not None else 2.0 * self.p50_ms

    def to_fact(self) -> str:
        """A compact JSON description, published as a device fact so a
        controller can plan without running anything."""
        d = {"dist": self.dist, "p50_ms": self.p50_ms, "spread": self.spread,
             "drift_per_s": self.drift_per_s, "load_ms": self.load_ms}
        if self.first_run_ms is not None:
            d["first_run_ms"] = self.first_run_ms
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_fact(cls, text: str) -> "LatencyModel":
        d = json.loads(text)
        return cls(dist=str(d["dist"]), p50_ms=float(d["p50_ms"]), spread=float(d.get("spread", 0.0)),
                   drift_per_s=float(d.get("drift_per_s", 0.0)), load_ms=float(d.get("load_ms", 0.0)),
                   first_run_ms=float(d["first_run_ms"]) if d.get("first_run_ms") is not None else None)


@dataclass(frozen=True)
class SimulatedJob:
    """A job's timeline in simulated milliseconds, as the stop rule ends it."""

    load_ms: float
    first_run_ms: float
    warmup_ms: tuple[float, ...]  # runs after the first one, until warm-up is complete
    samples_ms: tuple[float, ...]
    stop_reason: str
    warmup_done: bool

    @property
    def warmup_total_ms(self) -> float:
        return self.first_run_ms + float(sum(self.warmup_ms))

    @property
    def measure_ms(self) -> float:
        return float(sum(self.samples_ms))

    @property
    def total_s(self) -> float:
        return (self.load_ms + self.warmup_total_ms + self.measure_ms) / 1e3


class _Stream:
    """Drifted latencies one at a time, drawn in blocks."""

    def __init__(self, model: LatencyModel, rng: np.random.Generator):
        self.model, self.rng = model, rng
        self.block: np.ndarray = np.empty(0)
        self.i = 0
        self.t_ms = 0.0  # simulated time since the first run began

    def next(self) -> float:
        if self.i >= self.block.size:
            self.block = self.model.draw(self.rng, _BLOCK)
            self.i = 0
        x = float(self.block[self.i])
        self.i += 1
        if self.model.drift_per_s:
            x *= max(MIN_DRIFT_FACTOR, 1.0 + self.model.drift_per_s * self.t_ms / 1e3)
        self.t_ms += x
        return x


def simulate_job(model: LatencyModel, policy: MeasurePolicy, rng: np.random.Generator) -> SimulatedJob:
    """Run the policy's warm-up and stop rule over latencies drawn from the
    model, exactly as a runner's loop does over measured ones: the first run
    counts as a warm-up run, warm-up gives up at max_s, and measurement stops
    for the StopRule's reason."""
    rule = StopRule(policy)
    stream = _Stream(model, rng)
    first = model.first_ms()
    stream.t_ms = first
    warm: list[float] = []
    runs, elapsed = 1, 0.0
    while not rule.warmup_complete(runs, elapsed / 1e3):
        x = stream.next()
        warm.append(x)
        elapsed += x
        runs += 1
        if elapsed / 1e3 > policy.max_s:
            break
    warmup_done = rule.warmup_complete(runs, elapsed / 1e3)
    samples: list[float] = []
    elapsed = 0.0
    reason = None
    while reason is None:
        x = stream.next()
        samples.append(x)
        elapsed += x
        reason = rule.stop_reason(samples, elapsed / 1e3)
    return SimulatedJob(model.load_ms, first, tuple(warm), tuple(samples), reason, warmup_done)
