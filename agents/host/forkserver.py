"""The warm template the host driver forks its runners from.

Runs as `python -m agents.host.forkserver FD` in one runtime environment
(harness's own, or one made by `harness runtime install`), started and
supervised by agents/host/warm.py, which holds the other end of the
AF_UNIX SOCK_SEQPACKET socket FD. It imports what every runner imports
(numpy, ONNX Runtime, the runner module), creates no session, and then only
forks: each request becomes a fresh child process that runs one job of
`agents.host.runner` and exits, so every session still starts clean — the
child inherits the template's imported modules and nothing any other job did
(jobs run only in children; the template never loads a model or a custom-op
library).

Why forking after `import onnxruntime` is sound: ONNX Runtime makes its
thread pools per session (`intra_op_num_threads` / `inter_op_num_threads`
pools are created when an InferenceSession is), and the template makes none.
Measured at import (agents/host/warm.py records it, tests/host check it):
onnxruntime 1.20.1 and onnxruntime-openvino 1.24.1 start no thread; 1.32.0
starts one from its extension module's initialisation that sleeps in a timed
wait (gdb: a std::thread created under PyModule_ExecDef of
onnxruntime_pybind11_state) — a forked child has only the forking thread, as
POSIX fork(2) says. numpy's OpenBLAS would start a pool at import; the
template runs with OPENBLAS_NUM_THREADS=1 (the runner does no linear algebra
in numpy), so it starts none.

Single-threaded on purpose (fork in a threaded process copies only the
caller): one select loop over the socket and a SIGCHLD wake-up pipe.

Messages are one JSON object per datagram. In: {"op": "spawn", "id", "job_dir"}
with two descriptors (the child's stdout and stderr), {"op": "signal", "id",
"sig"}. Out: {"ready", "threads", "version"} once, {"started", "pid"},
{"exited", "status", "maxrss"} (wait4's status and ru_maxrss in bytes).
The socket closing (the agent stopped or died) kills every child and ends
the template; the template itself dies with the agent (PR_SET_PDEATHSIG),
and its children die with it the same way (agents.host.runner calls
die_with_parent first).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys

from harness.kernel import limits


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _send(sock: socket.socket, msg: dict) -> None:
    try:
        sock.send(json.dumps(msg).encode())
    except OSError:
        pass  # the agent is gone: the loop sees the socket close next


def _child(sock: socket.socket, wake: tuple[int, int], out_fd: int, err_fd: int, job_dir: str) -> None:
    """In the forked child: become a runner process, never return."""
    code = 1
    try:
        os.setsid()  # its own process group, so a kill reaches everything it starts
        _name(b"harness-runner")  # what ps and top show (the command line is the template's)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (null, out_fd, err_fd, *wake):
            os.close(fd)
        sock.close()
        _adopt_resident(job_dir)
        sys.argv = ["agents.host.runner", job_dir]
        from agents.host import runner

        code = runner.main(job_dir)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _adopt_resident(job_dir: str) -> None:
    """Map in, in the child, every file-backed page the template has mapped.

    fork(2) copies the page tables of anonymous memory but not of file
    mappings (the kernel refaults those on use), so a forked child starts
    with a smaller resident set than a spawned runner that imported the same
    modules: the runner's `delta_bytes` (peak over the footprint before
    session create) would then count library code first touched during the
    load, and its peak would leave out what the template keeps mapped. The
    template's /proc/PID/pagemap says which of its pages are present (bit 63,
    Documentation/admin-guide/mm/pagemap.rst; readable by the same user);
    madvise(MADV_POPULATE_READ) maps them in the child, so the runner's
    footprint is the one a spawned runner would have. What it did goes to
    JOB_DIR/fork.json for the record's details."""
    import time

    t0 = time.perf_counter()
    pages = 0
    try:
        import ctypes

        import numpy as np

        page = os.sysconf("SC_PAGE_SIZE")
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        MADV_POPULATE_READ = 22  # <linux/mman.h>
        # The ranges are this process's own (the template's as they were at
        # the fork; it may have mapped or unmapped since), the presence bits
        # the template's.
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            maps = fh.read().splitlines()
        with open(f"/proc/{parent}/pagemap", "rb") as pm:
            for line in maps:
                parts = line.split()
                if len(parts) < 6 or not parts[5].startswith("/") or not parts[1].startswith("r"):
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                pm.seek(lo // page * 8)
                entries = np.frombuffer(pm.read((hi - lo) // page * 8), dtype=np.uint64)
                present = np.nonzero(entries >> np.uint64(63))[0]
                if not present.size:
                    continue
                # Runs of consecutive present pages, each mapped by one
                # madvise(MADV_POPULATE_READ) (Linux 5.14+, madvise(2)): a page
                # that cannot be read is an error returned, never a fault.
                breaks = np.nonzero(np.diff(present) != 1)[0] + 1
                for run in np.split(present, breaks):
                    if libc.madvise(ctypes.c_void_p(lo + int(run[0]) * page), ctypes.c_size_t(run.size * page),
                                    MADV_POPULATE_READ) != 0:
                        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
                    pages += int(run.size)
        note = {"template_pages_adopted": pages, "template_pages_adopt_ms": round((time.perf_counter() - t0) * 1e3, 1)}
    except Exception as exc:  # the runner then starts as fork(2) left it, and says so
        note = {"template_pages_adopt_error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        with open(os.path.join(job_dir, "fork.json"), "w", encoding="utf-8") as fh:
            json.dump(note, fh)
    except OSError:
        pass


def _name(name: bytes) -> None:
    """prctl(PR_SET_NAME): the thread name /proc/PID/comm shows (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME = 15, <linux/prctl.h>
    except (OSError, AttributeError):
        pass


def serve(sock: socket.socket) -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    signal.set_wakeup_fd(w)
    children: dict[int, int] = {}  # pid -> request id
    _send(sock, {"ready": os.getpid(), "threads": _threads(), "version": _version(), **_runtime()})
    # poll, not select: select(2) refuses descriptors of 1024 and above
    # (FD_SETSIZE), and the socket keeps the number it had in the agent,
    # which may hold that many (gRPC connections, job files).
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(r, select.POLLIN)
    while True:
        events = dict(poller.poll(1000))
        ready = [x for x, fd in ((sock, sock.fileno()), (r, r)) if fd in events]
        if r in ready:
            try:
                os.read(r, 4096)
            except BlockingIOError:
                pass
        if sock in ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, limits.FORK_SERVER_MESSAGE_BYTES, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                break  # the agent closed its end
            try:
                msg = json.loads(data)
                op = msg.get("op")
            except ValueError:
                msg, op = {}, None
            if op == "spawn" and len(fds) == 2 and isinstance(msg.get("job_dir"), str):
                try:
                    pid = os.fork()
                except OSError as exc:
                    _send(sock, {"failed": msg.get("id"), "error": f"fork: {exc}"})
                    pid = -1
                if pid == 0:
                    _child(sock, (r, w), fds[0], fds[1], msg["job_dir"])
                if pid > 0:
                    children[pid] = msg.get("id")
                    _send(sock, {"started": msg.get("id"), "pid": pid})
            elif op == "signal":
                pid = next((p for p, i in children.items() if i == msg.get("id")), None)
                if pid is not None:  # not yet reaped, so the id still names this child
                    try:
                        os.killpg(pid, int(msg.get("sig", signal.SIGKILL)))
                    except (ProcessLookupError, PermissionError, ValueError):
                        pass
            for fd in fds:
                os.close(fd)
        while children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            req = children.pop(pid, None)
            try:
                os.killpg(pid, signal.SIGKILL)  # grandchildren that outlived the runner
            except (ProcessLookupError, PermissionError):
                pass
            scale = 1 if sys.platform == "darwin" else 1024
            _send(sock, {"exited": req, "pid": pid, "status": status, "maxrss": usage.ru_maxrss * scale})
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _version() -> str:
    return sys.modules["onnxruntime"].__version__ if "onnxruntime" in sys.modules else ""


def _runtime() -> dict:
    """The runtime this environment offers, as the host driver's inventory
    needs it (agents/host/targets.py own_build): so the agent need not import
    ONNX Runtime itself to describe the build its runners use."""
    try:
        ort = sys.modules["onnxruntime"]
        from agents.host.targets import installed_build_name

        return {"providers": list(ort.get_available_providers()), "dist": installed_build_name()}
    except Exception as exc:  # the inventory then imports the runtime in the agent, as before
        return {"runtime_error": f"{type(exc).__name__}: {exc}"[:300]}


def main(fd: int) -> int:
    from harness.kernel.procs import die_with_parent

    die_with_parent()
    sock = socket.socket(fileno=fd)
    # What every runner imports, once: the child then starts at the job.
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    from agents.host import runner  # noqa: F401
    from agents import jobdir, placement  # noqa: F401
    from harness.kernel.measure import policy  # noqa: F401

    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
