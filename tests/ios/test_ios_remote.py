"""Phones and simulators through coremltools' remote-device code, over a
recorded runner app: the app answers coremltools' own JSON-RPC file protocol
(requests/messages, requests/resources, responses under
Documents/modelrunnerd, as modelrunner/ModelRunner/DeviceCtl.swift reads and
writes them) with recorded results, takes the compiled `.mlmodelc` folder
the Mac sends, and can answer late, as a busy phone does. What a lab must
have for phones (signing, devicectl on PATH, a woken tunnel, coremltools >=
8.3, macOS 14.4 for plans) is checked before a job and shown as the device's
state."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import ioskit

SIM = "com.apple.CoreSimulator.SimRuntime.iOS-17-4"
SIM_ID = "sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"
PHONE = "device-00008110-001A2B3C4D5E801E"
SIGNING = ioskit.SIGNING
POLICY = dict(warmup_runs=1, warmup_s=0, min_runs=3, min_s=0, max_s=10, target_ci=0)


@pytest.fixture(scope="module")
def packed(tiny, tmp_path_factory):
    import os

    from harness.artefacts import zip_package
    from harness.kernel.modelfile import sha256_file

    d = tmp_path_factory.mktemp("packed")
    os.environ["HARNESS_CACHE"] = str(d / "cache")
    try:
        z = zip_package(tiny["mlpackage"])
    finally:
        del os.environ["HARNESS_CACHE"]
    probes = ioskit.probes(2)
    return {"zip": z, "digest": sha256_file(z), "probes": probes,
            "outs": ioskit.torch_outputs(tiny["model"], probes)}


def _driver(tmp_path, packed, *, config=None, sessions=None, **rec):
    import agents.ios

    session = {"load": {"load_ms": 38.0}, "predict_ms": [2.0, 1.5, 1.4, 1.3, 1.2],
               "compute_plan": ioskit.TINY_PLAN_ALL}
    path = ioskit.write_recording(tmp_path / "rec", outputs=list(zip(packed["probes"], packed["outs"])),
                                  sessions=sessions or {"*": session},
                                  phones=rec.pop("phones", [ioskit.phone()]),
                                  sims=rec.pop("sims", {SIM: [ioskit.simulator()]}), **rec)
    cfg = {"backend": "recorded", "recording": str(path), "work_dir": str(tmp_path / "work"), **(config or {})}
    return agents.ios.create(cfg)


def _job(packed, device, ep="all", timeout_s=120):
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from harness.kernel.measure.policy import MeasurePolicy

    return JobSpec(f"job-{device}-{ep}", device, (ModelFile(packed["digest"], "mlpackage.zip", packed["zip"]),),
                   RuntimeTarget("coreml", "", ep), MeasurePolicy(**POLICY), tuple(packed["probes"]), timeout_s)


def _run(drv, job):
    return drv.run(job, lambda *a: None, threading.Event())


# -- the simulator transport ------------------------------------------------------------------
def test_the_simulator_transport_copies_the_compiled_model_folder(tmp_path):
    # coremltools sends MLModelService.Load's resource, the compiled .mlmodelc
    # folder, with session.send_file_to_app (remote_device.py _DeviceCtlSocket.send).
    import subprocess
    import sys

    from agents.ios.remote import SimulatorAppSession

    compiled = tmp_path / "model.mlmodelc"
    (compiled / "weights").mkdir(parents=True)
    (compiled / "model.mil").write_text("program(1.0)\n")
    (compiled / "coremldata.bin").write_bytes(b"\x01\x02")
    (compiled / "weights" / "weight.bin").write_bytes(b"\0" * 64)
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        session = SimulatorAppSession(app, tmp_path / "container", "org.example.app", tmp_path / "sessions")
        dest = "Documents/modelrunnerd/requests/resources/1/model.mlmodelc"
        session.send_file_to_app(compiled, dest)
        got = tmp_path / "container" / dest
        assert got.is_dir() and (got / "model.mil").read_text() == "program(1.0)\n"
        assert (got / "weights" / "weight.bin").stat().st_size == 64
    finally:
        app.kill()
        app.wait()


def test_a_simulator_job_runs_through_the_runner_app(tmp_path, packed):
    drv = _driver(tmp_path, packed)
    drv.devices()
    res = _run(drv, _job(packed, SIM_ID))
    assert res.error is None, res.error
    load = res.details["load"]
    assert load["load_ms"] == 38.0 and "runner app reports" in load["method"]
    assert load["sent"] == "model.mlmodelc/"  # the compiled folder, as coremltools sends it
    assert res.samples_ms == (1.5, 1.4, 1.3)  # Core ML's durations as the app reports them, after the first run
    assert res.placement is not None and res.placement.source == "plan"
    assert res.placement.nodes_by_ep == {"cpu": 2, "gpu": 1, "neural_engine": 4}
    assert len(res.outputs) == 2


# -- coremltools' 20 x 0.5 s poll budget --------------------------------------------------------
SLOW_S = 10.5  # past coremltools' 20 receive attempts 0.5 s apart (remote_device.py _DeviceCtlRemoteService)


def test_coremltools_own_poll_gives_up_on_an_answer_after_ten_seconds(tmp_path):
    import asyncio

    from coremltools.models.ml_program.experimental import remote_device as rd

    from agents.ios.recorded_app import RecordedApp

    with RecordedApp.start(tmp_path, {"load": {"load_ms": 5.0}, "respond_after_s": {"MLModelService.Load": SLOW_S}},
                           base=tmp_path) as app:
        device = app.device("iPhone 15")
        loop = asyncio.new_event_loop()
        try:
            t0 = time.monotonic()
            with pytest.raises(rd._DeviceCtlError):
                loop.run_until_complete(rd._RemoteMLModelService.load_on_device(
                    device=device, compiled_model_path=app.compiled_stub(tmp_path / "c"),
                    compute_units=rd._ComputeUnit.ALL))
            assert time.monotonic() - t0 < SLOW_S
        finally:
            loop.close()


def test_a_slow_answer_is_waited_for_up_to_the_job_deadline(tmp_path, packed):
    drv = _driver(tmp_path, packed, sessions={"*": {"load": {"load_ms": 38.0}, "predict_ms": [2.0, 1.5],
                                                    "respond_after_s": {"MLModelService.Load": SLOW_S}}})
    drv.devices()
    t0 = time.monotonic()
    res = _run(drv, _job(packed, SIM_ID))
    assert res.error is None, res.error
    assert time.monotonic() - t0 >= SLOW_S
    assert res.details["load"]["load_ms"] == 38.0 and "runner app reports" in res.details["load"]["method"]


# -- phones: tunnel, signing, devicectl ------------------------------------------------------------
def test_an_idle_phones_disconnected_tunnel_is_woken_before_listing(tmp_path, packed):
    idle = ioskit.phone(tunnel="disconnected")
    drv = _driver(tmp_path, packed, config=SIGNING, phones=[idle], wakes={idle["identifier"]: "connected"})
    devs = {d.local_id: d for d in drv.devices()}
    assert devs[PHONE].state == "ready", devs[PHONE].state_reason
    assert drv.backend.woken == [idle["identifier"]]
    asleep = ioskit.phone(udid="00008110-0000SLEEP", tunnel="disconnected")
    asleep["identifier"] = "9C3E0000-0000-4000-8000-000000000001"
    drv2 = _driver(tmp_path / "2", packed, config=SIGNING, phones=[asleep])
    dev = {d.local_id: d for d in drv2.devices()}["device-00008110-0000SLEEP"]
    assert dev.state == "offline" and "stayed disconnected" in dev.state_reason and "unlock" in dev.state_reason


def test_phones_need_a_signing_team_and_a_bundle_identifier(tmp_path, packed):
    unsigned = {d.local_id: d for d in _driver(tmp_path, packed).devices()}
    assert unsigned[PHONE].state == "offline"
    assert "ios.development_team" in unsigned[PHONE].state_reason
    assert "ios.bundle_identifier" in unsigned[PHONE].state_reason
    assert unsigned[SIM_ID].state == "ready"  # simulators run the app unsigned
    res = _run(_driver(tmp_path / "u", packed), _job(packed, PHONE))
    assert res.error is not None and res.error.kind == "device_not_ready" and "development_team" in res.error.message
    signed = {d.local_id: d for d in _driver(tmp_path / "s", packed, config=SIGNING).devices()}
    assert signed[PHONE].state == "ready"


def test_phones_need_devicectl_which_coremltools_runs_without_xcrun(tmp_path, packed):
    drv = _driver(tmp_path, packed, config=SIGNING, xcode={"devicectl": None})
    dev = {d.local_id: d for d in drv.devices()}[PHONE]
    assert dev.state == "offline" and "devicectl" in dev.state_reason and "xcrun --find devicectl" in dev.state_reason


def test_the_runner_gets_devicectls_folder_on_path(tmp_path, monkeypatch):
    from agents.ios.macos import MacOSBackend

    tools = tmp_path / "Xcode.app" / "Contents" / "Developer" / "usr" / "bin"
    tools.mkdir(parents=True)
    (tools / "devicectl").write_text("#!/bin/sh\nexit 0\n")
    (tools / "devicectl").chmod(0o755)
    fake = tmp_path / "bin"
    fake.mkdir()
    # xcrun as the Xcode command line tools install it answers --find.
    (fake / "xcrun").write_text(f"#!/bin/sh\n[ \"$1\" = --find ] && [ \"$2\" = devicectl ] && "
                                f"echo {tools}/devicectl && exit 0\nexit 72\n")
    (fake / "xcrun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    env = MacOSBackend().runner_env()
    assert env["PATH"].split(":")[0] == str(tools)


# -- coremltools and macOS versions ---------------------------------------------------------
def test_coremltools_versions_name_what_they_lack():
    from agents.ios.backend import coremltools_gaps

    assert coremltools_gaps("9.0") == []
    assert any("8.3" in g and "phones and simulators" in g for g in coremltools_gaps("8.2"))
    gaps = coremltools_gaps("8.0")
    assert any("8.1" in g and "compute plan" in g for g in gaps) and any("8.3" in g for g in gaps)


def test_a_missing_runner_app_project_points_at_the_macos_wheel(tmp_path, monkeypatch):
    import agents.ios.macos as macos

    monkeypatch.setattr(macos, "coremltools_dir", lambda: tmp_path)
    monkeypatch.setattr(macos, "coremltools_version", lambda: "8.3")
    ok, why = macos.MacOSBackend().remote_support()
    assert not ok and "source checkout" not in why
    assert "macOS wheel" in why and "coremltools>=8.3" in why


def test_pyproject_pins_the_coremltools_that_has_the_remote_runner():
    import tomllib

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "coremltools>=8.3" in project["optional-dependencies"]["ios"]


def test_remote_plans_need_the_mac_on_macos_14_4_too(tmp_path, packed):
    drv = _driver(tmp_path, packed, config=SIGNING, sw_vers=ioskit.sw_vers_text(version="14.2", build="23C64"))
    drv.devices()
    res = _run(drv, _job(packed, PHONE))
    assert res.error is None, res.error
    assert res.placement is None
    missing = " ".join(res.details["not_measured"])
    assert "the Mac runs macOS 14.2" in missing and "14.4" in missing and "MLModelStructure" in missing


def test_remote_plans_on_a_recent_mac_and_phone(tmp_path, packed):
    drv = _driver(tmp_path, packed, config=SIGNING)
    drv.devices()
    res = _run(drv, _job(packed, PHONE))
    assert res.error is None, res.error
    assert res.placement is not None and res.placement.source == "plan"
    assert res.placement.nodes_by_ep == {"cpu": 2, "gpu": 1, "neural_engine": 4}
    assert json.dumps(res.details["compute_plan"])  # plain values only
