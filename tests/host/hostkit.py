"""ONNX Runtime builds side by side for the host tests: the environments, the
models OpenVINO takes in part or whole, and the runtime's own answer computed
beside the harness in the same build.

The environments are made once by `harness runtime install` into the user's
cache (~/.cache/harness/ort-python, or $HARNESS_CACHE), where later runs and
CI on the same machine find them; only the first run downloads (pip's own
wheel cache makes even that quick the second time).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# onnxruntime-openvino's newest release on PyPI; it has the graph-assignment API
# (ONNX Runtime 1.24+), and its OpenVINO EP runs on this CPU.
OPENVINO = "onnxruntime-openvino==1.24.1"
# An older CPU release without that API: placement comes from its verbose log.
OLDER = "onnxruntime==1.20.1"


def environment(spec: str):
    """The installed environment for spec, installing it the first time."""
    from agents.host import runtimes

    parsed = runtimes.parse_spec(spec)
    return runtimes.find(parsed) or runtimes.install(parsed)


def chain(path: Path, ops: list[str], width: int = 8) -> Path:
    """x -> op -> op ... -> y on [1, width] floats; Add and Mul take a constant."""
    nodes, inits, prev = [], [], "x"
    for i, op in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        ins = [prev]
        if op in ("Add", "Mul"):
            inits.append(numpy_helper.from_array(np.full((1, width), 0.5, np.float32), f"c{i}"))
            ins.append(f"c{i}")
        nodes.append(helper.make_node(op, ins, [out], name=f"{op.lower()}_{i}"))
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def partly_openvino(path: Path) -> Path:
    """Five nodes; OpenVINO's EP leaves Hardmax to the CPU (its op list in
    onnxruntime/core/providers/openvino/ov_versions/data_ops.cc spells it
    "HardMax", so ONNX's Hardmax is not supported): 4 OpenVINO nodes in two
    partitions, 1 CPU node."""
    return chain(path, ["Add", "Relu", "Hardmax", "Mul", "Sigmoid"])


def whole_openvino(path: Path) -> Path:
    return chain(path, ["Add", "Relu", "Mul", "Sigmoid"])


_ASSIGNMENT = r"""
import json, sys
import onnxruntime as ort
so = ort.SessionOptions()
so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
s = ort.InferenceSession(sys.argv[1], so, providers=[sys.argv[2], "CPUExecutionProvider"])
print(json.dumps([[e.ep_name, [[n.op_type, n.name] for n in e.get_nodes()]]
                  for e in s.get_provider_graph_assignment_info()]))
"""


def assignment(env, model: Path, provider: str) -> list:
    """get_provider_graph_assignment_info() for the model, asked of the build itself."""
    p = subprocess.run([str(env.python), "-I", "-c", _ASSIGNMENT, str(model), provider], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def cohort(root: Path, targets: list[str], name: str = "builds") -> Path:
    """A cohort of one host profile with the given target lines, measured briefly."""
    (root / "cohorts").mkdir(parents=True, exist_ok=True)
    (root / "devices").mkdir(exist_ok=True)
    lines = "".join(f"  - {t}\n" for t in targets)
    (root / "devices" / "host.yaml").write_text(
        "id: host\nplatform: linux\nmatch: {driver: host}\ntier: mid\nshare: 1.0\nmemory_budget_mb: 2048\n"
        f"targets:\n{lines}")
    (root / "cohorts" / f"{name}.yaml").write_text(
        f"name: {name}\ndevices: [host]\nbudgets: {{latency_p90_ms: 1000}}\n"
        "measure: {warmup_runs: 2, warmup_s: 0, min_runs: 20, min_s: 0, max_s: 2, target_ci: 0}\n")
    return root / "cohorts" / f"{name}.yaml"
