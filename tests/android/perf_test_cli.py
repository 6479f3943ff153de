"""The command line of the `onnxruntime_perf_test` stand-in (perf_test_standin.py):
its build (BUILD, written in front by androidkit.install_perf_test) and the
parser of that release — getopt up to 1.22, abseil from 1.23 — as the
stand-in's docstring describes. install_perf_test writes this part first,
then the stand-in, into one script (the test phone runs one file, as the
real phone runs one binary)."""

import os
import re
import sys

BUILD = globals().get("BUILD") or {}
VERSION = tuple(int(p) for p in str(BUILD.get("version", "1.20")).split(".")[:2])
SUPPORTED = {"cpu": "CPUExecutionProvider"}
NOT_IN_BUILD = {
    "cuda": "CUDA", "dnnl": "DNNL", "tensorrt": "TensorRT", "openvino": "OpenVINO", "qnn": "QNN",
    "snpe": "SNPE", "nnapi": "NNAPI", "coreml": "COREML", "dml": "DML", "acl": "Acl", "armnn": "ArmNN",
    "rocm": "ROCM", "migraphx": "MIGraphX", "xnnpack": "Xnnpack", "vitisai": "VitisAI", "webgpu": "WebGPU",
    "vsinpu": "VSINPU", "nvtensorrtrtx": "NvTensorRTRTX",
}
# -e names command_args_parser.cc accepts, by the release that added them.
EP_SINCE = {"qnn": (1, 15), "vitisai": (1, 15), "vsinpu": (1, 19), "webgpu": (1, 20), "nvtensorrtrtx": (1, 23)}
SESSION_CC = "/onnxruntime_src/onnxruntime/test/perftest/ort_test_session.cc"


class Reject(Exception):
    """ParseArguments returned false."""


# -- the command line -----------------------------------------------------------------
def getopt_string():
    s = "m:e:r:t:p:x:y:c:d:o:u:i:f:F:"
    if VERSION < (1, 18):
        s = "b:" + s
    if VERSION >= (1, 13):
        s += "S:"
    if VERSION >= (1, 14):
        s += "T:"
    if VERSION >= (1, 18):
        s += "C:"
    s += "AMPI"
    if VERSION >= (1, 15):
        s += "DZ"
    s += "vhsqz"
    if VERSION >= (1, 18):
        s += "n"
    if VERSION >= (1, 19):
        s += "l"
    if VERSION >= (1, 20):
        s += "R:"
    return s


def getopt_usage():
    # CommandLineParser::ShowUsage(): printf to stdout (first lines).
    print("perf_test [options...] model_path [result_file]\nOptions:\n"
          "\t-m [test_mode]: Specifies the test mode. Value could be 'duration' or 'times'.")


def parse_getopt(argv):
    """OpenBSD getopt, as bionic has it (permuting, clustered flags)."""
    spec = getopt_string()
    takes = {c for i, c in enumerate(spec) if c != ":" and i + 1 < len(spec) and spec[i + 1] == ":"}
    known = {c for c in spec if c != ":"}
    flags, positional, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            positional.extend(argv[i + 1:])
            break
        if not a.startswith("-") or a == "-":
            positional.append(a)
            i += 1
            continue
        j = 1
        while j < len(a):
            c = a[j]
            if c not in known:
                sys.stderr.write(f"onnxruntime_perf_test: unknown option -- {c}\n")
                raise Reject()
            if c in takes:
                value = a[j + 1:]
                if not value:
                    i += 1
                    if i >= len(argv):
                        sys.stderr.write(f"onnxruntime_perf_test: option requires an argument -- {c}\n")
                        raise Reject()
                    value = argv[i]
                flags.append((c, value))
                break
            flags.append((c, ""))
            j += 1
        i += 1
    return flags, positional


ABSL_VALUE = {"f": str, "F": str, "m": str, "e": str, "r": int, "t": int, "p": str, "x": int, "y": int, "c": int,
              "d": int, "o": int, "u": str, "i": str, "S": int, "T": str, "C": str, "R": str, "opt_data": str,
              "plugin_ep_libs": str, "plugin_eps": str, "plugin_ep_options": str, "select_ep_devices": str,
              "filter_ep_devices": str, "compile_model_path": str, "shrink_arena_between_runs": str,
              "enable_cuda_mempool": str, "opt_weight_min_size": int}
ABSL_BOOL = set("AMsvIPqzDZnlgXh") | {"list_ep_devices", "compile_ep_context", "compile_binary_embed", "compile_only",
                                      "opt_save_prepacks"}


def parse_absl(argv):
    """absl::ParseCommandLine: `-name value`, `-name=value`, `--name`; unknown
    names and untyped values end the program with abseil's own lines."""
    flags, positional, errors, i = [], [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            positional.extend(argv[i + 1:])
            break
        if not a.startswith("-") or a == "-":
            positional.append(a)
            i += 1
            continue
        name, eq, value = a.lstrip("-").partition("=")
        if BUILD.get("absl_strip_names") or (name not in ABSL_VALUE and name not in ABSL_BOOL):
            errors.append(f"Unknown command line flag '{name}'")
        elif name in ABSL_BOOL:
            flags.append((name, "0" if eq and value in ("false", "0") else "1"))
        else:
            if not eq:
                if i + 1 >= len(argv):
                    errors.append(f"Missing the value for the flag '{name}'")
                    break
                i += 1
                value = argv[i]
            if ABSL_VALUE[name] is int and not re.fullmatch(r"[-+]?\d+", value):
                errors.append(f"Illegal value '{value}' specified for flag '{name}'")
            flags.append((name, value))
        i += 1
    if errors:
        for e in errors:
            sys.stderr.write(f"ERROR: {e}\n")
        if BUILD.get("absl_strip_names"):
            sys.stderr.write("ERROR: NOTE: command line flags are disabled in this build\n")
        sys.stderr.flush()
        sys.exit(1)
    return flags, positional


def strtol(text):
    m = re.match(r"\s*([-+]?\d+)", text)
    return int(m.group(1)) if m else 0


def session_entries(text):
    """ParseSessionConfigs: 1.18-1.20 return false on a bad token; from 1.21
    strings_helper.cc throws and the parser names it on stderr."""
    out = {}
    for token in text.split():
        key, sep, value = token.partition("|")
        if not sep or not key or not value or key in out:
            if VERSION >= (1, 21):
                sys.stderr.write("Error parsing session configuration entries: "
                                 + ("Use a '|' to separate the key and value for the run-time option you are trying "
                                    "to use.\n" if key not in out else f"Specified duplicate session configuration "
                                                                         f"entry: {key}\n"))
            raise Reject()
        out[key] = value
    return out


def configure(flags, positional):
    """ParseArguments' checks on the values; Reject where it returns false."""
    cfg = {"mode": "duration", "repeated": 1000, "duration": 600, "ep": "cpu", "x": 0, "y": 0, "o": 99,
           "session": {}, "verbose": False, "stats": False, "profile": "", "I": False, "S": -1, "i": ""}
    for name, value in flags:
        if name == "m":
            if value not in ("duration", "times"):
                raise Reject()
            cfg["mode"] = value
        elif name == "e":
            if value not in SUPPORTED and value not in NOT_IN_BUILD or VERSION < EP_SINCE.get(value, (0, 0)):
                raise Reject()
            cfg["ep"] = value
        elif name == "r":
            cfg["repeated"] = strtol(value)
            if cfg["repeated"] <= 0:
                raise Reject()
            cfg["mode"] = "times"
        elif name == "t":
            cfg["duration"] = strtol(value)
            if VERSION >= (1, 23) and cfg["duration"] <= 0:
                raise Reject()
            cfg["mode"] = "duration"
        elif name in ("x", "y"):
            cfg[name] = strtol(value)
            if cfg[name] < 0:
                raise Reject()
        elif name == "c":
            if strtol(value) <= 0:
                raise Reject()
        elif name == "o":
            level = strtol(value)
            allowed = {0, 1, 2, 99} | ({3} if VERSION >= (1, 23) else set())
            if level not in allowed and level <= 99:
                raise Reject()
            cfg["o"] = min(level, 99)
        elif name == "C":
            cfg["session"] = session_entries(value)
        elif name == "v":
            cfg["verbose"] = value == "1" if VERSION >= (1, 23) else True
        elif name == "s":
            cfg["stats"] = True
        elif name == "p":
            cfg["profile"] = value
        elif name == "I":
            cfg["I"] = True
        elif name == "S":
            cfg["S"] = strtol(value)
        elif name == "i":
            cfg["i"] = value
        elif name == "h":
            raise Reject()
    if len(positional) not in (1, 2):
        raise Reject()
    cfg["model"] = positional[0]
    cfg["result_file"] = positional[1] if len(positional) == 2 else None
    cfg["stats"] = cfg["stats"] or cfg["result_file"] is None
    return cfg


def parse(argv):
    try:
        if VERSION >= (1, 23):
            return configure(*parse_absl(argv))
        return configure(*parse_getopt(argv))
    except Reject:
        sys.stdout.flush()
        if VERSION >= (1, 23):
            sys.stderr.write("See 'onnxruntime_perf_test --help'.")  # main.cc: no newline
        else:
            getopt_usage()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(255)
