"""What a phone is and the state it is in, from the text its tools print.

Pure parsers: `getprop` (`[key]: [value]` lines), /proc/meminfo,
`dumpsys battery` (BatteryService's dump: `  level: 87`, `  temperature: 315`
in tenths of a degree), `dumpsys thermalservice` (ThermalManagerService's
dump, Android 10+: `Thermal Status: N` and `Temperature{mValue=.., mType=..,
mName=.., mStatus=..}` lines), /sys/class/thermal zones (millidegrees) and
cpufreq limits (to find the big cores).
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

# PowerManager.THERMAL_STATUS_* (android.os.PowerManager).
THERMAL_STATUS = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}
# At SEVERE the platform itself throttles hard (PowerManager docs): a
# benchmark there measures the throttling, not the model.
TOO_HOT_STATUS = 3
# android.os.Temperature.TYPE_*.
TEMPERATURE_TYPES = {0: "cpu", 1: "gpu", 2: "battery", 3: "skin", 4: "usb_port", 5: "power_amplifier",
                     6: "bcl_voltage", 7: "bcl_current", 8: "bcl_percentage", 9: "npu"}
# BatteryManager.BATTERY_STATUS_*.
BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not_charging", 5: "full"}

_PROP = re.compile(r"^\[([^\]]+)\]:\s*\[(.*)\]\s*$")
_TEMP = re.compile(r"Temperature\{mValue=([-\d.eE]+|NaN), mType=(-?\d+), mName=([^,]*), mStatus=(-?\d+)\}")


def parse_getprop(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in text.splitlines():
        m = _PROP.match(line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


def mem_total_kb(text: str) -> Optional[int]:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


# ro.soc.model / ro.soc.manufacturer are Build.SOC_MODEL / SOC_MANUFACTURER,
# added in API level 31, Android 12 (developer.android.com/sdk/api_diff/31).
SOC_MODEL_SINCE_SDK = 31


def soc_of(props: Mapping[str, str]) -> tuple[str, str]:
    """(soc, the property it came from). ro.soc.model where Android has it
    (API 31+); before that the same order on every phone, board platform
    then hardware, so phones of one Android release are matched alike."""
    sdk = props.get("ro.build.version.sdk", "")
    keys = ("ro.board.platform", "ro.hardware")
    if not sdk.isdigit() or int(sdk) >= SOC_MODEL_SINCE_SDK:
        keys = ("ro.soc.model",) + keys
    for key in keys:
        if props.get(key):
            return props[key], key
    return "", ""


def online_cpus(text: str) -> Optional[int]:
    """CPUs in /sys/devices/system/cpu/online ("0-7", "0-3,6-7"): what
    std::thread::hardware_concurrency() counts on Android."""
    n = 0
    for part in text.strip().split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return None
        n += int(hi or lo) - int(lo) + 1
    return n or None


def device_facts(props: Mapping[str, str], meminfo: str, serial: str) -> dict[str, str]:
    """The facts a device profile's `match:` selects on."""
    p = props.get
    soc, soc_source = soc_of(props)
    facts = {
        "model": p("ro.product.model", ""),
        "manufacturer": p("ro.product.manufacturer", ""),
        "brand": p("ro.product.brand", ""),
        "device": p("ro.product.device", ""),
        "soc": soc,
        "soc_source": soc_source,
        "soc_manufacturer": p("ro.soc.manufacturer", ""),
        "board_platform": p("ro.board.platform", ""),
        "hardware": p("ro.hardware", ""),
        "os_version": f"Android {p('ro.build.version.release', '?')}",
        "android_release": p("ro.build.version.release", ""),
        "sdk": p("ro.build.version.sdk", ""),
        "abi": p("ro.product.cpu.abi", ""),
        "abilist": p("ro.product.cpu.abilist", ""),
        "build_fingerprint": p("ro.build.fingerprint", ""),
        "serial": p("ro.serialno", "") or serial,
        "adb_serial": serial,
    }
    kb = mem_total_kb(meminfo)
    if kb:
        facts["ram_mb"] = str(kb // 1024)
    return {k: v for k, v in facts.items() if v}


def parse_battery(text: str) -> dict:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    out: dict = {}
    if fields.get("level", "").lstrip("-").isdigit():
        scale = int(fields["scale"]) if fields.get("scale", "").isdigit() and int(fields["scale"]) else 100
        out["level_pct"] = round(int(fields["level"]) * 100 / scale, 1)
    if fields.get("temperature", "").lstrip("-").isdigit():
        out["temperature_c"] = int(fields["temperature"]) / 10.0
    if fields.get("status", "").isdigit():
        out["status"] = BATTERY_STATUS.get(int(fields["status"]), fields["status"])
    powered = [k.split()[0].lower() for k in ("AC powered", "USB powered", "Wireless powered")
               if fields.get(k) == "true"]
    if fields:
        out["powered"] = ",".join(powered) or "none"
    return out


def parse_thermalservice(text: str) -> dict:
    """Thermal status and the HAL's current temperatures (°C by sensor)."""
    out: dict = {}
    m = re.search(r"^Thermal Status:\s*(\d+)", text, re.M)
    if m:
        out["status"] = int(m.group(1))
        out["status_name"] = THERMAL_STATUS.get(int(m.group(1)), m.group(1))
    # Prefer the HAL's current readings; the cached ones may be stale.
    section = text.split("Current temperatures from HAL:", 1)
    body = section[1] if len(section) == 2 else text
    temps: dict[str, float] = {}
    types: dict[str, str] = {}
    for value, kind, name, _status in _TEMP.findall(body):
        if value == "NaN" or name in temps:
            continue
        temps[name] = float(value)
        types[name] = TEMPERATURE_TYPES.get(int(kind), kind)
    if temps:
        out["temperatures_c"] = temps
        out["types"] = types
    return out


def parse_thermal_zones(text: str) -> dict[str, float]:
    """Lines `<zone path> <type> <millidegrees>` -> {"zoneN:type": °C}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            continue
        milli = int(parts[2])
        # Some kernels report whole degrees; a phone is never at 200 °C.
        celsius = milli / 1000.0 if abs(milli) > 200 else float(milli)
        out[f"{parts[0].rsplit('/', 1)[-1]}:{parts[1]}"] = celsius
    return out


def big_core_mask(text: str) -> tuple[str, list[int]]:
    """From lines `<cpu index> <cpuinfo_max_freq kHz>`: the hex taskset mask
    of the fastest cluster and its cpu indices ('' when unknown)."""
    freqs: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            freqs[int(parts[0])] = int(parts[1])
    if not freqs:
        return "", []
    top = max(freqs.values())
    cpus = sorted(c for c, f in freqs.items() if f == top)
    return format(sum(1 << c for c in cpus), "x"), cpus


def conditions(battery: dict, thermal: dict, zones: Mapping[str, float]) -> dict:
    """One snapshot of the run conditions, in the shape results carry
    (`thermal_c` is what the result record's validity.thermal shows)."""
    cond: dict = {}
    if battery:
        cond["battery"] = battery
    temps = dict(thermal.get("temperatures_c") or {}) or dict(zones)
    if temps:
        cond["thermal_c"] = temps
    if "status" in thermal:
        cond["thermal_status"] = thermal["status"]
        cond["thermal_status_name"] = thermal["status_name"]
    if thermal.get("types"):
        cond["thermal_types"] = thermal["types"]
    return cond


def gate_temperature(cond: dict, sensor: str) -> Optional[float]:
    """The temperature a cooldown gate watches: 'battery' (BatteryService's,
    present on every phone), 'max' (hottest sensor), a sensor type ('skin',
    'cpu') or a sensor name."""
    temps: dict = cond.get("thermal_c") or {}
    if sensor == "battery":
        value = (cond.get("battery") or {}).get("temperature_c")
        if value is not None:
            return float(value)
        sensor = "battery"
    if sensor == "max":
        return max(temps.values()) if temps else None
    if sensor in temps:
        return float(temps[sensor])
    types = cond.get("thermal_types") or {}
    matching = [temps[n] for n, t in types.items() if t == sensor and n in temps]
    return max(matching) if matching else None
