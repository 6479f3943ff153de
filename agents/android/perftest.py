"""onnxruntime_perf_test: its command line, its output, its failures.

Pure functions over text, written from onnxruntime/test/perftest:
command_args_parser.cc (flags), main.cc (exit status -1 and "Run failed:"),
performance_runner.cc (the summary block and PerformanceResult::DumpToFile)
and ort_test_session.cc (EP and session options). Its output changed over
the years, and a lab may hold builds of several versions, so every spelling
seen in released versions is read:

* oldest:  `Total time cost:X` / `Total iterations:N` / `Average time cost:X ms`
* 1.x:     `Session creation time cost: X s`, `First inference time cost: N ms`,
           `Total inference time cost: X s`, `Total inference requests: N`,
           `Average inference time cost: X ms`, `Total inference run time: X s`,
           `Number of inferences per second: X`, `Avg CPU usage: N %`,
           `Peak working set size: N bytes`
* newer:   `Average inference time cost total: X ms`; some builds print
           `Total CPU usage: N %`
* statistics (`-s` or no result file): `P50 Latency: X s` (and Min, Max, P90,
  P95, P99, P999); builds with mlperf latencies print `P50 Latency is X sec`;
  without a result file DumpToFile also prints `Avg CPU usage:N`,
  `Peak working set size:N`, `Runs:N`.

The per-run result file (second positional argument) has one line per
measured run, `model,time_cost,peak_working_set,cpu_usage,run_index`, with
time_cost in seconds, or in nanoseconds in the mlperf-latency builds; the unit
is told apart by comparing with the summary's average.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

PERF_TEST = "onnxruntime_perf_test"
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"

# Each summary figure: its key, patterns (first match wins) and the factor to
# its unit (seconds for times unless the key says _ms).
_FIELDS: list[tuple[str, tuple[str, ...], float]] = [
    ("session_s", (rf"^Session creation time cost:\s*{_NUM}\s*s\b",), 1.0),
    ("first_run_ms", (rf"^First inference time cost:\s*{_NUM}\s*ms\b",), 1.0),
    ("total_s", (rf"^Total inference time cost:\s*{_NUM}\s*s\b", rf"^Total time cost:\s*{_NUM}\s*$"), 1.0),
    ("requests", (rf"^Total inference requests:\s*{_NUM}\s*$", rf"^Total iterations:\s*{_NUM}\s*$",
                  rf"^Runs:\s*{_NUM}\s*$"), 1.0),
    ("average_ms", (rf"^Average inference time cost(?: total)?:\s*{_NUM}\s*ms\b",
                    rf"^Average time cost:\s*{_NUM}\s*ms\b"), 1.0),
    ("run_time_s", (rf"^Total inference run time:\s*{_NUM}\s*s\b",), 1.0),
    ("throughput", (rf"^Number of inferences per second:\s*{_NUM}",), 1.0),
    ("cpu_pct", (rf"^(?:Avg|Total) CPU usage:\s*{_NUM}",), 1.0),
    ("peak_bytes", (rf"^Peak working set size:\s*{_NUM}",), 1.0),
]
_LATENCY = re.compile(rf"^(Min|Max|P50|P90|P95|P99|P999) Latency(?::| is)\s*{_NUM}\s*(s|sec)\s*$")


@dataclass
class Summary:
    """What one perf_test run printed; None where it printed nothing."""

    session_s: Optional[float] = None
    first_run_ms: Optional[float] = None
    total_s: Optional[float] = None
    requests: Optional[int] = None
    average_ms: Optional[float] = None
    run_time_s: Optional[float] = None
    throughput: Optional[float] = None
    cpu_pct: Optional[float] = None
    peak_bytes: Optional[int] = None
    latency_s: dict[str, float] = field(default_factory=dict)  # min, max, p50, ... p999

    @property
    def complete(self) -> bool:
        """Enough to trust the run measured something."""
        return self.requests is not None and self.requests > 0 and self.average_ms is not None


def parse_summary(text: str) -> Summary:
    out = Summary()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _LATENCY.match(line)
        if m:
            out.latency_s[m.group(1).lower()] = float(m.group(2))
            continue
        for key, patterns, _ in _FIELDS:
            if getattr(out, key) is not None:
                continue
            for pat in patterns:
                m = re.match(pat, line)
                if m:
                    value = float(m.group(1))
                    setattr(out, key, int(value) if key in ("requests", "peak_bytes") else value)
                    break
            else:
                continue
            break
    return out


def parse_result_file(text: str, average_ms: Optional[float] = None) -> list[float]:
    """Per-run times in ms from a perf_test result file.

    Lines are `model,time_cost,peak,cpu,index`; the statistics block that
    follows them (after a blank line) is skipped. The time unit is seconds
    unless the values only make sense as nanoseconds (mlperf builds): the
    summary's average decides when given, else integral values are ns.
    """
    raw: list[str] = []
    for line in text.splitlines():
        parts = line.strip().split(",")
        if len(parts) < 5 or not parts[-1].strip().isdigit():
            continue
        raw.append(parts[-4].strip())
    if not raw:
        return []
    values = [float(v) for v in raw]
    integral = all(re.fullmatch(r"\d+", v) for v in raw)
    scale = 1e3  # s -> ms
    if average_ms and average_ms > 0:
        mean = sum(values) / len(values)
        if abs(mean * 1e-6 - average_ms) < abs(mean * 1e3 - average_ms):
            scale = 1e-6  # ns -> ms
    elif integral:
        scale = 1e-6
    return [v * scale for v in values]


# -- failures -------------------------------------------------------------------
_CLASSES = [
    ("unsupported_ep", ("is not supported in this build", "This backend is not included in perf test runner")),
    ("fallback_disabled", ("fallback to CPU EP has been explicitly disabled",)),
    # bionic's linker, mksh ("inaccessible or not found"), other shells, a
    # binary for another ABI ("Exec format error") or one pushed without +x.
    ("runner_broken", ("CANNOT LINK EXECUTABLE", "inaccessible or not found", ": not found",
                       "Exec format error", "Permission denied")),
    ("unsupported_op", ("NOT_IMPLEMENTED", "Could not find an implementation")),
    ("model_invalid", ("INVALID_PROTOBUF", "Protobuf parsing failed", "INVALID_GRAPH", "Load model from",
                       "failed:Load model")),
    ("bad_input", ("there is no test data", "there is no test input data", "INVALID_ARGUMENT",
                   "Got invalid dimensions")),
    ("oom", ("bad_alloc", "Failed to allocate")),
    ("bad_option", ("Unknown command line flag", "perf_test [options...]", "Error parsing",
                    "Use a '|' to separate")),
]


def classify_failure(exit_code: Optional[int], stdout: str, stderr: str) -> str:
    """A JobError kind for a failed run, from its exit status and output."""
    text = stderr + "\n" + stdout
    for kind, needles in _CLASSES:
        if any(n in text for n in needles):
            return kind
    if exit_code is not None and exit_code >= 128:
        return "crash"  # killed by a signal (the shell reports 128 + signal)
    return "runner_failed"


def excerpt(text: str, limit: int = 1500) -> str:
    """The end of a runner's output (where the error is), trimmed."""
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    out = "\n".join(lines)
    return out if len(out) <= limit else "..." + out[-limit:]


def fallback_disabled(stdout: str, stderr: str) -> bool:
    """ONNX Runtime's refusal when a strict session would need the CPU EP
    (inference_session.cc, with session.disable_cpu_ep_fallback=1)."""
    return "fallback to CPU EP has been explicitly disabled" in (stderr + stdout)


# -- command line ------------------------------------------------------------------
OPT_LEVELS = {"disable": 0, "basic": 1, "extended": 2, "layout": 3, "all": 99}


class BadOption(ValueError):
    pass


def option_flags(ep: str, options: Mapping[str, str]) -> list[str]:
    """perf_test flags for a target's options.

    intra_op_threads -> -x, inter_op_threads -> -y (with -P, which perf_test
    needs before it uses them), graph_optimization_level -> -o,
    session.* -> -C entries, ep.* -> -i entries (NNAPI takes bare flag names,
    e.g. ep.NNAPI_FLAG_USE_FP16: "1"); cpu_affinity pins with taskset (see
    cores_mask). Anything else is refused by name.
    """
    flags: list[str] = []
    session, ep_opts = [], []
    for key, value in sorted(options.items()):
        value = str(value)
        if key == "intra_op_threads":
            flags += ["-x", _int_option(key, value)]
        elif key == "inter_op_threads":
            flags += ["-P", "-y", _int_option(key, value)]
        elif key == "graph_optimization_level":
            if value not in OPT_LEVELS:
                raise BadOption(f"option graph_optimization_level={value!r}: expected one of {', '.join(OPT_LEVELS)}")
            flags += ["-o", str(OPT_LEVELS[value])]
        elif key.startswith("session."):
            session.append(f"{key}|{value}")
        elif key == "cpu_affinity":
            continue  # taskset on the launch line, not a perf_test flag: see cores_mask()
        elif key.startswith("ep."):
            name = key[3:]
            if ep == "nnapi":
                if value.lower() not in ("0", "false", "no", "off", ""):
                    ep_opts.append(name)
            else:
                ep_opts.append(f"{name}|{value}")
        else:
            raise BadOption(f"option {key!r} is not understood by the android driver (use intra_op_threads, "
                            f"inter_op_threads, graph_optimization_level, session.<key> or ep.<key>)")
    if session:
        flags += ["-C", " ".join(session)]
    if ep_opts:
        flags += ["-i", " ".join(ep_opts)]
    return flags


def cores_mask(text: str) -> str:
    """The hex taskset mask for a cpu_affinity option such as "4-7" or "0,2"
    (the host driver's spelling of the same option)."""
    cores: set[int] = set()
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            cores.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise BadOption(f"option cpu_affinity={text!r}: expected cores like 4-7 or 0,2") from None
    if not cores or min(cores) < 0:
        raise BadOption(f"option cpu_affinity={text!r}: expected cores like 4-7 or 0,2")
    return format(sum(1 << c for c in cores), "x")


def sample_resolution_ms(samples_ms: Sequence[float]) -> Optional[float]:
    """How finely the result file states a typical run: perf_test writes its
    per-run seconds with C++ streams' default 6 significant digits."""
    if not samples_ms:
        return None
    ordered = sorted(samples_ms)
    median_s = ordered[len(ordered) // 2] / 1e3
    if median_s <= 0:
        return None
    return 10.0 ** (math.floor(math.log10(median_s)) - 5) * 1e3


def _int_option(key: str, value: str) -> str:
    if not value.isdigit():
        raise BadOption(f"option {key}={value!r}: expected a whole number")
    return value


def with_session_entry(flags: Sequence[str], entry: str) -> list[str]:
    """flags with one more -C entry (perf_test reads a single -C value)."""
    out = list(flags)
    if "-C" in out:
        i = out.index("-C")
        out[i + 1] = out[i + 1] + " " + entry
    else:
        out += ["-C", entry]
    return out


def run_argv(ep: str, *, times: Optional[int] = None, seconds: Optional[int] = None,
             profile: Optional[str] = None, verbose: bool = False, extra: Sequence[str] = (),
             model: str, result_file: Optional[str] = None) -> list[str]:
    """Arguments after the program name for one run."""
    argv = ["-e", ep]
    if times is not None:
        argv += ["-m", "times", "-r", str(max(1, int(times)))]
    else:
        argv += ["-m", "duration", "-t", str(max(1, int(seconds or 1)))]
    if profile:
        argv += ["-p", profile]
    if verbose:
        argv.append("-v")
    argv += list(extra)
    argv.append(model)
    if result_file:
        argv.append(result_file)
    return argv


def launch_command(workdir: str, runner_dir: str, argv: Sequence[str], *, program: str = PERF_TEST,
                   affinity: Optional[str] = None, env: Mapping[str, str] = {}) -> str:
    """The device shell line: record the pid (for kills and logcat --pid),
    find the runner's libraries, and exec perf_test in place of the shell.

    ADSP_LIBRARY_PATH is where the Hexagon DSP looks for the QNN HTP skel
    library a QNN runner ships (Qualcomm AI Engine Direct docs, and ONNX
    Runtime's QNN EP docs); it is harmless for every other runner."""
    exports = {"LD_LIBRARY_PATH": runner_dir, "ADSP_LIBRARY_PATH": runner_dir, **env}
    parts = [f"cd {shlex.quote(workdir)}", "echo $$ > .pid"]
    parts += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    cmd = ["exec"]
    if affinity:
        cmd += ["taskset", affinity]
    cmd.append(f"{runner_dir}/{program}")
    cmd += list(argv)
    parts.append(" ".join(shlex.quote(c) if i else c for i, c in enumerate(cmd)))
    return " && ".join(parts)
