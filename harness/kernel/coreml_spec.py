"""Core ML model specs read on any OS: op inventory, weight precision,
inputs and outputs, parameter count, deployment target.

coremltools reads the protobuf spec of an `.mlpackage` or `.mlmodel` on Linux
as well as on macOS; only compiling and predicting need the Core ML framework.
Weights of an ML program live in a blob file, but each `const` op declares its
output type and shape, so counting parameters never reads the blob.

coremltools is imported inside the functions: it pulls in torch and
scikit-learn and costs seconds, paid only when a Core ML artefact is present.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from harness.kernel.modelfile import ModelError, ModelInfo, TensorSpec

# Ops whose output is a weight decompressed at load time (coremltools'
# compression ops, "constexpr_*" in the MIL op reference); their output shape
# is the dense weight's shape, their storage tells the precision.
_LUT_OPS = ("constexpr_lut_to_dense",)
_SPARSE_OPS = ("constexpr_sparse_to_dense",)
_PRECISION_NAMES = {
    "float16": "fp16", "float32": "fp32", "float64": "fp64", "bfloat16": "bf16",
    "int8": "int8", "uint8": "int8", "int4": "int4", "uint4": "int4", "palettized": "palettized",
    "sparse": "sparse",
}
_FLOATS = ("float16", "float32", "float64", "bfloat16")
# Operator names in a compute plan may carry the opset as a prefix
# ("ios17.conv"); the spec's op types do not. One spelling for both.
_OPSET_PREFIX = re.compile(r"^(?:ios|macos|tvos|watchos|visionos)\d+\.", re.IGNORECASE)


def plain_op_type(name: str) -> str:
    return _OPSET_PREFIX.sub("", name)


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[list[str]]:
    """Import coremltools with its import-time warnings (missing native
    library on Linux, untested torch or scikit-learn version) collected
    instead of printed; yields the collected messages."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger("coremltools")
    handler = _Collect(level=logging.WARNING)
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        import coremltools  # noqa: F401  (the import is the point)

        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def load_spec(path: Path):
    """The protobuf spec of an `.mlpackage` folder or an `.mlmodel` file."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: Core ML model not found")
    if path.is_dir() and not (path / "Manifest.json").is_file():
        raise ModelError(f"{path}: not an .mlpackage (no Manifest.json inside)")
    with quiet_coremltools():
        import coremltools as ct
    try:
        return ct.utils.load_spec(str(path))
    except Exception as exc:  # protobuf and manifest errors come in several types
        raise ModelError(f"{path}: not a readable Core ML model ({type(exc).__name__}: {str(exc)[:200]})") from None


@dataclass(frozen=True)
class CoreMLSpec:
    model_type: str  # mlProgram | neuralNetwork | neuralNetworkClassifier | pipeline | ...
    spec_version: int
    deployment_target: str  # the oldest OS whose Core ML reads this spec version, e.g. iOS16
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_types: dict[str, int]
    const_ops: int
    params: Optional[int]
    precision: str
    weight_elements: dict[str, int] = field(default_factory=dict)  # storage dtype -> elements
    functions: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


def inspect_coreml(path: Path) -> CoreMLSpec:
    return inspect_spec(load_spec(path))


def inspect_spec(spec) -> CoreMLSpec:
    """Inventory of a loaded spec (`coremltools.utils.load_spec` or
    `MLModel.get_spec()`)."""
    with quiet_coremltools():
        import coremltools as ct
    targets = {t.value: t.name for t in ct.target if t.name.startswith("iOS")}
    ops: Counter = Counter()
    weights: Counter = Counter()
    consts = _walk_model(spec, ops, weights)
    version = int(spec.specificationVersion)
    fitting = [v for v in targets if v <= version]
    target = targets[max(fitting)] if fitting else f"spec {version}"
    params = int(sum(weights.values())) if weights or ops else None
    precision = "unknown"
    if weights:
        by_name: Counter = Counter()
        for dtype, n in weights.items():
            by_name[_PRECISION_NAMES.get(dtype, dtype)] += n
        precision = by_name.most_common(1)[0][0]
    functions: tuple[str, ...] = ()
    if spec.WhichOneof("Type") == "mlProgram":
        functions = tuple(spec.mlProgram.functions.keys())
    desc = spec.description
    return CoreMLSpec(
        model_type=spec.WhichOneof("Type") or "unknown",
        spec_version=version,
        deployment_target=target,
        inputs=tuple(_feature(f) for f in desc.input),
        outputs=tuple(_feature(f) for f in desc.output),
        op_types=dict(sorted(ops.items())),
        const_ops=consts,
        params=params,
        precision=precision,
        weight_elements=dict(sorted(weights.items())),
        functions=functions,
        metadata={str(k): str(v) for k, v in desc.metadata.userDefined.items()},
    )


# --- features -----------------------------------------------------------------

def _feature(f) -> TensorSpec:
    from coremltools.proto import FeatureTypes_pb2 as ft

    t = f.type
    kind = t.WhichOneof("Type")
    if kind == "multiArrayType":
        m = t.multiArrayType
        name = ft.ArrayFeatureType.ArrayDataType.Name(m.dataType)
        dtype = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32",
                 "INT8": "int8"}.get(name, name.lower())
        if len(m.shape):
            dims: tuple = tuple(int(d) for d in m.shape)
        elif m.WhichOneof("ShapeFlexibility") == "shapeRange":
            dims = tuple(int(r.lowerBound) if r.lowerBound == r.upperBound else None
                         for r in m.shapeRange.sizeRanges)
        elif m.WhichOneof("ShapeFlexibility") == "enumeratedShapes" and m.enumeratedShapes.shapes:
            dims = tuple(int(d) for d in m.enumeratedShapes.shapes[0].shape)
        else:
            dims = ()
        return TensorSpec(f.name, dtype, dims)
    if kind == "imageType":
        im = t.imageType
        space = ft.ImageFeatureType.ColorSpace.Name(im.colorSpace)
        channels = 1 if space.startswith("GRAYSCALE") else 3
        return TensorSpec(f.name, "image", (1, channels, int(im.height) or None, int(im.width) or None))
    if kind == "int64Type":
        return TensorSpec(f.name, "int64", ())
    if kind == "doubleType":
        return TensorSpec(f.name, "float64", ())
    if kind == "stringType":
        return TensorSpec(f.name, "string", ())
    if kind == "dictionaryType":
        return TensorSpec(f.name, "dict", ())
    return TensorSpec(f.name, kind or "unknown", ())


# --- models ---------------------------------------------------------------------

def _walk_model(spec, ops: Counter, weights: Counter) -> int:
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        return _walk_program(spec.mlProgram, ops, weights)
    if kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        for layer in getattr(spec, kind).layers:
            ops[layer.WhichOneof("layer") or "unknown"] += 1
            _weight_params(layer, weights)
        return 0
    if kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        pipe = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
        return sum(_walk_model(m, ops, weights) for m in pipe.models)
    if kind:
        ops[kind] += 1  # a classical model (tree ensemble, GLM, ...) is one op
    return 0


def _mil_dtype(value_type) -> str:
    from coremltools.proto import MIL_pb2

    if value_type.WhichOneof("type") != "tensorType":
        return ""
    return MIL_pb2.DataType.Name(value_type.tensorType.dataType).lower()


def _elements(value_type) -> int:
    if value_type.WhichOneof("type") != "tensorType":
        return 0
    dims = value_type.tensorType.dimensions
    if not len(dims):
        return 0  # a scalar is a setting (an axis, a flag), not a weight
    n = 1
    for d in dims:
        if d.WhichOneof("dimension") != "constant":
            return 0
        n *= int(d.constant.size)
    return n


def _walk_program(program, ops: Counter, weights: Counter) -> int:
    all_ops = []

    def collect(block) -> None:
        for op in block.operations:
            all_ops.append(op)
            for inner in op.blocks:
                collect(inner)

    for fn in program.functions.values():
        block = fn.block_specializations.get(fn.opset)
        if block is None and len(fn.block_specializations):
            block = next(iter(fn.block_specializations.values()))
        if block is not None:
            collect(block)
    # Consts feeding a decompression op are its storage, counted through the
    # op's dense output rather than twice.
    storage = {}
    for op in all_ops:
        if op.type.startswith("constexpr_"):
            for arg in op.inputs.values():
                for b in arg.arguments:
                    if b.WhichOneof("binding") == "name":
                        storage[b.name] = op.type
    produced = {}
    for op in all_ops:
        for out in op.outputs:
            produced[out.name] = op
    consts = 0
    for op in all_ops:
        if op.type == "const":
            consts += 1
            out = op.outputs[0] if op.outputs else None
            if out is None or out.name in storage:
                continue
            dtype = _mil_dtype(out.type)
            if dtype in _FLOATS:
                weights[dtype] += _elements(out.type)
            continue
        ops[op.type] += 1
        if op.type.startswith("constexpr_") and op.outputs:
            weights[_storage_dtype(op, produced)] += _elements(op.outputs[0].type)
    return consts


def _storage_dtype(op, produced: dict) -> str:
    if op.type in _LUT_OPS:
        return "palettized"
    if op.type in _SPARSE_OPS:
        return "sparse"
    # Affine / blockwise quantisation: the narrowest integer input (an
    # attribute in the iOS16 opset, an input const from iOS18 on).
    found = []
    for value in op.attributes.values():
        if value.HasField("type"):
            found.append(_mil_dtype(value.type))
    for arg in op.inputs.values():
        for b in arg.arguments:
            if b.WhichOneof("binding") == "value":  # inline data (iOS18 opset)
                found.append(_mil_dtype(b.value.type))
                continue
            src = produced.get(b.name)
            if src is not None and src.outputs:
                found.append(_mil_dtype(src.outputs[0].type))
    ints = [d for d in found if d.startswith(("int", "uint")) and d not in ("int32", "int64", "uint32", "uint64")]
    if ints:
        return min(ints, key=lambda d: int(re.sub(r"\D", "", d) or 64))
    return _mil_dtype(op.outputs[0].type) or "unknown"


def _weight_params(message, weights: Counter) -> None:
    """Sum every WeightParams inside a neural-network layer, by storage."""
    for desc, value in message.ListFields():
        if desc.type != desc.TYPE_MESSAGE:
            continue
        values = value if _repeated(desc) else [value]
        for v in values:
            if v.DESCRIPTOR.name == "WeightParams":
                _count_weights(v, weights)
            else:
                _weight_params(v, weights)


def _repeated(desc) -> bool:
    # protobuf 5+ has is_repeated; older releases only the label.
    flag = getattr(desc, "is_repeated", None)
    return bool(flag) if flag is not None else desc.label == desc.LABEL_REPEATED


def _count_weights(w, weights: Counter) -> None:
    if len(w.floatValue):
        weights["float32"] += len(w.floatValue)
    elif len(w.float16Value):
        weights["float16"] += len(w.float16Value) // 2
    elif len(w.rawValue) or len(w.int8RawValue):
        bits = int(w.quantization.numberOfBits) if w.HasField("quantization") else 0
        if len(w.int8RawValue):
            weights["int8"] += len(w.int8RawValue)
        elif bits:
            label = "palettized" if w.quantization.WhichOneof("QuantizationType") == "lookupTableQuantization" \
                else f"int{bits}"
            weights[label] += len(w.rawValue) * 8 // bits
        else:
            weights["float32"] += len(w.rawValue) // 4


# --- presentation ------------------------------------------------------------------

def summary_lines(spec: CoreMLSpec) -> list[str]:
    def tensor(t: TensorSpec) -> str:
        dims = "x".join("?" if d is None else str(d) for d in t.dims) or "?"
        return f"{t.name} {t.dtype}[{dims}]"

    lines = [
        f"type {spec.model_type}, spec version {spec.spec_version} (needs {spec.deployment_target}+)",
        f"inputs: {', '.join(tensor(t) for t in spec.inputs) or '—'}",
        f"outputs: {', '.join(tensor(t) for t in spec.outputs) or '—'}",
        f"parameters: {spec.params if spec.params is not None else 'unknown'}, precision {spec.precision}",
        "ops: " + (", ".join(f"{k} {v}" for k, v in sorted(spec.op_types.items(), key=lambda kv: (-kv[1], kv[0])))
                   or "—") + (f" (+ {spec.const_ops} const)" if spec.const_ops else ""),
    ]
    return lines


# --- the controller's model record ---------------------------------------------------

@dataclass(frozen=True)
class CoreMLModelInfo(ModelInfo):
    """ModelInfo for a Core ML artefact; its record adds the op inventory and
    what the spec requires, so a report row shows what the model is made of."""

    model_type: str = ""
    spec_version: Optional[int] = None
    deployment_target: str = ""

    def record(self) -> dict:
        rec = super().record()
        rec.update(op_types=dict(self.op_types), model_type=self.model_type, spec_version=self.spec_version,
                   deployment_target=self.deployment_target)
        return rec


def model_info(source: Path, *, path: Path, sha256: str, fmt: str, size_bytes: int) -> CoreMLModelInfo:
    """ModelInfo for the artefact at `path` (what travels) inspected from
    `source` (the `.mlpackage` folder or `.mlmodel` file it came from)."""
    s = inspect_coreml(source)
    return CoreMLModelInfo(
        path=path, sha256=sha256, format=fmt, size_bytes=size_bytes, inputs=s.inputs, outputs=s.outputs,
        params=s.params, precision=s.precision, op_types=dict(s.op_types), model_type=s.model_type,
        spec_version=s.spec_version, deployment_target=s.deployment_target,
    )


def as_dict(spec: CoreMLSpec) -> dict[str, Any]:
    def t(x: TensorSpec) -> dict:
        return {"name": x.name, "dtype": x.dtype, "dims": list(x.dims)}

    return {"model_type": spec.model_type, "spec_version": spec.spec_version,
            "deployment_target": spec.deployment_target, "inputs": [t(x) for x in spec.inputs],
            "outputs": [t(x) for x in spec.outputs], "op_types": spec.op_types, "const_ops": spec.const_ops,
            "params": spec.params, "precision": spec.precision, "weight_elements": spec.weight_elements,
            "functions": list(spec.functions), "metadata": spec.metadata}
