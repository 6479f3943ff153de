"""The agent's job table: one FIFO lane per device, job ids as idempotency keys.

Each device has a lane with at most one running job; devices that share
hardware (the host CPU that both the host and the browser driver compute on)
share one lane, so their jobs never run at the same time either. A lane's
worker thread exists only while the lane has work. Every job keeps its ordered list of
events so any number of streams (the original one, a re-attached one after a
controller restart) can replay and follow it. Finished jobs are kept for a
bounded time and count, so a re-sent job id returns its stored result instead
of running twice.
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
    def __init__(self, job_id: str, device_id: str, work: Work, lane: str):
        self.job_id = job_id
        self.device_id = device_id
        self.lane = lane
        self.work = work
        self.state = "queued"  # queued | running | finished
        self.events: list[pb.RunEvent] = []
        self.cond = threading.Condition()
        self.cancel = threading.Event()
        self.finished_at: Optional[float] = None
        self.last_progress = 0.0

    def publish(self, event: pb.RunEvent) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_events(self, seen: int, timeout: float) -> list[pb.RunEvent]:
        """Events after the first `seen`, waiting up to timeout for one."""
        with self.cond:
            if len(self.events) <= seen:
                self.cond.wait(timeout)
            return self.events[seen:]

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
    ):
        self.clock, self.wall = clock, wall
        self.max_queue, self.keep, self.ttl_s = max_queue, keep, ttl_s
        self._lock = threading.Lock()
        self._live: dict[str, JobRecord] = {}
        self._finished: "OrderedDict[str, JobRecord]" = OrderedDict()
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

    # -- commands ---------------------------------------------------------------
    def submit(self, job_id: str, device_id: str, work: Work, lane: str = "") -> tuple[JobRecord, bool]:
        """(record, attached): attached is True when job_id was already known.
        `lane` names hardware the device shares (default: its own id)."""
        lane = lane or device_id
        with self._lock:
            self._prune()
            known = self._live.get(job_id) or self._finished.get(job_id)
            if known is not None:
                return known, True
            if self._closed:
                raise Draining("the agent is draining (shutting down): send the job elsewhere")
            queue = self._lanes.setdefault(lane, deque())
            if len(queue) >= self.max_queue:
                raise QueueFull(f"device {device_id} already has {len(queue)} jobs queued (limit {self.max_queue})")
            rec = JobRecord(job_id, device_id, work, lane)
            self._live[job_id] = rec
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
            if state == "queued":
                queue = self._lanes.get(rec.lane)
                if queue is not None and rec in queue:
                    queue.remove(rec)
                    self._finish(rec, _cancelled_result(rec.device_id, self.wall()))
                    self._announce_positions(rec.lane)
            return True, state

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
                    self._workers.pop(lane, None)
                    return
                rec = queue.popleft()
                rec.state = "running"
                self._running[lane] = rec
                self._announce_positions(lane)
            device_id = rec.device_id
            rec.publish(pb.RunEvent(job_id=rec.job_id, started=pb.Started(device_id=device_id, at_unix=self.wall())))

            def progress(phase: str, samples: int, elapsed: float, rec: JobRecord = rec) -> None:
                now = self.clock()
                if now - rec.last_progress < limits.PROGRESS_INTERVAL_S and phase == "measure":
                    return
                rec.last_progress = now
                rec.publish(pb.RunEvent(job_id=rec.job_id, progress=pb.Progress(
                    phase=phase, samples=samples, elapsed_s=elapsed)))

            try:
                result = rec.work(progress, rec.cancel)
            except Exception as exc:  # a driver bug is that job's error, not the agent's death
                now = self.wall()
                from harness.kernel.wire import error_result

                result = error_result(device_id, "runner", "agent_error", f"{type(exc).__name__}: {exc}", now)
            with self._lock:
                self._running.pop(lane, None)
                self._finish(rec, result)

    def _finish(self, rec: JobRecord, result: pb.Result) -> None:
        # Called with self._lock held.
        rec.state = "finished"
        rec.finished_at = self.clock()
        self._live.pop(rec.job_id, None)
        self._finished[rec.job_id] = rec
        rec.publish(pb.RunEvent(job_id=rec.job_id, result=result))
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
            if len(self._finished) > self.keep or (rec.finished_at is not None and now - rec.finished_at > self.ttl_s):
                self._finished.popitem(last=False)
            else:
                break


def _cancelled_result(device_id: str, now: float) -> pb.Result:
    from harness.kernel.wire import error_result

    r = error_result(device_id, "queue", "cancelled", "cancelled while queued", now)
    r.validity.stop_reason = "cancelled"
    return r
