"""A resident's start, before it serves: its log, its key's lock (one
resident per key), the files other keys left, room under RESIDENTS_KEPT, and
the imports every run will find done."""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time

from harness.kernel import limits
from harness.resident.client import ANOTHER_RESIDENT

# The modules `harness run` imports (the CLI and its commands, the controller
# with the SQLite store, the report and its analysis), found by listing
# sys.modules after runs. One missing here is imported by the run itself:
# slower, nothing else.
PRELOAD = (
    "harness.cli", "harness.cli_app", "harness.commands", "harness.api", "harness.agent_start",
    "harness.controller.run", "harness.cli_progress", "harness.cli_render", "harness.report.document",
    "harness.report.stream", "harness.report.markdown", "harness.report.html", "harness.analysis.decision",
    "harness.analysis.parity", "harness.analysis.reference", "harness.analysis.student", "harness.analysis.coverage",
    "harness.analysis.divergence", "harness.analysis.validation", "harness.store.content", "harness.kernel.cores",
    "harness.kernel.eps", "sqlite3", "sqlalchemy.dialects.sqlite", "numpy.random", "numpy.ma", "grpc._channel",
    "grpc_health.v1.health", "pydantic.type_adapter", "shlex", "pwd", "typer._click.decorators", "typer._adapters",
    "encodings.cp437",
)


def preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional part missing: the run imports (and reports) it itself
            print(f"preload {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    from harness.cli_app import application

    application()  # every command registered
    # Python's gc docs (gc.freeze): a fork server freezes what it holds, so the
    # collector in a forked run never writes to those objects' pages (each
    # write would copy a page the run otherwise shares with the resident).
    import gc

    gc.collect()
    gc.freeze()


def log_to(directory: str, key: str) -> None:
    fd = os.open(os.path.join(directory, key + ".log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _connects(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def lock(directory: str, key: str, path: str) -> int:
    """Hold this key's lock for life; exit ANOTHER_RESIDENT when another
    resident serves it (or is still starting after RESIDENT_START_S)."""
    fd = os.open(os.path.join(directory, key + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + limits.RESIDENT_START_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            # One is starting (it binds once its imports are done) or stopping.
            if _connects(path) or time.monotonic() > deadline:
                sys.exit(ANOTHER_RESIDENT)
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def sweep(directory: str, key: str) -> None:
    """Remove what residents of other keys left (a key changes with every
    edit of the sources): files of a key whose lock nobody holds, untouched
    for a day."""
    import glob

    for lock_path in glob.glob(os.path.join(directory, "*.lock")):
        other = os.path.basename(lock_path)[:-len(".lock")]
        try:
            if other == key or time.time() - os.stat(lock_path).st_mtime < limits.RESIDENT_STALE_S:
                continue
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        for f in glob.glob(os.path.join(directory, other + "*")):
            try:
                os.unlink(f)
            except OSError:
                pass
        os.close(fd)


def make_room(directory: str, key: str) -> None:
    """Keep at most RESIDENTS_KEPT residents of this user alive (each holds a
    few hundred MB with its agent): stop the longest-idle ones, never one
    with a run in flight."""
    from pathlib import Path

    from harness.resident import manage

    others = [(p, st) for p, st in manage.statuses(Path(directory)) if st.get("key") != key and not st.get("runs")]
    others.sort(key=lambda ps: -float(ps[1].get("idle_s") or 0))
    live = len(manage.statuses(Path(directory)))
    for p, st in others:
        if live < limits.RESIDENTS_KEPT:
            break
        print(f"stopping resident {st.get('key')} (idle {st.get('idle_s')} s): at most "
              f"{limits.RESIDENTS_KEPT} kept", file=sys.stderr, flush=True)
        if (manage.ask(p, {"stop": "idle"}) or {}).get("stopping"):
            live -= 1
