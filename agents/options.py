"""The target options an agent accepts: an allow-list per runtime, checked at
the server boundary before a job reaches any driver (host, Android's perf_test
`-C`/`-i`, the browser page's session options, Core ML), so every driver gets
the same rule.

Options are data. No option names a file, a directory or a library: ONNX
Runtime keys that do (`session.optimized_model_external_initializers_file_name`,
`session.collect_node_memory_stats_to_file`, QNN's `backend_path`, OpenVINO's
`cache_dir`, TensorRT's engine cache path, ...) are not on the list. Custom-op
libraries come only from the agent's own configuration
(`custom_ops: {extensions: /opt/ort/libortextensions.so}`); a target names
them (`custom_ops: extensions`), and the agent hands the configured paths to
the driver.

Each key carries the first ONNX Runtime release whose source has it, read from
the onnxruntime repository at the commit where main moved past that release
(`since`; empty: present in 1.10 and every release since). A key newer than the
device's runtime is refused by name rather than silently ignored, which is
what ONNX Runtime does with an unknown session config key. ONNX Runtime Web is
released from the same repository with the same version numbers, so its core
session keys follow the same table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from harness.kernel import limits
from harness.kernel.cores import MAX_CORE, parse_cores


class OptionRefused(ValueError):
    """One line naming the option, its value and what is accepted."""


Check = Callable[[str], Optional[str]]  # value -> what is wrong, or None


@dataclass(frozen=True)
class Rule:
    check: Check
    since: str = ""


def _boolean(value: str) -> Optional[str]:
    return None if value in ("0", "1") else "expected 0 or 1"


def _flag(value: str) -> Optional[str]:
    # Provider options parse their booleans as 0/1 or true/false
    # (onnxruntime/core/framework/provider_options_utils.h).
    return None if value in ("0", "1", "true", "false") else "expected 0, 1, true or false"


def _integer(lo: int, hi: int) -> Check:
    def check(value: str) -> Optional[str]:
        # ASCII digits only: int() also takes "\uff11" or "1_0".
        if not re.fullmatch(r"-?[0-9]{1,19}", value) or not lo <= int(value) <= hi:
            return f"expected a whole number from {lo} to {hi}"
        return None

    return check


def _choice(*values: str) -> Check:
    def check(value: str) -> Optional[str]:
        return None if value in values else f"expected one of {', '.join(values)}"

    return check


def _pattern(regex: str, what: str) -> Check:
    compiled = re.compile(regex)

    def check(value: str) -> Optional[str]:
        return None if compiled.fullmatch(value) else f"expected {what}"

    return check


def _cores(value: str) -> Optional[str]:
    """cpu_affinity: the cpulist spelling every driver shares (harness.kernel.cores)."""
    try:
        parse_cores(value)
    except ValueError:
        return f"expected cores like 0-3 or 0,2, each from 0 to {MAX_CORE}"
    return None


THREADS = _integer(1, limits.MAX_THREADS)

# -- keys of the harness's own ---------------------------------------------------------
ORT_GENERAL = {
    "intra_op_threads": Rule(THREADS),
    "inter_op_threads": Rule(THREADS),
    # disable/basic/extended/all are GraphOptimizationLevel's; perf_test's -o
    # also takes the layout level (the android driver maps it).
    "graph_optimization_level": Rule(_choice("disable", "basic", "extended", "layout", "all")),
    "cpu_affinity": Rule(_cores),
    "custom_ops": Rule(lambda v: None),  # names from the agent's configuration: see check()
}
WEB_GENERAL = {
    "num_threads": Rule(_integer(1, 64)),
    # A file name in onnxruntime-web's dist/ (the browser driver serves it).
    "bundle": Rule(_pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.m?js", "a file name in onnxruntime-web's dist/, "
                                                                       "e.g. ort.all.min.mjs")),
    "graph_optimization_level": Rule(_choice("disable", "basic", "extended", "all")),
}

# -- ONNX Runtime session config entries (session.<key>) ---------------------------------
# include/onnxruntime/core/session/onnxruntime_session_options_config_keys.h;
# only keys that change how a model is optimised or run, none that reads or
# writes a file or shares state between sessions.
SESSION = {
    "session.intra_op.allow_spinning": Rule(_boolean),
    "session.inter_op.allow_spinning": Rule(_boolean),
    "session.force_spinning_stop": Rule(_boolean, "1.12"),
    "session.disable_prepacking": Rule(_boolean),
    "session.disable_quant_qdq": Rule(_boolean),
    "session.enable_quant_qdq_cleanup": Rule(_boolean, "1.11"),
    "session.disable_double_qdq_remover": Rule(_boolean, "1.14"),
    "session.qdqisint8allowed": Rule(_boolean, "1.11"),
    "session.x64quantprecision": Rule(_boolean, "1.12"),
    "session.set_denormal_as_zero": Rule(_boolean),
    "session.strict_shape_type_inference": Rule(_boolean, "1.12"),
    "session.allow_released_opsets_only": Rule(_boolean, "1.16"),
    "session.disable_aot_function_inlining": Rule(_boolean, "1.17"),
    "session.disable_cpu_ep_fallback": Rule(_boolean, "1.16"),
    "session.intra_op_thread_affinities": Rule(_pattern(r"[0-9][0-9,;-]{0,255}", "core lists like 1,2;3,4"),
                                               "1.14"),
    "session.dynamic_block_base": Rule(_integer(0, 1024), "1.11"),
    "session.qdq_matmulnbits_accuracy_level": Rule(_integer(0, 4), "1.19"),
    "session.graph_optimizations_loop_level": Rule(_integer(0, 2), "1.23"),
    "session.load_model_format": Rule(_choice("ONNX", "ORT")),
}

# -- execution provider options (ep.<key>) ----------------------------------------------
EP_OPTIONS: dict[str, dict[str, Rule]] = {
    # onnxruntime/core/providers/xnnpack/xnnpack_execution_provider.h
    "xnnpack": {"intra_op_num_threads": Rule(THREADS, "1.13")},
    # NNAPI takes flag names, not key|value pairs, through perf_test's -i
    # (onnxruntime/test/perftest/ort_test_session.cc).
    "nnapi": {f: Rule(_flag, "1.11") for f in ("NNAPI_FLAG_USE_FP16", "NNAPI_FLAG_USE_NCHW",
                                                "NNAPI_FLAG_CPU_DISABLED", "NNAPI_FLAG_CPU_ONLY")},
    # onnxruntime/core/providers/qnn/qnn_execution_provider.cc; backend_path
    # (a library the EP loads) and the saver/ir backends (which write files)
    # are left out.
    "qnn": {
        "backend_type": Rule(_choice("cpu", "gpu", "htp"), "1.22"),
        "htp_performance_mode": Rule(_choice("burst", "balanced", "default", "high_performance",
                                             "high_power_saver", "low_balanced", "low_power_saver", "power_saver",
                                             "extreme_power_saver", "sustained_high_performance"), "1.16"),
        "htp_graph_finalization_optimization_mode": Rule(_choice("0", "1", "2", "3"), "1.17"),
        "enable_htp_fp16_precision": Rule(_flag, "1.18"),
        "vtcm_mb": Rule(_integer(0, 1 << 16), "1.17"),
        "soc_model": Rule(_integer(0, 1 << 16), "1.18"),
        "htp_arch": Rule(_integer(0, 1 << 10), "1.18"),
        "device_id": Rule(_integer(0, 64), "1.18"),
    },
    # onnxruntime/core/providers/openvino/openvino_provider_factory.cc;
    # cache_dir, load_config and context are left out.
    "openvino": {
        "device_type": Rule(_pattern(r"(HETERO:|MULTI:|AUTO:)?[A-Z]{3,5}(\.[0-9]{1,2})?(,[A-Z]{3,5}(\.[0-9]{1,2})?){0,7}",
                                     "an OpenVINO device such as CPU, GPU.0 or AUTO:GPU,CPU"), "1.16"),
        "precision": Rule(_choice("FP32", "FP16", "ACCURACY"), "1.18"),
        "num_of_threads": Rule(THREADS, "1.16"),
        "num_streams": Rule(_integer(1, 256), "1.16"),
        "enable_opencl_throttling": Rule(_flag, "1.16"),
        "disable_dynamic_shapes": Rule(_flag, "1.17"),
        "enable_qdq_optimizer": Rule(_flag, "1.19"),
    },
    # onnxruntime/core/providers/cuda/cuda_execution_provider_info.cc
    "cuda": {
        "device_id": Rule(_integer(0, 64)),
        "gpu_mem_limit": Rule(_integer(0, 1 << 50)),
        "arena_extend_strategy": Rule(_choice("kNextPowerOfTwo", "kSameAsRequested")),
        "cudnn_conv_algo_search": Rule(_choice("EXHAUSTIVE", "HEURISTIC", "DEFAULT")),
        "do_copy_in_default_stream": Rule(_flag),
        "cudnn_conv_use_max_workspace": Rule(_flag),
        "enable_cuda_graph": Rule(_flag, "1.11"),
        "prefer_nhwc": Rule(_flag, "1.17"),
        "use_tf32": Rule(_flag, "1.18"),
    },
    # onnxruntime/core/providers/tensorrt/tensorrt_execution_provider_info.cc;
    # the engine and timing caches (paths) are left out.
    "tensorrt": {
        "device_id": Rule(_integer(0, 64)),
        "trt_fp16_enable": Rule(_flag),
        "trt_int8_enable": Rule(_flag),
        "trt_max_workspace_size": Rule(_integer(0, 1 << 50)),
        "trt_min_subgraph_size": Rule(_integer(1, 1 << 20)),
        "trt_max_partition_iterations": Rule(_integer(1, 1 << 20)),
        "trt_builder_optimization_level": Rule(_integer(0, 5), "1.15"),
    },
    # include/onnxruntime/core/providers/coreml/coreml_provider_factory.h
    # (named options since 1.21); ModelCacheDirectory is left out.
    "coreml": {
        "ModelFormat": Rule(_choice("MLProgram", "NeuralNetwork"), "1.21"),
        "MLComputeUnits": Rule(_choice("CPUOnly", "CPUAndNeuralEngine", "CPUAndGPU", "ALL"), "1.21"),
        "RequireStaticInputShapes": Rule(_boolean, "1.21"),
        "EnableOnSubgraphs": Rule(_boolean, "1.21"),
        "SpecializationStrategy": Rule(_choice("Default", "FastPrediction"), "1.21"),
        "AllowLowPrecisionAccumulationOnGPU": Rule(_boolean, "1.21"),
    },
}
# ONNX Runtime Web's EP objects (js/web/lib/wasm/session-options.ts).
WEB_EP_OPTIONS: dict[str, dict[str, Rule]] = {
    "webgpu": {"preferredLayout": Rule(_choice("NCHW", "NHWC"), "1.17")},
    "webnn": {
        "deviceType": Rule(_choice("cpu", "gpu", "npu"), "1.16"),
        "powerPreference": Rule(_choice("default", "low-power", "high-performance"), "1.16"),
        "numThreads": Rule(_integer(0, 64), "1.17"),
    },
}


@dataclass(frozen=True)
class RuntimeOptions:
    general: Mapping[str, Rule]
    session: Mapping[str, Rule]
    eps: Mapping[str, Mapping[str, Rule]]
    product: str  # how the refusal names the runtime


RUNTIMES = {
    "onnxruntime": RuntimeOptions(ORT_GENERAL, SESSION, EP_OPTIONS, "ONNX Runtime"),
    "onnxruntime-web": RuntimeOptions(WEB_GENERAL, SESSION, WEB_EP_OPTIONS, "ONNX Runtime Web"),
    # Core ML jobs take their compute units from the target's ep; the ios
    # driver reads no option.
    "coreml": RuntimeOptions({}, {}, {}, "Core ML"),
}

# Every value, before its key's own rule: printable ASCII without spaces or
# '|' (perf_test splits -C/-i on spaces and key|value on '|'), nothing a
# shell or a path needs.
_VALUE = re.compile(r"[A-Za-z0-9_.,:;+-]{0,%d}" % limits.MAX_OPTION_VALUE_CHARS)
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,%d}" % (limits.MAX_OPTION_KEY_CHARS - 1))
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # a custom_ops library's name in the agent's configuration


@dataclass(frozen=True)
class Checked:
    options: dict[str, str]
    custom_ops: tuple[Path, ...] = ()  # configured libraries the target named, in order


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split("."):
        m = re.match(r"[0-9]+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def check(runtime: str, versions: Sequence[str], ep: str, options: Mapping[str, str],
          custom_ops: Mapping[str, Path], takes_custom_ops: bool) -> Checked:
    """Validate a target's options for `runtime` at the device's `versions`
    (the runtime versions the job may run on; empty: not gated by version)
    and resolve `custom_ops` names against the agent's configuration.
    Raises OptionRefused naming the first key that is not accepted."""
    if len(options) > limits.MAX_OPTIONS:
        raise OptionRefused(f"target.options: {len(options)} entries, at most {limits.MAX_OPTIONS} accepted")
    spec = RUNTIMES.get(runtime)
    oldest = min((version_tuple(v) for v in versions if version_tuple(v)), default=())
    libraries: list[Path] = []
    for key in sorted(options):
        value = options[key]
        if not _KEY.fullmatch(key):
            raise OptionRefused(f"target.options key {_short(key)}: expected letters, digits, '_' and '.', "
                                f"at most {limits.MAX_OPTION_KEY_CHARS} characters")
        where = f"target.options[{key!r}]"
        if spec is None:
            raise OptionRefused(f"{where}: runtime {runtime!r} takes no options")
        rule = _rule(spec, ep, key)
        if rule is None:
            raise OptionRefused(_unknown(spec, runtime, ep, key))
        if not _VALUE.fullmatch(value):
            raise OptionRefused(f"{where}={_short(value)}: expected at most {limits.MAX_OPTION_VALUE_CHARS} of "
                                "letters, digits and _.,:;+- (no spaces, paths or '|')")
        if rule.since and oldest and oldest < version_tuple(rule.since):
            have = ", ".join(versions)
            raise OptionRefused(f"{where}: {spec.product} {rule.since} and later have this key; this device's "
                                f"{runtime} is {have}")
        why = rule.check(value)
        if why:
            raise OptionRefused(f"{where}={_short(value)}: {why}")
        if key == "custom_ops":
            libraries += _libraries(value, custom_ops, takes_custom_ops)
    return Checked(dict(options), tuple(libraries))


def _rule(spec: RuntimeOptions, ep: str, key: str) -> Optional[Rule]:
    if key.startswith("session."):
        return spec.session.get(key)
    if key.startswith("ep."):
        return spec.eps.get(ep, {}).get(key[3:])
    return spec.general.get(key)


def _unknown(spec: RuntimeOptions, runtime: str, ep: str, key: str) -> str:
    where = f"target.options[{key!r}]"
    if key == "custom_ops_library":
        return (f"{where}: a library path is never taken from a job; name a library from this agent's "
                "custom_ops configuration with custom_ops=NAME")
    if key.startswith("session."):
        return f"{where}: not a session option this agent accepts for {runtime} (see the lab guide's option list)"
    if key.startswith("ep."):
        known = ", ".join(f"ep.{k}" for k in spec.eps.get(ep, {})) or "none"
        return f"{where}: not an option of the {ep!r} execution provider this agent accepts (accepted: {known})"
    known = ", ".join(spec.general) or "none"
    return f"{where}: unknown option for {runtime} (accepted: {known}, session.<key>, ep.<key>)"


def _libraries(value: str, configured: Mapping[str, Path], takes: bool) -> list[Path]:
    where = "target.options['custom_ops']"
    if not takes:
        raise OptionRefused(f"{where}: this device's driver does not load custom-op libraries")
    names = value.split(",")
    out = []
    for name in names:
        if not NAME.fullmatch(name) or name not in configured:
            offered = ", ".join(sorted(configured)) or "none configured"
            raise OptionRefused(f"{where}: {_short(name)} is not a library in this agent's custom_ops "
                                f"configuration (configured: {offered})")
        out.append(Path(configured[name]))
    return out


def configured_libraries(section: Mapping[str, str]) -> dict[str, Path]:
    """The agent configuration's `custom_ops: {name: path}`, checked at start:
    each name a plain word, each path an existing absolute file. Raises
    ValueError naming the entry."""
    out: dict[str, Path] = {}
    for name, raw in (section or {}).items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"custom_ops.{name}: expected a name of lowercase letters, digits, '_' and '-'")
        path = Path(str(raw)).expanduser()
        if not path.is_absolute():
            raise ValueError(f"custom_ops.{name}: {raw!r} is not an absolute path")
        if not path.is_file():
            raise ValueError(f"custom_ops.{name}: {path} is not a file")
        out[name] = path
    return out
