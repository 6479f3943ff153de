"""Model artefact formats: what may travel to an agent, and which formats
each runtime loads (best first).

A Core ML `.mlpackage` is a folder, so it travels as a deterministic zip
(`mlpackage.zip`, see harness.artefacts); `ort` is ONNX Runtime's own
flatbuffer format, accepted into an agent's cache for runners that load it.
"""

from __future__ import annotations

ONNX = ("onnx",)
COREML_FORMATS = ("mlpackage.zip", "mlmodel")

# Which artefact formats each runtime loads, best first.
RUNTIME_FORMATS = {
    "onnxruntime": ONNX,
    "onnxruntime-web": ONNX,
    "coreml": COREML_FORMATS,
}

# Every format an agent's model cache accepts.
MODEL_FORMATS = frozenset({*ONNX, *COREML_FORMATS, "ort"})
