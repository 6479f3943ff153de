"""The page's origin: a loopback HTTP server for one job (or one probe).

Serves the static page, one onnxruntime-web version's bundles, the model
bytes from the agent's cache, the probe inputs, and takes the probe outputs
back. Every response carries COOP/COEP (and CORP) so the page is
cross-origin isolated: SharedArrayBuffer, and so threaded WebAssembly, needs
it (https://web.dev/articles/coop-coep), and it also gives performance.now()
its fine resolution. Bound to 127.0.0.1 on an ephemeral port.

ONNX Runtime Web's files are served under /ort/<key>/, the key naming one
installed dist/ (its path and its files' sizes and times), with
`Cache-Control: immutable`: a kept browser's pages live in its persistent
profile (agents.browser.session), whose disk cache keeps the 11-14 MB
ort-wasm-*.wasm and with it V8's code cache of the compiled module (kept for
modules over 128 KB compiled with instantiateStreaming, as ORT Web's are:
v8.dev/blog/wasm-code-caching). Measured on Chromium 156: a page's ORT Web
start fell from 0.72 s to 0.42 s, its renderer's CPU from 0.86 s to 0.39 s.
An incognito-style browser context would not do: its in-memory cache keeps
no entry that large (the wasm was fetched anew by every page of one). The
page records whether its runtime came from the cache (runner.js). Everything
else (the job, the model, probe inputs and outputs, the harness's own page)
is `no-store`: one URL serves a different job each session.

One server per kept browser, rebound to each session (`serve`), so its pages
share one origin and so one cache partition and URL per file; sessions are
kept apart by clearing the origin's storage before each page
(session.BrowserPage). Nagle's algorithm is off: a response's headers and
body are two writes, and with it on every small file waited out the
browser's delayed ACK (about 45 ms a request on Linux loopback, nine
requests a session).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
import urllib.parse
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

PAGE_DIR = Path(__file__).resolve().parent / "page"
_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".wasm": "application/wasm", ".json": "application/json",
}


def dist_key(dist: Path) -> str:
    """A name for one installed dist/ that changes when its files do: the
    cache must never serve one release's files for another's URL."""
    h = hashlib.sha256(str(dist).encode())
    for entry in sorted(os.scandir(dist), key=lambda e: e.name):
        st = entry.stat()
        h.update(f"|{entry.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class PageServer:
    """A ThreadingHTTPServer in a daemon thread; `url` is its origin."""

    def __init__(self, ort_dist: Optional[Path] = None, model_path: Optional[Path] = None,
                 extra_files: Optional[Mapping[str, bytes]] = None,
                 inputs: Optional[list[Mapping[str, np.ndarray]]] = None,
                 config: Optional[dict] = None):
        self._lock = threading.Lock()
        self._dists: dict[str, Path] = {}
        self.serve(ort_dist, model_path, extra_files, inputs, config)
        handler = _make_handler(self)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # shutdown() waits for the loop to look again: at its default 0.5 s
        # poll that was a quarter of a kept browser's session overhead.
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="page-server", daemon=True)
        self._thread.start()

    def serve(self, ort_dist: Optional[Path] = None, model_path: Optional[Path] = None,
              extra_files: Optional[Mapping[str, bytes]] = None,
              inputs: Optional[list[Mapping[str, np.ndarray]]] = None,
              config: Optional[dict] = None) -> None:
        """What the next page gets: one session's job. `config["ortBase"]`
        is set to where this dist's files are."""
        with self._lock:
            self.model_path = model_path
            self.extra = dict(extra_files or {})
            self.inputs = list(inputs or [])
            self.config = dict(config or {})
            self.outputs: dict[int, dict[str, np.ndarray]] = {}
            self.requests: list[str] = []
            if ort_dist is not None:
                dist = ort_dist.resolve()
                key = dist_key(dist)
                self._dists[key] = dist
                self.config["ortBase"] = f"/ort/{key}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def put_output(self, index: int, name: str, array: np.ndarray) -> None:
        with self._lock:
            self.outputs.setdefault(index, {})[name] = array


def _make_handler(srv: PageServer) -> Callable:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # socketserver.StreamRequestHandler sets TCP_NODELAY when this is
        # true (Lib/socketserver.py, every Python 3 release): see above.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # quiet: the runner's stdout is its progress channel
            pass

        def _headers(self, status: int, ctype: str, length: int, immutable: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "public, max-age=31536000, immutable" if immutable else "no-store")
            self.end_headers()

        def _bytes(self, data: bytes, ctype: str = "application/octet-stream", status: int = 200) -> None:
            self._headers(status, ctype, len(data))
            self.wfile.write(data)

        def _file(self, path: Path, immutable: bool = False) -> None:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self._headers(200, _TYPES.get(path.suffix, "application/octet-stream"), size, immutable)
                self.connection.sendfile(fh)  # os.sendfile where the platform has it

        def _not_found(self) -> None:
            self._bytes(b"not found", "text/plain", 404)

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            srv.requests.append(path)
            parts = [urllib.parse.unquote(p) for p in path.split("/")[1:]]
            try:
                if path in ("/", "/index.html"):
                    return self._file(PAGE_DIR / "index.html")
                if path == "/favicon.ico":
                    return self._bytes(b"", "image/x-icon", 200)
                if path == "/job.json":
                    return self._bytes(json.dumps(srv.config).encode(), _TYPES[".json"])
                if len(parts) == 2 and parts[0] == "harness":
                    return self._static(PAGE_DIR, parts[1])
                if len(parts) == 3 and parts[0] == "ort" and parts[1] in srv._dists:
                    return self._static(srv._dists[parts[1]], parts[2], immutable=True)
                if path == "/model.onnx" and srv.model_path is not None:
                    return self._file(Path(srv.model_path))
                if len(parts) == 1 and parts[0] in srv.extra:
                    return self._bytes(srv.extra[parts[0]])
                if len(parts) == 3 and parts[0] == "in" and parts[1].isdigit():
                    idx = int(parts[1])
                    if idx < len(srv.inputs) and parts[2] in srv.inputs[idx]:
                        arr = np.ascontiguousarray(srv.inputs[idx][parts[2]])
                        return self._bytes(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
                return self._not_found()
            except (BrokenPipeError, ConnectionResetError):
                return None

        def _static(self, root: Path, name: str, immutable: bool = False) -> None:
            target = (root / name).resolve()
            if target.parent != root.resolve() or not target.is_file():
                return self._not_found()
            return self._file(target, immutable)

        def do_POST(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in split.path.split("/")[1:]]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if len(parts) != 3 or parts[0] != "out" or not parts[1].isdigit():
                return self._not_found()
            q = urllib.parse.parse_qs(split.query)
            try:
                dtype = _np_dtype(q.get("dtype", [""])[0])
                shape_text = q.get("shape", [""])[0]
                shape = tuple(int(d) for d in shape_text.split(",") if d != "")
                arr = np.frombuffer(body, dtype=dtype).reshape(shape).copy()
            except (ValueError, TypeError) as exc:
                return self._bytes(f"bad output: {exc}".encode(), "text/plain", 400)
            srv.put_output(int(parts[1]), parts[2], arr)
            return self._bytes(b"ok", "text/plain")

    return Handler


# ORT Web's tensor type names -> numpy (little-endian, as typed arrays are on
# every platform browsers run on).
_ORT_TO_NP = {
    "float32": "<f4", "float64": "<f8", "float16": "<f2", "int8": "i1", "uint8": "u1", "int16": "<i2",
    "uint16": "<u2", "int32": "<i4", "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "bool": "?",
}


def _np_dtype(name: str) -> np.dtype:
    if name not in _ORT_TO_NP:
        raise ValueError(f"unsupported tensor type {name!r}")
    return np.dtype(_ORT_TO_NP[name])
