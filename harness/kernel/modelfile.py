"""What the controller knows about a model artefact without running it:
digest, size, inputs with their dims, parameter count, precision, op types."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from harness.kernel.configfile import ConfigError

Dim = Union[int, str, None]  # fixed size, symbolic name, or unknown

# onnx.TensorProto data types -> numpy dtype names
ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
}
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
              "ConvInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul", "MatMulNBits",
              "DynamicQuantizeMatMul", "QAttention", "QGemm"}


class ModelError(ConfigError):
    pass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    sha256: str
    format: str  # onnx | mlpackage.zip | mlmodel
    size_bytes: int
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    params: Optional[int] = None
    precision: str = "unknown"
    op_types: dict[str, int] = field(default_factory=dict)
    opset: Optional[int] = None

    def record(self) -> dict:
        return {"sha256": self.sha256, "format": self.format, "size_bytes": self.size_bytes,
                "params": self.params, "precision": self.precision, "op_types": dict(self.op_types)}


def sha256_file(path: Path) -> str:
    return hash_file(path, hashlib.sha256()).hexdigest()


def hash_file(path: Path, h):
    """`h` updated with the file's bytes, read a MiB at a time."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h


def _dims(value_info) -> tuple[Dim, ...]:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return ()
    out: list[Dim] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def inspect_onnx(path: Path, sha256: Optional[str] = None) -> ModelInfo:
    """The facts of an ONNX file (`sha256`: its digest when the caller has it already)."""
    import numpy as np
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: the file is empty (expected an ONNX model)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    g = model.graph
    if not g.node and not g.output:
        raise ModelError(f"{path}: not an ONNX model (no graph nodes or outputs found)")
    init_names = {i.name for i in g.initializer}
    params = 0
    by_dtype: Counter = Counter()
    for init in g.initializer:
        count = int(np.prod(init.dims)) if len(init.dims) else 1
        params += count
        dt = ONNX_DTYPES.get(init.data_type, str(init.data_type))
        by_dtype[dt] += count
        external = init.data_location == onnx.TensorProto.EXTERNAL
        if external:
            raise ModelError(f"{path}: initializer {init.name!r} keeps its weights in an external data file; "
                             "harness deploys single-file models (re-save with onnx.save(model, path, "
                             "save_as_external_data=False) if it is under 2 GB)")
        if init.raw_data and not external and dt in ONNX_DTYPES.values() and dt != "bfloat16":
            want = count * np.dtype(dt if dt != "bool" else "bool").itemsize
            if len(init.raw_data) != want:
                raise ModelError(
                    f"{path}: initializer {init.name!r} holds {len(init.raw_data)} bytes, its shape needs {want} "
                    "(the file looks truncated or corrupt)")
    ops = Counter(n.op_type for n in g.node)
    if any(op in _QUANT_OPS for op in ops):
        precision = "int8"
        if "MatMulNBits" in ops:
            precision = "int4"
    elif by_dtype:
        top = by_dtype.most_common(1)[0][0]
        precision = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8", "uint8": "int8"}.get(top, top)
    else:
        precision = "unknown"
    inputs = tuple(
        TensorSpec(i.name, ONNX_DTYPES.get(i.type.tensor_type.elem_type, "unknown"), _dims(i))
        for i in g.input if i.name not in init_names
    )
    outputs = tuple(
        TensorSpec(o.name, ONNX_DTYPES.get(o.type.tensor_type.elem_type, "unknown"), _dims(o)) for o in g.output
    )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return ModelInfo(path=path, sha256=sha256 or sha256_file(path), format="onnx", size_bytes=size, inputs=inputs,
                     outputs=outputs, params=params, precision=precision, op_types=dict(ops), opset=opset)
