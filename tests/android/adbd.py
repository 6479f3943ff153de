"""A test phone that speaks the adbd wire protocol over TCP.

The real adb server connects to it with `adb connect 127.0.0.1:PORT`, exactly
as it connects to a phone with wireless debugging. Implemented from the
protocol as AOSP documents it (packages/modules/adb: protocol.txt,
SERVICES.TXT, SYNC.TXT, and the shell protocol in shell_protocol.h):

* packets: a 24-byte little-endian header (command, arg0, arg1, data length,
  data checksum, command ^ 0xffffffff) and a payload;
* CNXN handshake (A_VERSION 0x01000001, which lets both sides skip payload
  checksums), or, with `auth_required`, AUTH tokens that are never accepted,
  so the adb server lists the phone as `unauthorized`;
* streams: OPEN -> OKAY/CLSE, WRTE answered by OKAY (one WRTE in flight per
  stream, the protocol's flow control), CLSE;
* services `shell:` (v1: raw bytes, close at exit), `shell,v2:` (packets
  [id][u32 length] for stdin 0, stdout 1, stderr 2, exit 3, close-stdin 4),
  `exec:` and `sync:` (STAT, STA2, LIST, SEND, RECV, QUIT).

Commands run with the host's /bin/sh inside a sandbox folder laid out like a
phone (see `phone.py`); device paths under /data, /sys, /sdcard and
/proc/{meminfo,cpuinfo} are mapped into the sandbox and mapped back in what
the commands print. Every shell session is recorded (`sessions`) with its
start and end time so tests can check what ran when.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Optional

from adbd_services import Session, Shell, Stream, Sync

A_CNXN, A_OPEN, A_OKAY = 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH = 0x45534C43, 0x45545257, 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE = 1, 2
HEADER = struct.Struct("<6I")

# Device paths that live in the sandbox; everything else (/bin, /usr, ...)
# is the host's, playing the part of the phone's toybox.
_DEVICE_PATH = re.compile(r"(?<![\w./-])(/data|/sys|/sdcard|/proc/meminfo|/proc/cpuinfo)(?=[/\s'\";|&)]|$)")


class _Connection:
    def __init__(self, phone: "TestPhone", sock: socket.socket):
        self.phone, self.sock = phone, sock
        self.max_payload = 4096
        self.dead = threading.Event()
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def send(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        head = HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)
        try:
            with self._send_lock:
                self.sock.sendall(head + data)
        except OSError:
            self.dead.set()

    def forget(self, local_id: int) -> None:
        with self._lock:
            self._streams.pop(local_id, None)

    def _recv_exact(self, n: int) -> Optional[bytes]:
        data = bytearray()
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data.extend(chunk)
        return bytes(data)

    def serve(self) -> None:
        try:
            while not self.dead.is_set():
                head = self._recv_exact(HEADER.size)
                if head is None:
                    break
                cmd, arg0, arg1, length, _check, magic = HEADER.unpack(head)
                if magic != cmd ^ 0xFFFFFFFF or length > 1024 * 1024:
                    break
                data = self._recv_exact(length) if length else b""
                if data is None:
                    break
                self._dispatch(cmd, arg0, arg1, data)
        finally:
            self.dead.set()
            with self._lock:
                streams = list(self._streams.values())
                self._streams.clear()
            for s in streams:
                s.closed.set()
                s.inbox.put(None)
            try:
                self.sock.close()
            except OSError:
                pass

    def _banner(self) -> bytes:
        props = self.phone.props
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        fields = "".join(f"{k}={props.get(k, '')};" for k in keys)
        return f"device::{fields}features=shell_v2,cmd,stat_v2,fixed_push_mkdir".encode()

    def _dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            if self.phone.auth_required:
                # Offer a token the host can never sign acceptably: the host
                # then offers its public key and waits for a user who never
                # taps "Allow", which adb reports as `unauthorized`.
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            else:
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self._banner())
        elif cmd == A_AUTH:
            if arg0 == AUTH_SIGNATURE:  # refuse it with a fresh token
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
        elif cmd == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif cmd == A_OKAY:
            with self._lock:
                s = self._streams.get(arg1)
            if s is not None:
                s.okay.set()
        elif cmd == A_WRTE:
            with self._lock:
                s = self._streams.get(arg1)
            if s is not None:
                s.inbox.put(data)
                self.send(A_OKAY, arg1, arg0, b"")
        elif cmd == A_CLSE:
            with self._lock:
                s = self._streams.pop(arg1, None)
            if s is not None:
                s.closed.set()
                s.inbox.put(None)

    def _open(self, remote_id: int, service: str) -> None:
        with self._lock:
            local_id = self._next_id
            self._next_id += 1
        if service.startswith("shell,v2") or service.startswith("shell:") or service.startswith("exec:"):
            head, _, command = service.partition(":")
            stream: Stream = Shell(self, local_id, remote_id, command, head.startswith("shell,v2"), head)
        elif service == "sync:":
            stream = Sync(self, local_id, remote_id)
        else:
            self.send(A_CLSE, 0, remote_id, b"")  # adbd refuses unknown services this way
            return
        with self._lock:
            self._streams[local_id] = stream
        self.send(A_OKAY, local_id, remote_id, b"")
        threading.Thread(target=stream.run, daemon=True, name=f"adbd-{service[:20]}").start()


class TestPhone:
    """An adbd on 127.0.0.1:<port> whose filesystem is `root`."""

    __test__ = False  # not a pytest test class

    def __init__(self, root: Path, props: dict[str, str], *, auth_required: bool = False,
                 env: Optional[dict[str, str]] = None):
        self.root = Path(root).resolve()
        self.props = dict(props)
        self.auth_required = auth_required
        self.extra_env = dict(env or {})
        self.sessions: list[Session] = []
        self._listener: Optional[socket.socket] = None
        self._conns: list[_Connection] = []
        self._procs: list[subprocess.Popen] = []
        self._unplugged = False
        self.port = 0

    # -- lifecycle --------------------------------------------------------------
    def start(self, port: int = 0) -> int:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(8)
        self._listener, self.port = ls, ls.getsockname()[1]
        threading.Thread(target=self._accept, args=(ls,), daemon=True, name="adbd-accept").start()
        return self.port

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                sock, _ = ls.accept()
            except OSError:
                return
            if self._unplugged:
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._conns.append(conn)
            threading.Thread(target=conn.serve, daemon=True, name="adbd-conn").start()

    def unplug(self) -> None:
        """The cable is pulled: connections drop and nothing answers any more.
        Commands already running carry on, as they would on a real phone."""
        self._unplugged = True
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone
            # would leave the port accepting until that call returns.
            for op in (lambda s: s.shutdown(socket.SHUT_RDWR), lambda s: s.close()):
                try:
                    op(self._listener)
                except OSError:
                    pass
            self._listener = None
        for c in self._conns:
            c.dead.set()
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.sock.close()
            except OSError:
                pass
        self._conns.clear()

    def stop(self) -> None:
        self.unplug()
        for p in self._procs:
            if p.poll() is None:
                self.hang_up(p, grace_s=0.5)

    # -- the phone's side -------------------------------------------------------
    def host_path(self, device_path: str) -> Path:
        return self.root / device_path.lstrip("/")

    def to_host(self, command: str) -> str:
        return _DEVICE_PATH.sub(lambda m: str(self.root) + m.group(1), command)

    def to_device(self, data: bytes) -> bytes:
        return data.replace(str(self.root).encode(), b"")

    def spawn(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        env = {
            "PATH": f"{self.root / 'system' / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.root / "data" / "local" / "tmp"),
            "TMPDIR": str(self.root / "data" / "local" / "tmp"),
            "ANDROID_ROOT": "/system",
            "PHONE_ROOT": str(self.root),
            "LANG": "C.UTF-8",
        }
        env.update(self.extra_env)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.to_host(command)], cwd=str(self.root), env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, start_new_session=True,
        )
        self._procs.append(proc)
        return proc

    @staticmethod
    def hang_up(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
        for sig in (signal.SIGHUP, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            try:
                proc.wait(grace_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def sessions_matching(self, needle: str) -> list[Session]:
        return [s for s in list(self.sessions) if needle in s.command]
