"""A small float CNN and eval sets for the quantisation tests, built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def cnn(path: Path, batch=1, seed: int = 0) -> Path:
    """x[batch,1,8,8] -> Conv(4, 3x3) -> Relu -> Flatten -> Gemm -> y[batch,10]."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32)
    b = (rng.standard_normal(4) * 0.1).astype(np.float32)
    g = (rng.standard_normal((256, 10)) * 0.2).astype(np.float32)
    gb = (rng.standard_normal(10) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "g", "gb"], ["y"], name="gemm"),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (g, "g"), (gb, "gb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def eval_set(path: Path, n: int = 32, seed: int = 1, scale: float = 1.0, stacked: bool = False) -> Path:
    """`x` with samples along the batch axis (or as whole batches of 1), plus labels."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 1, 8, 8)) * scale).astype(np.float32)
    if stacked:
        x = x[:, None]
    np.savez(path, x=x, labels=rng.integers(0, 10, n))
    return path


def ops(path: Path) -> dict[str, int]:
    m = onnx.load(str(path))
    out: dict[str, int] = {}
    for n in m.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return out


def initializer_bytes(path: Path) -> int:
    m = onnx.load(str(path))
    return sum(numpy_helper.to_array(i).nbytes for i in m.graph.initializer)


def outputs(path: Path, x: np.ndarray, optimize: bool = True) -> np.ndarray:
    """The model's first output for each sample of x (batch 1 at a time);
    optimize=False runs the graph as written (no fusion)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
