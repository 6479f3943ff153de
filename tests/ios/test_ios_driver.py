"""Jobs through the ios driver on a recorded Mac: the runner child process,
the artefact unpacking, measurement, memory, compute-plan placement,
outputs, simulator and phone caveats, and ONNX Runtime on the Mac."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest

import ioskit

SIM = "com.apple.CoreSimulator.SimRuntime.iOS-17-4"
PHONE_OLD = "00008110-OLDIOS"
POLICY = dict(warmup_runs=2, warmup_s=0, min_runs=5, min_s=0, max_s=10, target_ci=0)


@pytest.fixture(scope="module")
def lab(tiny, tmp_path_factory):
    import os

    import agents.ios
    from harness.artefacts import zip_package
    from harness.kernel.modelfile import sha256_file

    d = tmp_path_factory.mktemp("lab")
    os.environ["HARNESS_CACHE"] = str(d / "cache")
    try:
        packed = zip_package(tiny["mlpackage"])
    finally:
        del os.environ["HARNESS_CACHE"]
    probes = ioskit.probes(3)
    outs = ioskit.torch_outputs(tiny["model"], probes)
    session = {"load": {"load_ms": 41.5, "compile_ms": 30.0}, "predict_ms": [2.5, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5]}
    rec = ioskit.write_recording(
        d / "rec", outputs=list(zip(probes, outs)),
        sessions={"all": {**session, "compute_plan": ioskit.TINY_PLAN_ALL},
                  "cpu_only": {**session, "compute_plan": ioskit.TINY_PLAN_CPU},
                  f"device-{PHONE_OLD}/all": {**session, "compute_plan": ioskit.TINY_PLAN_ALL}},
        phones=[ioskit.phone(), ioskit.phone(udid=PHONE_OLD, os="17.0.3", build="21A360")],
        sims={SIM: [ioskit.simulator()]})
    drv = agents.ios.create({"backend": "recorded", "recording": str(rec), "work_dir": str(d / "work"),
                             **ioskit.SIGNING})
    drv.devices()
    return {"driver": drv, "zip": packed, "digest": sha256_file(packed), "probes": probes, "outs": outs, "dir": d}


def _job(lab, device, ep="all", runtime="coreml", models=None, probes=None):
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from harness.kernel.measure.policy import MeasurePolicy

    models = models or (ModelFile(lab["digest"], "mlpackage.zip", lab["zip"]),)
    return JobSpec(f"job-{device}-{ep}", device, models, RuntimeTarget(runtime, "", ep), MeasurePolicy(**POLICY),
                   tuple(probes or lab["probes"]), 120)


def _run(lab, job):
    events = []
    res = lab["driver"].run(job, lambda phase, n, s: events.append(phase), threading.Event())
    return res, events


def test_core_ml_job_on_the_mac(lab):
    res, events = _run(lab, _job(lab, "mac"))
    assert res.error is None, res.error
    assert (res.runtime_name, res.runtime_version, res.ep) == ("coreml", "14.5", "all")
    assert res.load_ms == 41.5 and res.first_run_ms == 2.5
    assert res.samples_ms == (1.9, 1.8, 1.7, 1.6, 1.5)  # after the first run and one more warm-up
    assert res.validity.stop_reason == "min_reached" and res.validity.warnings == ()
    # Core ML runs inside the runner on the Mac, so its peak memory is the runner's.
    assert res.memory.peak_bytes > 0 and "ru_maxrss of the runner process" in res.memory.method
    p = res.placement
    assert (p.source, p.nodes_total, p.cpu_fallback_nodes) == ("plan", 7, 2)
    assert p.fallback_op_types == {"cast": 1, "softmax": 1}
    assert res.details["compute_plan"]["without_device_usage"] == {"const": 2}
    assert len(res.outputs) == 3
    for got, want in zip(res.outputs, lab["outs"]):
        assert np.array_equal(got["y"], want["y"])
    assert {"load", "probes", "placement"} <= set(events)


def test_simulator_results_carry_the_not_representative_warning(lab):
    res, _ = _run(lab, _job(lab, "sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F", ep="cpu_only"))
    assert res.error is None, res.error
    assert res.runtime_version == "17.4"
    assert any(w.startswith("simulator: function only — no Neural Engine") for w in res.validity.warnings)
    assert res.placement.nodes_by_ep == {"cpu": 7} and res.placement.cpu_fallback_nodes == 0
    assert res.memory is None  # the simulator's app is not the runner process
    assert len(res.outputs) == 3


def test_phone_reports_what_it_could_not_measure(lab):
    res, _ = _run(lab, _job(lab, f"device-{PHONE_OLD}"))
    assert res.error is None, res.error
    assert res.samples_ms and res.memory is None and res.placement is None
    missing = res.details["not_measured"]
    assert "memory: the on-device runner app reports no memory figures" in missing
    assert "placement: Core ML's compute plan needs iOS 17.4+, this device runs iOS 17.0.3" in missing
    assert any(w.startswith("remote device: samples are the prediction times") for w in res.validity.warnings)
    assert any("not measured: placement" in w for w in res.validity.warnings)


def test_refusals_are_results_not_exceptions(lab, tmp_path):
    from agents.contract import ModelFile

    sim = "sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"
    res, _ = _run(lab, _job(lab, sim, ep="cpu_and_ne"))
    assert res.error.kind == "unsupported_ep" and "offered: all, cpu_and_gpu, cpu_only" in res.error.message
    onnx = ModelFile("0" * 64, "onnx", tmp_path / "m.onnx")
    res, _ = _run(lab, _job(lab, "mac", models=(onnx,)))
    assert res.error.kind == "unsupported_format" and "Core ML needs an .mlpackage or .mlmodel" in res.error.message
    res, _ = _run(lab, _job(lab, sim, runtime="onnxruntime", ep="cpu"))
    assert res.error.kind == "unsupported_target"
    res, _ = _run(lab, _job(lab, "device-gone"))
    assert res.error.kind == "unknown_device"
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.mlpackage/Manifest.json", "{}")
    res, _ = _run(lab, _job(lab, "mac", models=(ModelFile("1" * 64, "mlpackage.zip", evil),)))
    assert (res.error.stage, res.error.kind) == ("load", "model_invalid")
    assert "would land outside the job folder" in res.error.message


def test_onnx_runtime_on_the_mac_runs_as_the_host_driver_does(lab, tiny):
    from agents.contract import ModelFile
    from harness.kernel.modelfile import sha256_file

    onnx = tiny["onnx"]
    res, _ = _run(lab, _job(lab, "mac", runtime="onnxruntime", ep="cpu",
                            models=(ModelFile(sha256_file(onnx), "onnx", onnx),)))
    assert res.error is None, res.error
    assert res.runtime_name == "onnxruntime" and len(res.samples_ms) >= 5
    assert res.placement is not None and res.placement.source != "plan"  # ONNX Runtime's own log and profile
    assert res.placement.nodes_by_ep.get("cpu") == res.placement.nodes_total
    for got, want in zip(res.outputs, lab["outs"]):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)


def test_jobs_on_the_macs_chip_wait_for_each_other_within_their_time_limit(lab):
    import dataclasses

    drv = lab["driver"]
    sim = "sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"
    assert drv._mac_busy.acquire(timeout=5)  # another job holds the Mac
    try:
        phases = []
        res = drv.run(dataclasses.replace(_job(lab, sim), timeout_s=0.3), lambda p, n, s: phases.append(p),
                      threading.Event())
        assert (res.error.kind, res.validity.stop_reason) == ("timeout", "error")
        assert phases == ["waiting for the Mac"]
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        res = drv.run(_job(lab, "mac"), lambda *a: None, cancel)
        assert res.error.kind == "cancelled" and "another job used this Mac's chip" in res.error.message
    finally:
        drv._mac_busy.release()
