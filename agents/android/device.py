"""Phone-side chores for a job: run conditions, the cooldown gate, big cores,
pushing runners and models once per digest, test data, kills and cleanup.

Layout under the configured device folder (default /data/local/tmp/harness,
the one place an adb shell may write and execute):

    runners/<digest>/   onnxruntime_perf_test, its libraries, .complete
    models/<sha256>/    model.onnx, .complete
    jobs/<job tag>/     one folder per job, removed when the job ends

`.complete` is written last, so a push cut short is redone next time.
"""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from agents.android import facts
from agents.android.adb import Phone, ShellResult
from agents.android.config import Cooldown
from agents.android.perftest import PERF_TEST
from harness.kernel import limits

_SEP = "@@harness-section@@"
CONDITIONS_SCRIPT = (
    f"dumpsys battery 2>/dev/null; echo {_SEP}; dumpsys thermalservice 2>/dev/null; echo {_SEP}; "
    "for z in /sys/class/thermal/thermal_zone*; do "
    'echo "$z $(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)"; done; '
    f"echo {_SEP}; cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null"
)
CPUFREQ_SCRIPT = (
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    'echo "${c##*cpu} $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)"; done; '
    f"echo {_SEP}; cat /sys/devices/system/cpu/online 2>/dev/null"
)


def read_conditions(phone: Phone) -> dict:
    """Battery, thermal status, temperatures and the CPU frequency governor,
    in one adb round trip."""
    r = phone.sh(CONDITIONS_SCRIPT)
    parts = r.stdout.split(_SEP)
    while len(parts) < 4:
        parts.append("")
    cond = facts.conditions(facts.parse_battery(parts[0]), facts.parse_thermalservice(parts[1]),
                            facts.parse_thermal_zones(parts[2]))
    governor = parts[3].strip()
    if governor:
        # A governor change alone moves latencies: results across one are
        # not compared (harness.analysis.environment).
        cond["cpu_governor"] = governor
    cond["at_unix"] = round(time.time(), 3)
    return cond


def cooldown_gate(phone: Phone, gate: Cooldown, cancel: threading.Event,
                  clock: Callable[[], float] = time.monotonic) -> dict:
    """Wait (bounded by gate.wait_s) until the watched temperature is at or
    below gate.max_c. Returns what happened; never raises for heat."""
    start = clock()
    first = read_conditions(phone)
    temp = facts.gate_temperature(first, gate.sensor)
    record = {"max_c": gate.max_c, "sensor": gate.sensor, "start_c": temp}
    if temp is None:
        record.update(reached=None, waited_s=0.0,
                      note=f"no {gate.sensor!r} temperature on this phone; the gate was skipped")
        return record
    while temp > gate.max_c and clock() - start < gate.wait_s:
        if cancel.wait(min(gate.poll_s, max(0.0, gate.wait_s - (clock() - start)))):
            break
        temp = facts.gate_temperature(read_conditions(phone), gate.sensor)
        if temp is None:
            break
    record.update(end_c=temp, waited_s=round(clock() - start, 1), reached=temp is not None and temp <= gate.max_c)
    return record


def cpu_layout(phone: Phone, cache: dict, lock: threading.Lock) -> tuple[str, list[int], Optional[int]]:
    """(big-core mask, its cpus, online CPU count) of a phone, read once."""
    with lock:
        hit = cache.get(phone.serial)
    if hit is None:
        freq, _, online = phone.sh(CPUFREQ_SCRIPT).stdout.partition(_SEP)
        mask, cpus = facts.big_core_mask(freq)
        hit = (mask, cpus, facts.online_cpus(online))
        with lock:
            cache[phone.serial] = hit
    return hit


def affinity_mask(phone: Phone, pin: str, cache: dict, lock: threading.Lock) -> tuple[Optional[str], dict]:
    """The taskset mask for the configured pinning, and how it was chosen."""
    if pin == "none":
        return None, {"pin": "none"}
    if pin != "big":
        cpus = [i for i in range(int(pin, 16).bit_length()) if int(pin, 16) >> i & 1]
        return pin, {"pin": "mask", "mask": pin, "cpus": cpus}
    mask, cpus, _ = cpu_layout(phone, cache, lock)
    if not mask:
        return None, {"pin": "big", "note": "cpufreq limits unreadable; not pinned"}
    return mask, {"pin": "big", "mask": mask, "cpus": cpus}


def check(r: ShellResult, what: str) -> ShellResult:
    if r.code != 0:
        raise RuntimeError(f"{what} failed (exit status {r.code}): {(r.stderr or r.stdout).strip()[:500]}")
    return r


def runner_files(program: Path, libs: Sequence[Path]) -> list[tuple[Path, str, int]]:
    """(local path, name on the phone, mode): the program always goes by
    perf_test's own name, whatever the lab called its file."""
    return [(program, PERF_TEST, 0o755)] + [(p, p.name, 0o644) for p in libs]


def ensure_files(phone: Phone, folder: str, files: Sequence[tuple[Path, str, int]], marker: str) -> bool:
    """Push files (path, remote name, mode) into folder unless its .complete
    marker says they are there. Returns True when something was pushed."""
    if phone.size(f"{folder}/.complete") is not None:
        return False
    check(phone.sh(f"mkdir -p {shlex.quote(folder)}"), f"mkdir {folder}")
    phone.push_many([(path, f"{folder}/{name}", mode) for path, name, mode in files])
    phone.push(marker.encode() + b"\n", f"{folder}/.complete", mode=0o644)
    return True


def ensure_model(phone: Phone, models_root: str, digest: str, path: Path) -> str:
    folder = f"{models_root}/{digest}"
    if phone.size(f"{folder}/.complete") is None:
        check(phone.sh(f"mkdir -p {shlex.quote(folder)}"), f"mkdir {folder}")
        phone.push(path, f"{folder}/model.onnx", mode=0o644)
        size = phone.size(f"{folder}/model.onnx")
        if size != path.stat().st_size:
            raise RuntimeError(f"model push incomplete: {size} of {path.stat().st_size} bytes on the phone")
        phone.push(digest.encode() + b"\n", f"{folder}/.complete", mode=0o644)
    return f"{folder}/model.onnx"


def tensor_files(feed: Mapping[str, "object"]) -> list[tuple[str, bytes]]:
    """ONNX test-data files (`input_<i>.pb`, TensorProto with the input's
    name, which perf_test's TestCase loader matches by name)."""
    from onnx import numpy_helper

    return [(f"input_{i}.pb", numpy_helper.from_array(value, name).SerializeToString())
            for i, (name, value) in enumerate(sorted(feed.items()))]


def make_case(phone: Phone, folder: str, model_path: str, feed: Optional[Mapping] = None) -> str:
    """A perf_test test case: folder/model.onnx (a link to the cached model)
    and folder/test_data_set_0/input_*.pb. Returns the model path to run."""
    q = shlex.quote
    data = f"{folder}/test_data_set_0"
    check(phone.sh(f"mkdir -p {q(data)} && ln -sf {q(model_path)} {q(folder)}/model.onnx"), f"prepare {folder}")
    files = [(blob, f"{data}/{name}", 0o644) for name, blob in tensor_files(feed or {})]
    if files:
        phone.push_many(files)
    return f"{folder}/model.onnx"


def kill_recorded(phone: Phone, folder: str) -> None:
    """Kill the process whose pid the launch line recorded in folder/.pid."""
    try:
        phone.sh(f"p=$(cat {shlex.quote(folder)}/.pid 2>/dev/null) && kill -9 $p 2>/dev/null; true",
                 timeout_s=limits.ADB_SHELL_TIMEOUT_S)
    except Exception:
        pass  # the phone may be gone; nothing more can be done from here


def remove(phone: Phone, folder: str) -> Optional[str]:
    """rm -rf a job folder; returns why it failed, if it did."""
    try:
        r = phone.sh(f"rm -rf {shlex.quote(folder)}", timeout_s=limits.ANDROID_CLEANUP_TIMEOUT_S)
        return None if r.code == 0 else (r.stderr or r.stdout).strip()[:300]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def identity_model() -> bytes:
    """A one-node model: the runner's own footprint, for memory deltas."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="identity")], "baseline",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7  # readable by every ONNX Runtime a lab still runs
    return m.SerializeToString()
