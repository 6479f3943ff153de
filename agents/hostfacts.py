"""What a host is and the state it is in: facts for Describe, conditions for
each job (load, frequency governor, temperatures where readable)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_version() -> str:
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}"
    try:
        info = platform.freedesktop_os_release()
        return f"{info.get('PRETTY_NAME', 'Linux')} (kernel {platform.release()})"
    except (OSError, AttributeError):
        return f"{platform.system()} {platform.release()}"


def host_facts() -> dict[str, str]:
    import psutil

    facts = {
        "model": _cpu_model(),
        "soc": _cpu_model(),
        "os_version": _os_version(),
        "abi": platform.machine(),
        "ram_mb": str(psutil.virtual_memory().total // (1024 * 1024)),
        "cpu_count": str(os.cpu_count() or 0),
        "cpu_cores": str(psutil.cpu_count(logical=False) or 0),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    gov = _governor()
    if gov:
        facts["cpu_governor"] = gov
    return facts


def _governor() -> str:
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _temperatures() -> dict[str, float]:
    out: dict[str, float] = {}
    base = Path("/sys/class/thermal")
    try:
        zones = sorted(base.glob("thermal_zone*"))
    except OSError:
        return out
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip()
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        out[f"{zone.name}:{kind}"] = milli / 1000.0
    return out


def run_conditions() -> dict:
    """Cheap snapshot taken before and after each job."""
    import psutil

    cond: dict = {}
    try:
        cond["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        freq = psutil.cpu_freq()
        if freq:
            cond["cpu_mhz"] = round(freq.current, 1)
    except Exception:  # not readable in some containers
        pass
    gov = _governor()
    if gov:
        cond["cpu_governor"] = gov
    temps = _temperatures()
    if temps:
        cond["thermal_c"] = temps
    return cond
