"""The adaptive stop rule against a fixed 1,000-run policy, on a real model
through the real host driver: how many samples the rule needs to pin the
p90 to ±2 % on a stable workload and on a noisy one, and how tight a fixed
1,000 runs gets.

Noisy means a competing process on the runner's core that wakes in short
bursts (busy 2 ms, idle 6 ms), as a phone's background work does: latency
then varies run to run. Each policy runs on each workload in alternation,
so a slow spell of the machine hits both alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import model_files
from bench.common import Row, median, spread

FLICKER = (
    "import os, time\n"
    "os.sched_setaffinity(0, {0})\n"
    "while True:\n"
    "    end = time.perf_counter() + 0.002\n"
    "    while time.perf_counter() < end:\n"
    "        pass\n"
    "    time.sleep(0.006)\n"
)
FIXED_RUNS = 1000
TARGET = 0.02


def _half_width(samples: list[float]) -> float:
    from harness.kernel.measure.intervals import percentile_interval

    ci = percentile_interval(samples, 0.9)
    p90 = float(np.percentile(samples, 90))
    return float("inf") if ci is None else (ci[1] - ci[0]) / 2 / p90


def run(tmp: Path, quick: bool = False) -> list[Row]:
    from agents.server import AgentConfig, start
    from harness.kernel import wire
    from harness._proto.v1 import agent_pb2 as pb
    from harness.controller.client import AgentClient
    from harness.kernel.measure.policy import MeasurePolicy

    reps = 1 if quick else 3
    # About a millisecond a run on one core: long enough that the noise
    # bursts below land inside runs rather than between them.
    model = model_files.matmul_chain(tmp / "chain.onnx", batch=32, width=384, depth=4)
    x = np.random.default_rng(2).standard_normal((32, 384)).astype(np.float32)
    digest = model_files.sha256(model)
    policies = {
        "adaptive": MeasurePolicy(warmup_runs=20, warmup_s=0, min_runs=50, min_s=0, max_s=60, target_ci=TARGET),
        "fixed": MeasurePolicy(warmup_runs=20, warmup_s=0, min_runs=FIXED_RUNS, min_s=0, max_s=120, target_ci=0,
                               max_runs=FIXED_RUNS),
    }
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp / "cache"),
                              driver_config={"host": {"work_dir": str(tmp / "work")}}))
    client = AgentClient("bench", agent.address)
    got: dict[tuple[str, str], list[dict]] = {}
    try:
        client.ensure_models([(model, digest, "onnx")])
        device = next(d for d in client.describe().devices if d.driver == "host")
        for workload in ("stable", "noisy"):
            for k in range(reps):
                for name in (("adaptive", "fixed") if k % 2 == 0 else ("fixed", "adaptive")):
                    hog = subprocess.Popen([sys.executable, "-c", FLICKER]) if workload == "noisy" else None
                    try:
                        job = pb.Job(job_id=f"bench-adaptive-{os.getpid()}-{workload}-{name}-{k}",
                                     device_id=device.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                                     target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu",
                                                             options={"intra_op_threads": "1", "cpu_affinity": "0"}),
                                     measure=wire.policy_to_pb(policies[name]),
                                     probes=[wire.tensors_to_pb({"x": x})], timeout_s=600)
                        res = client.run(job, lambda ev: None, 900)
                    finally:
                        if hog:
                            hog.kill()
                            hog.wait()
                    if res.HasField("error"):
                        raise RuntimeError(f"{workload}/{name}: {res.error.kind}: {res.error.message[:200]}")
                    s = list(res.samples_ms)
                    got.setdefault((workload, name), []).append({
                        "n": len(s), "stop": res.validity.stop_reason, "seconds": sum(s) / 1e3,
                        "p90_ms": float(np.percentile(s, 90)), "half_width": _half_width(s)})
    finally:
        client.close()
        agent.stop(grace=1.0)
    rows = []
    for workload in ("stable", "noisy"):
        a, f = got[(workload, "adaptive")], got[(workload, "fixed")]
        n_a = median([x["n"] for x in a])
        hw_a, hw_f = median([x["half_width"] for x in a]), median([x["half_width"] for x in f])
        p90_a, p90_f = median([x["p90_ms"] for x in a]), median([x["p90_ms"] for x in f])
        reached = all(x["stop"] == "ci_reached" for x in a)
        rows.append(Row(
            f"adaptive rule, {workload} workload: samples to ±2 %", f"vs fixed {FIXED_RUNS}",
            f"{n_a:.0f} samples", None,
            f"p90 ±{100 * hw_a:.1f}% ({'ci_reached' if reached else 'stopped at max_s'}) in "
            f"{median([x['seconds'] for x in a]):.2f} s; fixed {FIXED_RUNS}: p90 ±{100 * hw_f:.1f}% in "
            f"{median([x['seconds'] for x in f]):.2f} s; p90 {p90_a:.3f} vs {p90_f:.3f} ms; "
            f"adaptive n over {len(a)} runs: {spread([x['n'] for x in a])}",
            {"adaptive": a, "fixed": f},
        ))
    return rows
