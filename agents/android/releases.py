"""What an onnxruntime_perf_test of a given ONNX Runtime release takes and
tells, and the flags a target's options become for it.

Every entry is read from onnxruntime/test/perftest at that release (the tree
at the parent of the commit that bumped main to the next version; the
mirror `onnxruntime/onnxruntime-qnn` carries the history but not the tags):

* command_args_parser.cc: the getopt option string up to 1.22, the abseil
  flags from 1.23 (e0786fe7bb); `-C` session config entries from 1.18
  (6d7ac9c93a, "Support general session config entries in perf test tool");
  `-o 3` (ORT_ENABLE_LAYOUT) from 1.23 (340b188c9c); the `-e` names.
* ort_test_session.cc: which EP branches read `-i`
  (`ep_runtime_config_string`); the CPU EP has no branch and never reads it.
* performance_runner.cc: `First inference time cost` from 1.15 (ad4db12699).

A runner too old for what a job asks is refused before the phone is
touched, with the release that added the flag: a clear result instead of
perf_test's usage text (or, from 1.23, its bare "See 'onnxruntime_perf_test
--help'.").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

# -C (session config entries): command_args_parser.cc, 1.18.
SESSION_CONFIG_SINCE = (1, 18)
# The strict probe is session.disable_cpu_ep_fallback=1 (inference_session.cc,
# key since 1.16), which perf_test can only pass with -C.
STRICT_PROBE_SINCE = SESSION_CONFIG_SINCE
# -o 3 = ORT_ENABLE_LAYOUT: command_args_parser.cc, 1.23.
LAYOUT_LEVEL_SINCE = (1, 23)
OPT_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "layout": 3, "all": 99}

# -e names command_args_parser.cc accepts, by the release that added them
# (the others are in every release this driver supports).
EP_SINCE = {"qnn": (1, 15), "vitisai": (1, 15), "vsinpu": (1, 19), "webgpu": (1, 20), "nvtensorrtrtx": (1, 23)}

# EPs whose ort_test_session.cc branch reads -i, by the first release that
# does (checked at every release from 1.12 to 1.23). CPU, XNNPACK (which gets
# -x as its own thread count from 1.13 instead), ArmNN, WebGPU, MIGraphX and
# ROCm read it in none.
EP_OPTIONS_SINCE = {"nnapi": (1, 0), "openvino": (1, 0), "snpe": (1, 0), "tensorrt": (1, 0), "qnn": (1, 15),
                    "dnnl": (1, 15), "vitisai": (1, 15), "cuda": (1, 17), "dml": (1, 17), "coreml": (1, 18),
                    "acl": (1, 20), "nvtensorrtrtx": (1, 23)}


def version_key(version: str) -> tuple[int, int]:
    """"1.20" / "1.20.1" -> (1, 20); a runner key is validated as digits."""
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def _dotted(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


class TooOld(Exception):
    """The runner's release lacks what the job asks for."""

    def __init__(self, what: str, since: tuple[int, int], version: str, source: str):
        self.what, self.since, self.version = what, since, version
        super().__init__(f"this runner (ONNX Runtime {version}) is too old for {what}: onnxruntime_perf_test takes "
                         f"it from {_dotted(since)} ({source}); configure a runner of {_dotted(since)} or later")


class BadOption(ValueError):
    pass


@dataclass
class OptionPlan:
    """perf_test flags for a target's options, what they applied and what
    the runner would ignore (never recorded as applied)."""

    flags: list[str] = field(default_factory=list)
    applied: dict[str, str] = field(default_factory=dict)
    not_applied: dict[str, str] = field(default_factory=dict)


def ep_too_old(ep: str, version: str) -> Optional[TooOld]:
    since = EP_SINCE.get(ep)
    if since and version_key(version) < since:
        return TooOld(f"-e {ep}", since, version, "command_args_parser.cc")
    return None


def reads_ep_options(ep: str, version: str) -> bool:
    since = EP_OPTIONS_SINCE.get(ep)
    return since is not None and version_key(version) >= since


def plan_options(ep: str, options: Mapping[str, str], version: str) -> OptionPlan:
    """The flags for a target's options on a runner of `version`.

    intra_op_threads -> -x; inter_op_threads -> -P -y (perf_test uses -y
    only with the parallel executor); graph_optimization_level -> -o;
    session.* -> one -C (1.18+); ep.* -> one -i where that EP reads it (NNAPI
    takes bare flag names, e.g. ep.NNAPI_FLAG_USE_FP16: "1"); cpu_affinity
    pins with taskset (see perftest.cores_mask). Raises BadOption for a value
    perf_test cannot take and TooOld for what this release lacks."""
    plan = OptionPlan()
    session, ep_opts = [], []
    vk = version_key(version)
    for key, value in sorted(options.items()):
        value = str(value)
        if key == "intra_op_threads":
            plan.flags += ["-x", _whole(key, value)]
        elif key == "inter_op_threads":
            plan.flags += ["-P", "-y", _whole(key, value)]
        elif key == "graph_optimization_level":
            if value not in OPT_LEVELS:
                raise BadOption(f"option graph_optimization_level={value!r}: expected one of {', '.join(OPT_LEVELS)}")
            if OPT_LEVELS[value] == 3 and vk < LAYOUT_LEVEL_SINCE:
                raise TooOld("graph_optimization_level=layout (-o 3)", LAYOUT_LEVEL_SINCE, version,
                             "command_args_parser.cc, ORT_ENABLE_LAYOUT")
            plan.flags += ["-o", str(OPT_LEVELS[value])]
        elif key.startswith("session."):
            if vk < SESSION_CONFIG_SINCE:
                raise TooOld(f"session options ({key}; -C)", SESSION_CONFIG_SINCE, version, "command_args_parser.cc")
            session.append(f"{key}|{value}")
        elif key == "cpu_affinity":
            pass  # taskset on the launch line, not a perf_test flag
        elif key.startswith("ep."):
            if not reads_ep_options(ep, version):
                plan.not_applied[key] = (f"onnxruntime_perf_test {version} ignores -i for the {ep} EP "
                                         f"(ort_test_session.cc reads ep_runtime_config_string only for "
                                         f"{', '.join(e for e in EP_OPTIONS_SINCE if reads_ep_options(e, version))})")
                continue
            name = key[3:]
            if ep == "nnapi":
                if value.lower() not in ("0", "false", "no", "off", ""):
                    ep_opts.append(name)
            else:
                ep_opts.append(f"{name}|{value}")
        else:
            raise BadOption(f"option {key!r} is not understood by the android driver (use intra_op_threads, "
                            f"inter_op_threads, graph_optimization_level, cpu_affinity, session.<key> or ep.<key>)")
        plan.applied[key] = value
    if session:
        plan.flags += ["-C", " ".join(session)]
    if ep_opts:
        plan.flags += ["-i", " ".join(ep_opts)]
    return plan


def with_session_entry(flags: list[str], entry: str) -> list[str]:
    """flags with one more -C entry (perf_test reads a single -C value)."""
    out = list(flags)
    if "-C" in out:
        i = out.index("-C")
        out[i + 1] = out[i + 1] + " " + entry
    else:
        out += ["-C", entry]
    return out


def limits_of(version: str, eps: tuple[str, ...]) -> list[str]:
    """What a runner of this release cannot measure, one phrase each."""
    vk = version_key(version)
    out = []
    if vk < STRICT_PROBE_SINCE:
        out.append(f"no strict probe (fully_accelerated) or session options: -C from {_dotted(SESSION_CONFIG_SINCE)}")
    if vk < LAYOUT_LEVEL_SINCE:
        out.append(f"no graph_optimization_level=layout: -o 3 from {_dotted(LAYOUT_LEVEL_SINCE)}")
    for ep in eps:
        too_old = ep_too_old(ep, version)
        if too_old is not None:
            out.append(f"no {ep}: -e {ep} from {_dotted(too_old.since)}")
    ignoring = [ep for ep in eps if ep != "cpu" and not reads_ep_options(ep, version)]
    if ignoring:
        out.append(f"ep.* options ignored for {', '.join(ignoring)} (-i unread)")
    return out


def cpu_cores_busy(cpu_pct: Optional[float], online_cpus: Optional[int]) -> Optional[float]:
    """perf_test's `Avg CPU usage` in cores: posix/utils.cc divides process
    time by GetNumPhysicalCpuCores(), which on Android is
    hardware_concurrency()/2 (posix/env.cc DefaultNumCores, cpuinfo compiled
    out on Android)."""
    if cpu_pct is None or not online_cpus:
        return None
    return round(cpu_pct / 100.0 * android_pool_size(online_cpus), 3)


def android_pool_size(online_cpus: int) -> int:
    """ONNX Runtime's default intra-op pool on Android: max(1, ncpus / 2)
    (posix/env.cc DefaultNumCores; thread_utils.cc sizes the pool by it when
    intra_op_num_threads is 0), whatever CPUs the process is pinned to."""
    return max(1, int(online_cpus) // 2)


def _whole(key: str, value: str) -> str:
    if not value.isdigit():
        raise BadOption(f"option {key}={value!r}: expected a whole number")
    return value


def thread_plan(explicit: Optional[str], pinned_cpus: Optional[list[int]],
                online_cpus: Optional[int]) -> tuple[list[str], Optional[dict]]:
    """(-x flags to add, what the record says about intra-op threads).

    On Android ONNX Runtime sizes its pool hardware_concurrency()/2 (online
    CPUs, not the taskset mask) and sets no thread affinity
    (core/platform/posix/env.cc DefaultNumCores; PosixThread skips
    pthread_setaffinity_np on __ANDROID__), so a pinned run is given one
    thread per pinned core with -x (a flag of every release; XNNPACK takes
    it as its own pool size from 1.13, ort_test_session.cc)."""
    if explicit is not None:
        return [], {"intra_op": int(explicit), "source": "intra_op_threads"}
    if pinned_cpus:
        return ["-x", str(len(pinned_cpus))], {
            "intra_op": len(pinned_cpus),
            "source": f"the pinned cores {list(pinned_cpus)} (ONNX Runtime's Android default, "
                      "hardware_concurrency()/2, would put more threads on them)"}
    if online_cpus:
        return [], {"intra_op": android_pool_size(online_cpus),
                    "source": f"ONNX Runtime's Android default, hardware_concurrency()/2 of {online_cpus} online "
                              "CPUs (posix/env.cc DefaultNumCores)"}
    return [], None


def cpu_basis(cpu_pct: Optional[float], online_cpus: Optional[int]) -> dict:
    """perf_test's CPU % is of hardware_concurrency()/2 cores on Android
    (posix/utils.cc, posix/env.cc): that denominator and the busy cores."""
    if not online_cpus:
        return {}
    return {"cpu_pct_of_cores": android_pool_size(online_cpus), "cpu_cores_busy": cpu_cores_busy(cpu_pct, online_cpus)}
