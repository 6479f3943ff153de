"""Which session of which job each device runs next. Pure: no threads, no
clock, no I/O.

A job is measured as one or more sessions (harness.kernel.measure.sessions);
the scheduler hands out *tickets*, one session of one job each. At most one
ticket runs per device at a time. A job's later sessions are pinned to the device
its first session ran on (a record describes one device). Tickets go out
round by round — every job's first session, then every job's second — and in
alternating order (A B, then B A: ABBA), so drift and neighbours on a device
hit every candidate alike; inside a round, most-constrained first (fewest
eligible devices), so a job only one device can run is not starved by jobs
that could have gone anywhere.

A device may also hold one ticket *ahead*: queued on its agent behind the
one it runs, so that the device starts it the moment the first ends instead
of a controller round trip later (`take_ahead`). Only where that keeps no
other device idle: the ticket is pinned to this device, or enough tickets for
the same devices stay queued that every other device eligible for it has its
next one. When the running ticket ends, the one ahead becomes the running one.

A ticket whose agent stopped answering is requeued, up to `max_attempts`, for
another eligible device or for the same one once its agent answers again: the
lost device is *suspended* while the controller waits for its agent, and
*abandoned* if it does not come back. A later session cannot move to another
device: its job starts again from its first session (the caller drops the
sessions it had).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from harness.controller.planner import PlannedJob


@dataclass(frozen=True)
class Ticket:
    job: PlannedJob
    session: int  # 1-based
    eligible: tuple[str, ...]

    @property
    def key(self) -> str:
        """The job key for its first session, `<job key>#s<n>` for later ones:
        what attempts are counted (and stored) under."""
        return self.job.key if self.session == 1 else f"{self.job.key}#s{self.session}"

    @property
    def index(self) -> int:
        return self.job.index


def job_key_of(ticket_key: str) -> str:
    """The job key of a ticket key (`<job key>#s<n>` or the job key)."""
    base, sep, n = ticket_key.rpartition("#s")
    return base if sep and n.isdigit() else ticket_key


def _order(t: Ticket) -> tuple:
    return (t.session, len(t.eligible), t.job.index if t.session % 2 else -t.job.index)


@dataclass
class Scheduler:
    jobs: Sequence[PlannedJob]
    max_attempts: int = 3
    prior_attempts: Mapping[str, int] = field(default_factory=dict)
    pending: list[Ticket] = field(init=False)
    running: dict[str, Ticket] = field(init=False, default_factory=dict)
    ahead: dict[str, Ticket] = field(init=False, default_factory=dict)  # queued behind running[device]
    attempts: dict[str, int] = field(init=False, default_factory=dict)
    suspended: set[str] = field(init=False, default_factory=set)
    abandoned: set[str] = field(init=False, default_factory=set)
    finished: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.pending = sorted((Ticket(j, 1, j.eligible) for j in self.jobs), key=_order)
        self.attempts = dict(self.prior_attempts)

    def take(self, device: str) -> Optional[Ticket]:
        if device in self.running or device in self.suspended or device in self.abandoned:
            return None
        t = self._next_for(device)
        if t is not None:
            self.running[device] = t
        return t

    def take_ahead(self, device: str, allowed: Callable[[Ticket], bool] = lambda t: True) -> Optional[Ticket]:
        """A second ticket for a device that runs one, to queue behind it; None
        when the device runs nothing, holds one ahead already, or the next
        ticket it would take is not `allowed` or could go to another device
        that will want work (it stays queued: tickets keep their order)."""
        if device not in self.running or device in self.ahead or device in self.suspended \
                or device in self.abandoned:
            return None
        t = self._next_for(device, allowed)
        if t is not None:
            self.ahead[device] = t
        return t

    def _next_for(self, device: str, ahead: Optional[Callable[[Ticket], bool]] = None) -> Optional[Ticket]:
        """The first queued ticket `device` may run, taken from the queue; to
        go `ahead`, only if allowed and taking it leaves the ticket's other
        devices enough tickets of their own."""
        for i, t in enumerate(self.pending):
            if device in t.eligible:
                if ahead is not None and not (ahead(t) and self._spare(t, device)):
                    return None
                del self.pending[i]
                self.attempts[t.key] = self.attempts.get(t.key, 0) + 1
                return t
        return None

    def _spare(self, t: Ticket, device: str) -> bool:
        # Tickets of one profile share their eligible devices; counting only
        # those errs towards taking nothing ahead (one ticket at a time).
        others = sum(1 for d in t.eligible if d != device and d not in self.abandoned)
        if not others:
            return True
        same = 0
        for p in self.pending:
            if p is not t and p.eligible == t.eligible:
                same += 1
                if same >= others:
                    return True
        return False

    def _pop(self, device: str, ticket: Optional[Ticket]) -> Ticket:
        """Remove `ticket` (default: the running one) from `device`; the one
        ahead, if any, becomes the running one."""
        if ticket is not None and self.ahead.get(device) == ticket:
            return self.ahead.pop(device)
        if ticket is not None and self.running.get(device) != ticket:
            raise KeyError(f"{ticket.key} is not on {device}")
        t = self.running.pop(device)
        if device in self.ahead:
            self.running[device] = self.ahead.pop(device)
        return t

    def finish(self, device: str, more: bool = False, ticket: Optional[Ticket] = None) -> None:
        """The ticket on `device` (default: the running one) is done; with
        `more`, its job's next session is queued, pinned to this device."""
        t = self._pop(device, ticket)
        if more:
            self._requeue(Ticket(t.job, t.session + 1, (device,)))
        else:
            self.finished.add(t.job.key)

    def retry(self, device: str, ticket: Optional[Ticket] = None) -> bool:
        """Put the ticket on `device` back in the queue (a fault that was not
        the job's: its model went missing on a restarted agent). False when its
        attempts are used up."""
        t = self._pop(device, ticket)
        if self.attempts.get(t.key, 0) >= self.max_attempts:
            self.finished.add(t.job.key)
            return False
        self._requeue(t)
        return True

    def untake(self, device: str, ticket: Ticket) -> None:
        """Put a ticket the agent refused to queue (it was full) back, as if
        it had never been taken: the attempt does not count."""
        t = self._pop(device, ticket)
        self.attempts[t.key] -= 1
        self._requeue(t)

    def transport_failed(self, device: str, ticket: Optional[Ticket] = None) -> bool:
        """The agent of `device` stopped answering during a session: suspend
        the device and requeue the session — a first session for any eligible
        device, a later one as its job's restart from the first session. False
        when the attempts are used up or no eligible device is left (the caller
        records an error row)."""
        t = self._pop(device, ticket)
        if device not in self.abandoned:  # (its ticket ahead can fail after it was given up)
            self.suspended.add(device)
        if t.session > 1:
            t = Ticket(t.job, 1, t.job.eligible)
        if self.attempts.get(t.key, 0) >= self.max_attempts or not self._runnable(t):
            self.finished.add(t.job.key)
            return False
        self._requeue(t)
        return True

    def revive(self, device: str) -> None:
        self.suspended.discard(device)

    def abandon(self, device: str) -> None:
        """The device is gone for good: its pinned later sessions become
        restarts of their jobs on the devices left."""
        self.suspended.discard(device)
        self.abandoned.add(device)
        self.pending = [Ticket(t.job, 1, t.job.eligible) if t.session > 1 and t.eligible == (device,) else t
                        for t in self.pending]
        self.pending.sort(key=_order)

    def _requeue(self, t: Ticket) -> None:
        self.pending.append(t)
        self.pending.sort(key=_order)

    def _runnable(self, t: Ticket) -> bool:
        return any(d not in self.abandoned for d in t.eligible)

    def unrunnable(self) -> list[PlannedJob]:
        """Jobs of pending tickets no device can ever take; removes them from
        the queue."""
        stuck = [t for t in self.pending if not self._runnable(t)]
        self.pending = [t for t in self.pending if self._runnable(t)]
        self.finished.update(t.job.key for t in stuck)
        return [t.job for t in stuck]

    def may_get_work(self, device: str) -> bool:
        """Could this device still be handed a ticket (now, after a requeue or
        a restart)?"""
        if device in self.abandoned:
            return False
        return any(device in t.eligible for t in self.pending) or any(
            device in t.job.eligible for t in [*self.running.values(), *self.ahead.values()])

    def done(self) -> bool:
        return not self.pending and not self.running
