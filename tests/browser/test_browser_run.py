"""`harness run` through the real console script with the browser driver in
the embedded agent: the `local` cohort measures the host and the browser,
and two onnxruntime-web versions are two runtime targets of one run."""

from __future__ import annotations

import json

import browserkit as kit
from labkit import harness_cli


def run_ok(*args, cwd):
    p = harness_cli(*args, cwd=cwd, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def real_figures(r):
    assert r["error"] is None, r["error"]
    t = r["timing"]
    assert t["n"] == len(t["samples_ms"]) > 0
    assert t["load_ms"] > 0 and t["first_run_ms"] > 0 and 0 < t["p50_ms"] <= t["p90_ms"]
    assert r["memory"]["peak_bytes"] > 0 and r["memory"]["method"]
    assert r["placement"]["nodes_total"] > 0


def test_local_cohort_reports_host_and_browser(tmp_path):
    kit.need_browser()
    model = kit.cnn(tmp_path / "cnn.onnx")
    run_ok("run", "--cohort", "local", "--model", f"cnn={model}", "--out", tmp_path / "out", cwd=tmp_path)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    by_profile = {r["device"]["profile"]: r for r in doc["results"]}
    host, wasm = by_profile["host-cpu"], by_profile["chromium-wasm"]
    real_figures(host)
    real_figures(wasm)
    assert host["device"]["platform"] == "linux" and host["runtime"]["name"] == "onnxruntime"
    assert wasm["device"]["platform"] == "browser" and wasm["device"]["id"].startswith("browser:")
    assert wasm["runtime"]["name"] == "onnxruntime-web" and wasm["runtime"]["ep"] == "wasm"
    assert wasm["device"]["facts"]["browser"].split()[0] in ("Chromium", "Chrome")
    gpu = by_profile.get("chromium-webgpu")
    if gpu is not None and wasm["device"]["facts"].get("webgpu_adapter"):
        real_figures(gpu)
        assert gpu["runtime"]["ep"] == "webgpu"
        if wasm["device"]["facts"].get("webgpu_software") == "true":
            assert any("software adapter" in w for w in gpu["validity"]["warnings"])


def test_two_onnxruntime_web_versions_are_two_runtime_targets(tmp_path):
    kit.need_browser()
    kit.need_version(kit.SECOND_VERSION)
    from agents.browser import runtimes

    root = tmp_path / "profiles"
    (root / "devices").mkdir(parents=True)
    (root / "cohorts").mkdir()
    versions = [runtimes.DEFAULT_VERSION, kit.SECOND_VERSION]
    targets = "".join(f"  - {{runtime: onnxruntime-web, version: '{v}', ep: wasm}}\n" for v in versions)
    (root / "devices" / "chromium-versions.yaml").write_text(
        "id: chromium-versions\nplatform: browser\nmatch: {driver: browser}\ntargets:\n" + targets)
    (root / "cohorts" / "versions.yaml").write_text(
        "name: versions\ndevices: [chromium-versions]\n"
        "measure: {warmup_runs: 2, warmup_s: 0, min_runs: 60, min_s: 0, max_s: 5, target_ci: 0}\n")
    model = kit.cnn(tmp_path / "cnn.onnx")
    run_ok("run", "--cohort", root / "cohorts" / "versions.yaml", "--model", f"cnn={model}",
           "--out", tmp_path / "out", "--drivers", "browser", cwd=tmp_path)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = doc["results"]
    assert sorted(r["runtime"]["version"] for r in rows) == sorted(versions)
    assert len({r["target"] for r in rows}) == 2
    for r in rows:
        real_figures(r)
        assert r["details"]["ort_versions"]["web"] == r["runtime"]["version"]
        assert r["timing"]["n"] >= 60
