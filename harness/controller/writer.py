"""Results and attempts into the store from one thread, in batches.

Every device's worker thread hands its finished sessions here instead of
building records and writing them itself: one thread builds the records
(statistics from the raw samples) and writes whatever has queued up since
its last write in one transaction — results (first write wins, as always)
and attempts — then reports each stored result. With a few devices every
result is its own transaction, as before; with hundreds, commits and
SQLite's single-writer lock are shared by a batch instead of fought over by
every worker. Nothing waits to fill a batch: a result is written as soon as
the writer is free.

What a controller killed mid-run can lose is what was queued and not yet
committed (at most one batch); a resume re-sends those jobs under their own
agent job ids, and the agent answers with the results it kept.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

from harness.kernel import limits


class ResultWriter:
    def __init__(self, store, run_id: str, record: Callable[[Any], tuple[str, dict, Optional[list]]],
                 stored: Callable[[str, dict], None]):
        """`record(outcome)` -> (job key, record, outputs); `stored(key,
        record)` is called for each result written now."""
        self.store, self.run_id, self._record, self._stored = store, run_id, record, stored
        self._q: queue.Queue = queue.Queue()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._loop, name="result-writer", daemon=True)
        self._thread.start()

    def result(self, outcome: Any) -> None:
        self._raise()
        self._q.put(("result", outcome))

    def attempt(self, job_key: str, attempt: int, agent: str, device_id: str, agent_job_id: str, outcome: str,
                message: str = "") -> None:
        self._raise()
        self._q.put(("attempt", {"job_key": job_key, "attempt": attempt, "agent": agent, "device_id": device_id,
                                 "agent_job_id": agent_job_id, "outcome": outcome, "message": message,
                                 "at": time.time()}))

    def close(self) -> None:
        """Write what is queued and stop; raises what writing raised."""
        self._q.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        done = False
        while not done:
            items = [self._q.get()]
            while len(items) < limits.RESULT_BATCH_MAX:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            if items[-1] is None or None in items:
                done = True
                items = [i for i in items if i is not None]
            if self._error is not None:
                continue  # drain, so close() returns and raises
            try:
                self._write(items)
            except BaseException as exc:  # the run's own thread raises it (result(), close())
                self._error = exc

    def _write(self, items: list) -> None:
        attempts = [row for kind, row in items if kind == "attempt"]
        built = [self._record(o) for kind, o in items if kind == "result"]
        self.store.record_attempts(self.run_id, attempts)
        if not built:
            return
        stored = self.store.put_results(self.run_id, built)
        for key, rec, _ in built:
            if key in stored:
                self._stored(key, rec)
