"""Kept browsers, driver side: one keeper process per Chromium build and flags.

A session used to start a runner process, Chromium and Playwright (about
5 s on a loaded 2-core box, 1–2 s idle) before its page could load. Here a
keeper (agents/browser/keeper.py) holds Chromium with Playwright attached and
opens a fresh page per session; the page's own start (a renderer, ONNX
Runtime Web's start, its files and compiled code from the profile's cache)
is all a later session pays. Started lazily by the first probe or session, in a process group of
its own.

Isolation is the page's: each session's page has its own renderer process
and opens with its origin's storage cleared (session.BrowserPage), so
nothing one session did is seen by the next and a renderer crash costs that
session only (the keeper goes on).
A session that overruns its time or is cancelled gets the keeper's whole
group killed (Chromium with it): that is how a page spinning in WebAssembly
or a hung browser is stopped, and the next session starts a new keeper. A
keeper that dies on its own ends its session as a crash, the same way.
Closing the pool (the agent stopping) closes the keepers' stdin, so they
close their browsers, and kills what is left after a grace.

Keyed by (executable, its mtime, extra flags): a Chromium upgraded in place
gets a new browser, and flags a session needs (today every EP runs under
the same ones, session.BASE_ARGS) would get a browser of their own.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from harness.kernel import limits, procs


class Keeper:
    """One kept browser: its keeper process, started on first use."""

    def __init__(self, key: tuple, executable: str, extra_args: tuple[str, ...], root: Path):
        self.key = key
        self.executable, self.extra_args, self.root = executable, tuple(extra_args), root
        self._lock = threading.Lock()  # one request at a time
        self._proc: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue[str]" = queue.Queue()
        self._reader: Optional[threading.Thread] = None
        self._dir: Optional[Path] = None
        self._ids = itertools.count(1)
        self.info: dict = {}  # the keeper's ready message: browser pid, launch time, product, flags
        self.why = ""  # why the last start failed

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    # -- a request ------------------------------------------------------------
    def run(self, kind: str, jd: Path, note: dict, *, timeout_s: float, cancel: threading.Event,
            on_line: Callable[[str], None], stderr_path: str,
            wait_s: Optional[float] = None) -> Optional[procs.Finished]:
        """Serve one session (kind "job") or probe in jd; None when no keeper
        could take it (busy past wait_s, or it would not start: `why`), so
        the caller spawns a runner of its own. `note` gets how the browser
        was had: browser_start kept | launched, keeper_start_s."""
        start = time.monotonic()
        if not self._lock.acquire(timeout=timeout_s if wait_s is None else wait_s):
            return None
        try:
            deadline = start + timeout_s
            launched = False
            for _ in range(2):
                if self._proc is None or self._proc.poll() is not None:
                    self._discard()
                    if not self._start(deadline, cancel):
                        return None
                    launched = True
                note.update(browser_start="launched" if launched else "kept",
                            keeper_start_s=round(time.monotonic() - start, 3))
                session, proc = next(self._ids), self._proc
                assert proc is not None and proc.stdin is not None
                try:
                    proc.stdin.write((json.dumps({"session": session, "kind": kind, "dir": str(jd)}) + "\n").encode())
                    proc.stdin.flush()
                except OSError:
                    pass  # it died just now: the wait below sees the end and says so
                fin = self._wait(proc, session, start, deadline, cancel, on_line, stderr_path)
                if fin is not None:
                    return fin
                # It ended before it took the request (killed a moment before,
                # not yet reaped): nothing of this session ran, so a new keeper
                # serves it.
            return None
        finally:
            self._lock.release()

    def _wait(self, proc: subprocess.Popen, session: int, start: float, deadline: float,
              cancel: threading.Event, on_line: Callable[[str], None],
              stderr_path: str) -> Optional[procs.Finished]:
        """How the session ended; None when the keeper ended before it said
        it had taken the request."""
        taken = False
        while True:
            if cancel.is_set() or time.monotonic() > deadline:
                self._discard()
                return procs.Finished(None, None, "cancelled" if cancel.is_set() else "timeout",
                                      time.monotonic() - start)
            try:
                line = self._lines.get(timeout=0.05)
            except queue.Empty:
                if self._reader is not None and not self._reader.is_alive() and self._lines.empty():
                    # The keeper ended mid-session: its stderr tells why.
                    code = proc.wait()
                    Path(stderr_path).write_text(procs.tail(str(self._dir / "keeper.log")) if self._dir else "")
                    self._discard()
                    return procs.Finished(code, None, "exited", time.monotonic() - start) if taken else None
                continue
            msg = _json(line)
            if msg.get("keeper") == "taken" and msg.get("session") == session:
                taken = True
            elif msg.get("keeper") == "done" and msg.get("session") == session:
                return procs.Finished(0, None, "exited", time.monotonic() - start)
            if "keeper" not in msg:
                on_line(line)

    # -- start and stop -------------------------------------------------------
    def _start(self, deadline: float, cancel: threading.Event) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="browser-", dir=self.root))
        (self._dir / "keeper.json").write_text(json.dumps({"executable": self.executable,
                                                           "extra_args": list(self.extra_args)}))
        with open(self._dir / "keeper.log", "wb") as err:
            self._proc = subprocess.Popen([sys.executable, "-m", "agents.browser.keeper", str(self._dir)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                          start_new_session=True, env=procs.child_env())
        self._lines = queue.Queue()
        assert self._proc.stdout is not None
        self._reader = procs.pump_lines(self._proc.stdout, self._lines.put)
        end = min(deadline, time.monotonic() + limits.BROWSER_KEEPER_START_TIMEOUT_S)
        while not cancel.is_set() and time.monotonic() < end:
            try:
                msg = _json(self._lines.get(timeout=0.05))
            except queue.Empty:
                if not self._reader.is_alive():
                    break
                continue
            if msg.get("keeper") == "ready":
                self.info, self.why = msg, ""
                return True
            if msg.get("keeper") == "failed":
                self.why = str(msg.get("message", ""))[:1500]
                self._discard()
                return False
        self.why = ("cancelled while the kept browser started" if cancel.is_set() else
                    f"the keeper did not start within {limits.BROWSER_KEEPER_START_TIMEOUT_S:.0f} s"
                    if self._reader.is_alive() else "the keeper exited at start") \
            + (f": {procs.tail(str(self._dir / 'keeper.log'), 800)}" if self._dir else "")
        self._discard()
        return False

    def _discard(self) -> None:
        """Kill the keeper's group (it, Playwright's driver, Chromium) and
        remove its folder (the browser profile)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _killpg(proc)
            try:
                proc.stdin and proc.stdin.close()
            except OSError:
                pass  # stdout is the reader's: it closes it at the end of the stream
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.info = {}

    def close(self) -> None:
        """Ask the keeper to close its browser (stdin closed), then kill what
        is left after a grace. Waits for a session in flight up to the grace."""
        got = self._lock.acquire(timeout=limits.KILL_GRACE_S)
        try:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                try:
                    assert proc.stdin is not None
                    proc.stdin.close()
                    proc.wait(limits.KILL_GRACE_S)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._discard()
        finally:
            if got:
                self._lock.release()


def _killpg(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(limits.KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass


def _json(line: str) -> dict:
    try:
        msg = json.loads(line)
    except ValueError:
        return {}
    return msg if isinstance(msg, dict) else {}


class Pool:
    """The agent's kept browsers, at most limits.BROWSERS_KEPT (idle ones
    beyond it closed, least recently used first)."""

    def __init__(self, root: Path, enabled: bool = True):
        self.root = root
        self.enabled = enabled
        self._lock = threading.Lock()
        self._keepers: dict[tuple, Keeper] = {}  # insertion order = use order

    def get(self, executable: str, extra_args: tuple[str, ...]) -> Optional[Keeper]:
        if not self.enabled:
            return None
        try:
            mtime = os.stat(executable).st_mtime
        except OSError:
            mtime = 0.0
        key = (executable, mtime, tuple(extra_args))
        evicted = []
        with self._lock:
            keeper = self._keepers.pop(key, None) or Keeper(key, executable, extra_args, self.root)
            self._keepers[key] = keeper
            for k, other in list(self._keepers.items()):
                stale = k[0] == executable and k[1] != mtime  # the same path, rebuilt
                if other is not keeper and not other.busy and (stale or len(self._keepers) > limits.BROWSERS_KEPT):
                    evicted.append(self._keepers.pop(k))
        for other in evicted:
            other.close()
        return keeper

    def close(self) -> None:
        with self._lock:
            keepers, self._keepers = list(self._keepers.values()), {}
        for keeper in keepers:
            keeper.close()
