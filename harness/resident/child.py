"""One run forked by the resident: made into the process the caller would
have started, then the CLI, then the exit status back to the caller.

What a fresh `harness run` would differ in, and how it is made the same:
the caller's stdin/stdout/stderr (received over the socket) become fds 0-2
and new `sys.std*` objects are built on them the way the interpreter builds
its own (line-buffered on a terminal, and stderr always; unbuffered under
PYTHONUNBUFFERED); the caller's working directory, umask and environment
(os.environ entry by entry, so child processes get it too); argv; its own
process group, which the caller's forwarded signals reach; default signal
handlers, except that SIGTERM and SIGHUP end the run as Ctrl-C does before it
exits as killed (its job must not go on holding the kept agent's device).
The resident's descriptors are closed. What stays is what the
resident imported, which is the point, and which the resident's key makes
the same as this caller would have imported. Random state: `random`
reseeds itself in a forked child (Lib/random.py, os.register_at_fork);
`secrets`, `uuid4` and run ids read the OS."""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Callable, NoReturn

from harness.resident import wire


def _stream(fd: int, write: bool, like) -> io.TextIOWrapper:
    # As Python/pylifecycle.c create_stdio (3.10-3.13): stdin always buffered;
    # stdout/stderr raw and write-through under -u/PYTHONUNBUFFERED (sys.flags
    # does not say; the resident's own stream does), else
    # buffered and line-buffered on a terminal (stderr always); newline "\n";
    # closefd=False.
    unbuffered = write and bool(getattr(like, "write_through", False))  # the resident started as the caller did
    raw = io.FileIO(fd, "wb" if write else "rb", closefd=False)
    if not write:
        buf = io.BufferedReader(raw)
    else:
        buf = raw if unbuffered else io.BufferedWriter(raw)
    return io.TextIOWrapper(buf, encoding=like.encoding, errors=like.errors, newline="\n",
                            line_buffering=write and not unbuffered and (os.isatty(fd) or fd == 2),
                            write_through=write and unbuffered)


def _become_caller(fds: list, req: dict) -> None:
    for target, fd in zip((0, 1, 2), fds):
        if fd != target:
            os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    like = (sys.stdin or sys.__stdin__, sys.stdout or sys.__stdout__, sys.stderr or sys.__stderr__)
    sys.stdin = sys.__stdin__ = _stream(0, False, like[0])
    sys.stdout = sys.__stdout__ = _stream(1, True, like[1])
    sys.stderr = sys.__stderr__ = _stream(2, True, like[2])
    os.chdir(req["cwd"])
    os.umask(int(req["umask"]))
    env = req["env"]
    for k in [k for k in os.environ if k not in env]:
        del os.environ[k]
    for k, v in env.items():
        if os.environ.get(k) != v:
            os.environ[k] = v
    sys.argv = list(req["run"])


def _exit_code(value) -> int:
    # As Python/pythonrun.c handle_system_exit.
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _finish() -> None:
    """What the interpreter does at exit: wait for non-daemon threads, run
    atexit handlers (logging's, weakref finalizers', a kept agent's), flush."""
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:
            pass


_ended_by: list = []  # SIGTERM or SIGHUP, once one came


def _end_like_ctrl_c(signum, _frame) -> None:
    # A process killed outright would leave its job running on the kept agent
    # (an agent lets a job whose controller went away finish, for a resume),
    # holding the device from the next run: end the run as Ctrl-C does (its
    # jobs cancelled, the run stored as interrupted), then exit as killed.
    _ended_by.append(signum)
    raise KeyboardInterrupt


def run(conn, fds: list, req: dict, close_inherited: Callable[[], None], resident_path: str) -> NoReturn:
    """In the forked process: never returns."""
    import atexit

    code = 70  # EX_SOFTWARE: the setup itself failed
    try:
        for sig in (signal.SIGCHLD, signal.SIGQUIT, signal.SIGTSTP, signal.SIGCONT, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGWINCH):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _end_like_ctrl_c)
        signal.set_wakeup_fd(-1)
        close_inherited()
        atexit._clear()  # the resident's, if any: not this run's
        try:
            os.setpgid(0, 0)
        except OSError:
            pass  # the resident set it first
        _become_caller(fds, req)
        from harness import agent_start

        agent_start.RESIDENT = resident_path  # local agents come from the resident
        from harness.cli import run_app

        try:
            run_app()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except KeyboardInterrupt:
            import traceback

            traceback.print_exc()
            code = 130
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        _finish()
        if _ended_by:
            code = 128 + _ended_by[0]
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    finally:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # nothing is left to interrupt
                signal.signal(sig, signal.SIG_IGN)
            wire.send(conn, {"exit": code})
        except BaseException:
            pass
        os._exit(code)
