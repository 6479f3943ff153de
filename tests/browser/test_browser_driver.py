"""The browser driver against real headless Chromium and real onnxruntime-web:
devices and EPs, CPU fallback under WebGPU, output parity on wasm, and the
error rows (WebGL's unsupported operators, uncached versions, bad options)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import browserkit as kit
from agents.contract import JobSpec, ModelFile, RuntimeTarget
from harness.kernel.measure.policy import MeasurePolicy

# Small on purpose: the WebGPU adapter here is a software one (slow).
SMALL = MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=5, min_s=0, max_s=5, target_ci=0)


@pytest.fixture(scope="module")
def drv(tmp_path_factory):
    kit.need_browser()
    return kit.driver(str(tmp_path_factory.mktemp("browser-work")))


def run(drv, model, ep, probes, version="", options=None, policy=SMALL, timeout=120, job_id="t"):
    dev = drv.devices()[0]
    job = JobSpec(job_id=job_id, device_local_id=dev.local_id,
                  models=(ModelFile(kit.digest(model), "onnx", model),),
                  target=RuntimeTarget("onnxruntime-web", version, ep, options or {}),
                  measure=policy, probes=tuple(probes), timeout_s=timeout)
    phases = []
    res = drv.run(job, lambda phase, n, s: phases.append(phase), threading.Event())
    return res, phases


def test_device_reports_the_browser_and_the_eps_that_work(drv):
    from agents.browser import runtimes

    [dev] = drv.devices()
    assert dev.platform == "browser" and dev.state == "ready"
    f = dev.facts
    assert f["browser"].startswith(("Chromium ", "Chrome ")) and f["browser_version"].split(".")[0].isdigit()
    assert "Mozilla/5.0" in f["user_agent"] and f["cross_origin_isolated"] == "true"
    assert f["cpu"] and int(f["cpu_count"]) >= 1
    cached = [i.version for i in runtimes.cached()]
    assert [r.version for r in dev.runtimes] == cached
    for rt in dev.runtimes:
        assert rt.name == "onnxruntime-web" and rt.eps[0] == "wasm"
        # An EP is offered only where the probe found it working.
        assert ("webgpu" in rt.eps) == ("webgpu_adapter" in f)
        assert ("webgl" in rt.eps) == ("webgl_renderer" in f)
        assert ("webnn" in rt.eps) == (f["webnn"] == "available")
    if "webgpu_adapter" in f:
        assert f["webgpu_software"] in ("true", "false")
    # The probe is cached: a second call does not launch a browser again.
    assert drv.probe() is drv.probe()


def test_webgpu_reports_cpu_fallback_nodes_and_wasm_none(drv, tmp_path):
    from agents.browser import runtimes

    [dev] = drv.devices()
    rt = next(r for r in dev.runtimes if r.version == runtimes.DEFAULT_VERSION)
    if "webgpu" not in rt.eps:
        pytest.skip(f"no WebGPU adapter in this Chromium: {dev.facts.get('webgpu')}")
    model = kit.fallback_model(tmp_path / "fallback.onnx")
    probes = kit.vectors(2)
    lacks = kit.WEBGPU_LACKS[runtimes.DEFAULT_VERSION]
    # Each op appears once, except Mod (twice).
    expected = {op: (2 if op == "Mod" else 1) for op in lacks}

    res, phases = run(drv, model, "webgpu", probes, version=runtimes.DEFAULT_VERSION)
    assert res.error is None, res.error
    assert res.runtime_name == "onnxruntime-web" and res.runtime_version == runtimes.DEFAULT_VERSION
    p = res.placement
    assert p.fallback_op_types == expected
    assert p.cpu_fallback_nodes == sum(expected.values())
    assert p.nodes_total == 6  # model nodes; ORT's Memcpy nodes are not counted
    assert p.nodes_by_ep == {"cpu": sum(expected.values()), "webgpu": 6 - sum(expected.values())}
    assert p.fully_accelerated is False  # the strict probe refused the session
    assert "verbose log" in p.source
    assert set(p.time_share_by_ep) <= {"cpu", "webgpu"} and sum(p.time_share_by_ep.values()) == pytest.approx(1, abs=1e-3)
    assert len(res.samples_ms) >= 5 and res.load_ms > 0 and res.first_run_ms > 0
    assert res.details["bundle"] and res.options["num_threads"] == str(res.details["num_threads"])
    if drv.devices()[0].facts.get("webgpu_software") == "true":
        assert any("software adapter" in w for w in res.validity.warnings)
    assert phases[0] == "load" and "placement" in phases
    # The same model on wasm: everything on the CPU EP, which is no fallback.
    ref = [kit.reference(model, p) for p in probes]
    for out, want in zip(res.outputs, ref):
        np.testing.assert_allclose(out["y"], want["y"], rtol=1e-5)
        np.testing.assert_array_equal(out["idx"], want["idx"])
    wasm, _ = run(drv, model, "wasm", probes, version=runtimes.DEFAULT_VERSION)
    assert wasm.error is None, wasm.error
    # One kept browser serves both EPs, each session its own page and EP.
    assert wasm.details["browser"]["pid"] == res.details["browser"]["pid"]
    assert wasm.details["bundle"] != res.details["bundle"]
    assert wasm.placement.cpu_fallback_nodes == 0 and wasm.placement.fallback_op_types == {}
    assert wasm.placement.nodes_by_ep == {"cpu": 6}
    assert wasm.placement.fully_accelerated is None
    for out, want in zip(wasm.outputs, ref):
        np.testing.assert_array_equal(out["nz"], want["nz"])


def test_webgpu_fallback_differs_by_version(drv, tmp_path):
    kit.need_version(kit.SECOND_VERSION)
    [dev] = drv.devices()
    rt = next(r for r in dev.runtimes if r.version == kit.SECOND_VERSION)
    if "webgpu" not in rt.eps:
        pytest.skip("no WebGPU adapter in this Chromium")
    model = kit.fallback_model(tmp_path / "fallback.onnx")
    res, _ = run(drv, model, "webgpu", kit.vectors(1), version=kit.SECOND_VERSION)
    assert res.error is None, res.error
    assert res.runtime_version == kit.SECOND_VERSION
    lacks = kit.WEBGPU_LACKS[kit.SECOND_VERSION]
    assert res.placement.fallback_op_types == {op: (2 if op == "Mod" else 1) for op in lacks}


def test_a_later_session_runs_in_a_fresh_page_of_the_kept_browser_with_the_placement_known(drv, tmp_path):
    model = kit.cnn(tmp_path / "cnn.onnx", seed=7)  # a digest no other test uses
    first, phases1 = run(drv, model, "wasm", kit.images(2), job_id="later.s1")
    later, phases2 = run(drv, model, "wasm", kit.images(1), job_id="later.s2")
    assert first.error is None and later.error is None, (first.error, later.error)
    b1, b2 = first.details["browser"], later.details["browser"]
    assert b1["pid"] == b2["pid"] and b2["pages_before"] > b1["pages_before"]
    assert later.details["browser_start"] == "kept"
    # The placement pass ran once; the later session reports the same one, from the cache.
    assert "placement" in phases1 and "placement" not in phases2
    assert "placement" in first.details["timeline_s"] and "placement" not in later.details["timeline_s"]
    assert later.details["placement_from"].endswith("(later.s1)") and "placement_from" not in first.details
    assert later.placement == first.placement and later.placement.nodes_total > 0
    # ONNX Runtime Web's files came from the kept profile's HTTP cache, and
    # the record says so per file; the timer step was measured once.
    files = later.details["ort_web_files"]
    assert any(f.endswith(".wasm") for f in files) and set(files.values()) == {"cache"}, files
    assert later.details["timer_resolution_from"] == "an earlier page of this browser"
    assert later.details["timer_resolution_ms"] == first.details["timer_resolution_ms"] > 0
    # Another thread count is another target: its placement is learnt again.
    threads = "2" if first.options["num_threads"] != "2" else "1"
    other, phases3 = run(drv, model, "wasm", kit.images(1), options={"num_threads": threads}, job_id="later.t1")
    assert other.error is None and "placement" in phases3 and "placement_from" not in other.details
    assert len(later.samples_ms) >= 5 and later.load_ms > 0


def test_without_a_kept_browser_each_session_starts_its_own(tmp_path):
    kit.need_browser()
    from agents.browser import create

    spawned = create({"work_dir": str(tmp_path), "keep_browser": False})
    try:
        model = kit.nonzero_model(tmp_path / "nz.onnx")
        a, _ = run(spawned, model, "wasm", kit.vectors(1), job_id="spawn.1")
        b, _ = run(spawned, model, "wasm", kit.vectors(1), job_id="spawn.2")
        assert a.error is None and b.error is None, (a.error, b.error)
        assert a.details["browser_start"] == b.details["browser_start"] == "spawn"
        assert a.details["browser"]["kept"] is False and a.details["browser"]["pid"] != b.details["browser"]["pid"]
        assert b.placement == a.placement and b.details["placement_from"].endswith("(spawn.1)")
        # A browser of its own has nothing cached and measures its timer itself.
        for r in (a, b):
            assert set(r.details["ort_web_files"].values()) == {"network"}, r.details["ort_web_files"]
            assert r.details["timer_resolution_from"] == "this page"
    finally:
        spawned.close()


def test_cnn_outputs_on_wasm_match_onnxruntime_cpu(drv, tmp_path):
    model = kit.cnn(tmp_path / "cnn.onnx")
    probes = kit.images(4)
    res, _ = run(drv, model, "wasm", probes, options={"num_threads": "2"})
    assert res.error is None, res.error
    assert res.options["num_threads"] == "2" and res.details["num_threads"] == 2
    assert res.details["cross_origin_isolated"] is True
    assert len(res.outputs) == len(probes)
    # Tolerance: fp32 kernels differ in summation order and vectorisation
    # between ORT's native and WebAssembly builds; 1e-5 absolute on logits of
    # magnitude ~1 and on probabilities is far below any decision boundary.
    for out, probe in zip(res.outputs, probes):
        want = kit.reference(model, probe)
        for name in ("logits", "probs"):
            assert out[name].dtype == np.float32 and out[name].shape == want[name].shape
            np.testing.assert_allclose(out[name], want[name], atol=1e-5, rtol=1e-5)
        assert out["probs"].argmax() == want["probs"].argmax()
    m = res.memory
    assert m.peak_bytes > 0 and m.delta_bytes >= 0 and "wasm memory" in m.method and "JSHeapUsedSize" in m.method
    # Placement counts the optimised graph (Conv+Relu fuse), all on the CPU EP.
    assert list(res.placement.nodes_by_ep) == ["cpu"] and 1 <= res.placement.nodes_total <= 9
    assert res.placement.cpu_fallback_nodes == 0
    assert res.validity.warmup_done and res.validity.min_runs_met and res.validity.stop_reason == "min_reached"


def test_op_unsupported_on_webgl_is_an_error_row_with_the_runtimes_message(drv, tmp_path):
    [dev] = drv.devices()
    if not any("webgl" in r.eps for r in dev.runtimes):
        pytest.skip(f"no WebGL2 context in this Chromium: {dev.facts.get('webgl')}")
    model = kit.nonzero_model(tmp_path / "nz.onnx")
    res, _ = run(drv, model, "webgl", kit.vectors(1))
    assert res.error is not None
    assert res.error.stage == "load" and res.error.kind == "unsupported_op"
    assert "NonZero" in res.error.message and "cannot resolve operator" in res.error.message
    assert res.samples_ms == () and res.load_ms is None


def test_uncached_version_names_the_install_command(drv, tmp_path):
    model = kit.nonzero_model(tmp_path / "nz.onnx")
    res, _ = run(drv, model, "wasm", kit.vectors(1), version="0.9.9")
    assert res.error.kind == "runtime_missing"
    assert "harness browser-runtime install 0.9.9" in res.error.message


def test_bad_target_options_are_refused_before_launch(drv, tmp_path):
    model = kit.nonzero_model(tmp_path / "nz.onnx")
    res, phases = run(drv, model, "wasm", kit.vectors(1), options={"threads": "2"})
    assert res.error.kind == "bad_option" and "'threads'" in res.error.message and "num_threads" in res.error.message
    res, phases = run(drv, model, "wasm", kit.vectors(1), options={"num_threads": "many"})
    assert res.error.kind == "bad_option" and "num_threads='many'" in res.error.message
    assert phases == []
    res, _ = run(drv, model, "webnn-ish", kit.vectors(1))
    assert res.error.kind == "unsupported_ep"
    [dev] = drv.devices()
    if dev.facts["webnn"] != "available":
        # Offered nowhere, refused with the browser's own reason.
        res, _ = run(drv, model, "webnn", kit.vectors(1))
        assert res.error.kind == "unsupported_ep" and dev.facts["webnn"].split(": ", 1)[1] in res.error.message


def test_agent_offers_only_the_configured_versions(tmp_path):
    kit.need_browser()
    kit.need_version(kit.SECOND_VERSION)
    from agents.browser import create, runtimes

    restricted = create({"onnxruntime_web": [runtimes.DEFAULT_VERSION], "work_dir": str(tmp_path)})
    model = kit.nonzero_model(tmp_path / "nz.onnx")
    job = JobSpec(job_id="t", device_local_id="chromium", models=(ModelFile(kit.digest(model), "onnx", model),),
                  target=RuntimeTarget("onnxruntime-web", kit.SECOND_VERSION, "wasm", {}),
                  measure=SMALL, probes=tuple(kit.vectors(1)), timeout_s=60)
    res = restricted.run(job, lambda *a: None, threading.Event())
    assert res.error.kind == "runtime_missing"
    assert f"{kit.SECOND_VERSION} is cached but this agent offers only {runtimes.DEFAULT_VERSION}" in res.error.message
