"""A controller session's hold on a run while it works on it.

The lease lives in the run's row (`lease_owner`, `lease_until`, on the
database's clock). A session takes it when it creates or resumes the run,
renews it every quarter of its length (`RUN_LEASE_S`) from a daemon thread, and gives it
back when it finishes. A controller that dies simply stops renewing: after
`RUN_LEASE_S` the run can be resumed elsewhere, and at once on the same host
when the holder's process is gone. Another session asking for a
live lease is refused with who holds it (user, host, since when), so two
controllers never work on one run at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import Optional

from harness.kernel import limits
from harness.store.engine import StoreError

log = logging.getLogger("harness.store")


def new_session_id() -> str:
    return secrets.token_hex(8)


def describe(holder: dict) -> str:
    who = holder.get("user_name") or "someone"
    where = holder.get("host_name") or "an unknown host"
    ci = f", {holder['ci_job_url']}" if holder.get("ci_job_url") else ""
    return (f"{who} on {where}{ci} (session {holder.get('session')}, lease ends in "
            f"{max(0.0, holder.get('seconds_left') or 0.0):.0f} s unless renewed)")


def _dead_here(holder: dict) -> bool:
    """The holder's controller ran on this host (same host name) and its
    process no longer exists. A reused pid reads as alive: the safe side."""
    pid = holder.get("pid")
    if not pid or holder.get("host_name") != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


class Lease:
    def __init__(self, store, run_id: str, session: str, ttl_s: float = limits.RUN_LEASE_S):
        self.store, self.run_id, self.session, self.ttl_s = store, run_id, session, ttl_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.lost = False

    def acquire(self) -> "Lease":
        holder = self.store.claim(self.run_id, self.session, self.ttl_s)
        if holder is not None and _dead_here(holder):
            # Its controller ran on this host and its process is gone (killed,
            # crashed): no need to wait for the lease to run out.
            holder = self.store.claim(self.run_id, self.session, self.ttl_s, take_from=holder["session"])
        if holder is not None:
            raise StoreError(f"run {self.run_id} is being worked on by {describe(holder)}; "
                             "resume it after that controller finishes or its lease ends")
        return self

    def start(self) -> "Lease":
        """Renew in the background until `stop()`."""
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                if not self.store.renew(self.run_id, self.session, self.ttl_s):
                    self.lost = True
                    log.warning("run %s: lease lost to another session; results already stored stay, "
                                "later ones for jobs it stored are ignored", self.run_id)
                    return
            except Exception as exc:  # a store hiccup: try again next period, while the lease still runs
                log.warning("run %s: could not renew the lease (%s)", self.run_id, exc)

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=limits.STORE_POOL_TIMEOUT_S)
        if release and not self.lost:
            self.store.release(self.run_id, self.session)
