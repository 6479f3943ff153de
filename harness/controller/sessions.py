"""A job's sessions as they come back, and the one result they make.

Each session is its own agent job (a new runner process, page or perf_test
process on every driver). The book keeps the finished sessions of every job
in flight, applies the stop rule between sessions
(`harness.kernel.measure.sessions.stop_reason`) and, once a job is done,
joins its sessions into one result shaped like `wire.result_from_pb`'s:
`samples_ms` session after session, `sessions` with each one's run count and
own figures, the first session's load time, placement, probe outputs and
details (only the first session carries every probe: later ones get the
timing input alone), the largest peak memory, and the job's stop reason.
"""

from __future__ import annotations

import threading
from typing import Optional

from harness.controller.planner import PlannedJob
from harness.kernel.measure import sessions as stats


def session_entry(result: dict) -> dict:
    """What the record keeps of one session besides its samples."""
    mem = result.get("memory") or {}
    v = result.get("validity") or {}
    return {"n": len(result.get("samples_ms") or ()), "load_ms": result.get("load_ms"),
            "first_run_ms": result.get("first_run_ms"), "stop_reason": v.get("stop_reason") or None,
            "warmup_done": bool(v.get("warmup_done")), "peak_bytes": mem.get("peak_bytes"),
            "started_unix": result.get("started_unix"), "finished_unix": result.get("finished_unix")}


def join(results: list[dict], stop_reason: str) -> dict:
    """One result from a job's sessions (oldest first)."""
    first, last = results[0], results[-1]
    out = dict(first)
    out["samples_ms"] = [x for r in results for x in (r.get("samples_ms") or ())]
    out["sessions"] = [session_entry(r) for r in results]
    out["finished_unix"] = last.get("finished_unix")
    peaks = [r for r in results if (r.get("memory") or {}).get("peak_bytes")]
    out["memory"] = max(peaks, key=lambda r: r["memory"]["peak_bytes"])["memory"] if peaks else first.get("memory")
    vs = [r.get("validity") or {} for r in results]
    out["validity"] = {
        "warmup_done": all(v.get("warmup_done") for v in vs),
        "min_runs_met": all(v.get("min_runs_met") for v in vs),
        "min_time_met": all(v.get("min_time_met") for v in vs),
        "stop_reason": stop_reason,
        "warnings": [f"session {i}: {w}" if len(results) > 1 else w
                     for i, v in enumerate(vs, start=1) for w in (v.get("warnings") or [])],
    }
    details = dict(first.get("details") or {})
    cond_first = (first.get("details") or {}).get("conditions") or {}
    cond_last = (last.get("details") or {}).get("conditions") or {}
    if cond_first or cond_last:
        # Before the first session and after the last: the job's conditions.
        details["conditions"] = {"before": cond_first.get("before") or {}, "after": cond_last.get("after") or {}}
    out["details"] = details
    return out


class SessionBook:
    """Finished sessions per job key; thread-safe (one worker per device)."""

    def __init__(self) -> None:
        self._done: dict[str, list[dict]] = {}
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self, key: str) -> None:
        """A job starts (again) from its first session."""
        with self._lock:
            self._done.pop(key, None)
            self._attempts.pop(key, None)

    def add(self, job: PlannedJob, result: dict, attempt: int) -> Optional[str]:
        """Record a finished session: None when the job should measure
        another, else why it is done (an error result ends it: `error`)."""
        with self._lock:
            done = self._done.setdefault(job.key, [])
            done.append(result)
            self._attempts[job.key] = max(self._attempts.get(job.key, 0), attempt)
            if result.get("error"):
                return "error"
            policy = job.measure
            if policy.sessions <= 1:
                return (result.get("validity") or {}).get("stop_reason") or "sessions_done"
            if job.fixed_sessions:
                return None if len(done) < policy.sessions else "sessions_done"
            samples = [r.get("samples_ms") or [] for r in done]
            measured_s = sum(sum(s) for s in samples) / 1e3
            return stats.stop_reason(samples, policy.sessions, policy.target_ci, policy.max_s, measured_s,
                                     sum(samples[-1]) / 1e3)

    def result(self, key: str, stop_reason: str) -> tuple[dict, int]:
        """The job's one result and the most attempts any of its sessions
        took; forgets the job."""
        with self._lock:
            done = self._done.pop(key)
            attempts = self._attempts.pop(key, 1)
        last = done[-1]
        if last.get("error"):
            # A failing session fails the job: its error is the row's, with how
            # far the job got.
            out = dict(last)
            out["details"] = {**(last.get("details") or {}), "sessions_before_error": len(done) - 1}
            return out, attempts
        return join(done, stop_reason), attempts

    def count(self, key: str) -> int:
        with self._lock:
            return len(self._done.get(key, ()))
