"""The driver keeps to the adb server it is configured with.

adbutils answers a failed connection by running `adb start-server` without
`-P` (adbutils/_adb.py AdbConnection._safe_connect), which starts a second
server on $ANDROID_ADB_SERVER_PORT or 5037; that server then claims the lab's
USB phones. These tests stop the lab's server under a driver and check that
no server appears anywhere else, with a real adb binary."""

import os
import socket
import signal
import subprocess
import time

import pytest

from agents.android import create
from agents.android.adb import AdbUnavailable, DeviceLost


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adb() -> str:
    from adbutils._utils import adb_path

    return adb_path()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def lab_server(monkeypatch):
    """A lab adb server on a port of its own, and a different port the
    environment names as the default (where a stray server would appear)."""
    lab, default = _free_port(), _free_port()
    env = dict(os.environ, ADB_LIBUSB="0")
    p = subprocess.run([_adb(), "-P", str(lab), "start-server"], capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, p.stderr
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(default))
    monkeypatch.setenv("ADB_LIBUSB", "0")
    yield lab, default
    for port in (lab, default):
        _stop_server(port, env)


def _server_pids(port: int) -> list[int]:
    """The adb server processes serving `port` (the real server's command
    line is `adb -L tcp:PORT fork-server server ...`)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if f"tcp:{port}".encode() in argv and b"server" in argv:
                pids.append(int(d))
    return pids


def _stop_server(port: int, env=None) -> None:
    """`adb kill-server`; a server that does not answer it in time (seen in
    CI: kill-server hung 30 s right after start-server) is killed outright —
    either way the lab's server is down, which is all these tests need."""
    try:
        subprocess.run([_adb(), "-P", str(port), "kill-server"], capture_output=True, timeout=10, env=env)
    except subprocess.TimeoutExpired:
        pass
    for pid in _server_pids(port):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _kill(port: int) -> None:
    _stop_server(port)
    deadline = time.monotonic() + 10
    while _listening(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _listening(port)


def test_a_stopped_lab_server_is_reported_and_no_other_server_is_started(lab_server, lab):
    lab_port, default_port = lab_server
    d = create({"runners": {"1.20": {"perf_test": str(lab["perf_test"]), "libs": [str(lab["lib"])]}},
                "adb_port": lab_port, "adb_host": "127.0.0.1"})
    assert d.adb.list() == []  # the lab's own (empty) server answers
    _kill(lab_port)
    with pytest.raises((AdbUnavailable, DeviceLost)):
        d.adb.list()
    with pytest.raises((AdbUnavailable, DeviceLost)):
        d.adb.phone("emulator-5554").sh("true", timeout_s=5)
    time.sleep(0.5)
    assert not _listening(default_port), "a second adb server was started on the default port"


def test_a_remote_lab_server_that_is_down_is_a_clear_reason(lab_server, lab):
    lab_port, default_port = lab_server
    _kill(lab_port)
    # Not loopback: the driver may not start a server there, and says so.
    d = create({"runners": {}, "adb_port": lab_port, "adb_host": "localhost.invalid"})
    ok, why = d.available()
    assert not ok and str(lab_port) in why
    assert d.devices() == []
    assert not _listening(default_port)
