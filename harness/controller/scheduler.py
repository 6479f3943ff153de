"""Which job each device runs next. Pure: no threads, no clock, no I/O.

At most one job per device at a time. A job whose agent stopped answering is
requeued, up to `max_attempts`, for another eligible device or for the same
one once its agent answers again: the lost device is *suspended* while the
controller waits for its agent, and *abandoned* if it does not come back.
Jobs go out most-constrained first (fewest eligible devices), so a job only
one device can run is not starved by jobs that could have gone anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from harness.controller.planner import PlannedJob


@dataclass
class Scheduler:
    jobs: Sequence[PlannedJob]
    max_attempts: int = 3
    prior_attempts: Mapping[str, int] = field(default_factory=dict)
    pending: list[PlannedJob] = field(init=False)
    running: dict[str, PlannedJob] = field(init=False, default_factory=dict)
    attempts: dict[str, int] = field(init=False, default_factory=dict)
    suspended: set[str] = field(init=False, default_factory=set)
    abandoned: set[str] = field(init=False, default_factory=set)
    finished: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.pending = sorted(self.jobs, key=lambda j: (len(j.eligible), j.index))
        self.attempts = dict(self.prior_attempts)

    def take(self, device: str) -> Optional[PlannedJob]:
        if device in self.running or device in self.suspended or device in self.abandoned:
            return None
        for i, job in enumerate(self.pending):
            if device in job.eligible:
                del self.pending[i]
                self.running[device] = job
                self.attempts[job.key] = self.attempts.get(job.key, 0) + 1
                return job
        return None

    def finish(self, device: str) -> None:
        job = self.running.pop(device)
        self.finished.add(job.key)

    def retry(self, device: str) -> bool:
        """Put the job on `device` back in the queue (a fault that was not the
        job's: its model went missing on a restarted agent). False when its
        attempts are used up."""
        job = self.running.pop(device)
        if self.attempts.get(job.key, 0) >= self.max_attempts:
            self.finished.add(job.key)
            return False
        self._requeue(job)
        return True

    def transport_failed(self, device: str) -> bool:
        """The agent of `device` stopped answering during its job: suspend the
        device and requeue the job. False when the job has used its attempts or
        no eligible device is left (the caller records an error row)."""
        job = self.running.pop(device)
        self.suspended.add(device)
        if self.attempts.get(job.key, 0) >= self.max_attempts or not self._runnable(job):
            self.finished.add(job.key)
            return False
        self._requeue(job)
        return True

    def revive(self, device: str) -> None:
        self.suspended.discard(device)

    def abandon(self, device: str) -> None:
        self.suspended.discard(device)
        self.abandoned.add(device)

    def _requeue(self, job: PlannedJob) -> None:
        self.pending.append(job)
        self.pending.sort(key=lambda j: (len(j.eligible), j.index))

    def _runnable(self, job: PlannedJob) -> bool:
        return any(d not in self.abandoned for d in job.eligible)

    def unrunnable(self) -> list[PlannedJob]:
        """Pending jobs no device can ever take; removes them from the queue."""
        stuck = [j for j in self.pending if not self._runnable(j)]
        self.pending = [j for j in self.pending if self._runnable(j)]
        self.finished.update(j.key for j in stuck)
        return stuck

    def may_get_work(self, device: str) -> bool:
        """Could this device still be handed a job (now or after a requeue)?"""
        if device in self.abandoned:
            return False
        return any(device in j.eligible for j in self.pending) or any(
            device in j.eligible for j in self.running.values())

    def done(self) -> bool:
        return not self.pending and not self.running
