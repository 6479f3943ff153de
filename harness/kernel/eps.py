"""Execution-provider names: ONNX Runtime's provider names and the short
names every result, profile and report uses."""

from __future__ import annotations

# ONNX Runtime's provider names -> the short names used everywhere in results.
EP_SHORT_NAMES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
    "CoreMLExecutionProvider": "coreml",
    "NnapiExecutionProvider": "nnapi",
    "XnnpackExecutionProvider": "xnnpack",
    "QNNExecutionProvider": "qnn",
    "OpenVINOExecutionProvider": "openvino",
    "DmlExecutionProvider": "dml",
    "ROCMExecutionProvider": "rocm",
    "MIGraphXExecutionProvider": "migraphx",
    "WebGpuExecutionProvider": "webgpu",
    "JsExecutionProvider": "webgpu",
    "WebNNExecutionProvider": "webnn",
    "AzureExecutionProvider": "azure",
    "ACLExecutionProvider": "acl",
    "ArmNNExecutionProvider": "armnn",
    "VitisAIExecutionProvider": "vitisai",
    "SNPEExecutionProvider": "snpe",
}
EP_LONG_NAMES = {
    short: long for long, short in EP_SHORT_NAMES.items() if long != "JsExecutionProvider"
}
# EPs that are the CPU itself: nothing placed there counts as a fallback.
CPU_EPS = frozenset({"cpu", "wasm", "cpu_only"})


def short_ep(name: str) -> str:
    """Short EP name for a runtime's provider name ('CPUExecutionProvider' -> 'cpu')."""
    if name in EP_SHORT_NAMES:
        return EP_SHORT_NAMES[name]
    return name.replace("ExecutionProvider", "").lower()
