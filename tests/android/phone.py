"""The sandbox folder a TestPhone runs its commands in, laid out like a phone.

It holds what the Android driver reads: `getprop` answers, /proc/meminfo,
/proc/cpuinfo, per-CPU cpufreq limits, /sys/class/thermal zones, and the
system tools `getprop`, `dumpsys` (battery, thermalservice) and `logcat`,
which print what their Android counterparts print (formats from AOSP's
BatteryService and ThermalManagerService dumps and logcat's raw/brief
formats). Tests change the phone's state (battery, temperatures) through
`PhoneState`, and the tools report it on their next call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PIXEL_7 = {
    "ro.product.manufacturer": "Google",
    "ro.product.brand": "google",
    "ro.product.model": "Pixel 7",
    "ro.product.name": "panther",
    "ro.product.device": "panther",
    "ro.soc.manufacturer": "Google",
    "ro.soc.model": "GS201",
    "ro.board.platform": "gs201",
    "ro.hardware": "panther",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.build.fingerprint": "google/panther/panther:14/UQ1A.240205.004/11269751:user/release-keys",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.serialno": "28031FDH2005A7",
}

GALAXY_A14 = {
    "ro.product.manufacturer": "samsung",
    "ro.product.brand": "samsung",
    "ro.product.model": "SM-A145F",
    "ro.product.name": "a14ins",
    "ro.product.device": "a14",
    "ro.board.platform": "mt6769",
    "ro.hardware": "mt6769t",
    "ro.build.version.release": "13",
    "ro.build.version.sdk": "33",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.serialno": "R58W30ABCDE",
}

_GETPROP = r'''
import json, os, sys
props = json.load(open(os.path.join(os.environ["PHONE_ROOT"], "dev/state/props.json")))
args = sys.argv[1:]
if not args:
    for k in sorted(props):
        print(f"[{k}]: [{props[k]}]")
else:
    print(props.get(args[0], args[1] if len(args) > 1 else ""))
'''

_DUMPSYS = r'''
import json, os, sys
state = json.load(open(os.path.join(os.environ["PHONE_ROOT"], "dev/state/phone.json")))
what = sys.argv[1] if len(sys.argv) > 1 else ""
if what == "battery":
    b = state["battery"]
    print("Current Battery Service state:")
    print(f"  AC powered: false")
    print(f"  USB powered: {'true' if b['usb'] else 'false'}")
    print(f"  Wireless powered: false")
    print(f"  Max charging current: 500000")
    print(f"  Max charging voltage: 5000000")
    print(f"  Charge counter: 3874000")
    print(f"  status: {b['status']}")
    print(f"  health: 2")
    print(f"  present: true")
    print(f"  level: {b['level']}")
    print(f"  scale: 100")
    print(f"  voltage: 4210")
    print(f"  temperature: {int(round(b['temperature_c'] * 10))}")
    print(f"  technology: Li-ion")
elif what == "thermalservice":
    t = state["thermal"]
    print("IsStatusOverride: false")
    print("ThermalEventListeners:")
    print("\tcallbacks: 1\n\tkilled: false\n\tbroadcasts count: -1")
    print("ThermalStatusListeners:")
    print("\tcallbacks: 1\n\tkilled: false\n\tbroadcasts count: -1")
    print(f"Thermal Status: {t['status']}")
    print("Cached temperatures:")
    for s in t["sensors"]:
        print(f"\tTemperature{{mValue={s['value']}, mType={s['type']}, mName={s['name']}, mStatus={t['status']}}}")
    print("HAL Ready: true")
    print("HAL connection:\n\tThermalHAL AIDL 1  connected: yes")
    print("Current temperatures from HAL:")
    for s in t["sensors"]:
        print(f"\tTemperature{{mValue={s['value']}, mType={s['type']}, mName={s['name']}, mStatus={t['status']}}}")
    print("Current cooling devices from HAL:")
    print("\tCoolingDevice{mValue=0, mType=2, mName=thermal-cpufreq-0}")
else:
    print(f"Can't find service: {what}", file=sys.stderr)
'''

_LOGCAT = r'''
import json, os, sys
buf = os.path.join(os.environ["PHONE_ROOT"], "dev/log/main")
args = sys.argv[1:]
dump, fmt, pid, clear = False, "threadtime", None, False
i = 0
while i < len(args):
    a = args[i]
    if a == "-d":
        dump = True
    elif a == "-c":
        clear = True
    elif a == "-v":
        i += 1; fmt = args[i]
    elif a.startswith("--pid="):
        pid = int(a.split("=", 1)[1])
    elif a == "--pid":
        i += 1; pid = int(args[i])
    elif a == "-s" or ":" in a:
        pass  # tag filters: this phone logs one tag of interest
    else:
        print(f"logcat: unrecognized option '{a}'", file=sys.stderr)
        sys.exit(1)
    i += 1
if clear:
    open(buf, "w").close()
    sys.exit(0)
if not dump:
    print("logcat: this test phone only dumps (-d)", file=sys.stderr)
    sys.exit(1)
try:
    lines = open(buf, encoding="utf-8").read().splitlines()
except FileNotFoundError:
    lines = []
for raw in lines:
    e = json.loads(raw)
    if pid is not None and e["pid"] != pid:
        continue
    for line in e["msg"].rstrip("\n").split("\n"):
        if fmt == "raw":
            print(line)
        elif fmt == "brief":
            print(f"{e['prio']}/{e['tag']}({e['pid']:5d}): {line}")
        else:
            print(f"{e['time']} {e['pid']:5d} {e['pid']:5d} {e['prio']} {e['tag']}: {line}")
'''


class PhoneState:
    """Battery and thermal state the phone's tools report."""

    def __init__(self, root: Path):
        self.path = root / "dev" / "state" / "phone.json"

    def read(self) -> dict:
        return json.loads(self.path.read_text())

    def write(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)

    def set_temperature(self, celsius: float, status: int = 0) -> None:
        s = self.read()
        s["battery"]["temperature_c"] = celsius
        s["thermal"]["status"] = status
        for sensor in s["thermal"]["sensors"]:
            sensor["value"] = celsius
        self.write(s)
        zone = self.path.parents[2] / "sys" / "class" / "thermal" / "thermal_zone0" / "temp"
        zone.write_text(f"{int(celsius * 1000)}\n")


def _tool(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


def build_phone(root: Path, props: dict[str, str], *, mem_total_kb: int = 7833248,
                temperature_c: float = 31.5, battery_level: int = 87,
                cpu_max_khz: tuple[int, ...] = (1803000, 2850000)) -> PhoneState:
    """Lay out a phone's filesystem under root and return its state handle."""
    root = Path(root)
    for d in ("data/local/tmp", "system/bin", "proc", "dev/state", "dev/log", "sdcard"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "dev" / "state" / "props.json").write_text(json.dumps(props))
    (root / "dev" / "log" / "main").write_text("")
    (root / "proc" / "meminfo").write_text(
        f"MemTotal:       {mem_total_kb} kB\nMemFree:          512344 kB\n"
        f"MemAvailable:    {mem_total_kb // 2} kB\nBuffers:            5236 kB\nCached:          2113480 kB\n")
    cpuinfo = []
    for i, _ in enumerate(cpu_max_khz):
        cpuinfo.append(f"processor\t: {i}\nBogoMIPS\t: 49.15\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
                       f"crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
                       f"CPU architecture: 8\nCPU variant\t: 0x{1 if i else 2}\nCPU part\t: 0x{'d41' if i else 'd05'}\n"
                       f"CPU revision\t: 0\n")
    (root / "proc" / "cpuinfo").write_text("\n".join(cpuinfo))
    cpu_dir = root / "sys" / "devices" / "system" / "cpu"
    for i, khz in enumerate(cpu_max_khz):
        f = cpu_dir / f"cpu{i}" / "cpufreq"
        f.mkdir(parents=True, exist_ok=True)
        (f / "cpuinfo_max_freq").write_text(f"{khz}\n")
        (f / "scaling_governor").write_text("schedutil\n")
    (cpu_dir / "possible").write_text(f"0-{len(cpu_max_khz) - 1}\n")
    (cpu_dir / "online").write_text(f"0-{len(cpu_max_khz) - 1}\n")  # what hardware_concurrency() counts
    zone = root / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "type").write_text("cpu-1-0-usr\n")
    (zone / "temp").write_text(f"{int(temperature_c * 1000)}\n")
    bin_dir = root / "system" / "bin"
    _tool(bin_dir / "getprop", _GETPROP)
    _tool(bin_dir / "dumpsys", _DUMPSYS)
    _tool(bin_dir / "logcat", _LOGCAT)
    state = PhoneState(root)
    state.write({
        "battery": {"level": battery_level, "temperature_c": temperature_c, "status": 2, "usb": True},
        "thermal": {"status": 0, "sensors": [
            {"name": "cpu-1-0-usr", "type": 0, "value": temperature_c},
            {"name": "battery", "type": 2, "value": temperature_c},
            {"name": "skin", "type": 3, "value": temperature_c},
        ]},
    })
    return state

