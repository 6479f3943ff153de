"""The resident process: imports the run path once, then serves its socket
with one thread and no other — each `harness run` is forked from it
(child.py), and a kept agent is a process of its own (agent_start.serve_kept)
started on a run's first request for it.

A fork copies only the calling thread, so a process that forks runs must
hold no lock another thread could own: the resident starts no thread, makes
no gRPC channel or server (gRPC's core is first initialised in the run, so
grpc/grpc#13873 — a channel used before fork() hangs its child's RPCs —
cannot arise), and refuses to fork should a thread ever appear. numpy's
OpenBLAS threads are C threads with fork handlers of their own
(OpenBLAS driver/others/memory.c, blas_thread_shutdown_ via pthread_atfork),
as the host driver's warm-runner templates rely on too.

Messages (wire.py): `{"run": argv, "cwd", "env", "umask"}` with the caller's
fds 0-2 -> `{"pid", "pgid"}`, later `{"exit": status}` (from the run, and from
here when it died of a signal: 128 + the signal), which the caller answers
with one byte (else its going away hangs the run up: SIGHUP); `{"agent": {"drivers"}}`
-> `{"address"}` or `{"error"}`; `{"status": true}`; `{"stop": true}` (now:
runs in flight lose their agent) or `{"stop": "idle"}` (only with none).
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from typing import Optional

from harness.kernel import limits
from harness.resident import IDLE_ENV, start, wire
from harness.resident.agents import KeptAgents

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (unix(7) SO_PEERCRED)


def main(directory: str, key: str) -> None:
    start.log_to(directory, key)
    path = os.path.join(directory, key + ".sock")
    lock = start.lock(directory, key, path)
    start.sweep(directory, key)
    start.make_room(directory, key)
    print(f"resident {key} pid {os.getpid()} starting", file=sys.stderr, flush=True)
    Resident(directory, key, path, lock).serve()


class Resident:
    def __init__(self, directory: str, key: str, path: str, lock: int):
        self.dir, self.key, self.path, self.lock = directory, key, path, lock
        self.idle_s = float(os.environ.get(IDLE_ENV) or limits.RESIDENT_IDLE_S)
        self.runs: dict[int, Optional[socket.socket]] = {}  # pid -> its caller's connection
        self.told: set[int] = set()  # runs whose caller has their status
        self.sel = selectors.DefaultSelector()
        self.agents = KeptAgents(directory, key, self.sel, self._reply)
        self.stopping = False
        self.started = time.time()
        self.last = time.monotonic()

    # --- the loop ----------------------------------------------------------
    def serve(self) -> None:
        start.preload()
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)  # SIGCHLD wakes the loop: a run's status goes out at once
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            os.unlink(self.path)  # a dead resident's; the lock says none serves it
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.listener.bind(self.path)  # 0600
        finally:
            os.umask(old)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        print(f"listening on {self.path}", file=sys.stderr, flush=True)
        try:
            while not self.stopping:
                for k, _ in self.sel.select(timeout=1.0):
                    self._dispatch(*k.data, k.fileobj)
                self._reap()
                self.agents.watch()
                if not self.runs and not self.agents.starting() and time.monotonic() - self.last > self.idle_s:
                    print(f"idle for {self.idle_s:g} s: stopping", file=sys.stderr, flush=True)
                    break
        finally:
            self._shutdown()

    def _dispatch(self, kind: str, arg, fileobj) -> None:
        if kind == "accept":
            self._accept()
        elif kind == "wake":
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        elif kind == "run":
            self._caller_readable(arg, fileobj)
        elif kind == "agent":
            self.agents.output(arg)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        _pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid != os.getuid():  # the directory keeps others out; this is the second lock
            conn.close()
            return
        conn.settimeout(limits.RESIDENT_REQUEST_S)
        try:
            msg, fds = wire.recv(conn, max_fds=3)
        except (OSError, wire.WireError):
            conn.close()
            return
        if isinstance(msg, dict) and "run" in msg and len(fds) == 3:
            self.last = time.monotonic()
            self._fork_run(conn, msg, fds)
            return
        wire._close(fds)
        if isinstance(msg, dict) and isinstance(msg.get("agent"), dict):
            self.last = time.monotonic()
            self.agents.lend(conn, msg["agent"])
        elif isinstance(msg, dict) and msg.get("status"):
            self._reply(conn, self.status())
        elif isinstance(msg, dict) and msg.get("stop"):
            # "idle": only with no run in flight (another resident making room).
            now = msg["stop"] != "idle" or not self.runs
            self._reply(conn, {"stopping": now})
            self.stopping = self.stopping or now
        else:
            conn.close()

    def _reply(self, conn: socket.socket, message: dict) -> None:
        try:
            conn.settimeout(limits.RESIDENT_REQUEST_S)
            wire.send(conn, message)
        except OSError:
            pass
        conn.close()

    def status(self) -> dict:
        return {"pid": os.getpid(), "key": self.key, "started": self.started, "runs": sorted(self.runs),
                "idle_s": round(time.monotonic() - self.last, 1), "idle_limit_s": self.idle_s,
                "agents": self.agents.status()}

    # --- runs ----------------------------------------------------------------
    def _fork_run(self, conn: socket.socket, msg: dict, fds: list) -> None:
        if self.stopping or threading.active_count() > 1:
            wire._close(fds)
            self._reply(conn, {"refused": "stopping" if self.stopping else "a thread is running"})
            return
        for s in (sys.stdout, sys.stderr):
            s.flush()  # nothing of the resident's buffered output is written twice
        gc.freeze()  # what the loop allocated since, too (start.preload says why)
        pid = os.fork()
        if pid == 0:
            try:
                from harness.resident import child

                child.run(conn, fds, msg, lambda: self._close_in_child(conn), self.path)
            finally:
                os._exit(70)
        try:
            os.setpgid(pid, pid)  # here as well as in the run: whichever comes first
        except OSError:
            pass
        wire._close(fds)
        try:
            wire.send(conn, {"pid": pid, "pgid": pid})
        except OSError:
            pass
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, ("run", pid))
        self.runs[pid] = conn

    def _close_in_child(self, keep: socket.socket) -> None:
        self.sel.close()
        self.listener.close()
        for fd in (self.wake_r, self.wake_w, self.lock):
            os.close(fd)
        for c in self.runs.values():
            if c is not None and c is not keep:
                c.close()
        self.agents.close_in_child()
        self.runs.clear()

    def _caller_readable(self, pid: int, conn: socket.socket) -> None:
        try:
            data = conn.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            self.told.add(pid)  # the caller has the run's status (client._exchange)
            return
        self.sel.unregister(conn)
        conn.close()
        self.runs[pid] = None
        if pid in self.told:
            return
        # The caller is gone without its run's status (killed): the run is
        # hung up on, as a terminal closing would.
        try:
            os.killpg(pid, signal.SIGHUP)
        except OSError:
            pass

    def _reap(self) -> None:
        for pid in list(self.runs):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done != pid:
                continue
            code = os.waitstatus_to_exitcode(status)
            conn = self.runs.pop(pid)
            self.told.discard(pid)
            self.last = time.monotonic()
            if conn is None:
                continue
            self.sel.unregister(conn)
            try:
                conn.setblocking(True)
                conn.settimeout(1.0)
                wire.send(conn, {"exit": 128 - code if code < 0 else code})  # the run's own came first
            except OSError:
                pass
            conn.close()

    def _shutdown(self) -> None:
        try:
            os.unlink(self.path)  # first: a caller from now on starts a new resident
        except FileNotFoundError:
            pass
        self.listener.close()
        self.agents.stop_all()
        print("stopped", file=sys.stderr, flush=True)
