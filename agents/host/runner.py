"""The host driver's child process: load one model, measure it, report.

Runs as `python -m agents.host.runner JOB_DIR`. Reads JOB_DIR/job.json and
JOB_DIR/probes.npz; prints progress as JSON lines on stdout; writes
JOB_DIR/result.json and JOB_DIR/outputs.npz. Running in its own process means
a runtime crash or hang costs one job, never the agent, and its peak memory is
its own.

Order matters for honest numbers: measure first (one session, nothing else
alive), read the high-water mark, then run probes, then the placement pass
(verbose log + profiling session), which would otherwise disturb timing and
memory.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _status_kib(field: str) -> int | None:
    """A VmXXX field of /proc/self/status in KiB (Linux only)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _rss_bytes() -> tuple[int, str]:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024, "VmRSS"
    import psutil

    return psutil.Process().memory_info().rss, "psutil rss"


def _peak_bytes() -> tuple[int, str]:
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024, "VmHWM of the runner process, read after measurement"
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return maxrss * scale, "getrusage ru_maxrss of the runner process, read after measurement"


class JobFailed(Exception):
    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


def _classify(exc: BaseException, stage: str) -> JobFailed:
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if "not_implemented" in low or "could not find an implementation" in low:
        kind = "unsupported_op"
    elif "invalid_protobuf" in low or "invalid_graph" in low or "protobuf parsing failed" in low:
        kind = "model_invalid"
    elif "invalid_argument" in low or "invalid input" in low or "got invalid dimensions" in low:
        kind = "bad_input"
    elif isinstance(exc, MemoryError) or "bad_alloc" in low or "failed to allocate" in low:
        kind = "oom"
    else:
        kind = "runtime_error"
    return JobFailed(stage, kind, text.strip()[:4000])


def _session_options(ort, options: dict, log_verbose: bool = False, profile_prefix: str = "",
                     libraries: tuple = ()):
    so = ort.SessionOptions()
    # Thread counts default to ONNX Runtime's own choice unless the target says.
    if "intra_op_threads" in options:
        so.intra_op_num_threads = int(options["intra_op_threads"])
    if "inter_op_threads" in options:
        so.inter_op_num_threads = int(options["inter_op_threads"])
    level = options.get("graph_optimization_level")
    if level:
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if level not in levels:
            raise JobFailed("load", "bad_option", f"graph_optimization_level={level!r}: expected one of {sorted(levels)}")
        so.graph_optimization_level = levels[level]
    for lib in libraries:
        # Models with custom operators need their kernels' shared library
        # (e.g. onnxruntime-extensions): the agent's configured path for the
        # name the target gave, loaded into the runner only.
        so.register_custom_ops_library(lib)
    for key, value in options.items():
        if key.startswith("session."):
            so.add_session_config_entry(key, str(value))
    if log_verbose:
        so.log_severity_level = 0
        so.log_verbosity_level = 0
    else:
        so.log_severity_level = 3  # errors only: logging must not cost time in the loop
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def _parse_cores(text: str) -> frozenset[int]:
    from harness.kernel.cores import parse_cores

    try:
        return parse_cores(text)
    except ValueError as exc:
        raise JobFailed("load", "bad_option", str(exc)) from None


def _providers(ep: str, options: dict) -> list:
    from harness.kernel.eps import EP_LONG_NAMES

    long = EP_LONG_NAMES.get(ep)
    if long is None:
        raise JobFailed("load", "unsupported_ep", f"execution provider {ep!r} is not known to the host driver")
    provider_opts = {k[len("ep."):]: str(v) for k, v in options.items() if k.startswith("ep.")}
    if long == "CPUExecutionProvider":
        return [(long, provider_opts)] if provider_opts else [long]
    return [(long, provider_opts), "CPUExecutionProvider"]


def _capture_fd2(path: Path):
    """Redirect the C++ stderr (fd 2) to a file: ORT's logger writes there,
    not to Python's sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


def _restore_fd2(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def main(job_dir: str) -> int:
    from agents import jobdir
    from harness.kernel.procs import die_with_parent

    die_with_parent()
    jd = Path(job_dir)
    spec = json.loads((jd / "job.json").read_text())
    result: dict = {"error": None, "validity": {}, "details": {}}
    # A runner forked from a warm template (agents/host/warm.py) starts with
    # one thread, like a spawned one: no runtime thread pool exists yet.
    threads = _status_kib("Threads")
    if threads is not None:
        result["details"]["threads_at_start"] = threads
    forked = jd / "fork.json"  # what agents/host/forkserver.py did before this runner started
    if forked.exists():
        try:
            result["details"].update(json.loads(forked.read_text()))
        except ValueError:
            pass
    outputs: dict = {}
    try:
        _run(jd, spec, result, outputs)
    except JobFailed as exc:
        result["error"] = {"stage": exc.stage, "kind": exc.kind, "message": exc.message}
    except Exception as exc:  # any runtime failure is a result, never a crash
        failed = _classify(exc, result.get("_stage", "runner"))
        result["error"] = {"stage": failed.stage, "kind": failed.kind,
                           "message": failed.message + "\n" + traceback.format_exc(limit=3)[-1500:]}
    jobdir.finish(jd, result, outputs)
    return 0


def _run(jd: Path, spec: dict, result: dict, outputs: dict) -> None:
    import numpy as np

    from agents import jobdir
    from harness.kernel.measure.policy import MeasurePolicy, StopRule

    result["_stage"] = "load"
    import onnxruntime as ort

    ep = spec["ep"]
    options = {str(k): str(v) for k, v in spec.get("options", {}).items()}
    libraries = tuple(str(p) for p in spec.get("custom_ops", ()))
    result["runtime"] = {"name": "onnxruntime", "version": ort.__version__, "ep": ep, "options": options}
    result["details"]["runtime_build"] = ort.get_build_info() if hasattr(ort, "get_build_info") else ""
    result["details"]["timer_resolution_ms"] = time.get_clock_info("perf_counter").resolution * 1e3
    probes = jobdir.read_probes(jd)
    if not probes:
        raise JobFailed("job", "bad_input", "the job carries no probe inputs")
    feed = probes[0]

    affinity = options.get("cpu_affinity")
    if affinity:
        # Pin the runner (and ONNX Runtime's threads, which inherit it) to
        # chosen cores, e.g. "2-3" or "0,2": keeps other work off them.
        cores = _parse_cores(affinity)
        try:
            os.sched_setaffinity(0, cores)
        except (AttributeError, OSError) as exc:
            raise JobFailed("load", "bad_option", f"cpu_affinity={affinity!r}: {exc}") from None
        result["details"]["cpu_affinity"] = sorted(cores)
    rss_before, rss_method = _rss_bytes()
    providers = _providers(ep, options)
    # Where the build has the graph-assignment API, the measuring session
    # records its own placement (at partitioning, no cost per run), so the
    # placement pass needs no verbose log.
    from agents import placement as pl

    api = pl.has_assignment_api(ort.__version__) and hasattr(ort.InferenceSession, "get_provider_graph_assignment_info")
    measured = {**options, pl.API_CONFIG_KEY: "1"} if api else options
    t0 = time.perf_counter()
    try:
        sess = ort.InferenceSession(spec["model_path"], _session_options(ort, measured, libraries=libraries),
                                    providers=providers)
    except Exception as exc:
        raise _classify(exc, "load") from None
    load_ms = (time.perf_counter() - t0) * 1e3
    result["load_ms"] = load_ms
    got = [p for p in sess.get_providers()]
    result["details"]["session_providers"] = got
    _emit({"phase": "load", "samples": 0, "elapsed_s": load_ms / 1e3})

    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in feed]
    if missing:
        raise JobFailed("job", "bad_input", f"probe inputs lack model input(s) {missing}; model expects {names}")
    feed = {n: feed[n] for n in names}
    run = sess.run

    result["_stage"] = "warmup"
    t0 = time.perf_counter()
    try:
        run(None, feed)
    except Exception as exc:
        raise _classify(exc, "warmup") from None
    result["first_run_ms"] = (time.perf_counter() - t0) * 1e3

    policy = MeasurePolicy(**spec["measure"])
    rule = StopRule(policy)
    perf = time.perf_counter
    start = perf()
    runs = 1
    while not rule.warmup_complete(runs, perf() - start):
        run(None, feed)
        runs += 1
        if perf() - start > policy.max_s:
            break
    result["validity"]["warmup_done"] = rule.warmup_complete(runs, perf() - start)
    result["details"]["warmup_runs"] = runs
    result["details"]["warmup_s"] = perf() - start

    result["_stage"] = "measure"
    samples: list[float] = []
    append = samples.append
    start = perf()
    last_progress = start
    reason = None
    while reason is None:
        t = perf()
        run(None, feed)
        end = perf()
        append((end - t) * 1e3)
        elapsed = end - start
        reason = rule.stop_reason(samples, elapsed)
        if end - last_progress >= 0.5:
            last_progress = end
            _emit({"phase": "measure", "samples": len(samples), "elapsed_s": elapsed})
    elapsed = perf() - start
    result["samples_ms"] = samples
    result["validity"].update(
        min_runs_met=len(samples) >= policy.min_runs,
        min_time_met=elapsed >= policy.min_s,
        stop_reason=reason,
    )
    result["details"]["measure_s"] = elapsed

    result["_stage"] = "probes"
    _emit({"phase": "probes", "samples": len(samples), "elapsed_s": elapsed})
    out_names = [o.name for o in sess.get_outputs()]
    for i, probe in enumerate(probes):
        try:
            values = run(None, {n: probe[n] for n in names})
        except Exception as exc:
            raise _classify(exc, "probes") from None
        for name, value in zip(out_names, values):
            if isinstance(value, np.ndarray):
                outputs[f"{i}/{name}"] = value
    peak, peak_method = _peak_bytes()
    assignment = None
    if api:
        try:
            assignment = pl.assignment_entries(sess)
        except Exception as exc:  # the call exists but refuses: the log pass says it then
            result["details"]["placement_api_error"] = f"{type(exc).__name__}: {exc}"[:500]
    result["memory"] = {
        "peak_bytes": peak,
        "delta_bytes": peak - rss_before,
        "method": f"{peak_method}; delta over {rss_method} before session create",
    }
    del sess, run

    known = spec.get("placement")
    if known is not None:
        # The agent measured this model's placement with this build and these
        # options before (agents/host/driver.py's cache): no second pass.
        result["placement"] = known
        return
    result["_stage"] = "placement"
    _emit({"phase": "placement", "samples": len(samples), "elapsed_s": elapsed})
    result["placement"] = _placement(ort, jd, spec["model_path"], ep, options, providers, feed, libraries, assignment)


def _placement(ort, jd: Path, model_path: str, ep: str, options: dict, providers, feed,
               libraries: tuple = (), assignment=None) -> dict | None:
    """The profile pass (time share per EP) and, where the measuring session
    could not tell the placement, its verbose log; then the strict probe.

    No pass at all where the measuring session's assignment already says
    everything: a CPU target whose every model node ran on the CPU EP spends
    all its kernel time there (the profile would count only CPU node events),
    and a CPU target has no strict probe. The strict probe itself is never
    derived from the assignment: EPs read `session.disable_cpu_ep_fallback`
    and behave differently under it (OpenVINO's NPU-to-CPU device fallback,
    providers/openvino/backend_manager.cc; QNN's qnn_execution_provider.cc).
    """
    from agents import placement as pl
    from harness.kernel.eps import CPU_EPS

    if assignment is not None and ep in CPU_EPS and \
            {p for p, nodes in assignment if nodes} == {"CPUExecutionProvider"}:
        import dataclasses

        one = pl.combine(ep, None, None, None, api=assignment)
        if one is not None:
            return pl.as_dict(dataclasses.replace(one, time_share_by_ep={"cpu": 1.0}))
    log = None
    verbose = assignment is None
    if verbose:
        log_path = jd / "ort_verbose.log"
        saved = _capture_fd2(log_path)
        # EPs that log their capability summary through the default logger
        # (OpenVINO, TensorRT; NNAPI up to 1.20) are silent at the session's
        # own level: raise the process-wide one while this session is made.
        default_level = getattr(ort, "set_default_logger_severity", None)
        if default_level:
            default_level(0)
    try:
        sess = ort.InferenceSession(
            model_path,
            _session_options(ort, options, log_verbose=verbose, profile_prefix=str(jd / "profile"),
                             libraries=libraries),
            providers=providers,
        )
    finally:
        if verbose:
            if default_level:
                default_level(2)  # ONNX Runtime's default: warnings
            _restore_fd2(saved)
    for _ in range(3):
        sess.run(None, feed)
    profile_path = sess.end_profiling()
    if verbose:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            log = pl.parse_verbose_log(fh)
    profile = pl.parse_profile(pl.load_profile(profile_path))
    fully = None
    if ep not in CPU_EPS:
        strict = dict(options)
        strict["session.disable_cpu_ep_fallback"] = "1"
        try:
            ort.InferenceSession(model_path, _session_options(ort, strict, libraries=libraries), providers=providers[:1])
            fully = True
        except Exception:
            fully = False
    return pl.as_dict(pl.combine(ep, log, profile, fully, api=assignment))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
