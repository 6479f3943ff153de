"""Builders for the ios tests: a small PyTorch model and its artefacts, and
the outputs of macOS tools and Core ML APIs in the shapes those return.

The tool outputs follow the documented structures: `devicectl list devices
--json-output` (`info` + `result.devices[]` with `deviceProperties`,
`hardwareProperties`, `connectionProperties`), `simctl list -j devices
booted` (`devices` keyed by runtime identifier), `sysctl` "name: value"
lines, `sw_vers` "Key:<tab>value" lines. Compute plans are written in the
recording format of agents.ios.recorded, which rebuilds them from
coremltools' own classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

INPUT_SHAPE = (1, 3, 16, 16)
# What a lab's agent.yaml gives the ios driver so phones can run coremltools'
# runner app (a team and a bundle identifier of its own).
SIGNING = {"development_team": "ABCDE12345", "bundle_identifier": "org.example.lab.modelrunner"}


def tiny_net(seed: int = 0):
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.conv(x)).mean((2, 3))
            return torch.softmax(self.fc(h), -1)

    torch.manual_seed(seed)
    return TinyNet().eval()


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_torchscript(model, path: Path) -> Path:
    import torch

    torch.jit.trace(model, torch.zeros(INPUT_SHAPE)).save(str(path))
    return path


def save_exported(model, path: Path) -> Path:
    import torch

    torch.export.save(torch.export.export(model, (torch.zeros(INPUT_SHAPE),)), str(path))
    return path


def save_onnx(model, path: Path) -> Path:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(INPUT_SHAPE),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17)
    return path


def to_mlpackage(model, path: Path, precision: str = "fp16", target: Optional[str] = "iOS16") -> Path:
    """Through the convert command's own functions (the same path as the CLI)."""
    from harness.coreml_convert import check_options, convert

    ts = save_torchscript(model, path.with_suffix(".ts"))
    plan = check_options(ts, path, precision, target, [f"x={'x'.join(map(str, INPUT_SHAPE))}"], ["y"], "fp32", True)
    convert(plan)
    return path


def torch_outputs(model, probes) -> list[dict]:
    import torch

    with torch.no_grad():
        return [{"y": model(torch.from_numpy(p["x"])).numpy()} for p in probes]


def probes(count: int = 3) -> list[dict]:
    from harness.probes import generate

    return generate([("x", "float32", INPUT_SHAPE)], count)


# --- macOS tool outputs -------------------------------------------------------------

def sysctl_text(model="Mac14,2", brand="Apple M2", memsize=17179869184, machine="arm64") -> str:
    return (f"hw.model: {model}\nhw.machine: {machine}\nmachdep.cpu.brand_string: {brand}\n"
            f"hw.memsize: {memsize}\n")


def sw_vers_text(version="14.5", build="23F79") -> str:
    return f"ProductName:\t\tmacOS\nProductVersion:\t\t{version}\nBuildVersion:\t\t{build}\n"


def phone(udid="00008110-001A2B3C4D5E801E", name="QA iPhone 13", product="iPhone14,5", marketing="iPhone 13",
          hw_model="D17AP", os="17.5.1", build="21F90", tunnel="connected", developer_mode="enabled",
          pairing="paired", device_type="iPhone") -> dict:
    return {
        "capabilities": [{"featureIdentifier": "com.apple.coredevice.feature.launchapplication",
                          "name": "Launch Application"}],
        "connectionProperties": {
            "authenticationType": "manualPairing", "isMobileDeviceOnly": False,
            "lastConnectionDate": "2025-05-12T09:41:00.000Z", "pairingState": pairing,
            "potentialHostnames": [f"{udid}.coredevice.local"], "transportType": "wired",
            "tunnelState": tunnel, "tunnelTransportProtocol": "tcp"},
        "deviceProperties": {
            "bootedFromSnapshot": True, "bootedSnapshotName": "com.apple.os.update-0A1B", "ddiServicesAvailable": True,
            "developerModeStatus": developer_mode, "hasInternalOSBuild": False, "name": name, "osBuildUpdate": build,
            "osVersionNumber": os, "rootFileSystemIsWritable": False},
        "hardwareProperties": {
            "cpuType": {"name": "arm64e", "subType": 2, "type": 16777228}, "deviceType": device_type,
            "ecid": 1234567890123456, "hardwareModel": hw_model, "internalStorageCapacity": 128000000000,
            "isProductionFused": True, "marketingName": marketing, "platform": "iOS", "productType": product,
            "reality": "physical", "serialNumber": "F2LXK0AAAAAA",
            "supportedCPUTypes": [{"name": "arm64e", "subType": 2, "type": 16777228}],
            "supportedDeviceFamilies": [1], "thinningProductType": product, "udid": udid},
        "identifier": "5B0D1C7E-2A43-4F8B-9E0F-1C2D3E4F5A6B",
        "visibilityClass": "default",
    }


def devicectl_json(devices: list) -> dict:
    return {"info": {"arguments": ["devicectl", "list", "devices", "--json-output", "/tmp/d.json"],
                     "commandType": "devicectl.list.devices", "environment": {"TERM": "xterm-256color"},
                     "jsonVersion": 2, "outcome": "success", "version": "397.21"},
            "result": {"devices": devices}}


def simulator(udid="8C1F4C2E-5B7A-4D3C-9E21-0A1B2C3D4E5F", name="iPhone 15", type_id="iPhone-15") -> dict:
    return {"lastBootedAt": "2025-05-12T09:00:00Z",
            "dataPath": f"/Users/lab/Library/Developer/CoreSimulator/Devices/{udid}/data",
            "dataPathSize": 18083840, "logPath": f"/Users/lab/Library/Logs/CoreSimulator/{udid}",
            "udid": udid, "isAvailable": True,
            "deviceTypeIdentifier": f"com.apple.CoreSimulator.SimDeviceType.{type_id}",
            "state": "Booted", "name": name}


def simctl_json(by_runtime: dict) -> dict:
    return {"devices": by_runtime}


# --- compute plans ------------------------------------------------------------------

def op(name: str, preferred: Optional[str], cost: Optional[float], supported=("cpu", "gpu", "neural_engine"),
       blocks=()) -> dict:
    return {"operator_name": name, "estimated_cost": cost,
            "device_usage": {"preferred": preferred, "supported": list(supported)} if preferred else None,
            "blocks": [{"operations": list(b)} for b in blocks]}


def program_plan(ops: list) -> dict:
    return {"program": {"functions": {"main": {"block": {"operations": ops}}}}}


# The plan Core ML gives TinyNet with the Neural Engine available: the
# softmax is left on the CPU, constants get no device usage.
TINY_PLAN_ALL = program_plan([
    op("const", None, None), op("const", None, None),
    op("ios16.cast", "neural_engine", 0.02), op("ios16.conv", "neural_engine", 0.55),
    op("ios16.relu", "neural_engine", 0.08), op("ios16.reduce_mean", "gpu", 0.10),
    op("ios16.linear", "neural_engine", 0.05), op("ios16.softmax", "cpu", 0.18, supported=("cpu", "gpu")),
    op("ios16.cast", "cpu", 0.02),
])
TINY_PLAN_CPU = program_plan([
    op("const", None, None), op("ios16.cast", "cpu", 0.05), op("ios16.conv", "cpu", 0.6), op("ios16.relu", "cpu", 0.05),
    op("ios16.reduce_mean", "cpu", 0.1), op("ios16.linear", "cpu", 0.1), op("ios16.softmax", "cpu", 0.05),
    op("ios16.cast", "cpu", 0.05),
])


def write_recording(folder: Path, *, sessions: dict, outputs: Optional[dict] = None, phones=(), sims=None,
                    remote=(True, ""), sw_vers: Optional[str] = None, **extra) -> Path:
    """A recording file (and its outputs.npz: feed key -> outputs). `extra`:
    `wakes` (devicectl identifier -> the tunnel state waking it gives),
    `xcode` ({"devicectl": path or None}), `coremltools` (its version)."""
    from agents.ios.recorded import feed_key

    folder.mkdir(parents=True, exist_ok=True)
    sessions = {k: ({"outputs": "outputs.npz", **v} if outputs else v) for k, v in sessions.items()}
    if outputs:
        arrays = {}
        for feed, outs in outputs:
            for name, value in outs.items():
                arrays[f"{feed_key(feed)}/{name}"] = value
        np.savez(folder / "outputs.npz", **arrays)
    rec = {"sysctl": sysctl_text(), "sw_vers": sw_vers or sw_vers_text(), "hostname": "lab-mac",
           "devicectl": devicectl_json(list(phones)), "simctl": simctl_json(sims or {}),
           "remote_support": list(remote), "sessions": sessions, **extra}
    path = folder / "recording.json"
    path.write_text(json.dumps(rec, indent=1))
    return path
