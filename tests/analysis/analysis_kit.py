"""Synthetic result records shaped like the store's, and small classifier
models (teacher, INT8 teacher, student) built in the test."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from harness.kernel.measure import stats

MiB = 1024 * 1024


def profile(pid, platform="linux", tier="mid", share=0.0, budget=None, targets=(("onnxruntime", "cpu"),)):
    return {"id": pid, "platform": platform, "tier": tier, "share": share, "memory_budget_mb": budget,
            "targets": [{"runtime": rt, "ep": ep, "version": ""} for rt, ep in targets]}


def rec(profile_: dict, candidate="m", *, samples=None, peak_mb=None, ep=None, runtime=None, version="1.20.0",
        error=None, technique="baseline", precision="fp32", placement=None, size_bytes=4000, parity=None,
        params=1000, sessions=None, sha256="x"):
    t = (profile_["targets"][0])
    ep = ep or t["ep"]
    runtime = runtime or t["runtime"]
    r = {"job": f"{profile_['id']}/{candidate}/{runtime}@any/{ep}",
         "device": {"id": None if error and error.get("stage") == "plan" else f"dev-{profile_['id']}",
                    "profile": profile_["id"], "platform": profile_["platform"], "tier": profile_["tier"],
                    "share": profile_["share"], "memory_budget_mb": profile_["memory_budget_mb"], "facts": {}},
         "candidate": candidate, "technique": technique,
         "model": {"sha256": sha256, "format": "onnx", "size_bytes": size_bytes, "params": params,
                   "precision": precision},
         "runtime": {"name": runtime, "version": version, "ep": ep, "options": {}},
         "target": f"{runtime}@any/{ep}", "timing": None, "memory": None, "placement": placement, "parity": parity,
         "validity": None, "error": error}
    if sessions is not None:
        # Several sessions: the timing block the record builder makes.
        from harness.kernel.measure import job_trust

        s = [float(x) for part in sessions for x in part]
        timing, _, _ = job_trust.describe(s, [{"n": len(part)} for part in sessions])
        r["timing"] = {"samples_ms": s, **timing}
    elif error is None or samples is not None:
        s = list(samples if samples is not None else [1.0] * 50)
        r["timing"] = {"samples_ms": s, **stats.summarize(s)}
    if peak_mb is not None:
        r["memory"] = {"peak_bytes": int(peak_mb * MiB), "delta_bytes": 0, "method": "test"}
    return r


def gap(profile_: dict, candidate="m", kind="not_covered"):
    return rec(profile_, candidate, error={"stage": "plan", "kind": kind, "message": "no device"})


def lat(p90: float, n: int = 200) -> list[float]:
    """Samples whose p90 is exactly p90 (constant samples)."""
    return [float(p90)] * n


def config(profiles, *, candidates=None, reference="teacher", quality=None, budgets=None):
    return {"profiles": profiles, "reference": reference,
            "cohort": {"name": "t", "budgets": budgets or {"latency_p90_ms": 50, "memory_fraction": 0.65},
                       "quality": {"reference": reference, "max_top1_disagreement": 0.01, "min_snr_db": 30,
                                   "consistency_required": False, **(quality or {})}},
            "candidates": candidates or {}}


# -- models -------------------------------------------------------------------

def mlp(path: Path, dims, seed: int, extra_layers: int = 0, width_extra: int = 256) -> Path:
    """x[batch, dims[0]] -> MatMul/Relu chain -> logits[batch, dims[-1]].

    ``extra_layers`` appends square MatMul+Relu layers that are then dropped
    by a zero-weight Add, so the outputs are unchanged but each run costs more.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        inits.append(numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"]))
        cur = f"m{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
    if extra_layers:
        inits.append(numpy_helper.from_array((rng.standard_normal((dims[0], width_extra)) / 8).astype(np.float32), "we"))
        nodes.append(helper.make_node("MatMul", ["x", "we"], ["e0"]))
        side = "e0"
        for k in range(extra_layers):
            inits.append(numpy_helper.from_array(
                (rng.standard_normal((width_extra, width_extra)) / np.sqrt(width_extra)).astype(np.float32), f"wx{k}"))
            nodes += [helper.make_node("MatMul", [side, f"wx{k}"], [f"x{k}"]),
                      helper.make_node("Relu", [f"x{k}"], [f"xr{k}"])]
            side = f"xr{k}"
        inits.append(numpy_helper.from_array(np.zeros((width_extra, dims[-1]), np.float32), "wz"))
        nodes += [helper.make_node("MatMul", [side, "wz"], ["z"]), helper.make_node("Add", [cur, "z"], ["sum"])]
        cur = "sum"
    nodes.append(helper.make_node("Identity", [cur], ["logits"]))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", dims[0]])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", dims[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def classifier_set(folder: Path, n_eval: int = 128) -> Path:
    """teacher (fp32), teacher-int8 (ORT dynamic INT8), student (smaller fp32),
    an eval set labelled by the teacher, and a candidates file."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    mlp(folder / "teacher.onnx", [32, 128, 10], seed=0)
    quantize_dynamic(str(folder / "teacher.onnx"), str(folder / "teacher.int8.onnx"), weight_type=QuantType.QInt8)
    mlp(folder / "student.onnx", [32, 16, 10], seed=1)
    x = np.random.default_rng(7).standard_normal((n_eval, 32)).astype(np.float32)
    import onnxruntime as ort

    y = ort.InferenceSession(str(folder / "teacher.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.savez(folder / "eval.npz", x=x, labels=y.argmax(1))
    (folder / "candidates.yaml").write_text(
        "reference: teacher\neval: eval.npz\ncandidates:\n"
        "  teacher: {onnx: teacher.onnx, technique: baseline}\n"
        "  teacher-int8: {onnx: teacher.int8.onnx, technique: quantisation, from: teacher}\n"
        "  student: {onnx: student.onnx, technique: distillation, from: teacher}\n")
    return folder / "candidates.yaml"


def cohort_file(path: Path, *, browser: bool = True, consistency: bool = False, host_budget_mb: float = 4096,
                host_tier: str = "low", max_top1: float = 0.25, max_rel_l2: Optional[float] = None,
                second_host_target: bool = False) -> Path:
    """A cohort of the host CPU (measured) and, optionally, a browser profile
    no host-only agent covers: two declared (platform, runtime) targets.
    ``second_host_target`` adds a second CPU target without graph
    optimisations, so each candidate has two sets of outputs to compare."""
    targets = "{runtime: onnxruntime, ep: cpu, options: {intra_op_threads: 1}}"
    if second_host_target:
        targets += ", {runtime: onnxruntime, ep: cpu, options: {graph_optimization_level: disable}}"
    devices = [f"  - {{id: host-cpu, platform: linux, match: {{driver: host}}, tier: {host_tier}, share: 0.7, "
               f"memory_budget_mb: {host_budget_mb}, targets: [{targets}]}}"]
    if browser:
        devices.append("  - {id: web, platform: browser, match: {driver: browser}, tier: high, share: 0.3, "
                       "memory_budget_mb: 4096, targets: [{runtime: onnxruntime-web, ep: wasm}]}")
    quality = f"{{reference: teacher, max_top1_disagreement: {max_top1}, consistency_required: {str(consistency).lower()}"
    quality += f", max_rel_l2: {max_rel_l2}}}" if max_rel_l2 is not None else "}"
    path.write_text(f"name: {path.stem}\ndevices:\n" + "\n".join(devices) + "\n"
                    "budgets: {latency_p90_ms: 1000, memory_fraction: 0.65}\n"
                    f"quality: {quality}\n"
                    "measure: {warmup_runs: 1, warmup_s: 0, min_runs: 40, min_s: 0, max_s: 0.25, target_ci: 0}\n")
    return path
