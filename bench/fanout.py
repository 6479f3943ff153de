"""Fan-out: 16 simulated devices on 4 real agents, 1 s jobs, through the
real controller (`harness.api.run_cohort` with a lab file: plan, upload,
scheduler, gRPC Run streams, result records into SQLite).

The ideal wall time is what the busiest device's jobs take back to back by
their own simulated clocks; the measured time runs from the end of the
uploads to the last stored result, so what it adds to the ideal is the
harness's own dispatch and bookkeeping.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bench import model_files
from bench.common import Row

AGENTS = 4
DEVICES_PER_AGENT = 4
CANDIDATES = 4  # jobs per device
JOB_S = 1.0
LATENCY_MS = 10.0


def _sim_config(agent: int) -> dict:
    devices = []
    for d in range(DEVICES_PER_AGENT):
        browser = d % 2 == 1  # half stand in for browsers, half for phones
        devices.append({
            "id": f"a{agent}-d{d}", "platform": "browser" if browser else "android",
            "facts": {"model": f"bench device {agent}.{d}"},
            "latency": {"dist": "fixed", "p50_ms": LATENCY_MS}, "load_ms": 0, "first_run_ms": LATENCY_MS,
        })
    return {"seed": agent, "devices": devices}


def _cohort(path: Path) -> Path:
    lines = ["name: fanout", "devices:"]
    for a in range(AGENTS):
        for d in range(DEVICES_PER_AGENT):
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


def run(tmp: Path, quick: bool = False) -> list[Row]:
    from agents.server import AgentConfig, start
    from harness import api

    model = model_files.matmul_chain(tmp / "tiny.onnx", batch=1, width=8, depth=1)
    cands = tmp / "candidates.yaml"
    cands.write_text("candidates:\n" + "".join(f"  c{i}: {{onnx: {model.name}}}\n" for i in range(CANDIDATES)))
    cohort = _cohort(tmp / "fanout.yaml")
    agents = [start(AgentConfig(listen="127.0.0.1:0", drivers=("sim",), cache_dir=str(tmp / f"cache{a}"),
                                driver_config={"sim": _sim_config(a)})) for a in range(AGENTS)]
    lab = tmp / "lab.yaml"
    lab.write_text("agents:\n" + "".join(f"  - {{name: agent{a}, address: '{ag.address}'}}\n"
                                         for a, ag in enumerate(agents)))
    marks: dict[str, float] = {}
    lock = threading.Lock()

    def progress(e: dict) -> None:
        now = time.perf_counter()
        with lock:
            if e.get("event") == "upload":
                marks["dispatch"] = now
            elif e.get("event") == "result":
                marks["last_result"] = now

    try:
        t0 = time.perf_counter()
        outcome = api.run_cohort(api.RunRequest(cohort=str(cohort), candidates_file=cands, lab=lab,
                                                store=str(tmp / "fanout.sqlite"), probes=1), progress)
        total = time.perf_counter() - t0
    finally:
        for ag in agents:
            ag.stop(grace=1.0)
    results = outcome.report["results"]
    errors = [r for r in results if r.get("error")]
    if errors or len(results) != AGENTS * DEVICES_PER_AGENT * CANDIDATES:
        raise RuntimeError(f"fan-out run incomplete: {len(results)} results, {len(errors)} errors "
                           f"({errors[0]['error'] if errors else ''})")
    busy: dict[str, float] = {}
    for r in results:
        key = f"{r['device']['agent']}/{r['device']['id']}"
        busy[key] = busy.get(key, 0.0) + float(r["details"]["simulated_s"])
    ideal = max(busy.values())
    wall = marks["last_result"] - marks["dispatch"]
    ratio = wall / ideal
    return [Row(
        f"fan-out ({AGENTS * DEVICES_PER_AGENT} sim devices, {AGENTS} agents, {JOB_S:g} s jobs)", "≤ 1.2 × ideal",
        f"{ratio:.3f} × ideal", ratio <= 1.2,
        f"{len(results)} jobs: {wall:.2f} s from dispatch to last result vs ideal {ideal:.2f} s "
        f"(the busiest device's jobs back to back); whole run incl. connect, upload, report {total:.2f} s",
        {"ratio": ratio, "wall_s": wall, "ideal_s": ideal, "run_total_s": total, "jobs": len(results)},
    )]
