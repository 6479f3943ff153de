"""Warm runners: a supervised fork server per runtime environment.

Starting `python -m agents.host.runner` costs an interpreter, numpy and ONNX
Runtime's import before the job's first line (0.2–0.4 s on an idle core,
several times that on a busy one). The host driver instead keeps one template
process per runtime environment (agents/host/forkserver.py) with those
imported, and asks it to fork a fresh child per session. Isolation is the
same as a spawned runner's: every session is a new process in its own process
group, started from a template that never ran a job, so nothing one job did
(a custom-op library's globals, a crash, a leak) is seen by the next; a crash
or hang costs that child only.

Supervision: each template has one thread here that started it and then reads
its messages until it ends (PR_SET_PDEATHSIG follows the thread that forked
the child, so the template is tied to a thread that lives exactly as long as
it). A template that dies is started again after a backoff, at most
`limits.FORK_SERVER_RESTARTS` times per `limits.FORK_SERVER_RESTART_WINDOW_S`;
beyond that (or where fork servers do not apply: not Linux) `run` returns
None and the driver spawns its runner the old way. Closing the pool (the
agent stopping) closes every socket: the template kills its children and
exits, and is killed after a grace if it does not; an agent killed outright
takes its templates with it through PR_SET_PDEATHSIG, and their children
follow the same way.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from harness.kernel import limits, procs

log = logging.getLogger("harness.agent.host")

SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "SOCK_SEQPACKET") and hasattr(socket, "send_fds")


@dataclass
class _Pending:
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    pid: Optional[int] = None
    status: Optional[int] = None
    maxrss: Optional[int] = None
    lost: bool = False  # the template ended before this child was reaped


class Template:
    """One supervised fork server for one interpreter + environment."""

    def __init__(self, name: str, argv_python: str, env: dict, log_path: Path):
        self.name = name
        self.python = argv_python
        self.env = dict(env)
        # numpy's OpenBLAS starts its thread pool at import; the runner does
        # no linear algebra in numpy, and a template should hold no threads.
        self.env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.log_path = log_path
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._sock: Optional[socket.socket] = None
        self._proc: Optional[subprocess.Popen] = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._closing = False
        self._starting = False
        self.broken = ""  # why it is given up (restarts exhausted, cannot start)
        self.info: dict = {}  # the template's ready message: pid, threads, version
        self._deaths: collections.deque = collections.deque()
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()  # cuts a restart's backoff short on close
        self.last_used = time.monotonic()

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Start the supervisor (idempotent; returns at once)."""
        with self._lock:
            if self._thread is not None or self._closing:
                return
            self._starting = True
            self._thread = threading.Thread(target=self._supervise, name=f"forkserver-{self.name}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            sock, proc, thread = self._sock, self._proc, self._thread
            self._ready.notify_all()
        self._wake.set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the template kills its children and ends
            except OSError:
                pass
        if proc is not None:
            with self._lock:
                busy = any(not p.done.is_set() for p in self._pending.values())
            if sock is None or not busy:
                # Still importing, or idle: nothing of a job to end cleanly,
                # and its interpreter's exit (its runtime's own shutdown work)
                # would only delay the agent's.
                procs.kill_tree(proc.pid, grace_s=0.0)
            try:
                proc.wait(limits.KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                procs.kill_tree(proc.pid)
        if thread is not None and thread is not threading.current_thread():
            thread.join(limits.KILL_GRACE_S + 1.0)

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _supervise(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    self._starting = False
                    self._ready.notify_all()
                    return
            ok = self._serve_once()
            now = time.monotonic()
            with self._lock:
                if self._closing:
                    self._starting = False
                    self._ready.notify_all()
                    return
                self._deaths.append(now)
                while self._deaths and now - self._deaths[0] > limits.FORK_SERVER_RESTART_WINDOW_S:
                    self._deaths.popleft()
                if len(self._deaths) > limits.FORK_SERVER_RESTARTS:
                    self.broken = (f"fork server for {self.name} ended {len(self._deaths)} times within "
                                   f"{limits.FORK_SERVER_RESTART_WINDOW_S:.0f} s; runners are spawned instead"
                                   + (f" (last: {self.info.get('ended', '')})" if self.info.get("ended") else ""))
                    self._starting = False
                    self._ready.notify_all()
                    log.warning("%s", self.broken)
                    return
                self._starting = True
                # The first end after a good start is retried at once; more
                # (or a template that never came up) back off.
                n = len(self._deaths) - (1 if ok else 0)
                delay = min(limits.FORK_SERVER_BACKOFF_CAP_S, 0.25 * 2 ** n) if n > 0 else 0.0
            log.warning("fork server for %s ended (%s); starting it again", self.name, self.info.get("ended", "?"))
            self._wake.wait(delay)

    def _serve_once(self) -> bool:
        """Start the template, read its messages until it ends; True when it
        had come up (so a restart needs no backoff the first time)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        err = open(self.log_path, "wb")
        try:
            proc = subprocess.Popen([self.python, "-m", "agents.host.forkserver", str(theirs.fileno())],
                                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, env=self.env, start_new_session=True)
        except OSError as exc:
            ours.close()
            self.info = {"ended": f"cannot start: {exc}"}
            return False
        finally:
            theirs.close()
            err.close()
        ready = False
        with self._lock:
            self._proc = proc
        try:
            ours.settimeout(limits.FORK_SERVER_START_TIMEOUT_S)
            try:
                first = json.loads(ours.recv(limits.FORK_SERVER_MESSAGE_BYTES) or b"null")
            except (OSError, ValueError):
                first = None
            if not isinstance(first, dict) or "ready" not in first:
                self.info = {"ended": "did not come up: " + (procs.tail(str(self.log_path), 500) or "no output")}
                return False
            ours.settimeout(None)
            ready = True
            with self._lock:
                self.info = {"pid": first["ready"], **{k: first.get(k) for k in ("threads", "version", "providers",
                                                                                 "dist", "runtime_error")}}
                self._sock = ours
                self._starting = False
                self._ready.notify_all()
            self._read(ours)
            return True
        finally:
            with self._lock:
                self._sock = None
                # Until the supervisor decides (start again, or broken), a
                # caller must wait for the next template, not take the gap
                # between this end and the restart for "none": that spawned
                # a job right after a template died.
                self._starting = not self._closing
                lost = list(self._pending.values())
            try:
                ours.close()
            except OSError:
                pass
            if proc.poll() is None:
                procs.kill_tree(proc.pid)
            code = proc.wait()
            if ready:
                self.info = {**self.info, "ended": procs.signal_name(code)}
            for p in lost:
                if not p.done.is_set():
                    p.lost = True
                    p.started.set()
                    p.done.set()

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(limits.FORK_SERVER_MESSAGE_BYTES)
            except OSError:
                return
            if not data:
                return
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            with self._lock:
                if "started" in msg:
                    p = self._pending.get(msg["started"])
                    if p is not None:
                        p.pid = int(msg["pid"])
                        p.started.set()
                elif "exited" in msg or "failed" in msg:
                    p = self._pending.pop(msg.get("exited", msg.get("failed")), None)
                    if p is not None:
                        p.status, p.maxrss = msg.get("status"), msg.get("maxrss")
                        p.lost = "failed" in msg
                        p.started.set()
                        p.done.set()

    def _socket(self, wait_s: float) -> Optional[socket.socket]:
        """The live template's socket, waiting for one that is starting."""
        self.start()
        end = time.monotonic() + wait_s
        with self._lock:
            while self._sock is None and self._starting and not self._closing and not self.broken:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._ready.wait(min(left, 0.5))
            return self._sock

    # -- jobs -----------------------------------------------------------------
    def run(self, job_dir: str, *, timeout_s: float, cancel: threading.Event, on_line: Callable[[str], None],
            stderr_path: str) -> Optional[procs.Finished]:
        """Run `agents.host.runner job_dir` in a child forked from the
        template, like procs.run_child runs a spawned one; None when no
        template can take it (then nothing was started). A template that
        ends before it forked the child (it died as the request went out) is
        waited for once more: nothing ran, so the job is simply sent again."""
        start = time.monotonic()
        for _ in range(2):
            sock = self._socket(limits.FORK_SERVER_START_TIMEOUT_S)
            if sock is None:
                return None
            self.last_used = time.monotonic()
            fin = self._attempt(sock, job_dir, start, timeout_s, cancel, on_line, stderr_path)
            if fin is not None:
                return fin
        return None

    def _attempt(self, sock: socket.socket, job_dir: str, start: float, timeout_s: float,
                 cancel: threading.Event, on_line: Callable[[str], None],
                 stderr_path: str) -> Optional[procs.Finished]:
        out_r, out_w = os.pipe()
        err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        p = _Pending()
        with self._lock:
            req = next(self._ids)
            self._pending[req] = p
        try:
            socket.send_fds(sock, [json.dumps({"op": "spawn", "id": req, "job_dir": job_dir}).encode()],
                            [out_w, err])
        except OSError:
            with self._lock:
                self._pending.pop(req, None)
            os.close(out_r)
            return None
        finally:
            os.close(out_w)
            os.close(err)

        reader = procs.pump_lines(os.fdopen(out_r, "rb"), on_line)
        reason = "exited"
        while not p.done.is_set():
            if cancel.is_set() or time.monotonic() - start > timeout_s:
                reason = "cancelled" if cancel.is_set() else "timeout"
                self._kill(sock, req, p)
                break
            p.done.wait(0.05)  # wakes at the child's exit; cancel and the deadline are checked each 50 ms
        reader.join(timeout=2.0)
        if p.lost and p.pid is None and reason == "exited":
            return None  # never forked: nothing of the job ran
        status = p.status
        code = os.waitstatus_to_exitcode(status) if status is not None else (-signal.SIGKILL if p.lost else None)
        return procs.Finished(returncode=None if reason != "exited" else code, maxrss_bytes=p.maxrss,
                              reason=reason, wall_s=time.monotonic() - start)

    def _kill(self, sock: socket.socket, req: int, p: _Pending) -> None:
        """SIGTERM then SIGKILL the child's process group, through the
        template (its parent, which alone knows the pid is not yet reused)."""
        for sig, wait in ((signal.SIGTERM, limits.KILL_GRACE_S), (signal.SIGKILL, limits.KILL_GRACE_S)):
            try:
                sock.send(json.dumps({"op": "signal", "id": req, "sig": int(sig)}).encode())
            except OSError:
                break  # the template is gone, and its children with it
            if p.done.wait(wait):
                return
        p.done.wait(limits.KILL_GRACE_S)


class Pool:
    """The templates of one driver, by environment, at most
    `limits.FORK_SERVERS` at once (the least recently used closes first)."""

    def __init__(self, work_root: Path, enabled: bool = True):
        self.work_root = work_root
        self.enabled = enabled and SUPPORTED
        self.why_not = "" if self.enabled else ("disabled in the host driver's configuration (warm_runners: false)"
                                                if SUPPORTED else "fork servers need Linux")
        self._templates: dict[str, Template] = {}
        self._lock = threading.Lock()
        self._closed = False

    def template(self, name: str, python: Optional[str], env: Optional[dict]) -> Optional[Template]:
        if not self.enabled:
            return None
        old: list[Template] = []
        with self._lock:
            if self._closed:
                return None
            t = self._templates.get(name)
            if t is None:
                while len(self._templates) >= limits.FORK_SERVERS:
                    lru = min(self._templates, key=lambda k: self._templates[k].last_used)
                    old.append(self._templates.pop(lru))
                safe = "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in name)
                t = Template(name, python or sys.executable, env if env is not None else procs.child_env(),
                             self.work_root / f"forkserver-{safe}.log")
                self._templates[name] = t
        for o in old:
            o.close()
        t.start()
        return t

    def forget(self, name: str) -> None:
        """Close the template of an environment that turned out to hold no runtime."""
        with self._lock:
            t = self._templates.pop(name, None)
        if t is not None:
            t.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ts = list(self._templates.values())
            self._templates.clear()
        for t in ts:
            t.close()
