"""Chromium's DevTools over a pipe, offered to Playwright on a loopback
WebSocket that only the holder can name.

Why: a `--remote-debugging-port` answers anyone on the host, without a
credential (its /json/version even hands out the browser's WebSocket
address), and DevTools drives the whole browser: open file:// pages as the
agent's user, read what they show. On a shared lab host that is every local
user acting as the agent. With `--remote-debugging-pipe` Chromium opens no
port at all; it reads protocol messages from fd 3 and writes to fd 4, each a
JSON text ended by a NUL byte (content/browser/devtools/
devtools_pipe_handler.cc, in Chromium since 2017; the fd numbers are restated in
components/devtools/devtools_pipe/devtools_pipe.h). Playwright's
`connect_over_cdp` takes only a ws:// or http:// address, so this relay
serves the pipe on 127.0.0.1 at one path, /devtools/browser/<32 random
bytes>, never written anywhere but handed to our own Playwright in memory.
Any other path, a second client and a browser-page Origin get HTTP 403 or
404 before a WebSocket opens.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from http import HTTPStatus

# The messages Chromium reads and writes on the pipe end with this byte.
_END = b"\0"


class DevToolsPipe:
    """The two pipes a Chromium child inherits (fds 3 and 4 after
    `child_fds`) and the relay between them and one WebSocket client: one
    DevTools connection per browser, as Playwright holds it for the
    browser's life (a second, even after the first closed, is refused)."""

    def __init__(self) -> None:
        self._to_browser_r, self._to_browser_w = os.pipe()
        self._from_browser_r, self._from_browser_w = os.pipe()
        self._path = "/devtools/browser/" + secrets.token_hex(32)
        self._client = None
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    def child_fds(self) -> tuple[int, int]:
        """(the browser's read end, its write end): Popen's stdin and stdout
        for the start-up shell line in session.start_chromium, which moves
        them to fds 3 and 4 (Popen maps only 0-2)."""
        return self._to_browser_r, self._from_browser_w

    def started(self) -> None:
        """The child holds its ends: close ours, so the browser's exit is an
        end-of-file here and a closed WebSocket for Playwright."""
        for fd in (self._to_browser_r, self._from_browser_w):
            os.close(fd)
        self._to_browser_r = self._from_browser_w = -1

    def serve(self) -> str:
        """Start the relay; the WebSocket address to give Playwright."""
        from websockets.sync.server import serve

        # No compression (CPU for nothing on loopback), no size cap (a page
        # result can be megabytes), no keep-alive pings (a busy driver must
        # not be dropped; the browser's exit closes the socket instead).
        self._server = serve(self._relay, "127.0.0.1", 0, process_request=self._admit, compression=None,
                             max_size=None, ping_interval=None, server_header=None)
        self._thread = threading.Thread(target=self._server.serve_forever, name="devtools-pipe", daemon=True)
        self._thread.start()
        return f"ws://127.0.0.1:{self.port}{self._path}"

    @property
    def port(self) -> int:
        return self._server.socket.getsockname()[1] if self._server is not None else 0

    def _admit(self, connection, request):
        path = request.path.split("?", 1)[0]
        if not hmac.compare_digest(path.encode(), self._path.encode()):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        # A page of the browser itself could try to reach back: pages send
        # an Origin, Playwright's driver does not.
        if request.headers.get("Origin"):
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        with self._lock:
            if self._client is not None:
                return connection.respond(HTTPStatus.FORBIDDEN, "one client at a time\n")
            self._client = connection
        return None

    def _relay(self, ws) -> None:
        pump = threading.Thread(target=self._browser_to_client, args=(ws,), name="devtools-pipe-read", daemon=True)
        pump.start()
        try:
            for message in ws:
                data = (message if isinstance(message, bytes) else message.encode()) + _END
                view = memoryview(data)
                while view:
                    view = view[os.write(self._to_browser_w, view):]
        except Exception:
            pass  # the browser is gone (its read end closed) or the client dropped
        finally:
            ws.close()

    def _browser_to_client(self, ws) -> None:
        pending = bytearray()  # a message's start, until its NUL arrives
        try:
            while True:
                chunk = os.read(self._from_browser_r, 1 << 20)
                if not chunk:
                    break  # the browser exited
                start = 0
                end = chunk.find(_END)
                while end >= 0:
                    pending += chunk[start:end]
                    ws.send(pending.decode("utf-8"))
                    pending.clear()
                    start, end = end + 1, chunk.find(_END, end + 1)
                pending += chunk[start:]
        except Exception:
            pass  # the client went away; close below ends the relay
        finally:
            ws.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        for name in ("_to_browser_r", "_to_browser_w", "_from_browser_r", "_from_browser_w"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)
