"""Devices from what macOS tools print: pure functions over raw outputs.

* the Mac itself: `sysctl hw.model hw.machine machdep.cpu.brand_string
  hw.memsize` ("name: value" lines) and `sw_vers` ("Key:<tabs>value" lines);
* iPhones and iPads: `xcrun devicectl list devices --json-output FILE`
  (`result.devices[]` with `identifier`, `deviceProperties`,
  `hardwareProperties`, `connectionProperties`);
* booted simulators: `xcrun simctl list -j devices booted`
  (`devices: {runtime identifier: [{udid, name, state, ...}]}`).

Kept free of subprocesses so the parsing is tested with outputs shaped
exactly as those tools print them.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence

from agents.contract import AGENT_MACHINE, DeviceInfo, RuntimeSpec
from harness.kernel.formats import COREML_FORMATS

MAC_ID = "mac"
SIMULATOR_NOTE = "function only — no Neural Engine; simulator timings are not representative of a device"

# devicectl's productType -> (chip, RAM in MiB). Apple publishes the chip in
# each model's tech specs; it does not publish RAM, so the RAM figures are the
# widely reported teardown values. Unknown models simply lack these facts.
IPHONES: dict[str, tuple[str, int]] = {
    "iPhone13,1": ("A14 Bionic", 4096), "iPhone13,2": ("A14 Bionic", 4096),
    "iPhone13,3": ("A14 Bionic", 6144), "iPhone13,4": ("A14 Bionic", 6144),
    "iPhone14,4": ("A15 Bionic", 4096), "iPhone14,5": ("A15 Bionic", 4096),
    "iPhone14,2": ("A15 Bionic", 6144), "iPhone14,3": ("A15 Bionic", 6144),
    "iPhone14,6": ("A15 Bionic", 4096), "iPhone14,7": ("A15 Bionic", 6144),
    "iPhone14,8": ("A15 Bionic", 6144), "iPhone15,2": ("A16 Bionic", 6144),
    "iPhone15,3": ("A16 Bionic", 6144), "iPhone15,4": ("A16 Bionic", 6144),
    "iPhone15,5": ("A16 Bionic", 6144), "iPhone16,1": ("A17 Pro", 8192),
    "iPhone16,2": ("A17 Pro", 8192), "iPhone17,3": ("A18", 8192),
    "iPhone17,4": ("A18", 8192), "iPhone17,1": ("A18 Pro", 8192),
    "iPhone17,2": ("A18 Pro", 8192),
}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or "")[:3])


def compute_units_for(os_name: str, version: str, neural_engine: bool) -> tuple[str, ...]:
    """Compute units Core ML accepts on this OS. `cpuAndNeuralEngine` is new
    in iOS 16 / macOS 13 (MLComputeUnits documentation); without a Neural
    Engine it is not offered at all."""
    first = version_tuple(version)[:1] or (0,)
    ne_since = 16 if os_name == "iOS" else 13
    units = ["all", "cpu_and_gpu", "cpu_only"]
    if neural_engine and first[0] >= ne_since:
        units.insert(1, "cpu_and_ne")
    return tuple(units)


def parse_keyed_lines(text: str) -> dict[str, str]:
    """`sysctl a b` ("a: 1") and `sw_vers` ("ProductVersion:\t14.5") output."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def mac_device(sysctl_text: str, sw_vers_text: str, extra_runtimes: Sequence[RuntimeSpec] = (),
               hostname: str = "", notes: Mapping[str, str] | None = None) -> DeviceInfo:
    sc = parse_keyed_lines(sysctl_text)
    sw = parse_keyed_lines(sw_vers_text)
    brand = sc.get("machdep.cpu.brand_string", "")
    version = sw.get("ProductVersion", "")
    apple_silicon = brand.startswith("Apple")
    facts = {
        "model": sc.get("hw.model", ""),
        "soc": brand,
        "os_version": f"{sw.get('ProductName', 'macOS')} {version}".strip(),
        "os_build": sw.get("BuildVersion", ""),
        "abi": sc.get("hw.machine", ""),
        "neural_engine": "yes" if apple_silicon else "no",
        "simulator": "no",
        "kind": "mac",
    }
    try:
        facts["ram_mb"] = str(int(sc.get("hw.memsize", "")) // (1024 * 1024))
    except ValueError:
        pass
    if hostname:
        facts["hostname"] = hostname
    facts.update(notes or {})
    coreml = RuntimeSpec("coreml", version, compute_units_for("macOS", version, apple_silicon), COREML_FORMATS)
    return DeviceInfo(local_id=MAC_ID, platform="macos", facts={k: v for k, v in facts.items() if v != ""},
                      runtimes=(coreml, *extra_runtimes), exclusive=AGENT_MACHINE)


def listed_phones(devicectl: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The iPhones and iPads of `devicectl list devices` JSON (watches, TVs,
    headsets: Core ML runs there, this driver does not)."""
    return [dev for dev in (devicectl.get("result") or {}).get("devices") or []
            if str((dev.get("hardwareProperties") or {}).get("deviceType", "")).lower() in ("iphone", "ipad")]


def phone_devices(devicectl: Mapping[str, Any], remote: tuple[bool, str] = (True, ""),
                  woken: frozenset = frozenset()) -> list[DeviceInfo]:
    """iPhones and iPads from `devicectl list devices` JSON. `remote` says
    whether this agent can drive coremltools' runner app on a phone (and
    why not); `woken` are the identifiers whose tunnel was just woken."""
    out = []
    for dev in listed_phones(devicectl):
        hw = dev.get("hardwareProperties") or {}
        props = dev.get("deviceProperties") or {}
        conn = dev.get("connectionProperties") or {}
        kind = str(hw.get("deviceType", ""))
        udid = str(hw.get("udid") or dev.get("identifier") or "")
        if not udid:
            continue
        product = str(hw.get("productType", ""))
        chip, ram = IPHONES.get(product, ("", 0))
        os_name = "iPadOS" if kind.lower() == "ipad" and hw.get("platform") == "iOS" else str(hw.get("platform") or "iOS")
        version = str(props.get("osVersionNumber", ""))
        cpu = (hw.get("cpuType") or {}).get("name", "")
        facts = {
            "model": str(hw.get("marketingName") or product or kind),
            "product_type": product,
            "hardware_model": str(hw.get("hardwareModel", "")),
            "soc": chip or cpu,
            "os_version": f"{os_name} {version}".strip(),
            "os_build": str(props.get("osBuildUpdate", "")),
            "abi": cpu,
            "name": str(props.get("name", "")),
            "udid": udid,
            "device_type": kind,
            "neural_engine": "yes" if chip else "unknown",
            "simulator": "no",
            "kind": "phone" if kind.lower() == "iphone" else "tablet",
            "transport": str(conn.get("transportType", "")),
            "devicectl_id": str(dev.get("identifier", "")),
        }
        if ram:
            facts["ram_mb"] = str(ram)
        state, reason = _phone_state(props, conn, remote, dev.get("identifier") in woken)
        units = compute_units_for("iOS", version, facts["neural_engine"] != "no")
        out.append(DeviceInfo(
            local_id=f"device-{udid}", platform="ios", facts={k: v for k, v in facts.items() if v != ""},
            runtimes=(RuntimeSpec("coreml", version, units, COREML_FORMATS),), state=state, state_reason=reason))
    return out


def _phone_state(props: Mapping, conn: Mapping, remote: tuple[bool, str], woken: bool = False) -> tuple[str, str]:
    pairing = conn.get("pairingState")
    if pairing is not None and pairing != "paired":
        return "unauthorized", f"not paired with this Mac (pairing state {pairing}); trust the Mac on the device"
    mode = props.get("developerModeStatus")
    if mode is not None and mode != "enabled":
        return "unauthorized", ("Developer Mode is off (Settings > Privacy & Security > Developer Mode); "
                                "the runner app cannot be installed")
    tunnel = str(conn.get("tunnelState", "unknown"))
    if tunnel != "connected":
        # coremltools' remote device only uses devices whose devicectl
        # tunnel is connected (Device.get_connected_devices).
        if woken:
            return "offline", (f"devicectl tunnel stayed {tunnel} after `devicectl device info details` tried to "
                               "open it: unlock the device and keep it on USB or the Mac's network")
        return "offline", f"devicectl tunnel is {tunnel}; unlock the device and keep it reachable"
    if not remote[0]:
        return "offline", remote[1]
    return "ready", ""


def simulator_devices(simctl: Mapping[str, Any], host_soc: str = "",
                      remote: tuple[bool, str] = (True, "")) -> list[DeviceInfo]:
    """Booted iOS simulators from `simctl list -j devices booted`."""
    out = []
    for runtime, devices in sorted((simctl.get("devices") or {}).items()):
        m = re.search(r"SimRuntime\.(iOS)-(\d+)-(\d+)(?:-(\d+))?$", runtime)
        if not m:
            continue  # watchOS / tvOS / visionOS runtimes
        version = ".".join(p for p in m.groups()[1:] if p)
        for d in devices or []:
            if d.get("state") != "Booted" or d.get("isAvailable") is False or not d.get("udid"):
                continue
            type_id = str(d.get("deviceTypeIdentifier", ""))
            facts = {
                "model": str(d.get("name", "")),
                "device_type": type_id.rsplit(".", 1)[-1],
                "soc": f"simulated on {host_soc}" if host_soc else "simulated",
                "os_version": f"iOS {version}",
                "udid": str(d["udid"]),
                "neural_engine": "no",
                "simulator": "yes",
                "kind": "simulator",
            }
            state, reason = ("ready", SIMULATOR_NOTE) if remote[0] else ("offline", f"{SIMULATOR_NOTE}; {remote[1]}")
            units = compute_units_for("iOS", version, neural_engine=False)
            out.append(DeviceInfo(
                local_id=f"sim-{d['udid']}", platform="ios", facts={k: v for k, v in facts.items() if v},
                runtimes=(RuntimeSpec("coreml", version, units, COREML_FORMATS),), state=state, state_reason=reason,
                exclusive=AGENT_MACHINE))  # a simulator computes on the Mac's own chip
    return out


def device_kind(dev: Optional[DeviceInfo]) -> str:
    return (dev.facts.get("kind") if dev else "") or ""


def limits_of(dev: DeviceInfo, mac_os_version: str) -> str:
    """What a Core ML device cannot measure here, and why (the `limits`
    fact `harness devices` prints)."""
    from agents.ios.backend import PLAN_SINCE

    kind = device_kind(dev)
    name = (dev.facts.get("os_version") or "").split(" ")[0]
    gaps = []
    if kind != "mac":
        gaps.append("peak memory (the runner app reports none)")
    need = PLAN_SINCE.get(name)
    have = version_tuple(dev.facts.get("os_version", ""))
    if need and have and have < need:
        gaps.append(f"placement (Core ML's compute plan needs {name} {'.'.join(map(str, need))}+)")
    mac = version_tuple(mac_os_version)
    if kind != "mac" and mac and mac < PLAN_SINCE["macOS"]:
        gaps.append("placement (a device's compute plan is read on the Mac, which needs macOS 14.4+)")
    if kind == "simulator":
        gaps.append("representative timing (" + SIMULATOR_NOTE + ")")
    return "; ".join(gaps)
