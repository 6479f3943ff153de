"""One session in a page: measure, read memory, probes and placement.

The sessions run in agents.browser.keeper, the process that keeps one
Chromium per agent and launch flags between sessions and jobs and opens a
fresh page for each (`job(jd, browser)`), or,
where no keeper can start (or `keep_browser: false`), in a runner of their
own: `python -m agents.browser.runner job JOB_DIR` starts Chromium for one
session. Either way JOB_DIR/job.json and JOB_DIR/probes.npz come in,
progress goes out as JSON lines on stdout, and JOB_DIR/result.json and
JOB_DIR/outputs.npz (the host runner's shapes) are left behind.
`... probe JOB_DIR` writes JOB_DIR/probe.json: what the browser is and which
ONNX Runtime Web backends work in it.

Order, as in the host runner: runtime start-up, then the timed session
(load, first run, warm-up, measurement), memory, probes; the verbose
placement session and the strict probe come last so their logging cannot
disturb the figures, and not at all when the driver already knows the
placement of this model, runtime and options (job.json "placement").
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path

from agents import jobdir
from agents.browser.readings import Memory, placement
from agents.browser.session import Browser, BrowserPage, PageFailed
from harness.kernel import limits


def _mark(result: dict, name: str) -> None:
    """Seconds since the session began (its request reached the keeper, or
    the spawned runner started), per step: where a session's wall time goes."""
    result["details"].setdefault("timeline_s", {})[name] = round(time.monotonic() - result["_t0"], 3)


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


@functools.lru_cache(maxsize=1)
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
def probe(jd: Path, browser: Browser, kept_server=None) -> int:
    from agents.browser.server import PageServer

    srv = kept_server or PageServer()
    srv.serve()
    out: dict = {}
    try:
        page = BrowserPage(browser, srv.url)
        try:
            out = page.call("probe")
            out["product"] = page.product
            out["version"] = page.version
            out["argv"] = page.argv[1:]
        finally:
            page.close()
    except PageFailed as exc:
        out = {"error": f"{exc.kind}: {exc.message}"}
    except Exception as exc:  # Playwright broken: a reason, not a crash
        out = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if srv is not kept_server:
            srv.close()
    tmp = jd / "probe.json.tmp"
    tmp.write_text(json.dumps(out))
    os.replace(tmp, jd / "probe.json")
    return 0


# -- job -------------------------------------------------------------------------
def job(jd: Path, browser: Browser, t0: float, about: dict, kept_server=None) -> int:
    """One session on `browser`; `about` says for the record which browser
    served it (its pid, whether it was kept, pages it served before).
    `kept_server`: the keeper's page server (one origin for all its
    sessions, server.py), else one for this session."""
    spec = json.loads((jd / "job.json").read_text())
    result: dict = {"error": None, "validity": {}, "details": {"browser": about}, "_t0": t0}
    outputs: dict = {}
    try:
        _run(jd, spec, result, outputs, browser, kept_server)
    except JobFailed as exc:
        result["error"] = {"stage": exc.stage, "kind": exc.kind, "message": exc.message}
    except PageFailed as exc:
        kind = exc.kind if exc.kind != "page_error" else classify(exc.message)
        result["error"] = {"stage": result.get("_stage", "runner"), "kind": kind, "message": exc.message}
    except Exception as exc:  # a result, never a crash of the runner
        dead = browser.dead()  # Playwright's own error because the browser went away
        if dead:
            result["error"] = {"stage": result.get("_stage", "runner"), "kind": "crash", "message": dead}
        else:
            result["error"] = {"stage": result.get("_stage", "runner"), "kind": "runner_error",
                               "message": f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3)[-1500:]}
    result.pop("_t0", None)
    jobdir.finish(jd, result, outputs)
    return 0


def _run(jd: Path, spec: dict, result: dict, outputs: dict, browser: Browser, kept_server) -> None:
    from agents.browser.server import PageServer

    probes = jobdir.read_probes(jd)
    if not probes:
        raise JobFailed("job", "bad_input", "the job carries no probe inputs")
    inputs = [[{"name": k, "dtype": ("bool" if v.dtype.kind == "b" else v.dtype.name), "shape": list(v.shape)}
               for k, v in p.items()] for p in probes]
    config = {"bundle": spec["bundle"], "ep": spec["ep"], "numThreads": spec["num_threads"],
              "epOptions": spec.get("ep_options", {}), "sessionConfig": spec.get("session_config", {}),
              "graphOptimizationLevel": spec.get("graph_optimization_level", ""), "inputs": inputs}
    srv = kept_server or PageServer()
    srv.serve(ort_dist=Path(spec["ort_dist"]), model_path=Path(spec["model_path"]),
              extra_files={"init.onnx": init_model_bytes()}, inputs=probes, config=config)
    page = None
    try:
        result["_stage"] = "load"
        _mark(result, "runner_ready")
        try:
            page = BrowserPage(browser, srv.url, init_script=_INIT_JS.read_text())
        except PageFailed as exc:
            raise JobFailed("load", exc.kind, exc.message) from None
        _mark(result, "page_ready")
        result["details"].update(browser_product=page.product.get("product", page.version), launch_args=page.argv[1:])
        _measure(page, spec, result, outputs, srv)
    finally:
        if page is not None:
            page.close()
        if srv is kept_server:
            srv.serve()  # the job's files no longer reachable
        else:
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
    init = _step(page, stage, "initRuntime")
    details["runtime_init_ms"] = init["ms"]
    details["ort_web_files"] = {f["file"]: "cache" if f["fromCache"] else "network" for f in init["files"]}
    details["timer_resolution_ms"], details["timer_resolution_from"] = page.timer_resolution_ms()
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
    if spec.get("placement") is not None:
        result["placement"] = spec["placement"]  # the driver's, from an earlier session
        return
    result["_stage"] = "placement"
    _emit({"phase": "placement", "samples": len(samples), "elapsed_s": elapsed})
    result["placement"] = placement(page, spec["ep"], details, _step)
    _mark(result, "placement")


def _batch_runs(est_ms: float) -> int:
    est = max(est_ms, 0.005)  # performance.now() resolution in an isolated page
    return int(min(limits.BROWSER_BATCH_MAX_RUNS, max(1, limits.BROWSER_BATCH_S * 1e3 // est)))


def main(argv: list[str]) -> int:
    """A session (or a probe) in a Chromium of its own, closed after it."""
    t0 = time.monotonic()
    if len(argv) != 2 or argv[0] not in ("job", "probe"):
        sys.stderr.write("usage: python -m agents.browser.runner job|probe DIR\n")
        return 2
    jd = Path(argv[1])
    spec = json.loads((jd / ("job.json" if argv[0] == "job" else "probe_spec.json")).read_text())
    try:
        browser = Browser(spec["executable"], jd, extra_args=tuple(spec.get("extra_args", ())))
    except Exception as exc:  # Chromium or Playwright would not start: a row that says why
        return unstarted(jd, argv[0], exc, t0)
    try:
        if argv[0] == "probe":
            return probe(jd, browser)
        return job(jd, browser, t0, {"kept": False, "pid": browser.pid, "launch_s": round(browser.launch_s, 3)})
    finally:
        browser.close()


def unstarted(jd: Path, kind: str, exc: Exception, t0: float) -> int:
    kind_, message = (exc.kind, exc.message) if isinstance(exc, PageFailed) else \
        ("browser_start", f"{type(exc).__name__}: {exc}")
    if kind == "probe":
        tmp = jd / "probe.json.tmp"
        tmp.write_text(json.dumps({"error": f"{kind_}: {message}"}))
        os.replace(tmp, jd / "probe.json")
    else:
        jobdir.finish(jd, {"error": {"stage": "load", "kind": kind_, "message": message}, "validity": {},
                           "details": {"timeline_s": {"failed": round(time.monotonic() - t0, 3)}}}, {})
    return 0


_INIT_JS = Path(__file__).parent / "page" / "init.js"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
