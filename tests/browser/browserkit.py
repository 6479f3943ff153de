"""Shared pieces of the browser driver's tests: the skip reason, one driver
per test process (its browser probe is cached), and models built here."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from modelkit import _save
from onnx import TensorProto, helper

# Ops ONNX Runtime Web's WebGPU EP has no kernel for, by version, as its own
# verbose log reports them ("webgpu kernel not found in registries for Op
# type: ..."): 1.22 is the JSEP build (no TopK kernel), 1.30 the native
# WebGPU EP (TopK added; Mod and NonZero still missing).
WEBGPU_LACKS = {"1.30.0": {"Mod", "NonZero"}, "1.22.0": {"TopK", "Mod", "NonZero"}}
SECOND_VERSION = "1.22.0"


def skip_reason() -> str:
    from agents.browser import locate, runtimes

    for module in ("playwright", "websockets"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed (pip install 'harness[browser]')"
    found = locate.find_chromium()
    if not found.path:
        return found.reason
    if runtimes.find(runtimes.DEFAULT_VERSION) is None:
        return (f"onnxruntime-web {runtimes.DEFAULT_VERSION} is not cached: "
                "run `harness browser-runtime install --default`")
    return ""


def need_browser() -> None:
    why = skip_reason()
    if why:
        pytest.skip(f"browser tests need Chromium and onnxruntime-web: {why}")


def need_version(version: str) -> None:
    from agents.browser import runtimes

    if runtimes.find(version) is None or runtimes.find(version).version != version:
        pytest.skip(f"onnxruntime-web {version} is not cached: run `harness browser-runtime install {version}`")


@functools.lru_cache(maxsize=None)
def driver(work_dir: str):
    from agents.browser import create

    d = create({"work_dir": work_dir})
    ok, why = d.available()
    assert ok, why
    return d


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()




def fallback_model(path: Path) -> Path:
    """x[1,8] -> Relu -> TopK(3) -> Mod, Mod -> NonZero; Add. WebGPU lacks
    some of these (WEBGPU_LACKS); the CPU EP has them all."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("TopK", ["r", "k"], ["top", "idx"], name="topk", axis=-1),
        helper.make_node("Mod", ["top", "m1"], ["mod1"], name="mod1", fmod=1),
        helper.make_node("Mod", ["mod1", "m2"], ["mod2"], name="mod2", fmod=1),
        helper.make_node("NonZero", ["mod2"], ["nz"], name="nonzero"),
        helper.make_node("Add", ["top", "top"], ["y"], name="add"),
    ]
    g = helper.make_graph(
        nodes, "fallback",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 3]),
         helper.make_tensor_value_info("nz", TensorProto.INT64, [2, None])],
        [helper.make_tensor("k", TensorProto.INT64, [1], [3]),
         helper.make_tensor("m1", TensorProto.FLOAT, [1], [2.5]),
         helper.make_tensor("m2", TensorProto.FLOAT, [1], [1.0])],
    )
    return _save(g, path)


def nonzero_model(path: Path) -> Path:
    """x[1,8] -> Relu -> NonZero: the WebGL backend has no NonZero."""
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("NonZero", ["r"], ["nz"], name="nz")],
        "nonzero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("nz", TensorProto.INT64, [2, None])],
    )
    return _save(g, path)


def cnn(path: Path, seed: int = 0) -> Path:
    """A small image classifier: [1,1,16,16] -> Conv 3x3 (4) -> Relu ->
    MaxPool 2 -> Conv 3x3 (8) -> Relu -> GlobalAveragePool -> Flatten ->
    Gemm (10) = logits -> Softmax = probs."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal(4) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    b2 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w3 = rng.standard_normal((10, 8)).astype(np.float32)
    b3 = (rng.standard_normal(10) * 0.1).astype(np.float32)
    t = lambda name, a: helper.make_tensor(name, TensorProto.FLOAT, a.shape, a.ravel())  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    g = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        [t("w1", w1), t("b1", b1), t("w2", w2), t("b2", b2), t("w3", w3), t("b3", b3)],
    )
    return _save(g, path)


def images(n: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 1, 16, 16)).astype(np.float32)} for _ in range(n)]


def vectors(n: int, seed: int = 2) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": (rng.standard_normal((1, 8)) * 4).astype(np.float32)} for _ in range(n)]


def reference(path: Path, feed: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed)))
