"""Fixtures for the android tests: a real adb server on a port of its own,
test phones that speak adbd's wire protocol, and a lab folder holding the
onnxruntime_perf_test stand-in with its 'shared library'."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import adbd  # noqa: E402
import androidkit  # noqa: E402
import phone as phone_mod  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adb() -> str:
    from adbutils._utils import adb_path

    return adb_path()


@pytest.fixture(scope="session")
def adb_port():
    """A real adb server on a free port, killed when the tests end.

    ANDROID_ADB_SERVER_PORT is set meanwhile so every adb client
    (adbutils, the adb binary, child processes such as `harness agent serve`)
    talks to this server and never to a developer's own on 5037.
    """
    port = _free_port()
    old = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    # No USB here: without libusb the server does not wait for a USB scan.
    p = subprocess.run([_adb(), "-P", str(port), "start-server"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, ADB_LIBUSB="0"))
    assert p.returncode == 0, p.stderr
    yield port
    subprocess.run([_adb(), "-P", str(port), "kill-server"], capture_output=True, timeout=30)
    if old is None:
        os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
    else:
        os.environ["ANDROID_ADB_SERVER_PORT"] = old


@pytest.fixture
def adb_client(adb_port):
    from adbutils import AdbClient

    return AdbClient(port=adb_port)


class Phones:
    """Makes test phones; unplugs them from the adb server and stops them at the end."""

    def __init__(self, base: Path, client):
        self.base, self.client, self.made = base, client, []

    def make(self, props=None, *, connect: bool = True, auth_required: bool = False, **state):
        props = dict(props or phone_mod.PIXEL_7)
        root = self.base / f"phone-{len(self.made)}"
        root.mkdir(parents=True)
        state_handle = phone_mod.build_phone(root, props, **state)
        p = adbd.TestPhone(root, props, auth_required=auth_required)
        p.start()
        p.state = state_handle
        self.made.append(p)
        if connect:
            msg = self.client.connect(p.serial, timeout=10)
            assert "connected" in msg, msg
        return p

    def close(self):
        for p in self.made:
            try:
                self.client.disconnect(p.serial)
            except Exception:
                pass
            p.stop()


@pytest.fixture
def phones(tmp_path, adb_client):
    ph = Phones(tmp_path / "phones", adb_client)
    yield ph
    ph.close()


@pytest.fixture
def lab(tmp_path):
    """The lab's runner folder: the stand-in and the library it links."""
    folder = tmp_path / "lab" / "1.20" / "arm64-v8a"
    folder.mkdir(parents=True)
    perf = androidkit.install_perf_test(folder)
    lib = folder / "libonnxruntime.so"
    lib.write_bytes(b"\x7fELF stand-in for the runner's shared library\n")
    return {"perf_test": perf, "lib": lib, "folder": folder}
