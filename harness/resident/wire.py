"""Messages on a resident's unix socket: a 4-byte big-endian length, then
UTF-8 JSON. A run's first message also carries the caller's stdin, stdout
and stderr as SCM_RIGHTS descriptors (unix(7)), so the forked run writes
where the caller's own output goes: its terminal, pipe or file.

Standard library only: the `harness run` side imports this before anything
else, and it must stay as cheap as the interpreter's own start."""

from __future__ import annotations

import json
import socket
import struct

from harness.kernel.limits import RESIDENT_MESSAGE_BYTES

_HEADER = struct.Struct(">I")


class WireError(Exception):
    pass


def send(sock: socket.socket, message: object, fds: list[int] | tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode("utf-8")
    frame = _HEADER.pack(len(data)) + data
    if fds:
        # The descriptors ride on the first bytes; the rest follows as plain data
        # (a stream socket may take a large sendmsg in parts).
        sent = socket.send_fds(sock, [frame], list(fds))
        if sent < len(frame):
            sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        b = sock.recv(min(n - got, 1 << 16))
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def recv(sock: socket.socket, max_fds: int = 0) -> tuple[object, list[int]]:
    """(message, descriptors received with it); (None, []) at end of stream."""
    fds: list[int] = []
    if max_fds:
        head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, max_fds)
        if head and len(head) < _HEADER.size:
            rest = _exactly(sock, _HEADER.size - len(head))
            head = head + rest if rest is not None else b""
    else:
        head = _exactly(sock, _HEADER.size) or b""
    if len(head) < _HEADER.size:
        _close(fds)
        return None, []
    (n,) = _HEADER.unpack(head)
    if n > RESIDENT_MESSAGE_BYTES:
        # A stray writer, not a caller: refused before its body is read.
        _close(fds)
        raise WireError(f"message of {n} bytes (at most {RESIDENT_MESSAGE_BYTES})")
    body = _exactly(sock, n)
    if body is None:
        _close(fds)
        return None, []
    try:
        return json.loads(body.decode("utf-8")), fds
    except ValueError as exc:
        _close(fds)
        raise WireError(f"not a JSON message: {exc}") from None


def _close(fds: list[int] | tuple[int, ...]) -> None:
    import os

    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
