"""Helpers shared by the android tests: driver configs and jobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from agents.contract import JobSpec, ModelFile, RuntimeTarget
from harness.kernel.measure.policy import MeasurePolicy

QUICK = MeasurePolicy(warmup_runs=2, warmup_s=0.0, min_runs=20, min_s=0.0, max_s=3.0, target_ci=0.0)


def runner_config(lab, *, eps=("cpu", "xnnpack"), version="1.20", **extra) -> dict:
    return {version: {"perf_test": str(lab["perf_test"]), "libs": [str(lab["lib"])], "eps": list(eps), **extra}}


def driver_config(lab, adb_port: int, **extra) -> dict:
    cfg = {"runners": runner_config(lab), "adb_port": adb_port}
    cfg.update(extra)
    return cfg


def job(job_id: str, serial: str, model: Path, *, ep: str = "cpu", version: str = "1.20", probes: int = 2,
        policy: MeasurePolicy = QUICK, timeout_s: float = 120.0, options=None, seed: int = 0) -> JobSpec:
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    rng = np.random.default_rng(seed)
    feeds = tuple({"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(probes))
    return JobSpec(job_id, serial, (ModelFile(digest, "onnx", Path(model)),),
                   RuntimeTarget("onnxruntime", version, ep, dict(options or {})), policy, feeds, timeout_s)


def install_perf_test(dest_dir, *, debug_node_io: bool = False, needs=("libonnxruntime.so",),
                      name="onnxruntime_perf_test", version: str = "1.20", **traits):
    """Write the perf_test stand-in as an executable `name` in dest_dir, with
    the build traits it pretends to have: the ONNX Runtime release it behaves
    as (its parser, its output lines), a node-IO dump build, the libraries its
    linker needs."""
    import sys
    from pathlib import Path

    dest = Path(dest_dir) / name
    here = Path(__file__).resolve().parent
    body = "\n".join((here / part).read_text() for part in ("perf_test_cli.py", "perf_test_standin.py"))
    build = {"debug_node_io": debug_node_io, "needs": list(needs), "version": version, **traits}
    dest.write_text(f"#!{sys.executable}\nBUILD = {build!r}\n{body}")
    dest.chmod(0o755)
    return dest
