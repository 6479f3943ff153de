"""onnxruntime_perf_test: its launch line, its output, its failures.

Pure functions over text, written from onnxruntime/test/perftest at the
releases this driver supports (1.12 to 1.24; which flags each release takes
is in agents.android.releases): main.cc (exit status -1, "Run failed:", the
1.23 parser's "See 'onnxruntime_perf_test --help'."), performance_runner.cc
(the summary block and PerformanceResult::DumpToFile) and
command_args_parser.cc. Lines read, with the releases that print them:

* `Session creation time cost: X s`, `Total inference time cost: X s`,
  `Total inference requests: N`, `Average inference time cost: X ms`,
  `Total inference run time: X s`, `Number of inferences per second: X`,
  `Avg CPU usage: N %`, `Peak working set size: N bytes` (every release);
* `First inference time cost: N ms` from 1.15 (ad4db12699);
* `Average inference time cost total: X ms` in place of the average from
  1.24 (7434de31a0, merged after rel-1.23.0 was cut);
* statistics (`-s`, or no result file): `P50 Latency: X s` (and Min, Max,
  P90, P95, P99, P999; `P50 Latency is Xsec` only before 1.4); without a
  result file DumpToFile also prints `Avg CPU usage:N`,
  `Peak working set size:N`, `Runs:N`.

The per-run result file (second positional argument) has one line per
measured run, `model,time_cost,peak_working_set,cpu_usage,run_index`, with
time_cost a double of seconds (std::chrono::duration<double>) in every
release; no release writes nanoseconds.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from agents.android.releases import BadOption

PERF_TEST = "onnxruntime_perf_test"
# The system DSP folders of Qualcomm's documented ADSP_LIBRARY_PATH.
ADSP_SYSTEM_DIRS = ("/system/lib/rfsa/adsp", "/system/vendor/lib/rfsa/adsp", "/dsp")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"

# Each summary figure: its key, patterns (first match wins) and the factor to
# its unit (seconds for times unless the key says _ms).
_FIELDS: list[tuple[str, tuple[str, ...], float]] = [
    ("session_s", (rf"^Session creation time cost:\s*{_NUM}\s*s\b",), 1.0),
    ("first_run_ms", (rf"^First inference time cost:\s*{_NUM}\s*ms\b",), 1.0),
    ("total_s", (rf"^Total inference time cost:\s*{_NUM}\s*s\b",), 1.0),
    ("requests", (rf"^Total inference requests:\s*{_NUM}\s*$", rf"^Runs:\s*{_NUM}\s*$"), 1.0),
    # " total" from 1.24 (performance_runner.cc, 7434de31a0).
    ("average_ms", (rf"^Average inference time cost(?: total)?:\s*{_NUM}\s*ms\b",), 1.0),
    ("run_time_s", (rf"^Total inference run time:\s*{_NUM}\s*s\b",), 1.0),
    ("throughput", (rf"^Number of inferences per second:\s*{_NUM}",), 1.0),
    ("cpu_pct", (rf"^Avg CPU usage:\s*{_NUM}",), 1.0),
    ("peak_bytes", (rf"^Peak working set size:\s*{_NUM}",), 1.0),
]
# DumpToFile's statistics block, `P90 Latency: X s` in every supported release.
_LATENCY = re.compile(rf"^(Min|Max|P50|P90|P95|P99|P999) Latency:\s*{_NUM}\s*s\s*$")


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

    Lines are `model,time_cost,peak,cpu,index` with time_cost in seconds
    (performance_runner.cc DumpToFile, every release); the statistics block
    that follows them (after a blank line) is skipped. `average_ms` is
    accepted for callers that have it and does not change the unit."""
    out: list[float] = []
    for line in text.splitlines():
        parts = line.strip().split(",")
        if len(parts) < 5 or not parts[-1].strip().isdigit():
            continue
        try:
            out.append(float(parts[-4]) * 1e3)
        except ValueError:
            continue
    return out


# -- failures -------------------------------------------------------------------
_CLASSES = [
    ("unsupported_ep", ("is not supported in this build", "This backend is not included in perf test runner")),
    ("fallback_disabled", ("fallback to CPU EP has been explicitly disabled",)),
    # bionic's linker, mksh ("inaccessible or not found"), other shells, a
    # binary for another ABI ("Exec format error") or one pushed without +x.
    # An Android build of the 1.23 cycle before #25849 strips abseil's flag
    # names: every flag is unknown (absl/flags/parse.cc).
    ("runner_broken", ("CANNOT LINK EXECUTABLE", "inaccessible or not found", ": not found",
                       "Exec format error", "Permission denied", "command line flags are disabled in this build")),
    ("unsupported_op", ("NOT_IMPLEMENTED", "Could not find an implementation")),
    ("model_invalid", ("INVALID_PROTOBUF", "Protobuf parsing failed", "INVALID_GRAPH", "Load model from",
                       "failed:Load model")),
    ("bad_input", ("there is no test data", "there is no test input data", "INVALID_ARGUMENT",
                   "Got invalid dimensions")),
    ("oom", ("bad_alloc", "Failed to allocate")),
    # The parsers' refusals: up to 1.22 getopt (bionic's OpenBSD getopt
    # lines, then ShowUsage on stdout); from 1.23 abseil's own "ERROR: ..."
    # lines, or only main.cc's "See 'onnxruntime_perf_test --help'." for a
    # value ParseArguments rejects; -C entries' "Error parsing ..." (1.21+).
    ("bad_option", ("Unknown command line flag", "perf_test [options...]", "Error parsing",
                    "Use a '|' to separate", "See 'onnxruntime_perf_test --help'.", "unknown option -- ",
                    "option requires an argument -- ", "Missing the value for the flag", "Illegal value '")),
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
def cores_mask(text: str) -> str:
    """The hex taskset mask for a cpu_affinity option such as "4-7" or "0,2"
    (the host driver's spelling of the same option)."""
    from harness.kernel.cores import parse_cores

    try:
        cores = parse_cores(text)
    except ValueError as exc:
        raise BadOption(f"option {exc}") from None
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

    ADSP_LIBRARY_PATH is where the Hexagon DSP loader looks for the skel
    library a QNN (or SNPE) runner ships: Qualcomm's documented form is the
    skel folder followed by the system DSP folders, `;`-separated
    ("DSP Runtime Environment", docs.qualcomm.com 80-63442-10): replacing
    them would hide the phone's own DSP libraries. Harmless elsewhere."""
    adsp = ";".join((runner_dir,) + ADSP_SYSTEM_DIRS)
    exports = {"LD_LIBRARY_PATH": runner_dir, "ADSP_LIBRARY_PATH": adsp, **env}
    parts = [f"cd {shlex.quote(workdir)}", "echo $$ > .pid"]
    parts += [f"export {k}={shlex.quote(v)}" for k, v in exports.items()]
    cmd = ["exec"]
    if affinity:
        cmd += ["taskset", affinity]
    cmd.append(f"{runner_dir}/{program}")
    cmd += list(argv)
    parts.append(" ".join(shlex.quote(c) if i else c for i, c in enumerate(cmd)))
    return " && ".join(parts)
