"""`harness agent kept [--stop]`: this user's residents, found by their
sockets in the resident directory (client.place), asked for their status
or told to stop (they stop their agents first)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Optional

from harness.kernel import limits
from harness.resident import client, wire


def ask(path: Path, message: dict) -> Optional[dict]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(limits.RESIDENT_REQUEST_S)
        try:
            s.connect(str(path))
            wire.send(s, message)
            reply, _ = wire.recv(s)
        except (OSError, wire.WireError):
            return None  # a stale socket of one that died: its successor removes it
    return reply


def _sockets(directory: Optional[Path] = None) -> list[Path]:
    d = directory or client.place()
    if d is None or not Path(d).is_dir():
        return []
    # A resident's own socket is KEY.sock; its agents' are KEY-aHASH.sock.
    return sorted(p for p in Path(d).glob("*.sock") if "-a" not in p.stem)


def statuses(directory: Optional[Path] = None) -> list[tuple[Path, dict]]:
    """(socket, status) of each live resident (serve.Resident.status), in
    `directory` or this user's resident directory."""
    out = []
    for p in _sockets(directory):
        st = ask(p, {"status": True})
        if st:
            out.append((p, st))
    return out


def residents(directory: Optional[Path] = None) -> list[dict]:
    """Each live resident's status."""
    return [st for _, st in statuses(directory)]


def stop_all(directory: Optional[Path] = None) -> list[dict]:
    """Stop every live resident (in `directory` or this user's) and wait
    until each has stopped its agents and exited; the status each had."""
    out = []
    for p in _sockets(directory):
        status = ask(p, {"status": True})
        if status and ask(p, {"stop": True}):
            out.append(status)
    deadline = time.monotonic() + 2 * limits.RESIDENT_AGENT_STOP_S
    for status in out:
        while _alive(status["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return False
