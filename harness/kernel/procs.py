"""Child processes with bounded waits and whole-tree kills: every driver's
runner and the controller's reference child start through `run_child`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.kernel import limits


@dataclass
class Finished:
    returncode: Optional[int]  # None when killed by us
    maxrss_bytes: Optional[int]  # from wait4's rusage
    reason: str  # exited | timeout | cancelled
    wall_s: float


def die_with_parent() -> None:
    """Called first thing in a runner child: on Linux, ask the kernel to
    SIGKILL us when the agent dies (even by SIGKILL), so a killed agent leaves
    no runner burning a device; exit at once if the agent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent or parent == 1:
        os._exit(1)


def kill_tree(pid: int, grace_s: float = limits.KILL_GRACE_S) -> None:
    """SIGTERM then SIGKILL the process group led by pid (start_new_session)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def child_env() -> dict:
    """The environment of a child that runs `python -m <this project's
    module>`: it must import this very tree, wherever it lives (an editable
    checkout, a wheel, a copied tree)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def pump_lines(stream, on_line: Callable[[str], None]) -> threading.Thread:
    """A daemon thread handing each line of a child's binary stream to
    `on_line` until the stream ends (started; join it after the child)."""

    def pump() -> None:
        with stream:
            for raw in stream:
                try:
                    on_line(raw.decode("utf-8", "replace").rstrip("\n"))
                except Exception:
                    pass  # a bad progress line must not stop the pump

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return reader


def run_child(
    argv: Sequence[str],
    *,
    timeout_s: float,
    cancel: threading.Event,
    on_line: Callable[[str], None] = lambda line: None,
    stderr_path: Optional[str] = None,
    cwd: Optional[str] = None,
    env: Optional[dict] = None,
) -> Finished:
    """Run argv in a new session; stream its stdout lines to on_line; stop it
    (the whole group) at timeout_s or when cancel is set. Reaps with wait4 so
    the child's peak RSS is known without polling."""
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=cwd, env=env,
        )
    finally:
        if stderr_path:
            err.close()

    assert proc.stdout is not None
    reader = pump_lines(proc.stdout, on_line)
    reason = "exited"
    status = rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if cancel.is_set() or time.monotonic() - start > timeout_s:
            reason = "cancelled" if cancel.is_set() else "timeout"
            kill_tree(proc.pid)
            _, status, rusage = os.wait4(proc.pid, 0)
            break
        cancel.wait(0.05)
    # The group may hold grandchildren that outlive the leader.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else None
    reader.join(timeout=2.0)
    if proc.stdout:
        proc.stdout.close()
    maxrss = rusage.ru_maxrss * (1 if os.uname().sysname == "Darwin" else 1024) if rusage else None
    return Finished(
        returncode=None if reason != "exited" else proc.returncode,
        maxrss_bytes=maxrss,
        reason=reason,
        wall_s=time.monotonic() - start,
    )


def tail(path: str, max_bytes: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"
