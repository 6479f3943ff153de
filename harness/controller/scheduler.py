"""Which job each device runs next. Pure: no threads, no clock, no I/O.

At most one job per device at a time. A job whose agent stopped answering is
requeued for another eligible device (or the same one once its agent is
back), up to `max_attempts`; after that it ends as an error row. Jobs go out
most-constrained first (fewest eligible devices), so a job only one device
can run is not starved by jobs that could have gone anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from harness.controller.plan import PlannedJob


@dataclass
class Scheduler:
    jobs: Sequence[PlannedJob]
    max_attempts: int = 3
    pending: list[PlannedJob] = field(init=False)
    running: dict[str, PlannedJob] = field(init=False, default_factory=dict)
    attempts: dict[str, int] = field(init=False, default_factory=dict)
    dead: set[str] = field(init=False, default_factory=set)
    finished: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.pending = sorted(self.jobs, key=lambda j: (len(j.eligible), j.index))

    def take(self, device: str) -> Optional[PlannedJob]:
        if device in self.running or device in self.dead:
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

    def transport_failed(self, device: str, agent_gone: bool) -> bool:
        """The job on `device` lost its agent. Returns True if it was requeued,
        False if it has used its attempts (the caller records an error row)."""
        job = self.running.pop(device)
        if agent_gone:
            self.dead.add(device)
        if self.attempts.get(job.key, 0) >= self.max_attempts or not self._runnable(job):
            self.finished.add(job.key)
            return False
        self.pending.insert(0, job)
        self.pending.sort(key=lambda j: (len(j.eligible), j.index))
        return True

    def revive(self, device: str) -> None:
        self.dead.discard(device)

    def _runnable(self, job: PlannedJob) -> bool:
        return any(d not in self.dead for d in job.eligible)

    def unrunnable(self) -> list[PlannedJob]:
        """Pending jobs no live device can take; removes them from the queue."""
        stuck = [j for j in self.pending if not self._runnable(j)]
        self.pending = [j for j in self.pending if self._runnable(j)]
        self.finished.update(j.key for j in stuck)
        return stuck

    def may_get_work(self, device: str) -> bool:
        """Could this device still be handed a job (now or after a requeue)?"""
        if device in self.dead:
            return False
        return any(device in j.eligible for j in self.pending) or any(
            device in j.eligible for j in self.running.values())

    def done(self) -> bool:
        return not self.pending and not self.running
