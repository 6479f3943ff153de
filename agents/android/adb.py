"""The driver's only door to phones: the adb server, through adbutils.

adbutils talks the adb server's socket protocol; this module adds what a
benchmark needs on top: shell commands (shell protocol v2, so exit status and
stderr are kept apart) with a deadline and cancellation, file transfer with an
inactivity bound, and one exception, `DeviceLost`, for every way a phone can
go away mid-call (unplugged, rebooted, adb over TCP dropped). adbutils is
imported inside functions only: it is the android extra's dependency.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

from harness.kernel import limits

# Shell protocol v2 packet ids (adb's shell_protocol.h).
_STDOUT, _STDERR, _EXIT = 1, 2, 3
# SYNC.TXT: a DATA message carries at most 64 KiB.
_SYNC_CHUNK = 64 * 1024


class DeviceLost(Exception):
    """The phone stopped answering: offline, unplugged or gone from adb."""


class ShellTimeout(Exception):
    pass


class ShellCancelled(Exception):
    pass


class RemoteFileError(Exception):
    """The phone refused a file operation (no such file, no permission)."""


class AdbUnavailable(Exception):
    """No adb server can be reached or started."""


@dataclass(frozen=True)
class ShellResult:
    code: int
    stdout: str
    stderr: str


_GONE = ("offline", "not found", "closed", "no devices", "unauthorized", "connection reset", "broken pipe",
         "device still connecting", "device still authorizing", "eof", "transport")


@contextmanager
def guard(serial: str) -> Iterator[None]:
    """Turn adb errors that mean 'the phone is gone' into DeviceLost, and a
    server that does not answer into AdbUnavailable."""
    from adbutils.errors import AdbConnectionError, AdbError

    try:
        yield
    except (DeviceLost, ShellTimeout, ShellCancelled, RemoteFileError, AdbUnavailable):
        raise
    except AdbConnectionError as exc:
        raise AdbUnavailable(f"the adb server does not answer ({exc}); `harness devices` shows the driver's "
                             "state") from None
    except (EOFError, ConnectionError, socket.timeout) as exc:
        raise DeviceLost(f"{serial}: {type(exc).__name__}: {exc}") from None
    except AdbError as exc:
        if str(exc).startswith("connect to adb server"):  # adbutils' AdbTimeout on connect
            raise AdbUnavailable(f"the adb server does not answer ({exc})") from None
        text = str(exc).lower()
        if any(word in text for word in _GONE):
            raise DeviceLost(f"{serial}: {exc}") from None
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # a local file, not the phone
    except OSError as exc:
        raise DeviceLost(f"{serial}: {exc}") from None


class Adb:
    """One adb server (host:port); phones are reached through it."""

    def __init__(self, host: str, port: int, adb_path: Optional[str] = None):
        self.host, self.port, self._adb_path = host, port, adb_path
        self._client = None
        self._lock = threading.Lock()

    def adb_path(self) -> str:
        if self._adb_path:
            return self._adb_path
        from adbutils._utils import adb_path

        return adb_path()

    def client(self):
        with self._lock:
            if self._client is None:
                # socket_timeout bounds every read and write on sync (push,
                # pull) connections: a phone that stops answering mid-transfer
                # fails after this long instead of hanging the job.
                self._client = _own_server_client()(host=self.host, port=self.port,
                                                    socket_timeout=limits.ADB_IO_TIMEOUT_S)
            return self._client

    def _listening(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=limits.ADB_POLL_S * 5).close()
            return True
        except OSError:
            return False

    def ensure_server(self) -> None:
        """Start the adb server on our port if none listens. Checked with a
        bare connect first: adbutils, finding no server, would start one on
        $ANDROID_ADB_SERVER_PORT or 5037 instead of the configured port."""
        if self._listening():
            return
        if self.host not in ("127.0.0.1", "localhost"):
            raise AdbUnavailable(f"no adb server answers at {self.host}:{self.port}")
        try:
            proc = subprocess.run([self.adb_path(), "-P", str(self.port), "start-server"], capture_output=True,
                                  text=True, timeout=limits.ADB_START_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AdbUnavailable(f"cannot start the adb server on port {self.port}: {exc}") from None
        if proc.returncode != 0 or not self._listening():
            raise AdbUnavailable(f"`adb -P {self.port} start-server` failed: {(proc.stderr or proc.stdout).strip()}")

    def list(self) -> list[tuple[str, str, str]]:
        """(serial, state, detail) of every phone the server knows, in any
        state. Read with `host:devices` directly: adbutils' list() splits
        lines on whitespace, so `no permissions (...)` arrives as state "no"
        and its reason is lost."""
        with guard("adb server"):
            with self.client().make_connection() as conn:
                conn.send_command("host:devices")
                conn.check_okay()
                return parse_devices(conn.read_string_block())

    def connect(self, address: str) -> str:
        with guard(address):
            return self.client().connect(address, timeout=limits.ADB_CONNECT_TIMEOUT_S)

    def phone(self, serial: str) -> "Phone":
        return Phone(self, serial)


class Phone:
    def __init__(self, adb: Adb, serial: str):
        self.adb, self.serial = adb, serial
        self._dev = None

    def _device(self):
        if self._dev is None:
            from adbutils import AdbDevice

            self._dev = AdbDevice(self.adb.client(), serial=self.serial)
        return self._dev

    def sh(self, command: str, timeout_s: float = limits.ADB_SHELL_TIMEOUT_S,
           cancel: Optional[threading.Event] = None) -> ShellResult:
        """Run a shell command; its exit status, stdout and stderr.

        Raises ShellTimeout / ShellCancelled (the command may still run on
        the phone: callers that start long commands kill them by pid) and
        DeviceLost when the stream ends without an exit status.
        """
        deadline = time.monotonic() + timeout_s
        with guard(self.serial):
            conn = self._device().open_transport(timeout=limits.ADB_IO_TIMEOUT_S)
        try:
            with guard(self.serial):
                conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.send_command("shell,v2,raw:" + command)
                conn.check_okay()
                sock = conn.conn
                sock.settimeout(limits.ADB_POLL_S)
                buf = bytearray()
                out, err = bytearray(), bytearray()
                while True:
                    if cancel is not None and cancel.is_set():
                        raise ShellCancelled(command)
                    if time.monotonic() > deadline:
                        raise ShellTimeout(command)
                    try:
                        chunk = sock.recv(65536)
                    except socket.timeout:
                        continue
                    if not chunk:
                        raise DeviceLost(f"{self.serial}: the shell stream ended without an exit status")
                    buf.extend(chunk)
                    while len(buf) >= 5:
                        kind, size = buf[0], struct.unpack("<I", buf[1:5])[0]
                        if len(buf) < 5 + size:
                            break
                        data = bytes(buf[5:5 + size])
                        del buf[:5 + size]
                        if kind == _STDOUT:
                            _append_bounded(out, data)
                        elif kind == _STDERR:
                            _append_bounded(err, data)
                        elif kind == _EXIT:
                            return ShellResult(data[0] if data else 255, out.decode("utf-8", "replace"),
                                               err.decode("utf-8", "replace"))
        finally:
            conn.close()

    # -- the sync service (SYNC.TXT), spoken directly --------------------------------
    # adbutils' sync helpers send each request in several small writes on a
    # socket without TCP_NODELAY, so every file costs delayed-ACK stalls, and
    # read fixed sizes with a bare recv(). A few lines of the protocol
    # itself avoid both.
    @contextmanager
    def _sync(self) -> Iterator[socket.socket]:
        with guard(self.serial):
            conn = self._device().open_transport(timeout=limits.ADB_IO_TIMEOUT_S)
        try:
            with guard(self.serial):
                conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.send_command("sync:")
                conn.check_okay()
                yield conn.conn
                conn.conn.sendall(b"QUIT" + struct.pack("<I", 0))
        finally:
            conn.close()

    @staticmethod
    def _request(sock: socket.socket, ident: bytes, arg: str) -> None:
        raw = arg.encode("utf-8")
        sock.sendall(ident + struct.pack("<I", len(raw)) + raw)

    @staticmethod
    def _recv(sock: socket.socket, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"the sync stream ended after {len(data)} of {n} bytes")
            data.extend(chunk)
        return bytes(data)

    def _fail(self, sock: socket.socket, size: int, what: str) -> RemoteFileError:
        return RemoteFileError(f"{what}: {self._recv(sock, size).decode('utf-8', 'replace')}")

    def push_many(self, items: list[tuple[Union[Path, bytes], str, int]]) -> None:
        """Push (source, destination, mode) items over one sync connection."""
        with self._sync() as sock:
            for src, dst, mode in items:
                self._request(sock, b"SEND", f"{dst},{0o100000 | (mode & 0o7777)}")
                if isinstance(src, bytes):
                    for i in range(0, len(src), _SYNC_CHUNK):
                        piece = src[i:i + _SYNC_CHUNK]
                        sock.sendall(b"DATA" + struct.pack("<I", len(piece)) + piece)
                else:
                    with open(src, "rb") as fh:
                        for piece in iter(lambda: fh.read(_SYNC_CHUNK), b""):
                            sock.sendall(b"DATA" + struct.pack("<I", len(piece)) + piece)
                sock.sendall(b"DONE" + struct.pack("<I", int(time.time())))
                ident, size = struct.unpack("<4sI", self._recv(sock, 8))
                if ident == b"FAIL":
                    raise self._fail(sock, size, f"push {dst}")
                if ident != b"OKAY":
                    raise DeviceLost(f"{self.serial}: unexpected sync reply {ident!r} to a push")

    def push(self, src: Union[Path, bytes], dst: str, mode: int = 0o644) -> None:
        self.push_many([(src, dst, mode)])

    def _read_into(self, src: str, write) -> int:
        total = 0
        with self._sync() as sock:
            self._request(sock, b"RECV", src)
            while True:
                ident, size = struct.unpack("<4sI", self._recv(sock, 8))
                if ident == b"DONE":
                    return total
                if ident == b"FAIL":
                    raise self._fail(sock, size, f"pull {src}")
                if ident != b"DATA" or size > _SYNC_CHUNK:
                    raise DeviceLost(f"{self.serial}: unexpected sync reply {ident!r} to a pull")
                write(self._recv(sock, size))
                total += size

    def pull(self, src: str, dst: Path) -> int:
        with open(dst, "wb") as fh:
            return self._read_into(src, fh.write)

    def read(self, src: str) -> bytes:
        parts: list[bytes] = []
        self._read_into(src, parts.append)
        return b"".join(parts)

    def listdir(self, path: str) -> list[str]:
        names = []
        with self._sync() as sock:
            self._request(sock, b"LIST", path)
            while True:
                ident, _mode, _size, _mtime, namelen = struct.unpack("<4sIIII", self._recv(sock, 20))
                if ident == b"DONE":
                    break
                name = self._recv(sock, namelen).decode("utf-8", "replace")
                if name not in (".", ".."):
                    names.append(name)
        return names

    def size(self, path: str) -> Optional[int]:
        """Size of a regular file, None when absent."""
        import stat as st

        with self._sync() as sock:
            self._request(sock, b"STAT", path)
            ident, mode, size, _mtime = struct.unpack("<4sIII", self._recv(sock, 16))
        if ident != b"STAT":
            raise DeviceLost(f"{self.serial}: unexpected sync reply {ident!r} to a stat")
        return size if st.S_ISREG(mode) else None


def parse_devices(text: str) -> list[tuple[str, str, str]]:
    """`host:devices` lines: `serial<TAB>state` (adb's transport.cpp
    connection_state_name). The no-permission state is
    UsbNoPermissionsShortHelpText() (diagnose_usb.cpp):
    `no permissions (<reason>); see [<url>]` -> ("no permissions", reason)."""
    out = []
    for line in text.splitlines():
        serial, tab, state = line.partition("\t")
        if not tab or not serial.strip():
            continue
        state, detail = state.strip(), ""
        if state.startswith("no permissions"):
            m = re.match(r"no permissions(?: \((.*)\))?(?:; see \[.*\])?$", state)
            state, detail = "no permissions", (m.group(1) or "") if m else state[len("no permissions"):].strip()
        out.append((serial.strip(), state, detail))
    return out


_CLIENT = None


def _own_server_client():
    """AdbClient whose connections never start a server: adbutils'
    AdbConnection._safe_connect runs `adb start-server` without -P on any
    failed connect (adbutils/_adb.py), which starts a second server on
    $ANDROID_ADB_SERVER_PORT or 5037 that then competes for the USB phones.
    Only ensure_server() starts one, on the configured port."""
    global _CLIENT
    if _CLIENT is None:
        from adbutils import AdbClient
        from adbutils._adb import AdbConnection

        class _Connection(AdbConnection):
            def _safe_connect(self):
                return self._create_socket()  # AdbConnectionError / AdbTimeout, no server started

        class _Client(AdbClient):
            def __init__(self, host, port, socket_timeout):
                super().__init__(host=host, port=port, socket_timeout=socket_timeout)
                self._io_timeout = socket_timeout

            def make_connection(self, timeout=None):
                conn = _Connection(self.host, self.port)
                conn.conn.settimeout(timeout or self._io_timeout)
                return conn

        _CLIENT = _Client
    return _CLIENT


def _append_bounded(buf: bytearray, data: bytes) -> None:
    buf.extend(data)
    if len(buf) > limits.ADB_OUTPUT_BYTES:
        del buf[: len(buf) - limits.ADB_OUTPUT_BYTES]
