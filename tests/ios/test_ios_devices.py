"""The ios driver's inventory: why it is unavailable off macOS, and the
devices it builds from devicectl / simctl / sysctl outputs of a recorded Mac."""

from __future__ import annotations

import sys

import pytest

import ioskit

SIM_RUNTIME = "com.apple.CoreSimulator.SimRuntime.iOS-17-4"


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the answer a non-Mac host gives")
def test_devices_command_says_why_ios_is_unavailable_here():
    from typer.testing import CliRunner

    from harness.cli import app

    r = CliRunner().invoke(app, ["devices", "--drivers", "ios"])
    assert r.exit_code == 0, r.output
    assert "driver ios: unavailable — needs macOS with the Xcode command line tools" in r.output
    assert "Run `harness agent serve --drivers ios` on a Mac" in r.output
    assert "no devices" in r.output


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the answer a non-Mac host gives")
def test_driver_off_macos_is_unavailable_with_reason():
    import agents.ios

    ok, why = agents.ios.create({}).available()
    assert not ok and "needs macOS" in why and "coremltools" in why


def _driver(tmp_path, **kw):
    import agents.ios

    rec = ioskit.write_recording(tmp_path / "rec", sessions={}, **kw)
    return agents.ios.create({"backend": "recorded", "recording": str(rec), "work_dir": str(tmp_path / "w"),
                              **ioskit.SIGNING})


def test_mac_phones_and_simulators_with_facts_states_and_compute_units(tmp_path):
    old = ioskit.phone(udid="00008030-000A", product="iPhone13,2", marketing="iPhone 12", os="15.7", build="19H12")
    locked = ioskit.phone(udid="00008110-000B", tunnel="disconnected")
    dev_off = ioskit.phone(udid="00008110-000C", developer_mode="disabled")
    ipad = ioskit.phone(udid="00008103-000D", product="iPad13,4", marketing="iPad Pro (11-inch) (3rd generation)",
                        device_type="iPad")
    watch = ioskit.phone(udid="00008301-000E", product="Watch6,1", marketing="Apple Watch Series 7",
                         device_type="appleWatch")
    drv = _driver(tmp_path, phones=[ioskit.phone(), old, locked, dev_off, ipad, watch],
                  sims={SIM_RUNTIME: [ioskit.simulator()],
                        "com.apple.CoreSimulator.SimRuntime.watchOS-10-4": [ioskit.simulator(udid="W")]})
    devs = {d.local_id: d for d in drv.devices()}
    assert set(devs) == {"mac", "device-00008110-001A2B3C4D5E801E", "device-00008030-000A", "device-00008110-000B",
                         "device-00008110-000C", "device-00008103-000D", "sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"}

    mac = devs["mac"]
    assert mac.platform == "macos" and mac.state == "ready"
    assert {k: mac.facts[k] for k in ("model", "soc", "os_version", "ram_mb", "abi", "neural_engine")} == {
        "model": "Mac14,2", "soc": "Apple M2", "os_version": "macOS 14.5", "ram_mb": "16384", "abi": "arm64",
        "neural_engine": "yes"}
    coreml = next(r for r in mac.runtimes if r.name == "coreml")
    assert coreml.version == "14.5" and coreml.eps == ("all", "cpu_and_ne", "cpu_and_gpu", "cpu_only")
    assert coreml.formats == ("mlpackage.zip", "mlmodel")
    ort = next(r for r in mac.runtimes if r.name == "onnxruntime")  # this agent's ONNX Runtime, as the host runs it
    assert "cpu" in ort.eps

    phone = devs["device-00008110-001A2B3C4D5E801E"]
    assert phone.platform == "ios" and phone.state == "ready"
    assert {k: phone.facts[k] for k in ("model", "soc", "os_version", "ram_mb", "product_type", "simulator")} == {
        "model": "iPhone 13", "soc": "A15 Bionic", "os_version": "iOS 17.5.1", "ram_mb": "4096",
        "product_type": "iPhone14,5", "simulator": "no"}
    assert phone.runtimes[0].eps == ("all", "cpu_and_ne", "cpu_and_gpu", "cpu_only")
    assert phone.runtimes[0].version == "17.5.1"

    # iOS 15 has no cpuAndNeuralEngine compute units (new in iOS 16).
    assert devs["device-00008030-000A"].runtimes[0].eps == ("all", "cpu_and_gpu", "cpu_only")
    assert devs["device-00008110-000B"].state == "offline"
    assert "tunnel stayed disconnected" in devs["device-00008110-000B"].state_reason
    assert devs["device-00008110-000C"].state == "unauthorized"
    assert "Developer Mode is off" in devs["device-00008110-000C"].state_reason
    assert devs["device-00008103-000D"].facts["os_version"].startswith("iPadOS")

    sim = devs["sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"]
    assert sim.platform == "ios" and sim.state == "ready"
    assert sim.state_reason.startswith("function only — no Neural Engine")
    assert sim.facts["simulator"] == "yes" and sim.facts["neural_engine"] == "no"
    assert sim.facts["os_version"] == "iOS 17.4" and sim.facts["soc"] == "simulated on Apple M2"
    assert "cpu_and_ne" not in sim.runtimes[0].eps


def test_without_runner_app_support_phones_and_simulators_are_offline_with_reason(tmp_path):
    why = "coremltools' runner app project is missing"
    drv = _driver(tmp_path, phones=[ioskit.phone()], sims={SIM_RUNTIME: [ioskit.simulator()]}, remote=(False, why))
    devs = {d.local_id: d for d in drv.devices()}
    assert devs["mac"].state == "ready"  # the Mac runs Core ML in-process, no app needed
    phone = devs["device-00008110-001A2B3C4D5E801E"]
    assert (phone.state, phone.state_reason) == ("offline", why)
    sim = devs["sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"]
    assert sim.state == "offline" and why in sim.state_reason and "function only" in sim.state_reason


def test_a_failing_devicectl_is_a_note_on_the_mac_not_a_lost_inventory(tmp_path):
    import json

    drv = _driver(tmp_path, sims={SIM_RUNTIME: [ioskit.simulator()]})
    rec = json.loads(drv.backend.path.read_text())
    rec["devicectl"] = {"error": "`xcrun devicectl list` failed (exit 1): ERROR: The operation couldn't be completed"}
    drv.backend.path.write_text(json.dumps(rec))
    drv.backend.recording = rec
    devs = {d.local_id: d for d in drv.devices()}
    assert set(devs) == {"mac", "sim-8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F"}
    assert devs["mac"].facts["phones"].startswith("not listed: `xcrun devicectl list` failed")


def test_shipped_profiles_match_the_devices_they_describe(tmp_path):
    from harness.config.resolve import PROJECT_PROFILES, load_profile_file
    from harness.controller.connect import devices_from_describe
    from harness.controller.planner import device_matches, runtime_for
    from harness.kernel.wire import DEVICE_STATE_TO_PB
    from harness._proto.v1 import agent_pb2 as pb

    pro = ioskit.phone(udid="00008110-0PRO", product="iPhone14,2", marketing="iPhone 13 Pro")
    drv = _driver(tmp_path, phones=[ioskit.phone(), pro],
                  sims={SIM_RUNTIME: [ioskit.simulator(name="iPhone 13", type_id="iPhone-13")]})
    # The inventory as a controller sees it after Describe.
    resp = pb.DescribeResponse(devices=[pb.Device(
        id=f"ios:{d.local_id}", driver="ios", platform=d.platform, facts=dict(d.facts),
        runtimes=[pb.Runtime(name=r.name, version=r.version, eps=list(r.eps), formats=list(r.formats))
                  for r in d.runtimes],
        state=DEVICE_STATE_TO_PB[d.state], state_reason=d.state_reason) for d in drv.devices()])
    devices = devices_from_describe("lab-mac", resp)
    iphone13 = load_profile_file(PROJECT_PROFILES / "devices" / "iphone-13.yaml")
    matched = [d.id for d in devices if device_matches(iphone13, d)]
    assert matched == ["ios:device-00008110-001A2B3C4D5E801E"]  # not the 13 Pro, not the simulator
    for target in iphone13.targets:
        assert runtime_for(target, devices[[d.id for d in devices].index(matched[0])]) is not None
    mac = load_profile_file(PROJECT_PROFILES / "devices" / "mac-m1.yaml")
    m1 = resp.devices[0]
    m1.facts["soc"] = "Apple M1 Pro"
    assert [d.id for d in devices_from_describe("lab-mac", resp) if device_matches(mac, d)] == ["ios:mac"]
    assert not [d.id for d in devices if device_matches(mac, d)]  # an M2 is not an M1
