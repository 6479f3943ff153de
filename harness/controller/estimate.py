"""Lab capacity: how long a job takes under a measurement policy, and how
long a whole plan takes on a lab's devices.

Pure: latency models, policies and plans in, seconds out. For a simulated
device the latency model is the one it publishes (harness.kernel.latency,
which also drives the `sim` driver's timeline); for real devices it is the
empirical distribution of a previous run's samples.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from harness.kernel import limits
from harness.kernel.latency import LatencyModel, simulate_job
from harness.kernel.measure.policy import MeasurePolicy


# --- estimates per job --------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    """Seconds one job takes on one device: a range (equal ends when known)."""

    low_s: float
    high_s: float
    source: str  # simulated | measured | resampled | policy bounds


def policy_bounds(policy: MeasurePolicy) -> Estimate:
    """What the policy alone says: at least every session's warm-up plus
    min_s, at most the most sessions' warm-ups plus max_s and one session
    more (load and a slow warm-up can add to either)."""
    k = max(1, policy.sessions)
    if k == 1:
        return Estimate(policy.warmup_s + policy.min_s, policy.bound_s(), "policy bounds")
    most = k if policy.target_ci <= 0 else limits.MAX_SESSIONS
    return Estimate(k * policy.warmup_s + policy.min_s,
                    most * policy.warmup_s + policy.max_s + policy.for_session().max_s, "policy bounds")


def simulated_estimate(model: LatencyModel, policy: MeasurePolicy, seed: int = 0, trials: int = 5) -> Estimate:
    """The median over a few seeded simulations of the job (when the stop
    rule waits for a confidence interval, each run stops at a different
    count; the median is the typical job): one session simulated, times the
    planned sessions."""
    one = policy.for_session()
    totals = sorted(simulate_job(model, one, np.random.default_rng([seed, k])).total_s for k in range(trials))
    mid = totals[len(totals) // 2] * max(1, policy.sessions)
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
    spans = [s.get("finished_unix") - s.get("started_unix") for s in (timing.get("sessions") or ())
             if isinstance(s.get("started_unix"), (int, float)) and isinstance(s.get("finished_unix"), (int, float))]
    if len(spans) > 1:
        # Sessions interleave with other jobs': the device was busy with this
        # job for the sum of its sessions, not from the first to the last.
        wall = sum(spans)
    elif isinstance(ran.get("started_unix"), (int, float)) and isinstance(ran.get("finished_unix"), (int, float)):
        wall = ran["finished_unix"] - ran["started_unix"]
    if not (isinstance(wall, (int, float)) and wall > 0):
        wall = details.get("runner_wall_s")
    total = float(wall) if isinstance(wall, (int, float)) and wall > 0 else parts_s
    if old_policy is None or old_policy == policy:
        return Estimate(total, total, "measured")
    model = LatencyModel("empirical", float(np.median(samples)), samples=tuple(samples),
                         first_run_ms=timing.get("first_run_ms"))
    rng_old, rng_new = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    # Per session: what is not warm-up or measurement (start, load, probes,
    # placement) carries over; the sessions' count is the new policy's.
    k_old, k_new = max(1, len(spans)), max(1, policy.sessions)
    old = simulate_job(model, old_policy.for_session(), rng_old)
    new = simulate_job(model, policy.for_session(), rng_new)
    per = max(0.0, total / k_old - (old.warmup_total_ms + old.measure_ms) / 1e3) \
        + (new.warmup_total_ms + new.measure_ms) / 1e3
    est = per * k_new
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

    `jobs` are harness.controller.planner.PlannedJob; `duration(job, device_key)`
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
        ticket = sched.take(dev)  # the whole job: `duration` covers all its sessions
        if ticket is None:
            return
        job = ticket.job
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


def job_estimates(jobs: Sequence, devices: Mapping[str, object], estimator: Optional[Estimator] = None) -> dict:
    """Per job: its shortest estimate on the first device that may run it,
    and the devices that may: what a progress display needs for an ETA."""
    estimator = estimator or Estimator()
    out = {}
    for job in jobs:
        dev = devices.get(job.eligible[0]) if job.eligible else None
        est = estimator(job, dev) if dev is not None else policy_bounds(job.measure)
        out[job.key] = {"s": est.low_s, "devices": list(job.eligible)}
    return out
