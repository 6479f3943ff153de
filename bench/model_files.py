"""Models the benchmarks build for themselves (nothing binary is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def matmul_chain(path: Path, batch: int = 64, width: int = 512, depth: int = 4, seed: int = 0) -> Path:
    """x[batch, width] through `depth` MatMul+Relu layers: a few ms per run
    on one core, long enough that a timing loop's own cost would show."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for i in range(depth):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [cur, f"w{i}"], [f"h{i}"], name=f"mm{i}"))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"], name=f"relu{i}"))
        cur = f"r{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"], name="out"))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def big_model(path: Path, size_bytes: int, seed: int = 0) -> Path:
    """A valid ONNX model whose one initializer makes it `size_bytes` large,
    filled with random values so nothing on the way can compress it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = size_bytes // 4
    w = np.random.default_rng(seed).random(n, dtype=np.float32)
    init = numpy_helper.from_array(w, "w")
    del w
    g = helper.make_graph([helper.make_node("ReduceSum", ["w"], ["y"], keepdims=0)], "big", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [init])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def sha256(path: Path) -> str:
    from harness.kernel.modelfile import sha256_file

    return sha256_file(path)
