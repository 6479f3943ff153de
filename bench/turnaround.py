"""Turnaround: what a run, a job and a session cost beyond what they measure.

* `harness run` of one tiny-model job (the digits student, about 0.02 ms a
  run) with a 1 s policy (no warm-up time, 1 s measured, one session), as
  the installed console script in a fresh process, the store already
  holding the model's facts and reference (a repeat run), forked by the
  resident the first run started (harness/resident/): wall ÷ 1 s, and how
  long until the first progress line; the same with `--no-keep-agent` (all
  in the calling process), interleaved. Beside it, consecutive runs in one
  process (`harness.api.run_cohort`, the local agent kept).
* Per-job and per-session overhead on the host driver, through a real
  agent over gRPC: the job's wall at the client − what the policy measured
  (warm-up + measured runs, from the runner). A *job* is a new model (its
  placement learnt, every probe run); a *later session* is the same model,
  build and options again with the timing input only — what a job's second
  and later sessions are. Warm runners (forked from a template) and spawned
  ones (`warm_runners: false`) alternate, side by side.
* Per-session overhead of a browser page (the browser driver, ONNX Runtime
  Web on wasm), the same way, where Chromium and a cached ORT Web exist: a
  later session of a job on the kept browser (a new page in its profile),
  split by the page's timeline, with its CPU time, beside a Chromium started
  per session (`keep_browser: false`). Later sessions run back to back, as
  the controller sends them (the next one queued on the agent), in blocks
  that alternate between the two: interleaving single sessions would give
  the kept browser seconds of idle time between its pages that a job's
  sessions never have.
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
from harness.resident import DIR_ENV as RESIDENT_DIR_ENV

POLICY_S = 1.0
MODEL = ROOT / "examples" / "digits" / "student.onnx"
CLI_RUNS = 5
PAIRS = 6
BROWSER_ROUNDS = 2  # blocks per driver
BROWSER_BLOCK = 4  # later sessions back to back per block


def _cohort(tmp: Path) -> Path:
    return host_cohort(tmp / "profiles", "tiny", f"{{warmup_runs: 10, warmup_s: 0, min_runs: 100, "
                       f"min_s: {POLICY_S}, max_s: {POLICY_S}, target_ci: 0, sessions: 1}}")


def _cli(cohort: Path, store: Path, cwd: Path, env: dict, extra: tuple = ()) -> tuple[float, float, float]:
    """(wall, seconds to the first progress line, CPU of the process tree:
    this caller, what it forked and waited for, and the residents' trees)."""
    exe = Path(sys.executable).parent / "harness"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res0 = _resident_cpu(Path(env[RESIDENT_DIR_ENV]))
    t0 = time.perf_counter()
    p = subprocess.Popen([str(exe), "run", "--cohort", str(cohort), "--model", f"student={MODEL}", "--drivers",
                          "host", "--store", str(store), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=cwd, env=env)
    first = None
    assert p.stdout is not None
    for line in p.stdout:
        if first is None and line.startswith("run "):
            first = time.perf_counter() - t0
    code = p.wait(300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res1 = _resident_cpu(Path(env[RESIDENT_DIR_ENV]))
    if code != 0:
        raise RuntimeError(f"harness run exited {code}")
    return wall, first if first is not None else float("nan"), \
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + (res1 - res0)


def _resident_cpu(directory: Path) -> float:
    """CPU seconds of every resident's process tree in this directory (each
    pid is in its KEY.lock): user + system of each live process, with what
    it reaped (a run's forked process, a session's runner)."""
    import psutil

    total = 0.0
    for lock in directory.glob("*.lock"):
        try:
            root = psutil.Process(int(lock.read_text().split()[0]))
            for p in [root, *root.children(recursive=True)]:
                c = p.cpu_times()
                total += c.user + c.system + c.children_user + c.children_system
        except (OSError, ValueError, IndexError, psutil.Error):
            continue
    return total


def _restarts(restarted: list) -> str:
    if not restarted:
        return ""
    return (f"; left out: {len(restarted)} run(s) that met a new resident (sources edited meanwhile), "
            f"{', '.join(f'{w:.2f}' for w, _, _ in restarted)} s")


def _run_rows(tmp: Path, quick: bool) -> list[Row]:
    from harness import api
    from harness.resident import manage

    cohort = _cohort(tmp)
    store = tmp / "run.sqlite"
    # A resident of its own, stopped at the end: the bench leaves none behind.
    env = {**os.environ, RESIDENT_DIR_ENV: str(tmp / "resident"), "HARNESS_KEEP_AGENT": "1"}
    fresh_flag = ("--no-keep-agent",)
    try:
        cold = _cli(cohort, store, tmp, env)  # facts and reference computed and stored; the resident starts
        if not list((tmp / "resident").glob("*.sock")):
            raise RuntimeError(f"no resident started in {tmp / 'resident'} (see its .log there)")
        kept, fresh, restarted = [], [], []
        for k in range(1 if quick else CLI_RUNS):  # interleaved, so load drifts hit both alike
            for mode in (("kept", "fresh") if k % 2 == 0 else ("fresh", "kept")):
                if mode == "fresh":
                    fresh.append(_cli(cohort, store, tmp, env, fresh_flag))
                    continue
                before = set((tmp / "resident").glob("*.lock"))
                got = _cli(cohort, store, tmp, env)
                # A source file edited meanwhile (a shared checkout) means a new
                # key: that run started a resident of its own, so it is no repeat run.
                (restarted if set((tmp / "resident").glob("*.lock")) - before else kept).append(got)
    finally:
        manage.stop_all(tmp / "resident")
    kept = kept or restarted
    load = load_average()
    walls, fwalls = [w for w, _, _ in kept], [w for w, _, _ in fresh]
    r, rf = median(walls) / POLICY_S, median(fwalls) / POLICY_S
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
            f"fresh caller process, repeat run, forked by the resident (controller imported, local agent kept): "
            f"{of(walls, 's')} wall, CPU {median([c for _, _, c in kept]):.2f} s (caller, run, agent, runner); "
            f"first progress line after {median([f for _, f, _ in kept]):.2f} s; all in the caller's process "
            f"(`--no-keep-agent`, side by side): {rf:.2f} × ({of(fwalls, 's')}, first line "
            f"{median([f for _, f, _ in fresh]):.2f} s, CPU {median([c for _, _, c in fresh]):.2f} s); first run "
            f"ever (facts and reference computed, the resident and its agent started): {cold[0]:.2f} s"
            f"{_restarts(restarted)}; load {load}",
            {"walls_s": walls, "first_line_s": [f for _, f, _ in kept], "cpu_s": [c for _, _, c in kept],
             "restarted_s": [w for w, _, _ in restarted],
             "no_keep_walls_s": fwalls, "no_keep_first_line_s": [f for _, f, _ in fresh],
             "no_keep_cpu_s": [c for _, _, c in fresh], "cold_s": cold[0], "load": load}),
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


def _browser_session(drv, dev, model, probes, job_id: str, session: int):
    """One session through the driver: (overhead, result, CPU seconds of the
    kept browser's process group or of the reaped runner tree)."""
    import threading

    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from harness.kernel.measure.policy import MeasurePolicy

    policy = MeasurePolicy(warmup_runs=10, warmup_s=0, min_runs=200, min_s=0, max_s=5, target_ci=0, max_runs=200)
    job = JobSpec(job_id, dev.local_id, (ModelFile(model_files.sha256(model), "onnx", model),),
                  RuntimeTarget("onnxruntime-web", ep="wasm"), policy, tuple(probes), 120,
                  labels={"session": str(session)})
    group = _kept_group(drv)
    cpu0 = _tree_cpu(group)
    t0 = time.perf_counter()
    res = drv.run(job, lambda *a: None, threading.Event())
    wall = time.perf_counter() - t0
    cpu = _tree_cpu(group) - cpu0
    if res.error:
        raise RuntimeError(f"browser session failed: {res.error}")
    tl = res.details.get("timeline_s") or {}
    return wall - (tl["measured"] - tl["loaded"]), res, cpu, wall


def _kept_group(drv):
    """The process group of the driver's kept browser (its keeper), if any."""
    keepers = list(drv.pool._keepers.values())
    proc = keepers[0]._proc if keepers else None
    return proc.pid if proc is not None and proc.poll() is None else None


def _tree_cpu(group) -> float:
    """CPU seconds of a process group (reaped children included: closed
    pages' renderers), or of this process's reaped children (a spawned
    runner and its Chromium) when there is no group."""
    if group is None:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime
    import psutil

    total = 0.0
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == group:
                c = p.cpu_times()
                total += c.user + c.system + c.children_user + c.children_system
        except (psutil.Error, OSError):
            continue
    return total


def _attach_cost(tmp: Path, rounds: int) -> list[float]:
    """What a runner process per session attaching to a kept browser over
    CDP would pay before its page: Python with the runner's imports,
    Playwright's Node.js driver, connect_over_cdp. Measured on a Chromium of
    its own with a debugging port (the design this weighs; the agent's own
    browsers take one DevTools client, through a pipe)."""
    from agents.browser import locate
    from agents.browser.session import BASE_ARGS

    profile = tmp / "attach-profile"
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([locate.find_chromium().path, *BASE_ARGS, f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"  # written once DevTools listens: port, then path
        deadline = time.monotonic() + 60
        while len(port_file.read_text().split() if port_file.exists() else []) < 2:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the attach-cost Chromium did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        code = ("import agents.browser.runner, agents.browser.server\n"
                "from playwright.sync_api import sync_playwright\n"
                f"p = sync_playwright().start(); b = p.chromium.connect_over_cdp('ws://127.0.0.1:{port}{path}'); p.stop()\n")
        out = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, timeout=120)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        proc.kill()
        proc.wait()


def _browser_rows(tmp: Path, quick: bool) -> list[Row]:
    from agents.browser.driver import BrowserDriver

    drivers = {"kept": BrowserDriver({"work_dir": str(tmp / "browser-kept")}),
               "spawn": BrowserDriver({"work_dir": str(tmp / "browser-spawn"), "keep_browser": False})}
    ok, why = drivers["kept"].available()
    if not ok:
        return [Row("per-session overhead, browser page", "≤ 0.5 s", "not run", None, f"browser driver: {why}")]
    over: dict = {"kept": [], "spawn": []}
    cpu: dict = {"kept": [], "spawn": []}
    first, splits, attach, loads = {}, [], [], []
    try:
        devs = {m: d.devices()[0] for m, d in drivers.items()}  # the probe starts the kept browser
        model = model_files.matmul_chain(tmp / "page.onnx", batch=1, width=64, depth=2)
        x = np.ones((1, 64), np.float32)
        for m, drv in drivers.items():  # session 1: every probe, placement learnt
            first[m] = _browser_session(drv, devs[m], model, [{"x": x * (i + 1)} for i in range(8)], f"page-{m}", 1)[0]
        n = 1
        for r in range(1 if quick else BROWSER_ROUNDS):
            for m in (("kept", "spawn") if r % 2 == 0 else ("spawn", "kept")):
                for _ in range(2 if quick else BROWSER_BLOCK):
                    n += 1
                    o, res, c, wall = _browser_session(drivers[m], devs[m], model, [{"x": x}], f"page-{m}.s{n}", n)
                    over[m].append(o)
                    cpu[m].append(c)
                    if m == "kept":
                        if res.details.get("browser_start") != "kept" or not res.details.get("placement_from"):
                            raise RuntimeError(f"a later session did not run on the kept browser: {res.details}")
                        splits.append({**res.details["timeline_s"], "wall": wall,
                                       "cached": set(res.details.get("ort_web_files", {}).values()) == {"cache"}})
                loads.append(os.getloadavg()[0])
        attach = _attach_cost(tmp, 1 if quick else 2)
    finally:
        for drv in drivers.values():
            drv.close()
    o, s = median(over["kept"]), median(over["spawn"])
    part = lambda a, b: median([t[b] - t[a] for t in splits])  # noqa: E731
    tail = median([t["wall"] - t["measured"] for t in splits])
    return [Row("per-session overhead, browser page (wasm; a later session, kept browser)", "≤ 0.5 s", f"{o:.2f} s",
                o <= 0.5,
                f"{of(over['kept'], 's')}, back to back in blocks of {BROWSER_BLOCK}; split: page server "
                f"{median([t['runner_ready'] for t in splits]):.2f} s, new page in the kept profile (storage "
                f"cleared; a renderer process) {part('runner_ready', 'page_ready'):.2f} s, ORT Web script and inputs "
                f"{part('page_ready', 'page_setup'):.2f} s, ORT Web init {part('page_setup', 'runtime_init'):.2f} s "
                f"(its files from the HTTP cache in {sum(t['cached'] for t in splits)} of {len(splits)} sessions), "
                f"model load {part('runtime_init', 'loaded'):.2f} s, "
                f"probe + close {tail:.2f} s; CPU {median(cpu['kept']):.2f} s per session (browser, its "
                f"renderer, the keeper); a Chromium per session (`keep_browser: false`, the runner starts it) "
                f"{s:.2f} s ({spread(over['spawn'])} s, CPU {median(cpu['spawn']):.2f} s), side by side; a runner "
                f"process per session attaching to the kept browser over CDP would add {median(attach):.2f} s "
                f"(Python, Playwright's Node.js driver, connect); first session (placement learnt, 8 probes): "
                f"kept {first['kept']:.2f} s, spawned {first['spawn']:.2f} s; 1-min load "
                f"{min(loads):.2f}–{max(loads):.2f}",
                {"overhead_s": over, "cpu_s": cpu, "first_s": first, "attach_s": attach, "timelines": splits,
                 "load": loads})]


def run(tmp: Path, quick: bool = False) -> list[Row]:
    return _run_rows(tmp, quick) + _host_rows(tmp, quick) + _browser_rows(tmp, quick)
