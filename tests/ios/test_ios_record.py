"""What the record says about Core ML: the deployment targets coremltools
knows by every name, and peak memory with its blind spot named and kept out
of cross-platform comparison."""

from __future__ import annotations

import threading

import pytest

import ioskit


def test_a_macos_deployment_target_is_accepted(tmp_path):
    # coremltools' AvailableTarget has macOS14 as an alias of iOS17
    # (converters/mil/_deployment_compatibility.py): same spec version, 8.
    from harness.kernel.coreml_spec import inspect_coreml

    out = ioskit.to_mlpackage(ioskit.tiny_net(), tmp_path / "mac.mlpackage", target="macOS14")
    spec = inspect_coreml(out)
    assert spec.spec_version == 8 and spec.deployment_target == "iOS17"


def test_an_unknown_deployment_target_lists_every_name(tmp_path):
    from harness.kernel.configfile import ConfigError

    with pytest.raises(ConfigError) as exc:
        ioskit.to_mlpackage(ioskit.tiny_net(), tmp_path / "bad.mlpackage", target="macOS99")
    assert "macOS14" in str(exc.value) and "watchOS10" in str(exc.value) and "iOS17" in str(exc.value)


@pytest.fixture(scope="module")
def mac_run(tiny, tmp_path_factory):
    import os

    import agents.ios
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from harness.artefacts import zip_package
    from harness.kernel.measure.policy import MeasurePolicy
    from harness.kernel.modelfile import sha256_file

    d = tmp_path_factory.mktemp("memory")
    os.environ["HARNESS_CACHE"] = str(d / "cache")
    try:
        packed = zip_package(tiny["mlpackage"])
    finally:
        del os.environ["HARNESS_CACHE"]
    probes = ioskit.probes(1)
    rec = ioskit.write_recording(d / "rec", outputs=list(zip(probes, ioskit.torch_outputs(tiny["model"], probes))),
                                 sessions={"all": {"load": {"load_ms": 30.0}, "predict_ms": [2.0, 1.0]}})
    drv = agents.ios.create({"backend": "recorded", "recording": str(rec), "work_dir": str(d / "work")})
    drv.devices()
    job = JobSpec("mem", "mac", (ModelFile(sha256_file(packed), "mlpackage.zip", packed),),
                  RuntimeTarget("coreml", "", "all"),
                  MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=3, min_s=0, max_s=5, target_ci=0), tuple(probes), 60)
    return drv.run(job, lambda *a: None, threading.Event())


def test_core_ml_peak_memory_names_its_method_and_blind_spot(mac_run):
    res = mac_run
    assert res.error is None, res.error
    assert "ru_maxrss of the runner process" in res.memory.method
    assert "Neural Engine" in res.memory.blind_spot and "Metal" in res.memory.blind_spot


def test_the_blind_spot_travels_over_the_wire_into_the_record(mac_run):
    from harness.kernel import wire

    got = wire.result_from_pb(wire.result_to_pb(mac_run, "ios:mac", 0.0, 1.0))
    assert got["memory"]["blind_spot"] == mac_run.memory.blind_spot
    assert got["memory"]["method"] == mac_run.memory.method


def _row(platform, runtime, ep, peak_mb, blind_spot=""):
    return {"device": {"profile": f"{platform}-dev", "id": f"{platform}:1", "platform": platform},
            "candidate": "student", "job": f"{platform}-{ep}",
            "runtime": {"name": runtime, "version": "1", "ep": ep},
            "timing": {"p50_ms": 1.0, "p90_ms": 1.2, "n": 10},
            "memory": {"peak_bytes": int(peak_mb * 2 ** 20), "delta_bytes": 0, "method": "m",
                       "blind_spot": blind_spot}}


def test_the_report_marks_core_ml_memory_as_not_comparable():
    from harness.report.cells import HEADER, memory_caveats, summary_rows

    rows = [_row("macos", "coreml", "all", 40.0, "Neural Engine memory is outside the runner"),
            _row("android", "onnxruntime", "cpu", 55.0)]
    cells = summary_rows(rows)
    peak = HEADER.index("peak MB")
    assert cells[0][peak] == "40.0 †" and cells[1][peak] == "55.0"
    [caveat] = memory_caveats(rows)
    assert caveat.startswith("† macos coreml") and "not comparable" in caveat and "Neural Engine" in caveat
