"""The page server without a browser: what may be cached and what never is,
one URL per installed ONNX Runtime Web dist that changes with its files, a
rebind that leaves the last job's files unreachable, and Nagle's algorithm
off on every connection (with it on, each small response waited out the
client's delayed ACK)."""

from __future__ import annotations

import http.client
import json
import os
import socket

import numpy as np
import pytest


@pytest.fixture()
def dist(tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    (d / "ort.wasm.min.mjs").write_text("export const x = 1;\n")
    (d / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm" + bytes(4096))
    return d


def _get(srv, path):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_only_the_runtimes_files_are_cacheable_and_under_a_key_of_their_dist(tmp_path, dist):
    from agents.browser.server import PageServer

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model-bytes")
    srv = PageServer(ort_dist=dist, model_path=model, inputs=[{"x": np.arange(3, dtype=np.float32)}],
                     config={"bundle": "ort.wasm.min.mjs"})
    try:
        base = srv.config["ortBase"]
        assert base.startswith("/ort/") and base.endswith("/")
        status, headers, body = _get(srv, base + "ort-wasm-simd-threaded.wasm")
        assert status == 200 and body == (dist / "ort-wasm-simd-threaded.wasm").read_bytes()
        assert "immutable" in headers["Cache-Control"] and headers["Content-Type"] == "application/wasm"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        for path in ("/", "/job.json", "/model.onnx", "/in/0/x", "/harness/runner.js"):
            status, headers, _ = _get(srv, path)
            assert status == 200 and headers["Cache-Control"] == "no-store", path
        assert json.loads(_get(srv, "/job.json")[2])["ortBase"] == base
        # The old unkeyed path, an unknown key and a path out of the dist are refused.
        for path in ("/ort/ort.wasm.min.mjs", "/ort/0123456789abcdef/ort.wasm.min.mjs", base + "..%2Fdist"):
            assert _get(srv, path)[0] == 404, path
        # A file of the dist changed (reinstalled): a new URL, so no cache serves the old bytes.
        (dist / "ort.wasm.min.mjs").write_text("export const x = 22;\n")
        os.utime(dist / "ort.wasm.min.mjs", ns=(1, 1))
        srv.serve(ort_dist=dist, model_path=model, config={})
        assert srv.config["ortBase"] != base
        assert _get(srv, srv.config["ortBase"] + "ort.wasm.min.mjs")[2] == b"export const x = 22;\n"
        # Rebound to nothing (a kept server between sessions): the job's files are gone.
        srv.serve()
        assert _get(srv, "/model.onnx")[0] == 404 and _get(srv, "/in/0/x")[0] == 404
        assert json.loads(_get(srv, "/job.json")[2]) == {}
    finally:
        srv.close()


def test_every_connection_has_nagles_algorithm_off():
    from agents.browser.server import PageServer

    srv = PageServer()
    seen = []
    handler = srv.httpd.RequestHandlerClass
    setup = handler.setup

    def recording_setup(self):
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    handler.setup = recording_setup
    try:
        for _ in range(2):
            assert _get(srv, "/favicon.ico")[0] == 200
    finally:
        srv.close()
    assert len(seen) == 2 and all(seen), seen
