"""Shared pieces of the sim driver's tests: a real agent with simulated
devices on loopback, and jobs sent to it through the real client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy

# A fraction of a second per job: warm-up by runs only, a fixed count measured.
QUICK = MeasurePolicy(warmup_runs=3, warmup_s=0, min_runs=40, min_s=0, max_s=5, target_ci=0)


def device(id: str, platform: str = "android", **kw) -> dict:
    d = {"id": id, "platform": platform, "latency": {"dist": "fixed", "p50_ms": 1.0}, "load_ms": 5}
    d.update(kw)
    return d


def start_agent(tmp_path: Path, sim: dict, name: str = "sim"):
    from agents.server import AgentConfig, start

    return start(AgentConfig(listen="127.0.0.1:0", drivers=("sim",), cache_dir=str(tmp_path / f"cache-{name}"),
                             driver_config={"sim": sim}))


def upload(client, path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    client.ensure_models([(path, digest, "onnx")])
    return digest


def job(job_id: str, device_id: str, digest: str, policy: MeasurePolicy = QUICK, timeout: float = 30,
        runtime: str = "onnxruntime", ep: str = "cpu", probes=None) -> pb.Job:
    probes = probes if probes is not None else [{"x": np.zeros((1, 16), np.float32)}]
    return pb.Job(job_id=job_id, device_id=device_id, models=[pb.ModelRef(digest=digest, format="onnx")],
                  target=pb.RuntimeTarget(runtime=runtime, ep=ep), measure=wire.policy_to_pb(policy),
                  probes=[wire.tensors_to_pb(p) for p in probes], timeout_s=timeout)


def run(client, msg: pb.Job, events=None) -> dict:
    res = client.run(msg, (events.append if events is not None else (lambda ev: None)), 60)
    return wire.result_from_pb(res)
