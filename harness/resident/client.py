"""The calling side: `harness run` handed to this user's resident (started
when there is none), its exit status returned; and a run's request for a
kept agent. Standard library only, and nothing imported that the call does
not use: this runs before the CLI itself is imported."""

from __future__ import annotations  # the annotations below are never evaluated: no typing import

import hashlib
import os
import signal
import socket
import stat
import sys
import time

from harness.kernel import limits
from harness.resident import DIR_ENV, OPT_OUT_ENV, wire

# What a shell, a test runner or a CI runner changes between two commands
# without changing what a run does: left out of the key (a run still gets the
# caller's values), so that consecutive runs find the same resident.
VOLATILE_ENV = ("PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", "PYTEST_CURRENT_TEST",
                # GitHub Actions, per step (docs.github.com: "Store information in variables")
                "GITHUB_ACTION", "GITHUB_ACTION_PATH", "GITHUB_ACTION_REPOSITORY", "GITHUB_STEP_SUMMARY",
                "GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_ENV", "GITHUB_PATH")
# The caller's signals that go to the run's process group: what a terminal
# or a supervisor sends to the foreground job (SIGTSTP/SIGCONT below).
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2")
# sun_path holds 108 bytes on Linux (unix(7)); a longer path cannot be bound.
MAX_SOCKET_PATH = 107
# A resident that lost the start race to another one exits with this.
ANOTHER_RESIDENT = 3
# Polling for a starting resident's socket.
START_POLL_S = 0.02


def wanted(argv: list[str] | tuple[str, ...]) -> bool:
    """Whether `harness ARGV` (argv without the program name) should go to a resident."""
    if not sys.platform.startswith("linux") or not argv or argv[0] != "run":
        return False
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    flags = [a for a in argv if a in ("--keep-agent", "--no-keep-agent")]
    return not flags or flags[-1] == "--keep-agent"


def place() -> str | None:
    """This user's resident directory, made 0700 if missing; None when it is
    not a directory of this user's that only this user can enter."""
    base = os.environ.get(DIR_ENV)
    if not base:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(xdg, "harness") if xdg and os.path.isabs(xdg) else \
            os.path.join(os.environ.get("TMPDIR") or "/tmp", f"harness-{os.getuid()}")
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(base)  # a symlink is refused, not followed
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(base, 0o700)  # ours: tighten it rather than trust it
    except OSError:
        return None
    return base


def _code_roots() -> list[str]:
    import harness

    here = os.path.dirname(os.path.abspath(harness.__file__))
    agents = os.path.join(os.path.dirname(here), "agents")
    return [here] + ([agents] if os.path.isfile(os.path.join(agents, "__init__.py")) else [])


def key() -> str:
    """What a resident must share with this caller for a run forked from it to
    be the run this process would do (harness/resident/__init__.py)."""
    import harness

    h = hashlib.sha256()

    def put(*parts) -> None:
        for p in parts:
            h.update(str(p).encode("utf-8", "surrogateescape") + b"\0")

    put(harness.__version__, os.getuid(), sys.executable, os.path.realpath(sys.executable), sys.version,
        tuple(sys.flags), sys.warnoptions, sorted(sys._xoptions.items()))
    for p in sys.path:
        try:
            put(p, os.stat(p or ".").st_mtime_ns)  # a package added or removed changes its directory
        except OSError:
            put(p, None)
    for root in _code_roots():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                if f.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, f))
                    put(os.path.relpath(os.path.join(dirpath, f), root), st.st_mtime_ns, st.st_size)
    put(sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE_ENV))
    return h.hexdigest()[:24]


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s
    except OSError:  # none there, or a stale socket of one that died
        s.close()
        return None


def _start(directory: str, k: str, path: str) -> socket.socket | None:
    """Start a resident for key k and connect to it once it listens."""
    import subprocess

    # The resident gets this interpreter's options and sys.path (its own
    # start would put its working directory first), runs from / and has no
    # terminal: its output goes to its log, never into this caller's pipes.
    boot = "import sys; sys.path[:] = sys.argv[3:]; from harness.resident.serve import main; main(sys.argv[1], sys.argv[2])"
    flags = subprocess._args_from_interpreter_flags()  # what multiprocessing's spawn passes on
    proc = subprocess.Popen([sys.executable, *flags, "-c", boot, directory, k, *sys.path], cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    deadline = time.monotonic() + limits.RESIDENT_START_S
    while time.monotonic() < deadline:
        s = _connect(path)
        if s is not None:
            return s
        code = proc.poll()
        if code is not None and code != ANOTHER_RESIDENT:
            return None  # it could not start (its log says why): run here
        time.sleep(START_POLL_S)
    return None


def _std_fds() -> tuple[list[int], list[int]]:
    """fds 0-2 to pass on, /dev/null for any this process lacks; (fds, opened here)."""
    fds, opened = [], []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            n = os.open(os.devnull, os.O_RDWR)
            fds.append(n)
            opened.append(n)
    return fds, opened


def run(argv: list[str] | tuple[str, ...]) -> int | None:
    """Run `harness` with this argv (argv[0] is the program) in a process
    forked by this user's resident; its exit status, or None when no
    resident could take the run (nothing of it has started then)."""
    directory = place()
    if directory is None:
        return None
    try:
        cwd = os.getcwd()
        k = key()
    except OSError:
        return None
    path = os.path.join(directory, k + ".sock")
    if len(path.encode()) > MAX_SOCKET_PATH:
        return None
    sock = _connect(path) or _start(directory, k, path)
    if sock is None:
        return None
    with sock:
        return _converse(sock, list(argv), cwd)


def _converse(sock: socket.socket, argv: list, cwd: str) -> int | None:
    group: list = []  # the run's process group, once known
    pending: list = []  # signals that came before it was

    def forward(signum, _frame) -> None:
        if not group:
            pending.append(signum)
            return
        try:
            os.killpg(group[0], signum)
        except OSError:
            pass

    def stop(signum, _frame) -> None:  # Ctrl-Z: the run stops with its caller
        forward(signal.SIGSTOP, None)
        os.kill(os.getpid(), signal.SIGSTOP)

    def cont(signum, _frame) -> None:
        forward(signal.SIGCONT, None)

    handlers = {getattr(signal, name): forward for name in FORWARDED}
    handlers.update({signal.SIGTSTP: stop, signal.SIGCONT: cont})
    before = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
    try:
        return _exchange(sock, argv, cwd, group, pending, forward)
    finally:
        for sig, h in before.items():  # a run done here after all gets its own signals back
            signal.signal(sig, h)


def _exchange(sock, argv, cwd, group, pending, forward) -> int | None:
    mask = os.umask(0)
    os.umask(mask)
    fds, opened = _std_fds()
    try:
        wire.send(sock, {"run": argv, "cwd": cwd, "env": dict(os.environ), "umask": mask}, fds)
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)
    while True:
        try:
            msg, _ = wire.recv(sock)
        except (OSError, wire.WireError):
            msg = None
        if msg is None or (not group and "refused" in msg):
            if pending:  # interrupted before the run began: do not begin it here either
                return 128 + pending[0]
            if not group:
                return None  # nothing ran: run here
            sys.stderr.write("error: the resident harness process ended before the run reported its exit status\n")
            return 1
        if "pgid" in msg:
            group.append(int(msg["pgid"]))
            for signum in pending:
                forward(signum, None)
            pending.clear()
        if "exit" in msg:
            try:
                sock.sendall(b".")  # to the resident: the caller has the status, no hang-up is due
            except OSError:
                pass
            return int(msg["exit"])


def ask_agent(path: str, drivers: list[str] | tuple[str, ...]) -> str:
    """The address of the resident's kept agent with these drivers (started
    if needed); raises OSError or wire.WireError when it cannot give one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(limits.RESIDENT_AGENT_START_S + limits.RESIDENT_REQUEST_S)
        s.connect(path)
        wire.send(s, {"agent": {"drivers": list(drivers)}})
        msg, _ = wire.recv(s)
    if not msg or "address" not in msg:
        raise wire.WireError((msg or {}).get("error") or "the resident gave no agent")
    return str(msg["address"])
