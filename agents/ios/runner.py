"""The iOS driver's child process: one Core ML job, then exit.

Runs as `python -m agents.ios.runner JOB_DIR`. Reads JOB_DIR/job.json and
JOB_DIR/probes.npz, prints progress as JSON lines, writes JOB_DIR/result.json
and JOB_DIR/outputs.npz. In its own process a Core ML crash or hang (or a
stuck devicectl transfer) costs one job, and the process's peak memory is the
model's when Core ML runs in it (the Mac itself).

Order, as in the host runner: measure first, then read memory, then ask for
the compute plan, whose loading would otherwise disturb both.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from agents import jobdir
from harness.kernel import limits


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _rss_bytes() -> tuple[int, str]:
    import psutil

    return psutil.Process().memory_info().rss, "resident set size"


# What ru_maxrss of the runner cannot see on a Mac: Core ML compiles and
# keeps Neural Engine models in system daemons (ANECompilerService, aned) and
# the Metal driver holds GPU buffers, outside this process; coremltools
# reports no memory figure of its own.
COREML_BLIND_SPOT = ("Neural Engine memory (held by the aned and ANECompilerService daemons) and GPU memory (held by "
                     "the Metal driver) are outside the runner process and not in this figure")


def _peak_bytes() -> tuple[int, str]:
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return maxrss * scale, "getrusage ru_maxrss of the runner process (Core ML runs in it), read after measurement"


def plan_supported(os_version: str, mac_os_version: str = "", remote: bool = False,
                   coremltools: str = "") -> tuple[bool, str]:
    """Whether a compute plan can be had: the device's OS, and for a phone or
    simulator also the Mac's (MLModelStructure.load_from_path runs on the
    Mac, async_wrapper.py retrieve_compute_plan), and coremltools 8.1+."""
    from agents.ios.backend import PLAN_SINCE, coremltools_gaps
    from agents.ios.inventory import version_tuple

    gaps = [g for g in coremltools_gaps(coremltools) if "compute plan" in g]
    if gaps:
        return False, f"placement: {gaps[0]}"
    name = (os_version or "").split(" ")[0]
    need = PLAN_SINCE.get(name)
    have = version_tuple(os_version)
    if need is not None and have and have < need:
        return False, (f"placement: Core ML's compute plan needs {name} {'.'.join(map(str, need))}+, "
                       f"this device runs {os_version}")
    mac = version_tuple(mac_os_version)
    if remote and mac and mac < PLAN_SINCE["macOS"]:
        return False, (f"placement: a device's compute plan also needs the Mac on macOS "
                       f"{'.'.join(map(str, PLAN_SINCE['macOS']))}+ (MLModelStructure.load_from_path reads the "
                       f"compiled model on the Mac); the Mac runs {mac_os_version}")
    return True, ""


def _skip_converter_frameworks() -> None:
    """coremltools imports torch, TensorFlow and scikit-learn when they are
    installed, for its converters. Predicting and compute plans need none of
    them, and in this process they would cost seconds and some hundreds of
    MB on top of the model's own memory, which is what is measured here. A
    None entry in sys.modules makes their import fail, which coremltools
    treats as "not installed"."""
    for name in ("torch", "tensorflow", "sklearn"):
        sys.modules.setdefault(name, None)


def main(job_dir: str) -> int:
    _skip_converter_frameworks()
    jd = Path(job_dir)
    spec = json.loads((jd / "job.json").read_text())
    result: dict = {"error": None, "validity": {}, "details": {"not_measured": []}}
    outputs: dict = {}
    try:
        _run(jd, spec, result, outputs)
    except Exception as exc:  # every failure is a result, never a crash
        from agents.ios.measure import JobFailed

        if isinstance(exc, JobFailed):
            result["error"] = {"stage": exc.stage, "kind": exc.kind, "message": exc.message}
        else:
            result["error"] = {"stage": result.get("_stage", "runner"), "kind": "runtime_error",
                               "message": f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3)[-1500:]}
    jobdir.finish(jd, result, outputs)
    return 0


def _run(jd: Path, spec: dict, result: dict, outputs: dict) -> None:
    from agents.ios import computeplan
    from agents.ios.backend import PlanUnavailable
    from agents.ios.macos import backend_from_spec
    from agents.ios.measure import measure
    from harness.kernel.measure.policy import MeasurePolicy

    result["_stage"] = "load"
    device = spec["device"]
    units = spec["compute_units"]
    probes = jobdir.read_probes(jd)
    backend = backend_from_spec(spec["backend"])
    # Remote answers are waited for until shortly before the driver's own
    # limit, so the runner still writes its result.
    deadline = time.monotonic() + max(1.0, float(spec.get("timeout_s") or 3600) - limits.RUNNER_RESULT_MARGIN_S)
    session = backend.open_session(device, Path(spec["model_path"]), units, spec.get("config") or {},
                                   Path(spec.get("work_dir") or jd), deadline)
    try:
        rss_before, rss_method = _rss_bytes()
        res = measure(session, probes, MeasurePolicy(**spec["measure"]), _emit)
        for i, out in enumerate(res.pop("outputs")):
            for name, value in out.items():
                outputs[f"{i}/{name}"] = value
        result.update(res)
        result["details"].setdefault("not_measured", [])
        if session.in_process:
            peak, method = _peak_bytes()
            result["memory"] = {"peak_bytes": peak, "delta_bytes": peak - rss_before,
                                "method": f"{method}; delta over its {rss_method} before load",
                                "blind_spot": COREML_BLIND_SPOT}
        else:
            result["details"]["not_measured"].append(
                "memory: the on-device runner app reports no memory figures")

        result["_stage"] = "placement"
        _emit({"phase": "placement", "samples": len(result.get("samples_ms") or ()), "elapsed_s": 0.0})
        ok, why = plan_supported(device.get("os_version", ""), spec.get("mac_os_version", ""),
                                 not session.in_process, spec.get("coremltools", ""))
        if not ok:
            result["details"]["not_measured"].append(why)
            return
        try:
            ops = computeplan.plan_ops(session.compute_plan())
        except PlanUnavailable as exc:
            result["details"]["not_measured"].append(f"placement: {exc}")
            return
        except Exception as exc:  # a plan failure must not cost the measurements
            result["details"]["not_measured"].append(f"placement: compute plan failed ({type(exc).__name__}: {exc})")
            return
        p = computeplan.placement_from_plan(ops, units)
        result["details"]["compute_plan"] = computeplan.plan_details(ops, units)
        if p is not None:
            result["placement"] = {
                "nodes_total": p.nodes_total, "nodes_by_ep": dict(p.nodes_by_ep),
                "cpu_fallback_nodes": p.cpu_fallback_nodes, "fallback_op_types": dict(p.fallback_op_types),
                "time_share_by_ep": dict(p.time_share_by_ep), "fully_accelerated": p.fully_accelerated,
                "source": p.source,
            }
        else:
            result["details"]["not_measured"].append("placement: the compute plan gave no operation a device")
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
