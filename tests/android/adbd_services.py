"""The adbd services a test phone offers on its streams: `shell:` and
`exec:` (protocol v1: raw bytes, close at exit), `shell,v2:` (packets
[id][u32 length]: stdin 0, stdout 1, stderr 2, exit 3, close-stdin 4, as in
adb's shell_protocol.h) and `sync:` (SYNC.TXT: STAT, STA2, LIST, SEND, RECV,
QUIT; DATA chunks of at most 64 KiB; SEND creates missing parent folders like
adbd's fixed_push_mkdir)."""

from __future__ import annotations

import os
import queue
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

A_CLSE, A_WRTE = 0x45534C43, 0x45545257
SYNC_DATA_MAX = 64 * 1024
# Waits inside the test phone: a peer that stops answering fails the test
# instead of hanging it.
OKAY_WAIT_S = 30.0


@dataclass
class Session:
    service: str
    command: str
    start: float
    end: Optional[float] = None
    exit_code: Optional[int] = None
    pid: Optional[int] = None


class Stream:
    def __init__(self, conn: "_Connection", local_id: int, remote_id: int):
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self.okay = threading.Event()
        self.closed = threading.Event()

    def write(self, data: bytes) -> bool:
        """Send data in WRTE packets, each after the previous one's OKAY."""
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            if self.closed.is_set() or self.conn.dead.is_set():
                return False
            self.okay.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + step])
            end = time.monotonic() + OKAY_WAIT_S
            while not self.okay.wait(0.05):
                if self.closed.is_set() or self.conn.dead.is_set() or time.monotonic() > end:
                    return False
        return True

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(A_CLSE, self.local_id, self.remote_id, b"")
            self.conn.forget(self.local_id)

    def read(self, n_min: int, buf: bytearray) -> bool:
        """Fill buf to at least n_min bytes; False once the peer closed."""
        while len(buf) < n_min:
            chunk = self.inbox.get()
            if chunk is None:
                return False
            buf.extend(chunk)
        return True

    def run(self) -> None:  # overridden
        pass


class Shell(Stream):
    def __init__(self, conn, local_id, remote_id, command: str, v2: bool, service: str):
        super().__init__(conn, local_id, remote_id)
        self.command, self.v2, self.service = command, v2, service
        self.proc: Optional[subprocess.Popen] = None

    def _packet(self, kind: int, data: bytes) -> bytes:
        return bytes([kind]) + struct.pack("<I", len(data)) + data

    def run(self) -> None:
        phone = self.conn.phone
        session = Session(self.service, self.command, time.monotonic())
        phone.sessions.append(session)
        try:
            self.proc = phone.spawn(self.command, merge_stderr=not self.v2)
        except OSError as exc:
            self.write(self._packet(2, f"/system/bin/sh: {exc}\n".encode()) + self._packet(3, b"\x7f")
                       if self.v2 else f"/system/bin/sh: {exc}\n".encode())
            self.close()
            return
        session.pid = self.proc.pid
        lock = threading.Lock()

        def pump(pipe, kind):
            for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
                data = phone.to_device(chunk)
                with lock:
                    self.write(self._packet(kind, data) if self.v2 else data)

        pumps = [threading.Thread(target=pump, args=(self.proc.stdout, 1), daemon=True)]
        if self.v2:
            pumps.append(threading.Thread(target=pump, args=(self.proc.stderr, 2), daemon=True))
        for t in pumps:
            t.start()
        feeder = threading.Thread(target=self._feed_stdin, daemon=True)
        feeder.start()
        code = self.proc.wait()
        for t in pumps:
            t.join(OKAY_WAIT_S)
        # The pipes are this double's, not the phone's: close each one whose
        # reader has finished (a grandchild may still hold one open), so a
        # long test session does not run out of descriptors.
        for t, pipe in zip(pumps, (self.proc.stdout, self.proc.stderr)):
            if not t.is_alive():
                pipe.close()
        session.end = time.monotonic()
        session.exit_code = code if code >= 0 else 128 - code
        if self.v2:
            self.write(self._packet(3, bytes([session.exit_code & 0xFF])))
        self.close()

    def _feed_stdin(self) -> None:
        buf = bytearray()
        stdin = self.proc.stdin
        while True:
            if not self.v2:
                chunk = self.inbox.get()
                if chunk is None:
                    break
                self._stdin_write(stdin, chunk)
                continue
            if not self.read(5, buf):
                break
            kind, size = buf[0], struct.unpack("<I", buf[1:5])[0]
            if not self.read(5 + size, buf):
                break
            data = bytes(buf[5:5 + size])
            del buf[:5 + size]
            if kind == 0:
                self._stdin_write(stdin, data)
            elif kind == 4:
                break
        try:
            stdin.close()
        except OSError:
            pass
        # The stream closed under a running command: adbd hangs it up.
        if self.closed.is_set() and self.proc.poll() is None:
            self.conn.phone.hang_up(self.proc)

    @staticmethod
    def _stdin_write(stdin, data: bytes) -> None:
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass


class Sync(Stream):
    def run(self) -> None:
        phone = self.conn.phone
        buf = bytearray()
        while self.read(8, buf):
            ident, size = bytes(buf[:4]), struct.unpack("<I", buf[4:8])[0]
            if not self.read(8 + size, buf):
                break
            arg = bytes(buf[8:8 + size]).decode("utf-8", "replace")
            del buf[:8 + size]
            if ident == b"QUIT":
                break
            if ident == b"STAT":
                self.write(b"STAT" + self._stat_v1(phone.host_path(arg)))
            elif ident == b"STA2":
                self.write(b"STA2" + self._stat_v2(phone.host_path(arg)))
            elif ident == b"LIST":
                self._list(phone.host_path(arg))
            elif ident == b"RECV":
                self._recv(phone.host_path(arg))
            elif ident == b"SEND":
                if not self._send(arg, buf):
                    break
            else:
                self._fail(f"unknown sync command {ident!r}")
                break
        self.close()

    @staticmethod
    def _stat_v1(p: Path) -> bytes:
        try:
            st = os.stat(p)
        except OSError:
            return struct.pack("<III", 0, 0, 0)
        return struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))

    @staticmethod
    def _stat_v2(p: Path) -> bytes:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return struct.pack("<IQQIIIIQqqq", 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # ENOENT
        return struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid,
                           st.st_gid, st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _list(self, p: Path) -> None:
        try:
            names = [".", ".."] + sorted(os.listdir(p))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.stat(p / name)
            except OSError:
                continue
            raw = name.encode()
            self.write(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime),
                                             len(raw)) + raw)
        self.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))

    def _recv(self, p: Path) -> None:
        try:
            fh = open(p, "rb")
        except IsADirectoryError:
            return self._fail("Is a directory")
        except OSError as exc:
            return self._fail(exc.strerror or "open failed")
        with fh:
            for chunk in iter(lambda: fh.read(SYNC_DATA_MAX), b""):
                if not self.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk):
                    return
        self.write(b"DONE" + struct.pack("<I", 0))

    def _send(self, arg: str, buf: bytearray) -> bool:
        path, _, mode_s = arg.rpartition(",")
        try:
            mode = int(mode_s) & 0o7777
        except ValueError:
            path, mode = arg, 0o644
        target = self.conn.phone.host_path(path)
        tmp = target.with_name(target.name + ".adb-tmp")
        ok, out, why = True, None, ""
        try:
            if path.endswith("/"):
                raise IsADirectoryError(21, "Is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)  # adbd's fixed_push_mkdir
            out = open(tmp, "wb")
        except OSError as exc:
            ok, why = False, exc.strerror or "open failed"
        while True:
            if not self.read(8, buf):
                if out:
                    out.close()
                    tmp.unlink(missing_ok=True)
                return False
            ident, size = bytes(buf[:4]), struct.unpack("<I", buf[4:8])[0]
            if ident == b"DONE":
                del buf[:8]
                break
            if ident != b"DATA" or size > SYNC_DATA_MAX:
                self._fail("invalid data message")
                return False
            if not self.read(8 + size, buf):
                return False
            if out:
                out.write(buf[8:8 + size])
            del buf[:8 + size]
        if not ok:
            self._fail(f"couldn't create file: {why}")
            return True
        out.close()
        os.chmod(tmp, mode if mode & 0o777 else 0o644)
        os.replace(tmp, target)
        self.write(b"OKAY" + struct.pack("<I", 0))
        return True
