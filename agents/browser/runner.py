"""The browser driver's child process: one Chromium, one page, one job.

`python -m agents.browser.runner job JOB_DIR` reads JOB_DIR/job.json and
JOB_DIR/probes.npz, prints progress as JSON lines on stdout, and writes
JOB_DIR/result.json and JOB_DIR/outputs.npz (the host runner's shapes).
`python -m agents.browser.runner probe JOB_DIR` writes JOB_DIR/probe.json:
what the browser is and which ONNX Runtime Web backends work in it.

Playwright's sync API is bound to the thread that started it, and a page can
crash or hang in a WebAssembly loop; a process per job keeps Playwright on
one thread, gives every job a fresh browser profile (no shader or compile
caches carried over), and lets the agent kill the whole tree on timeout.

Order, as in the host runner: runtime start-up, then the timed session
(load, first run, warm-up, measurement), memory, probes; the verbose
placement session and the strict probe come last so their logging cannot
disturb the figures.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from agents import jobdir
from agents.browser.readings import Memory, placement
from agents.browser.session import BrowserPage, PageFailed
from harness.kernel import limits


T0 = time.monotonic()


def _mark(result: dict, name: str) -> None:
    """Seconds since the runner started, per step: where a job's wall time goes."""
    result["details"].setdefault("timeline_s", {})[name] = round(time.monotonic() - T0, 3)


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class JobFailed(Exception):
    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


def classify(message: str) -> str:
    low = message.lower()
    if any(s in low for s in ("cannot resolve operator", "could not find an implementation", "not_implemented",
                              "kernel not found", "is not supported", "unsupported op")):
        return "unsupported_op"
    if any(s in low for s in ("protobuf parsing failed", "invalid_protobuf", "invalid_graph", "failed to load model")):
        return "model_invalid"
    if "no available backend found" in low or "backend not found" in low:
        return "unsupported_ep"
    if any(s in low for s in ("out of memory", "failed to allocate", "bad_alloc", "could not allocate")):
        return "oom"
    if any(s in low for s in ("invalid dims", "invalid dimensions", "invalid input", "invalid rank",
                              "input name", "tensor type mismatch")):
        return "bad_input"
    return "runtime_error"


def init_model_bytes() -> bytes:
    """A one-node model used to start the runtime before the timed session."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="harness_init")], "harness_init",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m.SerializeToString()


# -- probe -----------------------------------------------------------------------
def probe(jd: Path) -> int:
    from agents.browser.server import PageServer

    spec = json.loads((jd / "probe_spec.json").read_text())
    srv = PageServer()
    out: dict = {}
    try:
        page = BrowserPage(spec["executable"], jd, srv.url, extra_args=tuple(spec.get("extra_args", ())))
        try:
            out = page.call("probe")
            out["product"] = page.product
            out["version"] = page.version
            out["argv"] = page.argv[1:]
        finally:
            page.close()
    except PageFailed as exc:
        out = {"error": f"{exc.kind}: {exc.message}"}
    except Exception as exc:  # Playwright missing or broken: a reason, not a crash
        out = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        srv.close()
    tmp = jd / "probe.json.tmp"
    tmp.write_text(json.dumps(out))
    os.replace(tmp, jd / "probe.json")
    return 0


# -- job -------------------------------------------------------------------------
def job(jd: Path) -> int:
    spec = json.loads((jd / "job.json").read_text())
    result: dict = {"error": None, "validity": {}, "details": {}}
    outputs: dict = {}
    try:
        _run(jd, spec, result, outputs)
    except JobFailed as exc:
        result["error"] = {"stage": exc.stage, "kind": exc.kind, "message": exc.message}
    except PageFailed as exc:
        kind = exc.kind if exc.kind != "page_error" else classify(exc.message)
        result["error"] = {"stage": result.get("_stage", "runner"), "kind": kind, "message": exc.message}
    except Exception as exc:  # a result, never a crash
        result["error"] = {"stage": result.get("_stage", "runner"), "kind": "runner_error",
                           "message": f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3)[-1500:]}
    jobdir.finish(jd, result, outputs)
    return 0


def _run(jd: Path, spec: dict, result: dict, outputs: dict) -> None:
    from agents.browser.server import PageServer

    probes = jobdir.read_probes(jd)
    if not probes:
        raise JobFailed("job", "bad_input", "the job carries no probe inputs")
    inputs = [[{"name": k, "dtype": ("bool" if v.dtype.kind == "b" else v.dtype.name), "shape": list(v.shape)}
               for k, v in p.items()] for p in probes]
    config = {"bundle": spec["bundle"], "ep": spec["ep"], "numThreads": spec["num_threads"],
              "epOptions": spec.get("ep_options", {}), "sessionConfig": spec.get("session_config", {}),
              "graphOptimizationLevel": spec.get("graph_optimization_level", ""), "inputs": inputs}
    srv = PageServer(ort_dist=Path(spec["ort_dist"]), model_path=Path(spec["model_path"]),
                     extra_files={"init.onnx": init_model_bytes()}, inputs=probes, config=config)
    page = None
    try:
        result["_stage"] = "load"
        _mark(result, "runner_ready")
        init_js = (Path(__file__).parent / "page" / "init.js").read_text()
        try:
            page = BrowserPage(spec["executable"], jd, srv.url, init_script=init_js,
                               extra_args=tuple(spec.get("extra_args", ())))
        except PageFailed as exc:
            raise JobFailed("load", exc.kind, exc.message) from None
        _mark(result, "browser_ready")
        result["details"].update(browser_product=page.product.get("product", page.version), launch_args=page.argv[1:])
        _measure(page, spec, result, outputs, srv)
    finally:
        if page is not None:
            page.close()
        srv.close()


def _check_console(page: BrowserPage, stage: str, since: int) -> int:
    errors = page.console.errors_since(since) + page.console.page_errors
    page.console.page_errors.clear()
    if errors:
        raise JobFailed(stage, "console_error", f"the page reported {len(errors)} error(s) during {stage}: "
                        + " | ".join(e[:800] for e in errors[:3]))
    return len(page.console.lines)


def _step(page: BrowserPage, stage: str, name: str, *args):
    try:
        return page.call(name, *args)
    except PageFailed as exc:
        kind = exc.kind if exc.kind != "page_error" else classify(exc.message)
        msg = exc.message if exc.kind != "crash" else f"{exc.message} during {stage}"
        raise JobFailed(stage, kind, msg) from None


def _measure(page: BrowserPage, spec: dict, result: dict, outputs: dict, srv) -> None:
    from harness.kernel.measure.policy import MeasurePolicy, StopRule

    details = result["details"]
    seen = 0
    result["_stage"] = stage = "load"
    setup = _step(page, stage, "setup")
    versions = setup.get("versions") or {}
    details.update(ort_versions=versions, bundle=spec["bundle"], num_threads=setup.get("numThreads"),
                   cross_origin_isolated=setup.get("crossOriginIsolated"),
                   hardware_concurrency=setup.get("hardwareConcurrency"))
    result["runtime"] = {"name": "onnxruntime-web", "version": versions.get("web") or spec["version"]}
    _mark(result, "page_setup")
    details["runtime_init_ms"] = _step(page, stage, "initRuntime")
    details["timer_resolution_ms"] = page.timer_resolution_ms()
    _mark(result, "runtime_init")
    mem = Memory(page)
    mem.baseline()
    loaded = _step(page, stage, "load")
    result["load_ms"] = loaded["loadMs"]
    if loaded["missing"]:
        raise JobFailed("job", "bad_input", f"probe inputs lack model input(s) {loaded['missing']}; "
                                            f"model expects {loaded['inputNames']}")
    seen = _check_console(page, stage, seen)
    mem.sample()
    _emit({"phase": "load", "samples": 0, "elapsed_s": result["load_ms"] / 1e3})

    _mark(result, "loaded")
    result["_stage"] = stage = "warmup"
    first = _step(page, stage, "firstRun")
    result["first_run_ms"] = first
    policy = MeasurePolicy(**spec["measure"])
    rule = StopRule(policy)
    runs, start, elapsed, est = 1, None, 0.0, first
    while not rule.warmup_complete(runs, elapsed) and elapsed < policy.max_s:
        n = _batch_runs(est)
        if elapsed >= policy.warmup_s:
            n = min(n, max(1, policy.warmup_runs - runs))
        b = _step(page, stage, "batch", n, limits.BROWSER_BATCH_S * 1e3)
        start = b["start"] if start is None else start
        runs += len(b["samples"])
        elapsed = (b["ends"][-1] - start) / 1e3
        est = sorted(b["samples"])[len(b["samples"]) // 2]
        mem.sample(b.get("wasm"))
    result["validity"]["warmup_done"] = rule.warmup_complete(runs, elapsed)
    details["warmup_runs"] = runs
    seen = _check_console(page, stage, seen)

    _mark(result, "warmed_up")
    result["_stage"] = stage = "measure"
    samples: list[float] = []
    result["samples_ms"] = samples
    start, elapsed, reason, after, last = None, 0.0, None, 0, 0.0
    while reason is None:
        n = _batch_runs(est)
        if len(samples) < policy.min_runs:
            n = min(n, policy.min_runs - len(samples))
        if policy.max_runs:
            n = min(n, policy.max_runs - len(samples))
        budget_ms = max(0.0, (policy.max_s - elapsed) * 1e3)
        b = _step(page, stage, "batch", n, min(limits.BROWSER_BATCH_S * 1e3, budget_ms))
        start = b["start"] if start is None else start
        for d, e in zip(b["samples"], b["ends"]):
            samples.append(d)
            elapsed = (e - start) / 1e3
            if reason is None:
                reason = rule.stop_reason(samples, elapsed)
            else:
                # Runs the batch made after the rule would have stopped a
                # per-run loop: measured, so kept, and counted.
                after += 1
        est = sorted(b["samples"])[len(b["samples"]) // 2]
        mem.sample(b.get("wasm"))
        if elapsed - last >= limits.PROGRESS_INTERVAL_S or reason:
            last = elapsed
            _emit({"phase": "measure", "samples": len(samples), "elapsed_s": elapsed})
    result["validity"].update(min_runs_met=len(samples) >= policy.min_runs, min_time_met=elapsed >= policy.min_s,
                              stop_reason=reason)
    details.update(measure_s=elapsed, runs_after_stop_rule=after)
    seen = _check_console(page, stage, seen)
    result["memory"] = mem.result()

    _mark(result, "measured")
    result["_stage"] = stage = "probes"
    _emit({"phase": "probes", "samples": len(samples), "elapsed_s": elapsed})
    got = _step(page, stage, "probes")
    for idx, tensors in sorted(srv.outputs.items()):
        for name, arr in tensors.items():
            outputs[f"{idx}/{name}"] = arr
    if got.get("skipped"):
        details["outputs_skipped"] = got["skipped"]
    seen = _check_console(page, stage, seen)
    _step(page, stage, "release")

    _mark(result, "probes")
    result["_stage"] = "placement"
    _emit({"phase": "placement", "samples": len(samples), "elapsed_s": elapsed})
    result["placement"] = placement(page, spec["ep"], details, _step)
    _mark(result, "placement")


def _batch_runs(est_ms: float) -> int:
    est = max(est_ms, 0.005)  # performance.now() resolution in an isolated page
    return int(min(limits.BROWSER_BATCH_MAX_RUNS, max(1, limits.BROWSER_BATCH_S * 1e3 // est)))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("job", "probe"):
        sys.stderr.write("usage: python -m agents.browser.runner job|probe DIR\n")
        return 2
    jd = Path(argv[1])
    return job(jd) if argv[0] == "job" else probe(jd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
