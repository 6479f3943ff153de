"""The android driver's configuration (`android:` in agent.yaml).

```yaml
android:
  runners:                       # onnxruntime_perf_test builds, by ONNX Runtime version
    "1.20":
      perf_test: /opt/ort/1.20/arm64-v8a/onnxruntime_perf_test
      libs: [/opt/ort/1.20/arm64-v8a/libonnxruntime.so]
      eps: [cpu, xnnpack, nnapi]         # what this build was compiled with (default)
      abi: arm64-v8a                     # phones whose ABI list lacks it are skipped
      outputs_perf_test: /opt/ort/1.20-nodeio/arm64-v8a/onnxruntime_perf_test   # optional
      outputs_libs: [...]
  connect: ["10.0.4.50:5555"]    # phones on adb over TCP, (re)connected at every scan
  adb_port: 5037                 # the adb server (default: $ANDROID_ADB_SERVER_PORT or 5037)
  adb_host: 127.0.0.1
  adb_path: /usr/bin/adb         # default: the adb that ships with adbutils
  device_dir: /data/local/tmp/harness
  cooldown: {max_c: 38, sensor: battery, wait_s: 120, poll_s: 10}
  pin: big                       # big | none | a hex cpu mask
  placement_runs: 3
```

Every key is checked here, once, when the agent starts: a bad value is one
line naming `android.<key>` and what was expected.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import Field, field_validator

from harness.kernel.configfile import ConfigError, Strict

DEFAULT_EPS = ("cpu", "xnnpack", "nnapi")
KNOWN_EPS = ("cpu", "xnnpack", "nnapi", "qnn", "snpe", "acl", "armnn", "webgpu", "coreml", "cuda", "tensorrt",
             "openvino", "dnnl", "dml", "rocm", "migraphx", "vitisai")
# NNAPI exists from Android 8.1 (API level 27); ONNX Runtime's NNAPI EP
# needs it (docs: onnxruntime.ai, "NNAPI Execution Provider").
NNAPI_MIN_SDK = 27
ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")


@dataclass(frozen=True)
class Runner:
    version: str
    perf_test: Path
    libs: tuple[Path, ...]
    eps: tuple[str, ...]
    abi: str
    digest: str  # over the program and its libraries: the folder name on the phone
    outputs_perf_test: Optional[Path] = None
    outputs_libs: tuple[Path, ...] = ()
    outputs_digest: str = ""


@dataclass(frozen=True)
class Cooldown:
    max_c: float
    sensor: str = "battery"
    wait_s: float = 300.0
    poll_s: float = 10.0


@dataclass(frozen=True)
class AndroidConfig:
    runners: Mapping[str, Runner] = field(default_factory=dict)
    connect: tuple[str, ...] = ()
    adb_host: str = "127.0.0.1"
    adb_port: int = 5037
    adb_path: Optional[str] = None
    device_dir: str = "/data/local/tmp/harness"
    cooldown: Optional[Cooldown] = None
    pin: str = "none"
    placement_runs: int = 3


_KEYS = {"runners", "connect", "adb_host", "adb_port", "adb_path", "device_dir", "cooldown", "pin",
         "placement_runs"}
_RUNNER_KEYS = {"perf_test", "libs", "eps", "abi", "outputs_perf_test", "outputs_libs"}
_COOLDOWN_KEYS = {"max_c", "sensor", "wait_s", "poll_s"}


def _file(where: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a file path")
    p = Path(value).expanduser()
    if not p.is_file():
        raise ConfigError(f"{where}: file not found: {p}")
    return p.resolve()


def _files(where: str, value: Any) -> tuple[Path, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of file paths")
    paths = tuple(_file(f"{where}[{i}]", v) for i, v in enumerate(value))
    names = [p.name for p in paths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: two libraries named {dupes[0]!r}; they would overwrite each other on the phone")
    return paths


def digest_files(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _runner(version: str, raw: Any) -> Runner:
    where = f"android.runners.{version}"
    if not re.fullmatch(r"\d+(\.\d+){0,3}", version):
        raise ConfigError(f"{where}: the key is an ONNX Runtime version, e.g. \"1.20\"")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with perf_test: and libs:")
    unknown = sorted(set(raw) - _RUNNER_KEYS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(_RUNNER_KEYS))})")
    perf = _file(f"{where}.perf_test", raw.get("perf_test"))
    libs = _files(f"{where}.libs", raw.get("libs"))
    eps = raw.get("eps", list(DEFAULT_EPS))
    if not isinstance(eps, list) or not eps or not all(isinstance(e, str) for e in eps):
        raise ConfigError(f"{where}.eps: expected a list of execution providers, e.g. [cpu, xnnpack, nnapi]")
    for e in eps:
        if e not in KNOWN_EPS:
            raise ConfigError(f"{where}.eps: {e!r} is not an EP onnxruntime_perf_test takes with -e "
                              f"(known: {', '.join(KNOWN_EPS)})")
    abi = str(raw.get("abi", "arm64-v8a"))
    if abi not in ABIS:
        raise ConfigError(f"{where}.abi: {abi!r}: expected one of {', '.join(ABIS)}")
    out_perf = raw.get("outputs_perf_test")
    out_path = _file(f"{where}.outputs_perf_test", out_perf) if out_perf is not None else None
    out_libs = _files(f"{where}.outputs_libs", raw.get("outputs_libs"))
    if out_libs and out_path is None:
        raise ConfigError(f"{where}.outputs_libs: given without outputs_perf_test")
    return Runner(
        version=version, perf_test=perf, libs=libs, eps=tuple(dict.fromkeys(eps)), abi=abi,
        digest=digest_files((perf,) + libs),
        outputs_perf_test=out_path, outputs_libs=out_libs,
        outputs_digest=digest_files((out_path,) + out_libs) if out_path else "",
    )


def parse(raw: Mapping[str, Any]) -> AndroidConfig:
    raw = dict(raw or {})
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"android.{unknown[0]}: unknown key (expected one of {', '.join(sorted(_KEYS))})")
    runners_raw = raw.get("runners") or {}
    if not isinstance(runners_raw, dict):
        raise ConfigError("android.runners: expected a mapping of ONNX Runtime version -> {perf_test, libs}")
    runners = {str(v): _runner(str(v), r) for v, r in runners_raw.items()}
    connect = raw.get("connect") or []
    if not isinstance(connect, list) or not all(isinstance(a, str) and re.fullmatch(r"[^\s:]+:\d+", a)
                                               for a in connect):
        raise ConfigError("android.connect: expected a list of HOST:PORT addresses of phones on adb over TCP")
    port = raw.get("adb_port", os.environ.get("ANDROID_ADB_SERVER_PORT", 5037))
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise ConfigError(f"android.adb_port: {port!r}: expected a TCP port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"android.adb_port: {port}: expected a TCP port number")
    adb_path = raw.get("adb_path")
    if adb_path is not None:
        adb_path = str(_file("android.adb_path", adb_path))
    device_dir = str(raw.get("device_dir", "/data/local/tmp/harness"))
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", device_dir) or device_dir.rstrip("/") in ("", "/data", "/data/local/tmp"):
        raise ConfigError(f"android.device_dir: {device_dir!r}: expected a folder of its own on the phone, "
                          "e.g. /data/local/tmp/harness")
    cooldown = None
    if raw.get("cooldown") is not None:
        c = raw["cooldown"]
        if not isinstance(c, dict) or "max_c" not in c:
            raise ConfigError("android.cooldown: expected {max_c: <°C>, sensor: battery, wait_s: 300, poll_s: 10}")
        bad = sorted(set(c) - _COOLDOWN_KEYS)
        if bad:
            raise ConfigError(f"android.cooldown.{bad[0]}: unknown key (expected one of "
                              f"{', '.join(sorted(_COOLDOWN_KEYS))})")
        try:
            cooldown = Cooldown(max_c=float(c["max_c"]), sensor=str(c.get("sensor", "battery")),
                                wait_s=float(c.get("wait_s", 300.0)), poll_s=float(c.get("poll_s", 10.0)))
        except (TypeError, ValueError):
            raise ConfigError("android.cooldown: max_c, wait_s and poll_s must be numbers") from None
        if cooldown.wait_s < 0 or cooldown.poll_s <= 0:
            raise ConfigError("android.cooldown: wait_s must be >= 0 and poll_s > 0")
    pin = str(raw.get("pin", "none")).lower()
    if pin not in ("big", "none") and not re.fullmatch(r"(0x)?[0-9a-f]+", pin):
        raise ConfigError(f"android.pin: {pin!r}: expected big, none or a hex cpu mask such as f0")
    runs = raw.get("placement_runs", 3)
    if not isinstance(runs, int) or not 1 <= runs <= 100:
        raise ConfigError(f"android.placement_runs: {runs!r}: expected a whole number from 1 to 100")
    return AndroidConfig(runners=runners, connect=tuple(connect), adb_host=str(raw.get("adb_host", "127.0.0.1")),
                         adb_port=port, adb_path=adb_path, device_dir=device_dir.rstrip("/"), cooldown=cooldown,
                         pin=pin.removeprefix("0x"), placement_runs=runs)


# --- the typed section ----------------------------------------------------------
# The shape of `android:` as the agent file is read; `parse` above then checks
# what a type cannot (files exist, versions, ABIs, the folder on the phone).


class RunnerSection(Strict):
    perf_test: str
    libs: list[str] = Field(default_factory=list)
    eps: list[str] = Field(default_factory=lambda: list(DEFAULT_EPS))
    abi: str = "arm64-v8a"
    outputs_perf_test: Optional[str] = None
    outputs_libs: list[str] = Field(default_factory=list)


class CooldownSection(Strict):
    max_c: float
    sensor: str = "battery"
    wait_s: float = Field(300.0, ge=0)
    poll_s: float = Field(10.0, gt=0)


class AndroidSection(Strict):
    runners: dict[str, RunnerSection] = Field(default_factory=dict)
    connect: list[str] = Field(default_factory=list)
    adb_host: str = "127.0.0.1"
    adb_port: Optional[int] = Field(None, gt=0, lt=65536)  # default: $ANDROID_ADB_SERVER_PORT or 5037
    adb_path: Optional[str] = None
    device_dir: str = "/data/local/tmp/harness"
    cooldown: Optional[CooldownSection] = None
    pin: str = "none"
    placement_runs: int = Field(3, ge=1, le=100)

    @field_validator("runners", mode="before")
    @classmethod
    def _versions_as_written(cls, v):
        # YAML reads an unquoted 1.20 as the float 1.2; the key is a version, as written.
        if isinstance(v, dict):
            return {(getattr(k, "text", None) or str(k)) if isinstance(k, (int, float)) else k: r for k, r in v.items()}
        return v

    @field_validator("pin", mode="before")
    @classmethod
    def _pin_text(cls, v):
        return str(v) if isinstance(v, int) else v
