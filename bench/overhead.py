"""Host-driver overhead: the p50 the host driver reports through a real
agent, divided by the p50 of a bare `InferenceSession.run` loop over the same
model with the same thread count, in pairs run back to back (ABBA order, so
a slow spell of a shared machine hits both sides alike)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import model_files
from bench.common import ROOT, Row, median, spread

THREADS = 1
WARMUP = 30
RUNS = 300
PAIRS = 12


def _bare(model: Path, feed: Path) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "bench._bare", str(model), str(feed), str(THREADS), str(WARMUP),
                          str(RUNS)], capture_output=True, text=True, check=True, cwd=ROOT, env=env, timeout=300)
    return json.loads(out.stdout)


def run(tmp: Path, quick: bool = False) -> list[Row]:
    from agents.server import AgentConfig, start
    from harness.kernel import wire
    from harness._proto.v1 import agent_pb2 as pb
    from harness.controller.client import AgentClient
    from harness.kernel.measure.policy import MeasurePolicy

    pairs = 2 if quick else PAIRS
    model = model_files.matmul_chain(tmp / "chain.onnx")
    x = np.random.default_rng(1).standard_normal((64, 512)).astype(np.float32)
    feed = tmp / "feed.npz"
    np.savez(feed, x=x)
    digest = model_files.sha256(model)
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp / "cache"),
                              driver_config={"host": {"work_dir": str(tmp / "work")}}))
    client = AgentClient("bench", agent.address)
    try:
        client.wait_ready()
        client.ensure_models([(model, digest, "onnx")])
        device = next(d for d in client.describe().devices if d.driver == "host")
        policy = MeasurePolicy(warmup_runs=WARMUP, warmup_s=0, min_runs=RUNS, min_s=0, max_s=120, target_ci=0,
                               max_runs=RUNS)

        def driver(k: int) -> list[float]:
            job = pb.Job(job_id=f"bench-overhead-{os.getpid()}-{k}", device_id=device.id,
                         models=[pb.ModelRef(digest=digest, format="onnx")],
                         target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu",
                                                 options={"intra_op_threads": str(THREADS)}),
                         measure=wire.policy_to_pb(policy), probes=[wire.tensors_to_pb({"x": x})], timeout_s=300)
            res = client.run(job, lambda ev: None, 600)
            if res.HasField("error"):
                raise RuntimeError(f"host driver job failed: {res.error.kind}: {res.error.message[:300]}")
            return list(res.samples_ms)

        ratios, d50s, b50s = [], [], []
        for k in range(pairs):
            first_driver = k % 2 == 0
            a = driver(k) if first_driver else _bare(model, feed)
            b = _bare(model, feed) if first_driver else driver(k)
            d, bare = (a, b) if first_driver else (b, a)
            d50, b50 = float(np.median(d)), float(np.median(bare))
            d50s.append(d50)
            b50s.append(b50)
            ratios.append(d50 / b50)
    finally:
        client.close()
        agent.stop(grace=1.0)
    r = median(ratios)
    return [Row(
        "host-driver overhead (p50 ratio)", "≤ 1.03", f"{r:.3f}", r <= 1.03,
        f"driver p50 {median(d50s):.3f} ms vs bare {median(b50s):.3f} ms; {pairs} ABBA pairs of {RUNS} runs, "
        f"{THREADS} thread; pair ratios {spread(ratios)}",
        {"ratio": r, "pair_ratios": ratios, "driver_p50_ms": d50s, "bare_p50_ms": b50s},
    )]
