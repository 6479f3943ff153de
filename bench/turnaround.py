"""Turnaround: what a run, a job and a session cost beyond what they measure.

* `harness run` of one tiny-model job (the digits student, about 0.02 ms a
  run) with a 1 s policy (no warm-up time, 1 s measured, one session), as
  the installed console script in a fresh process, the store already
  holding the model's facts and reference (a repeat run): wall ÷ 1 s, and
  how long until the first progress line. Beside it, consecutive runs in
  one process (`harness.api.run_cohort`, the local agent kept).
* Per-job and per-session overhead on the host driver, through a real
  agent over gRPC: the job's wall at the client − what the policy measured
  (warm-up + measured runs, from the runner). A *job* is a new model (its
  placement learnt, every probe run); a *later session* is the same model,
  build and options again with the timing input only — what a job's second
  and later sessions are. Warm runners (forked from a template) and spawned
  ones (`warm_runners: false`) alternate, side by side.
* Per-session overhead of a browser page (the browser driver, ONNX Runtime
  Web on wasm), the same way, where Chromium and a cached ORT Web exist.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import model_files
from bench.common import ROOT, Row, host_cohort, load_average, median, of, spread

POLICY_S = 1.0
MODEL = ROOT / "examples" / "digits" / "student.onnx"
CLI_RUNS = 3
PAIRS = 6
BROWSER_SESSIONS = 3


def _cohort(tmp: Path) -> Path:
    return host_cohort(tmp / "profiles", "tiny", f"{{warmup_runs: 10, warmup_s: 0, min_runs: 100, "
                       f"min_s: {POLICY_S}, max_s: {POLICY_S}, target_ci: 0, sessions: 1}}")


def _cli(cohort: Path, store: Path, cwd: Path) -> tuple[float, float, float]:
    """(wall, seconds to the first progress line, CPU of the process tree)."""
    exe = Path(sys.executable).parent / "harness"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen([str(exe), "run", "--cohort", str(cohort), "--model", f"student={MODEL}", "--drivers",
                          "host", "--store", str(store)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=cwd)
    first = None
    assert p.stdout is not None
    for line in p.stdout:
        if first is None and line.startswith("run "):
            first = time.perf_counter() - t0
    code = p.wait(300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise RuntimeError(f"harness run exited {code}")
    return wall, first if first is not None else float("nan"), \
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _run_rows(tmp: Path, quick: bool) -> list[Row]:
    from harness import api

    cohort = _cohort(tmp)
    store = tmp / "run.sqlite"
    cold = _cli(cohort, store, tmp)  # facts and reference computed and stored
    warm = [_cli(cohort, store, tmp) for _ in range(1 if quick else CLI_RUNS)]
    load = load_average()
    walls = [w for w, _, _ in warm]
    r = median(walls) / POLICY_S
    req = lambda: api.RunRequest(cohort=str(cohort), models=[f"student={MODEL}"], drivers=["host"], store=str(store))
    api.run_cohort(req())  # starts the kept local agent
    inproc = []
    for _ in range(1 if quick else CLI_RUNS):
        t0 = time.perf_counter()
        api.run_cohort(req())
        inproc.append(time.perf_counter() - t0)
    ri = median(inproc) / POLICY_S
    return [
        Row("`harness run`, one tiny-model job, 1 s policy (wall ÷ policy)", "≤ 1.5 ×", f"{r:.2f} ×", r <= 1.5,
            f"fresh process, repeat run: {of(walls, 's')} wall, CPU {median([c for _, _, c in warm]):.2f} s "
            f"(controller, agent, template, runner); first progress line after "
            f"{median([f for _, f, _ in warm]):.2f} s; first run ever (facts and reference computed): "
            f"{cold[0]:.2f} s; load {load}",
            {"walls_s": walls, "first_line_s": [f for _, f, _ in warm], "cpu_s": [c for _, _, c in warm],
             "cold_s": cold[0], "load": load}),
        Row("consecutive runs in one process (api.run_cohort, agent kept)", "", f"{ri:.2f} ×", None,
            f"{of(inproc, 's')} wall for 1 s measured; load {load_average()}", {"walls_s": inproc}),
    ]


def _agents(tmp: Path):
    from agents.server import AgentConfig, start

    out = {}
    for mode, warm in (("fork", True), ("spawn", False)):
        out[mode] = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp / f"cache-{mode}"),
                                      driver_config={"host": {"work_dir": str(tmp / f"work-{mode}"),
                                                              "warm_runners": warm}}))
    return out


def _job(client, device, digest, probes, job_id, session: int):
    from harness._proto.v1 import agent_pb2 as pb
    from harness.kernel import wire
    from harness.kernel.measure.policy import MeasurePolicy

    policy = MeasurePolicy(warmup_runs=10, warmup_s=0, min_runs=200, min_s=0, max_s=5, target_ci=0, max_runs=200)
    job = pb.Job(job_id=job_id, device_id=device.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                 target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu", options={"intra_op_threads": "1"}),
                 measure=wire.policy_to_pb(policy), probes=[wire.tensors_to_pb(p) for p in probes], timeout_s=120,
                 labels={"session": str(session)})
    t0 = time.perf_counter()
    res = wire.result_from_pb(client.run(job, lambda ev: None, 300))
    wall = time.perf_counter() - t0
    if res["error"]:
        raise RuntimeError(f"host job failed: {res['error']}")
    d = res["details"]
    return wall - (d["warmup_s"] + d["measure_s"]), res


def _host_rows(tmp: Path, quick: bool) -> list[Row]:
    from harness.controller.client import AgentClient

    agents = _agents(tmp)
    clients = {m: AgentClient(m, a.address) for m, a in agents.items()}
    try:
        devices = {}
        for m, c in clients.items():
            c.wait_ready()
            devices[m] = next(d for d in c.describe().devices if d.driver == "host")
        agents["fork"].drivers["host"].warm.template("own", None, None)._socket(60)  # the template is up
        x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
        probes = [{"x": x * (i + 1)} for i in range(8)]
        job_over: dict = {"fork": [], "spawn": []}
        ses_over: dict = {"fork": [], "spawn": []}
        loads, starts, load_ms = [], set(), []
        pairs = 2 if quick else PAIRS
        for k in range(pairs):
            for m in (("fork", "spawn") if k % 2 == 0 else ("spawn", "fork")):
                # A new model each time (a new digest): its placement is learnt.
                model = model_files.matmul_chain(tmp / f"m-{m}-{k}.onnx", batch=1, width=64, depth=2, seed=k + 1)
                digest = model_files.sha256(model)
                clients[m].ensure_models([(model, digest, "onnx")])
                over, res = _job(clients[m], devices[m], digest, probes, f"t-{m}-{k}.a", 1)
                job_over[m].append(over)
                starts.add((m, res["details"].get("runner_start")))
                over2, res2 = _job(clients[m], devices[m], digest, probes[:1], f"t-{m}-{k}.b", 2)
                ses_over[m].append(over2)
                if m == "fork":
                    load_ms.append(res2.get("load_ms") or 0.0)
            loads.append(os.getloadavg()[0])
        if ("fork", "fork") not in starts:
            raise RuntimeError(f"the warm agent's runners did not fork: {starts}")
    finally:
        for c in clients.values():
            c.close()
        for a in agents.values():
            a.stop(1.0)
    jf, js = median(job_over["fork"]), median(job_over["spawn"])
    sf, ss = median(ses_over["fork"]), median(ses_over["spawn"])
    load = f"{min(loads):.2f}–{max(loads):.2f}"
    return [
        Row("per-job fixed overhead, host driver (job wall − measured)", "≤ 0.3 s", f"{jf:.3f} s", jf <= 0.3,
            f"a new model each job, 8 probes, through gRPC; warm runners (forked) {spread(job_over['fork'])} s vs "
            f"spawned {js:.3f} s ({spread(job_over['spawn'])} s); {pairs} interleaved pairs; 1-min load {load}",
            {"fork_s": job_over["fork"], "spawn_s": job_over["spawn"], "load": loads}),
        Row("per-session overhead, host (a later session of a job)", "≤ 0.1 s", f"{sf:.3f} s", sf <= 0.1,
            f"same model, build and options, the timing input only (placement from the agent's cache); forked "
            f"{spread(ses_over['fork'])} s vs spawned {ss:.3f} s ({spread(ses_over['spawn'])} s); a runner kept "
            f"per model digest would save at most the session create too ({median(load_ms):.1f} ms) and share "
            f"one process between sessions; 1-min load {load}",
            {"fork_s": ses_over["fork"], "spawn_s": ses_over["spawn"], "session_create_ms": load_ms}),
    ]


def _browser_rows(tmp: Path, quick: bool) -> list[Row]:
    import threading

    from agents.browser.driver import BrowserDriver
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from harness.kernel.measure.policy import MeasurePolicy

    drv = BrowserDriver({"work_dir": str(tmp / "browser")})
    ok, why = drv.available()
    if not ok:
        return [Row("per-session overhead, browser page", "≤ 0.5 s", "not run", None, f"browser driver: {why}")]
    try:
        dev = drv.devices()[0]
        model = model_files.matmul_chain(tmp / "page.onnx", batch=1, width=64, depth=2)
        x = np.ones((1, 64), np.float32)
        policy = MeasurePolicy(warmup_runs=10, warmup_s=0, min_runs=200, min_s=0, max_s=5, target_ci=0, max_runs=200)
        over, parts = [], []
        for k in range(1 if quick else BROWSER_SESSIONS):
            job = JobSpec(f"page-{k}", dev.local_id, (ModelFile(model_files.sha256(model), "onnx", model),),
                          RuntimeTarget("onnxruntime-web", ep="wasm"), policy, ({"x": x},), 120)
            t0 = time.perf_counter()
            res = drv.run(job, lambda *a: None, threading.Event())
            wall = time.perf_counter() - t0
            if res.error:
                raise RuntimeError(f"browser job failed: {res.error}")
            tl = res.details.get("timeline_s") or {}
            over.append(wall - (tl["measured"] - tl["loaded"]))
            parts.append(tl)
    finally:
        drv.close()
    o = median(over)
    tl = parts[len(parts) // 2]
    return [Row("per-session overhead, browser page (wasm)", "≤ 0.5 s", f"{o:.2f} s", o <= 0.5,
                f"{of(over, 's')}; a session now is a runner process, a Chromium launch and a page: runner ready "
                f"{tl.get('runner_ready', 0):.2f} s, browser ready {tl.get('browser_ready', 0):.2f} s, ORT Web "
                f"initialised {tl.get('runtime_init', 0):.2f} s, model loaded {tl.get('loaded', 0):.2f} s into the "
                f"session; load {load_average()}", {"overhead_s": over, "timelines": parts})]


def run(tmp: Path, quick: bool = False) -> list[Row]:
    return _run_rows(tmp, quick) + _host_rows(tmp, quick) + _browser_rows(tmp, quick)
