"""Lab capacity: how long a job takes under a measurement policy, and how
long a whole plan takes on a lab's devices.

Pure: latency models, policies and plans in, seconds out. The same
`simulate_job` drives the `sim` driver's timeline, so a capacity estimate for
a simulated device and what that device then does agree by construction; for
real devices the latency model is the empirical distribution of a previous
run's samples.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from harness.measure.policy import MeasurePolicy, StopRule

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


# --- estimates per job --------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """Seconds one job takes on one device: a range (equal ends when known)."""

    low_s: float
    high_s: float
    source: str  # simulated | measured | resampled | policy bounds


def policy_bounds(policy: MeasurePolicy) -> Estimate:
    """What the policy alone says: at least warm-up time plus min_s, at most
    warm-up plus max_s (load and a slow warm-up can add to either)."""
    return Estimate(policy.warmup_s + policy.min_s, policy.bound_s(), "policy bounds")


def simulated_estimate(model: LatencyModel, policy: MeasurePolicy, seed: int = 0, trials: int = 5) -> Estimate:
    """The median over a few seeded simulations of the job (when the stop
    rule waits for a confidence interval, each run stops at a different
    count; the median is the typical job)."""
    totals = sorted(simulate_job(model, policy, np.random.default_rng([seed, k])).total_s for k in range(trials))
    mid = totals[len(totals) // 2]
    return Estimate(mid, mid, "simulated")


def measured_estimate(record: Mapping, policy: MeasurePolicy, old_policy: Optional[MeasurePolicy] = None,
                      seed: int = 0) -> Optional[Estimate]:
    """A job's duration from a stored result record of a previous run.

    The job's wall time is the agent's (`ran`: started to finished), else
    the runner's (`details.runner_wall_s`), else load + first run + measured
    samples. When the policy changed since, the warm-up and measurement part
    is re-simulated under the new policy with the run's own samples as the
    distribution; load, probes and placement carry over as they were.
    """
    timing = record.get("timing") or {}
    samples = [float(x) for x in (timing.get("samples_ms") or ()) if x is not None and x > 0]
    if not samples:
        return None
    details = record.get("details") or {}
    parts_s = ((timing.get("load_ms") or 0.0) + (timing.get("first_run_ms") or 0.0) + sum(samples)) / 1e3
    ran = record.get("ran") or {}
    wall = None
    if isinstance(ran.get("started_unix"), (int, float)) and isinstance(ran.get("finished_unix"), (int, float)):
        wall = ran["finished_unix"] - ran["started_unix"]
    if not (isinstance(wall, (int, float)) and wall > 0):
        wall = details.get("runner_wall_s")
    total = float(wall) if isinstance(wall, (int, float)) and wall > 0 else parts_s
    if old_policy is None or old_policy == policy:
        return Estimate(total, total, "measured")
    model = LatencyModel("empirical", float(np.median(samples)), samples=tuple(samples),
                         first_run_ms=timing.get("first_run_ms"))
    rng_old, rng_new = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    old = simulate_job(model, old_policy, rng_old)
    new = simulate_job(model, policy, rng_new)
    est = max(0.0, total - (old.warmup_total_ms + old.measure_ms) / 1e3) + (new.warmup_total_ms + new.measure_ms) / 1e3
    return Estimate(est, est, "resampled")


# --- the whole plan -------------------------------------------------------------

@dataclass
class DeviceLoad:
    key: str
    jobs: int = 0
    busy_s: float = 0.0


@dataclass
class Packing:
    makespan_s: float
    devices: dict[str, DeviceLoad] = field(default_factory=dict)
    order: list[tuple[str, str, float, float]] = field(default_factory=list)  # (job key, device, start, end)


def pack(jobs: Sequence, duration: Callable[[object, str], float]) -> Packing:
    """Play the controller's scheduler against a virtual clock.

    `jobs` are harness.controller.plan.PlannedJob; `duration(job, device_key)`
    gives seconds. Devices take jobs exactly as the executor's workers do
    (most-constrained first, one job per device at a time, a device asks for
    the next job when it finishes), so the makespan is what the run would
    take if every job lasted what `duration` says.
    """
    from harness.controller.scheduler import Scheduler

    sched = Scheduler(list(jobs))
    keys = sorted({k for j in jobs for k in j.eligible})
    out = Packing(0.0, {k: DeviceLoad(k) for k in keys})
    events: list[tuple[float, str]] = []

    def start(dev: str, now: float) -> None:
        job = sched.take(dev)
        if job is None:
            return
        d = max(0.0, float(duration(job, dev)))
        load = out.devices[dev]
        load.jobs += 1
        load.busy_s += d
        out.order.append((job.key, dev, now, now + d))
        heapq.heappush(events, (now + d, dev))

    for dev in keys:
        start(dev, 0.0)
    now = 0.0
    while events:
        now, dev = heapq.heappop(events)
        sched.finish(dev)
        start(dev, now)
    out.makespan_s = now
    return out


def fmt_s(seconds: float) -> str:
    """Seconds for people: 0.8 s, 42 s, 3 min 20 s, 2 h 05 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min"


def fmt_range(low: float, high: float) -> str:
    if math.isclose(low, high, rel_tol=0.005, abs_tol=0.05):
        return fmt_s(high)
    return f"{fmt_s(low)} – {fmt_s(high)}"


# --- a plan on a lab -------------------------------------------------------------

def sim_model(facts: Mapping[str, str], ep: str) -> Optional[LatencyModel]:
    """The latency model a simulated device publishes in its facts, if any."""
    text = facts.get(f"sim_latency_{ep}") or facts.get("sim_latency")
    if not text:
        return None
    try:
        return LatencyModel.from_fact(text)
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Previous:
    """A stored result of an earlier run and the policy it ran under."""

    record: Mapping
    policy: Optional[MeasurePolicy]
    run_id: str


class Estimator:
    """Seconds per (job, device): a previous run's measurement of the same
    job, else the latency a simulated device publishes, else the policy's
    bounds. Simulations are cached per (latency, policy)."""

    def __init__(self, previous: Mapping[str, Previous] | None = None, seed: int = 0):
        self.previous = dict(previous or {})
        self.seed = seed
        self._sim: dict[tuple, Estimate] = {}

    def __call__(self, job, device) -> Estimate:
        prev = self.previous.get(job.key)
        if prev is not None:
            est = measured_estimate(prev.record, job.measure, prev.policy, self.seed)
            if est is not None:
                return Estimate(est.low_s, est.high_s, f"{est.source} in run {prev.run_id}")
        model = sim_model(device.facts, job.target.ep)
        if model is not None:
            key = (model, job.measure)
            if key not in self._sim:
                self._sim[key] = simulated_estimate(model, job.measure, self.seed)
            return Estimate(self._sim[key].low_s, self._sim[key].high_s, "simulated latency")
        return policy_bounds(job.measure)


def plan_capacity(jobs: Sequence, devices: Mapping[str, object], estimator: Estimator) -> dict:
    """Pack the plan twice (every job at its shortest, then its longest
    estimate) and describe per-device load and the total wall time."""
    table: dict[tuple[str, str], Estimate] = {}
    for job in jobs:
        for dev in job.eligible:
            table[(job.key, dev)] = estimator(job, devices[dev])
    low = pack(jobs, lambda j, d: table[(j.key, d)].low_s)
    high = pack(jobs, lambda j, d: table[(j.key, d)].high_s)
    per_device = []
    for key in sorted(high.devices):
        sources = sorted({table[(jk, dk)].source for jk, dk, _, _ in high.order if dk == key})
        per_device.append({
            "device": key, "jobs": high.devices[key].jobs,
            "low_s": low.devices[key].busy_s, "high_s": high.devices[key].busy_s,
            "sources": sources,
        })
    return {
        "jobs": len(jobs),
        "devices": per_device,
        "total": {"low_s": low.makespan_s, "high_s": high.makespan_s},
        "serial": {"low_s": sum(d.busy_s for d in low.devices.values()),
                   "high_s": sum(d.busy_s for d in high.devices.values())},
        "estimates": [{"job": jk, "device": dk, "low_s": e.low_s, "high_s": e.high_s, "source": e.source}
                      for (jk, dk), e in sorted(table.items())],
    }
