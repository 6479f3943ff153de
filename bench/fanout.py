"""Fan-out: 256 simulated devices behind 32 real agents, 1 s jobs, through
the real controller (`harness.api.run_cohort` with a lab file: plan,
upload, scheduler, gRPC Run streams, result records into SQLite, report).

The agents run in a process of their own (bench/_simlab.py), so the
controller's CPU time and memory, measured here, are its own. The ideal wall
time is what the busiest device's jobs take back to back by their own
simulated clocks; the measured time runs from the end of the uploads to the
last stored result, so what it adds to the ideal is the harness's own
dispatch and bookkeeping. The same lab runs 256 jobs (one per device) and
1,024 (four per device): the controller's memory above its level before the
run is shown for both, to show it does not grow with the number of jobs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import model_files
from bench.common import ROOT, Row

AGENTS = 32
DEVICES_PER_AGENT = 8
CANDIDATES = 4  # jobs per device in the full run
JOB_S = 1.0
LATENCY_MS = 10.0
QUICK_AGENTS, QUICK_DEVICES = 4, 4
LAB_PROCESSES = 8  # processes the simulated agents are spread over


def _sim_config(agent: int, devices: int) -> dict:
    out = []
    for d in range(devices):
        browser = d % 2 == 1  # half stand in for browsers, half for phones
        out.append({
            "id": f"a{agent}-d{d}", "platform": "browser" if browser else "android",
            "facts": {"model": f"bench device {agent}.{d}"},
            "latency": {"dist": "fixed", "p50_ms": LATENCY_MS}, "load_ms": 0, "first_run_ms": LATENCY_MS,
        })
    return {"seed": agent, "devices": out}


def _cohort(path: Path, agents: int, devices: int) -> Path:
    lines = ["name: fanout", "devices:"]
    for a in range(agents):
        for d in range(devices):
            browser = d % 2 == 1
            target = "{runtime: onnxruntime-web, ep: wasm}" if browser else "{runtime: onnxruntime, ep: cpu}"
            lines.append(f"  - {{id: p{a}-{d}, platform: {'browser' if browser else 'android'}, "
                         f"match: {{id: 'sim:a{a}-d{d}'}}, targets: [{target}]}}")
    # Measured runs stop at min_s with target_ci 0: each job is first run + JOB_S - one run,
    # in one session (the dispatch of a job's sessions is what bench/compare.py runs).
    min_s = JOB_S - LATENCY_MS / 1e3
    lines.append(f"measure: {{warmup_runs: 0, warmup_s: 0, min_runs: 1, min_s: {min_s}, max_s: {min_s}, "
                 "target_ci: 0, sessions: 1}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _Peak:
    """The process's resident set, sampled every 20 ms; peak per phase."""

    def __init__(self):
        self.phase, self.peaks, self._stop = "run", {}, threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.wait(0.02):
            r = _rss()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), r)

    def stop(self):
        self._stop.set()
        self._t.join()


def _one(tmp: Path, lab: Path, cohort: Path, candidates: int, tag: str) -> dict:
    from harness import api

    model = model_files.matmul_chain(tmp / "tiny.onnx", batch=1, width=8, depth=1)
    cands = tmp / f"candidates-{tag}.yaml"
    cands.write_text("candidates:\n" + "".join(f"  c{i}: {{onnx: {model.name}}}\n" for i in range(candidates)))
    marks: dict[str, float] = {}
    lock = threading.Lock()
    base = _rss()
    peak = _Peak()

    def progress(e: dict) -> None:
        now = time.perf_counter()
        with lock:
            if e.get("event") == "upload":
                marks["dispatch"] = now
            elif e.get("event") == "result":
                marks["last_result"] = now
                peak.phase = "after dispatch"

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    try:
        outcome = api.run_cohort(api.RunRequest(cohort=str(cohort), candidates_file=cands, lab=lab,
                                                store=str(tmp / f"fanout-{tag}.sqlite"), probes=1), progress)
    finally:
        peak.stop()
    total = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    results = outcome.report["results"]
    errors = [r for r in results if r.get("error")]
    busy: dict[str, float] = {}
    for r in results:
        if r.get("error"):
            continue
        key = f"{r['device']['agent']}/{r['device']['id']}"
        busy[key] = busy.get(key, 0.0) + float(r["details"]["simulated_s"])
    ideal = max(busy.values()) if busy else float("nan")
    wall = marks["last_result"] - marks["dispatch"]
    return {"jobs": len(results), "errors": len(errors), "first_error": errors[0]["error"] if errors else None,
            "ideal_s": ideal, "wall_s": wall, "ratio": wall / ideal, "run_total_s": total,
            "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            "rss_base_mb": base / 2**20, "rss_growth_mb": (peak.peaks.get("run", base) - base) / 2**20,
            "rss_growth_with_report_mb": (max(peak.peaks.values(), default=base) - base) / 2**20}


def _start_lab(tmp: Path, agents: int, devices: int) -> tuple[list, list[str]]:
    """The simulated agents, LAB_PROCESSES processes of them (a lab's agents
    are separate machines: in one process they would share one GIL)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs, files = [], []
    per = -(-agents // LAB_PROCESSES)
    for p in range(0, agents, per):
        cfg = tmp / f"simlab{p}.json"
        cfg.write_text(json.dumps({"agents": [_sim_config(a, devices) for a in range(p, min(agents, p + per))]}))
        files.append(tmp / f"addresses{p}.json")
        procs.append(subprocess.Popen([sys.executable, "-m", "bench._simlab", str(cfg), str(files[-1])],
                                      stdin=subprocess.PIPE, cwd=ROOT, env=env))
    end = time.monotonic() + 180
    while not all(f.exists() for f in files):
        if any(p.poll() is not None for p in procs) or time.monotonic() > end:
            _stop_lab(procs)
            raise RuntimeError("the simulated lab did not start")
        time.sleep(0.1)
    return procs, [a for f in files for a in json.loads(f.read_text())]


def _stop_lab(procs: list) -> None:
    for p in procs:
        p.stdin.close()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def _cpu_of(procs: list) -> float:
    """User + system CPU seconds of the lab's processes so far (/proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def run(tmp: Path, quick: bool = False) -> list[Row]:
    agents, devices = (QUICK_AGENTS, QUICK_DEVICES) if quick else (AGENTS, DEVICES_PER_AGENT)
    procs, addresses = _start_lab(tmp, agents, devices)
    try:
        lab = tmp / "lab.yaml"
        lab.write_text("agents:\n" + "".join(f"  - {{name: agent{a}, address: '{addr}'}}\n"
                                             for a, addr in enumerate(addresses)))
        cohort = _cohort(tmp / "fanout.yaml", agents, devices)
        cpu0 = _cpu_of(procs)
        small = _one(tmp, lab, cohort, 1, "small")
        cpu1 = _cpu_of(procs)
        full = _one(tmp, lab, cohort, CANDIDATES, "full")
        small["lab_cpu_s"], full["lab_cpu_s"] = cpu1 - cpu0, _cpu_of(procs) - cpu1
    finally:
        _stop_lab(procs)
    for got in (small, full):
        if got["errors"]:
            raise RuntimeError(f"fan-out run had {got['errors']} error rows ({got['first_error']})")
    n_dev = agents * devices
    flat = full["rss_growth_mb"] <= max(2 * small["rss_growth_mb"], small["rss_growth_mb"] + 32)
    return [
        Row(f"fan-out ({n_dev} sim devices, {agents} agents, {full['jobs']} jobs of {JOB_S:g} s)", "≤ 1.1 × ideal",
            f"{full['ratio']:.3f} × ideal", full["ratio"] <= 1.1,
            f"{full['wall_s']:.2f} s from dispatch to last result vs ideal {full['ideal_s']:.2f} s (the busiest "
            f"device's jobs back to back); whole run incl. connect, upload, report {full['run_total_s']:.2f} s; "
            f"{small['jobs']} jobs: {small['ratio']:.3f} × ideal",
            {"full": full, "small": small}),
        Row(f"fan-out: controller CPU and memory ({full['jobs']} vs {small['jobs']} jobs)",
            "memory flat in job count", f"+{full['rss_growth_mb']:.0f} MB vs +{small['rss_growth_mb']:.0f} MB",
            flat,
            f"controller CPU {full['cpu_s']:.1f} s for {full['jobs']} jobs ({1e3 * full['cpu_s'] / full['jobs']:.1f} "
            f"ms a job; {small['cpu_s']:.1f} s for {small['jobs']}; the agents' processes: {full['lab_cpu_s']:.1f} s); resident set above {full['rss_base_mb']:.0f} MB "
            f"before the run, peak while dispatching (with the report: +{full['rss_growth_with_report_mb']:.0f} / "
            f"+{small['rss_growth_with_report_mb']:.0f} MB)",
            {}),
    ]
