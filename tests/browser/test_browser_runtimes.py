"""The onnxruntime-web cache, the CLI over it, and the driver's pure parts
(configuration, availability, console and profile parsing). No browser."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agents.browser import runtimes
from agents.browser.driver import BrowserDriver
from agents.browser.readings import profile_events as _profile_events
from agents.browser.runner import classify
from agents.browser.session import Console


def fake_version(root: Path, version: str, bundles=("ort.wasm.min.mjs", "ort.webgpu.min.mjs"), complete=True) -> Path:
    d = root / version
    (d / "dist").mkdir(parents=True)
    for b in bundles:
        (d / "dist" / b).write_text("// bundle")
    (d / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": version}))
    if complete:
        (d / runtimes.MARKER).write_text(json.dumps({"version": version}))
    return d


def test_cache_lists_complete_versions_and_finds_by_prefix(tmp_path):
    fake_version(tmp_path, "1.22.0")
    fake_version(tmp_path, "1.22.1")
    fake_version(tmp_path, "1.30.0", bundles=("ort.all.min.mjs",))
    fake_version(tmp_path, "1.31.0", complete=False)  # interrupted install
    assert [i.version for i in runtimes.cached(tmp_path)] == ["1.22.0", "1.22.1", "1.30.0"]
    assert runtimes.find("1.22", tmp_path).version == "1.22.1"
    assert runtimes.find("1.22.0", tmp_path).version == "1.22.0"
    assert runtimes.find("", tmp_path).version == "1.30.0"
    assert runtimes.find("1.2", tmp_path) is None  # a prefix is whole components
    assert runtimes.find("1.31.0", tmp_path) is None
    inst = runtimes.find("1.22.0", tmp_path)
    assert runtimes.bundle_for(inst, "wasm") == "ort.wasm.min.mjs"
    assert runtimes.bundle_for(inst, "webgl") is None
    assert runtimes.eps_of(inst) == ("wasm", "webgpu")
    # ort.all carries every backend.
    assert runtimes.eps_of(runtimes.find("1.30.0", tmp_path)) == ("wasm", "webgpu", "webgl", "webnn")
    assert runtimes.bundle_for(inst, "wasm", "ort.webgpu.min.mjs") == "ort.webgpu.min.mjs"
    assert runtimes.bundle_for(inst, "wasm", "../../etc/passwd") is None


def test_version_order_puts_releases_above_their_prereleases():
    vs = ["1.30.0", "1.9.0", "1.30.0-dev.20250101", "1.22.1", "1.100.0"]
    assert sorted(vs, key=runtimes.version_key) == ["1.9.0", "1.22.1", "1.30.0-dev.20250101", "1.30.0", "1.100.0"]


def test_install_of_a_cached_version_is_a_no_op_and_bad_specs_are_refused(tmp_path):
    fake_version(tmp_path, "1.30.0")
    inst = runtimes.install("1.30.0", tmp_path)
    assert inst.version == "1.30.0" and inst.fetched is False
    with pytest.raises(runtimes.InstallError, match=r"version 'x;y': expected a version such as"):
        runtimes.install("x;y", tmp_path)


def _member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_extract_keeps_the_bundles_and_nothing_outside_the_version_folder(tmp_path):
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        _member(tf, "package/package.json", b'{"name": "onnxruntime-web", "version": "9.0.0"}')
        _member(tf, "package/dist/ort.wasm.min.mjs", b"//js")
        _member(tf, "package/dist/ort-wasm-simd-threaded.wasm", b"\0asm")
        _member(tf, "package/dist/ort.wasm.min.mjs.map", b"{}")
        _member(tf, "package/dist/ort.node.min.mjs", b"//node")
        _member(tf, "package/lib/index.js", b"//src")
        _member(tf, "package/dist/../../escape.txt", b"x")
    dest = tmp_path / "out"
    n = runtimes._extract(tgz, dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["dist/ort-wasm-simd-threaded.wasm", "dist/ort.wasm.min.mjs", "package.json"]
    assert n == 3 and not (tmp_path / "escape.txt").exists()


def cli(*args, cache: Path):
    env = dict(os.environ, HARNESS_CACHE=str(cache))
    exe = Path(sys.executable).parent / "harness"
    return subprocess.run([str(exe), "browser-runtime", *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_lists_and_skips_what_is_cached(tmp_path):
    fake_version(tmp_path / "ort-web", runtimes.DEFAULT_VERSION)
    fake_version(tmp_path / "ort-web", "1.22.0", bundles=("ort.wasm.min.mjs",))
    p = cli("list", "--json", cache=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [v["version"] for v in doc["versions"]] == ["1.22.0", runtimes.DEFAULT_VERSION]
    assert doc["versions"][0]["eps"] == ["wasm"] and doc["versions"][1]["default"] is True
    p = cli("install", "--default", cache=tmp_path)
    assert p.returncode == 0 and "already cached" in p.stdout
    p = cli("install", "not-a-version", cache=tmp_path)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "'not-a-version'" in p.stderr
    p = cli("install", cache=tmp_path)
    assert p.returncode == 2 and "--default" in p.stderr
    p = cli("list", cache=tmp_path / "empty")
    assert p.returncode == 0 and "harness browser-runtime install --default" in p.stdout


def test_driver_config_and_availability_reasons(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'exectuable'"):
        BrowserDriver({"exectuable": "/usr/bin/chromium"})
    with pytest.raises(ValueError, match="onnxruntime_web: expected a list"):
        BrowserDriver({"onnxruntime_web": "1.30.0"})
    ok, why = BrowserDriver({"executable": str(tmp_path / "no-chrome")}).available()
    assert not ok and "no-chrome" in why and "apt-get install chromium" in why
    from agents.browser import locate

    if locate.find_chromium().path:
        ok, why = BrowserDriver({"runtime_cache": str(tmp_path / "empty")}).available()
        assert not ok and "harness browser-runtime install --default" in why
        fake_version(tmp_path / "c", "1.22.0")
        ok, why = BrowserDriver({"runtime_cache": str(tmp_path / "c"), "onnxruntime_web": ["1.30"]}).available()
        assert not ok and "harness browser-runtime install 1.30" in why


def test_console_errors_exclude_ort_log_below_error_level():
    c = Console()
    c.add("error", "2026-01-01 10:00:00.000001 [V:onnxruntime:, session_state.cc:1 Fn]  Node(s) placed on [X]")
    c.add("error", "\x1b[0;93m2026-01-01 10:00:00.000002 [W:onnxruntime:, session_state.cc:2 Fn] Some nodes\x1b[m")
    c.add("log", "__harness_mark__ a")
    c.add("error", "2026-01-01 10:00:00.000003 [E:onnxruntime:, inference_session.cc:3 Fn] broken")
    c.add("error", "Uncaught TypeError: x is undefined")
    c.add("log", "__harness_mark__ b")
    c.add("warning", "a warning")
    assert c.errors_since(0) == [
        "2026-01-01 10:00:00.000003 [E:onnxruntime:, inference_session.cc:3 Fn] broken",
        "Uncaught TypeError: x is undefined",
    ]
    assert c.errors_since(4) == ["Uncaught TypeError: x is undefined"]
    assert [t for _, t in c.between("a", "b")] == [c.lines[3][1], c.lines[4][1]]
    assert c.lines[1][1].startswith("2026") and "\x1b" not in c.lines[1][1]


def test_profile_events_parse_from_console_lines():
    ev = {"cat": "Node", "name": "relu_kernel_time", "dur": 5, "args": {"provider": "CPUExecutionProvider", "op_name": "Relu"}}
    lines = [("log", "["), ("log", json.dumps(ev) + ","), ("log", json.dumps({"cat": "Session", "name": "model_run"})),
             ("log", "]")]
    assert _profile_events(lines)[0] == ev and len(_profile_events(lines)) == 2
    assert _profile_events([("log", json.dumps([ev]))]) == [ev]


def test_runtime_messages_classify():
    assert classify("TypeError: cannot resolve operator 'TopK' with opsets: ai.onnx v17") == "unsupported_op"
    assert classify("Error: no available backend found. ERR: [webgpu] ...") == "unsupported_ep"
    assert classify("Can't create a session. failed to load model: protobuf parsing failed") == "model_invalid"
    assert classify("Error: something else") == "runtime_error"
