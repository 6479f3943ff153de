"""The agent's job table: one FIFO lane per device, job ids as idempotency keys.

Each device has a lane with at most one running job; devices that share
hardware (the host CPU that both the host and the browser driver compute on)
share one lane, so their jobs never run at the same time either. A lane and
its worker thread exist only while the lane has work. Every job keeps its
latest events so any number of streams (the original one, a re-attached one
after a controller restart) can replay and follow it.

Everything here is bounded: jobs queued per device and across the agent, the
probe bytes that queued and running jobs hold, how long a job may wait in a
queue, the events a job keeps, and the finished jobs kept for re-attachment
(by count, age and bytes). A finished job keeps its result and nothing of its
request, so a re-sent job id returns the stored result instead of running
twice.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Optional

from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import limits

# work(progress, cancel) -> pb.Result ; progress(phase, samples, elapsed_s)
Work = Callable[[Callable[[str, int, float], None], threading.Event], pb.Result]


class QueueFull(Exception):
    pass


class Draining(Exception):
    pass


class JobRecord:
    def __init__(self, job_id: str, device_id: str, work: Optional[Work], lane: str, fingerprint: str = "",
                 digests: tuple[str, ...] = (), cost: int = 0, queued_at: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.job_id = job_id
        self.device_id = device_id
        self.lane = lane
        self.work = work
        self.fingerprint = fingerprint  # tells a re-sent job from another job under the same id
        self.digests = digests  # models the job needs: never evicted from the cache while it lives
        self.cost = cost  # probe bytes the job holds until it finishes
        self.queued_at = queued_at
        self.state = "queued"  # queued | running | finished
        self.events: list[pb.RunEvent] = []
        self.offset = 0  # events dropped from the front (the oldest, or a finished job's history)
        self.size = 0  # bytes of the stored result once finished
        self.cond = threading.Condition()
        self.cancel = threading.Event()
        self.finished_at: Optional[float] = None
        self.clock = clock
        self.last_progress = 0.0
        self.held: Optional[pb.RunEvent] = None  # the latest progress not yet published
        self.held_due = 0.0

    def publish(self, event: pb.RunEvent) -> None:
        with self.cond:
            if event.HasField("result"):
                self.held = None  # the result says more than any progress
            self.events.append(event)
            if len(self.events) > limits.MAX_EVENTS_KEPT:
                drop = len(self.events) - limits.MAX_EVENTS_KEPT
                del self.events[:drop]
                self.offset += drop
            self.cond.notify_all()

    def progress(self, event: pb.RunEvent) -> None:
        """Progress goes out at most every PROGRESS_INTERVAL_S (counted from
        the start): each event on a stream costs both ends CPU, and a lab of
        hundreds of devices sends thousands. One that comes sooner is held,
        the latest replacing it, and a follower publishes it once the
        interval has passed, unless the result comes first."""
        with self.cond:
            now = self.clock()
            due = self.last_progress + limits.PROGRESS_INTERVAL_S
            if now < due:
                self.held, self.held_due = event, due
                return
            self.last_progress, self.held = now, None
        self.publish(event)

    def wait_events(self, seen: int, timeout: float) -> tuple[list[pb.RunEvent], int]:
        """(events after the first `seen`, the new cursor), waiting up to
        timeout for one. A follower further behind than the kept events
        resumes at the oldest one kept."""
        with self.cond:
            if self.offset + len(self.events) <= seen:
                if self.held is not None:
                    timeout = min(timeout, max(0.0, self.held_due - self.clock()))
                self.cond.wait(timeout)
            if self.held is not None and self.clock() >= self.held_due:
                event, self.held, self.last_progress = self.held, None, self.clock()
                self.publish(event)
            return self.events[max(0, seen - self.offset):], self.offset + len(self.events)

    def end_cursor(self) -> int:
        with self.cond:
            return self.offset + len(self.events)

    def _keep_only_result(self) -> None:
        with self.cond:
            self.offset += len(self.events) - 1
            del self.events[:-1]
            self.size = self.events[0].ByteSize()
        self.work = None  # the request, its probes and the decoded inputs go with it
        self.cost = 0

    @property
    def done(self) -> bool:
        return self.state == "finished"


class JobTable:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_queue: int = limits.MAX_QUEUE_PER_DEVICE,
        keep: int = limits.FINISHED_JOBS_KEPT,
        ttl_s: float = limits.FINISHED_JOB_TTL_S,
        max_queued: int = limits.MAX_QUEUED_JOBS,
        max_live_bytes: int = limits.MAX_LIVE_PROBE_BYTES,
        kept_bytes: int = limits.FINISHED_RESULTS_BYTES,
        queue_wait_s: float = limits.QUEUE_WAIT_S,
    ):
        self.clock, self.wall = clock, wall
        self.max_queue, self.keep, self.ttl_s = max_queue, keep, ttl_s
        self.max_queued, self.max_live_bytes, self.kept_bytes = max_queued, max_live_bytes, kept_bytes
        self.queue_wait_s = queue_wait_s
        self._lock = threading.Lock()
        self._live: dict[str, JobRecord] = {}
        self._finished: "OrderedDict[str, JobRecord]" = OrderedDict()
        self._finished_bytes = 0
        self._lanes: dict[str, deque[JobRecord]] = {}
        self._running: dict[str, JobRecord] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closed = False

    # -- queries ----------------------------------------------------------------
    def busy_lanes(self) -> dict[str, str]:
        """lane -> the device running a job in it."""
        with self._lock:
            return {lane: rec.device_id for lane, rec in self._running.items()}

    def get(self, job_id: str) -> Optional[JobRecord]:
        with self._lock:
            self._prune()
            return self._live.get(job_id) or self._finished.get(job_id)

    def live_digests(self) -> set[str]:
        """Models that queued and running jobs need."""
        with self._lock:
            return {d for rec in self._live.values() for d in rec.digests}

    # -- commands ---------------------------------------------------------------
    def submit(self, job_id: str, device_id: str, work: Work, lane: str = "", fingerprint: str = "",
               digests: tuple[str, ...] = (), cost: int = 0) -> tuple[JobRecord, bool]:
        """(record, attached): attached is True when job_id was already known.
        `lane` names hardware the device shares (default: its own id);
        `cost` is the probe bytes the job holds until it finishes."""
        lane = lane or device_id
        with self._lock:
            self._prune()
            known = self._live.get(job_id) or self._finished.get(job_id)
            if known is not None:
                return known, True
            if self._closed:
                raise Draining("the agent is draining (shutting down): send the job elsewhere")
            queue = self._lanes.get(lane, ())
            if len(queue) >= self.max_queue:
                raise QueueFull(f"device {device_id} already has {len(queue)} jobs queued (limit {self.max_queue})")
            waiting = sum(len(q) for q in self._lanes.values())
            if waiting >= self.max_queued:
                raise QueueFull(f"this agent already has {waiting} jobs queued across its devices "
                                f"(limit {self.max_queued})")
            held = sum(r.cost for r in self._live.values())
            if held + cost > self.max_live_bytes:
                raise QueueFull(f"probe inputs: queued and running jobs hold {held / limits.MiB:.0f} MiB and this "
                                f"job brings {cost / limits.MiB:.1f} MiB (limit {self.max_live_bytes // limits.MiB} "
                                "MiB across the agent)")
            rec = JobRecord(job_id, device_id, work, lane, fingerprint, tuple(digests), cost, self.clock(), self.clock)
            self._live[job_id] = rec
            queue = self._lanes.setdefault(lane, deque())
            queue.append(rec)
            position = len(queue) - 1 + (1 if lane in self._running else 0)
            rec.publish(pb.RunEvent(job_id=job_id, queued=pb.Queued(position=position)))
            if lane not in self._workers:
                t = threading.Thread(target=self._lane_worker, args=(lane,), daemon=True, name=f"lane-{lane}")
                self._workers[lane] = t
                t.start()
            return rec, False

    def cancel(self, job_id: str) -> tuple[bool, str]:
        with self._lock:
            rec = self._live.get(job_id)
            if rec is None:
                return (False, "finished") if job_id in self._finished else (False, "unknown")
            state = rec.state
            rec.cancel.set()
            if state == "queued" and self._dequeue(rec):
                self._finish(rec, _queue_result(rec.device_id, "cancelled", "cancelled while queued", self.wall()))
            return True, state

    def expire_waiting(self) -> int:
        """End every job that has waited in a queue longer than queue_wait_s
        (a `queue_timeout` result): no job waits without end. Returns how many."""
        now = self.clock()
        with self._lock:
            late = [rec for q in self._lanes.values() for rec in q if now - rec.queued_at > self.queue_wait_s]
            for rec in late:
                self._dequeue(rec)
                self._finish(rec, self._timed_out(rec, now))
            return len(late)

    def close(self, timeout: float) -> None:
        """Refuse new jobs, cancel everything, wait up to timeout for lanes."""
        with self._lock:
            self._closed = True
            ids = list(self._live)
        for job_id in ids:
            self.cancel(job_id)
        deadline = self.clock() + timeout
        for t in list(self._workers.values()):
            t.join(max(0.0, deadline - self.clock()))

    # -- internals --------------------------------------------------------------
    def _lane_worker(self, lane: str) -> None:
        while True:
            with self._lock:
                queue = self._lanes.get(lane)
                if not queue:
                    self._lanes.pop(lane, None)
                    self._workers.pop(lane, None)
                    return
                rec = queue.popleft()
                if self.clock() - rec.queued_at > self.queue_wait_s:
                    self._finish(rec, self._timed_out(rec, self.clock()))
                    self._announce_positions(lane)
                    continue
                rec.state = "running"
                self._running[lane] = rec
                self._announce_positions(lane)
            device_id = rec.device_id
            rec.last_progress = self.clock()
            rec.publish(pb.RunEvent(job_id=rec.job_id, started=pb.Started(device_id=device_id, at_unix=self.wall())))

            def progress(phase: str, samples: int, elapsed: float, rec: JobRecord = rec) -> None:
                rec.progress(pb.RunEvent(job_id=rec.job_id, progress=pb.Progress(
                    phase=phase, samples=samples, elapsed_s=elapsed)))

            try:
                result = rec.work(progress, rec.cancel)
            except Exception as exc:  # a driver bug is that job's error, not the agent's death
                from harness.kernel.wire import error_result

                result = error_result(device_id, "runner", "agent_error", f"{type(exc).__name__}: {exc}", self.wall())
            with self._lock:
                self._running.pop(lane, None)
                self._finish(rec, result)

    def _dequeue(self, rec: JobRecord) -> bool:
        # Called with self._lock held.
        queue = self._lanes.get(rec.lane)
        if queue is None or rec not in queue:
            return False
        queue.remove(rec)
        self._announce_positions(rec.lane)
        return True

    def _timed_out(self, rec: JobRecord, now: float) -> pb.Result:
        return _queue_result(rec.device_id, "queue_timeout",
                             f"waited {now - rec.queued_at:.0f} s in the queue of {rec.device_id} without starting "
                             f"(this agent's limit is {self.queue_wait_s:g} s, queue_wait_s); send it again later "
                             "or to another device", self.wall())

    def _finish(self, rec: JobRecord, result: pb.Result) -> None:
        # Called with self._lock held.
        rec.state = "finished"
        rec.finished_at = self.clock()
        self._live.pop(rec.job_id, None)
        rec.publish(pb.RunEvent(job_id=rec.job_id, result=result))
        rec._keep_only_result()
        self._finished[rec.job_id] = rec
        self._finished_bytes += rec.size
        self._prune()

    def _announce_positions(self, lane: str) -> None:
        # Called with self._lock held.
        queue = self._lanes.get(lane) or ()
        ahead = 1 if lane in self._running else 0
        for i, rec in enumerate(queue):
            rec.publish(pb.RunEvent(job_id=rec.job_id, queued=pb.Queued(position=i + ahead)))

    def _prune(self) -> None:
        now = self.clock()
        while self._finished:
            job_id, rec = next(iter(self._finished.items()))
            old = rec.finished_at is not None and now - rec.finished_at > self.ttl_s
            if len(self._finished) > self.keep or self._finished_bytes > self.kept_bytes or old:
                self._finished.popitem(last=False)
                self._finished_bytes -= rec.size
            else:
                break


def _queue_result(device_id: str, kind: str, message: str, now: float) -> pb.Result:
    from harness.kernel.wire import error_result

    r = error_result(device_id, "queue", kind, message, now)
    r.validity.stop_reason = "cancelled" if kind == "cancelled" else "error"
    return r
