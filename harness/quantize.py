"""Quantised candidates of an ONNX model, made with ONNX Runtime's own tools.

Three variants, each a separate candidate so the cohort measures them side by
side with the float model:

- `dynamic` — `quantize_dynamic`: INT8 weights (per channel by default),
  activations quantised at run time (DynamicQuantizeLinear +
  ConvInteger/MatMulInteger). Needs no data. Weights are signed int8 unless
  the model has convolutions: ConvInteger long had only a uint8-activation
  x uint8-weight kernel (microsoft/onnxruntime#6430, #15888), and ONNX
  Runtime Web 1.22's wasm build still refuses it with int8 weights where 1.30
  accepts it, so uint8 weights keep the variant loadable on older runtimes.
- `static` — `quantize_static` in QDQ format (QuantizeLinear/DequantizeLinear
  pairs around float ops, which runtimes fuse into integer kernels): INT8
  weights, activations with ranges calibrated on the eval set. ONNX Runtime's
  CPU guidance is unsigned activations with signed weights (U8S8) and QDQ;
  per-channel weights cost little and help convolutions whose channels differ
  in range. `reduce_range` (7-bit weights) is off by default: it protects
  x86 CPUs without VNNI from saturating but costs precision everywhere else
  (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
- `fp16` — onnxruntime.transformers.float16's converter with
  `keep_io_types=True`: weights and arithmetic in float16, while the model's
  inputs and outputs stay float32 (a Cast at each end) so the same probes and
  eval set feed every candidate. Ops the converter's block list marks unsafe
  in float16 stay float32.

Before INT8 quantisation the model goes through ONNX Runtime's
`quant_pre_process` (symbolic and ONNX shape inference, then basic graph
optimisation such as Conv+BatchNorm folding), which the quantiser's own
documentation asks for; if it fails the original model is used and the result
says so. Every variant is written to a temporary name, loaded back into an
ONNX Runtime session and, with an eval set, compared with the float model;
only when all requested variants succeeded are they renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np

from harness.kernel.configfile import ConfigError
from harness.quantize_check import Check, QuantizeError, check, first_line, fusion_note

VARIANTS = ("dynamic", "static", "fp16")
# Candidate-name suffix and file-name infix per variant.
SUFFIX = {"dynamic": "int8-dynamic", "static": "int8-static", "fp16": "fp16"}
CALIBRATE_METHODS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")


@dataclass(frozen=True)
class Settings:
    per_channel: bool = True
    activation_type: str = "uint8"   # static only; weights are always int8
    reduce_range: bool = False
    calibrate: str = "minmax"
    preprocess: bool = True


@dataclass(frozen=True)
class Variant:
    kind: str
    candidate: Optional[str]
    path: Path
    size_bytes: int
    op_types: Mapping[str, int]
    check: Optional[Check]


@dataclass(frozen=True)
class Outcome:
    source: Path
    source_bytes: int
    variants: tuple[Variant, ...]
    preprocessed: bool
    notes: tuple[str, ...] = ()
    manifest: Optional[Path] = None
    manifest_layout_kept: bool = True
    eval: Optional[Path] = None


def parse_variants(raw: Optional[str]) -> tuple[str, ...]:
    if raw is None:
        return VARIANTS
    kinds = [v.strip().lower() for v in raw.split(",") if v.strip()]
    bad = [v for v in kinds if v not in VARIANTS]
    if bad or not kinds:
        raise ConfigError(f"--variants {raw!r}: expected a comma-separated subset of {', '.join(VARIANTS)}")
    return tuple(dict.fromkeys(kinds))


def output_path(model: Path, out_dir: Path, kind: str) -> Path:
    return out_dir / f"{model.stem}.{SUFFIX[kind]}.onnx"


def quantize(
    model: Path,
    *,
    variants: Optional[Sequence[str]] = None,
    eval_path: Optional[Path] = None,
    out_dir: Optional[Path] = None,
    settings: Settings = Settings(),
    candidates: Optional[Path] = None,
    name: Optional[str] = None,
) -> Outcome:
    """Make the variants, and record them in `candidates` when given.

    Everything that can be checked is checked before the first file is
    written; raises ConfigError / QuantizeError with one line otherwise."""
    from harness.kernel import limits
    from harness import manifest
    from harness.kernel.modelfile import inspect_onnx

    model = Path(model).expanduser()
    info = inspect_onnx(model)
    if info.precision not in ("fp32", "unknown"):
        raise ConfigError(f"{model}: its weights are {info.precision}; harness quantize expects a float32 model "
                          "(quantise the model this one came from)")
    if settings.activation_type not in ACTIVATION_TYPES:
        raise ConfigError(f"--activation-type {settings.activation_type!r}: expected {' or '.join(ACTIVATION_TYPES)}")
    if settings.calibrate not in CALIBRATE_METHODS:
        raise ConfigError(f"--calibrate {settings.calibrate!r}: expected one of {', '.join(CALIBRATE_METHODS)}")
    out_dir = Path(out_dir).expanduser() if out_dir else model.parent
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: exists and is not a folder")

    base = name or model.stem
    cand_path = Path(candidates).expanduser() if candidates else None
    if cand_path is not None:
        eval_path = eval_path or manifest.eval_path(cand_path)
        manifest.check_base(cand_path, base, model)
    notes: list[str] = []
    if variants is None:
        # Without calibration data, make what needs none and say what the rest needs.
        variants = VARIANTS if eval_path is not None else tuple(v for v in VARIANTS if v != "static")
        if eval_path is None:
            notes.append("static INT8 needs calibration data: give --eval DATA.npz (one array per model input, "
                         "samples along the batch axis) to make it too")
    variants = tuple(dict.fromkeys(variants))
    if "static" in variants and eval_path is None:
        raise ConfigError("static INT8 needs calibration data: give --eval DATA.npz (one array per model input, "
                          "samples along the batch axis), or leave it out with --variants dynamic,fp16")
    eval_path = Path(eval_path).expanduser() if eval_path else None
    if eval_path is not None and not eval_path.is_file():
        raise ConfigError(f"--eval {eval_path}: file not found")
    batches = _eval_batches(info, eval_path, limits.CALIBRATION_MAX_BATCHES) if eval_path else None

    finals = {k: output_path(model, out_dir, k) for k in variants}
    if any(p.resolve() == model.resolve() for p in finals.values()):
        raise ConfigError(f"{model}: an output would overwrite the input; choose another --out")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".quantize-"))
    except OSError as exc:
        raise ConfigError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    dyn_weights = "uint8" if "Conv" in info.op_types else "int8"
    done = False
    try:
        with _quiet_ort_logging():
            source, pre = model, False
            if settings.preprocess and ({"dynamic", "static"} & set(variants)):
                source, pre, note = _preprocess(model, work / "pre.onnx")
                if note:
                    notes.append(note)
            made: dict[str, Path] = {}
            for kind in variants:
                tmp = work / f"{kind}.onnx"
                try:
                    if kind == "dynamic":
                        _dynamic(source, tmp, settings, dyn_weights)
                    elif kind == "static":
                        _static(source, tmp, settings, batches)
                    else:
                        _fp16(model, tmp)
                except ConfigError:
                    raise
                except Exception as exc:  # the tools raise many types; each becomes one line
                    raise QuantizeError(f"{model}: {kind} quantisation failed ({type(exc).__name__}: "
                                        f"{first_line(exc)})") from None
                made[kind] = tmp
            checks = {k: check(model, p, k, batches) for k, p in made.items()}
            notes += [n for n in (fusion_note(k, c) for k, c in checks.items()) if n]

        if cand_path is not None:
            entries = {f"{base}-{SUFFIX[kind]}": {
                "onnx": _relpath(finals[kind], cand_path.parent), "technique": "quantisation", "from": base,
                "description": _describe(kind, settings, dyn_weights)} for kind in variants}
            top_entries = {base: {"onnx": _relpath(model, cand_path.parent), "technique": "baseline"}} \
                if not manifest.has_candidate(cand_path, base) else {}
            top = {"reference": base, "eval": _relpath(eval_path, cand_path.parent) if eval_path else None}
            text, kept = manifest.update_text(cand_path, {**top_entries, **entries}, top)
        for kind, tmp in made.items():
            os.replace(tmp, finals[kind])
        if cand_path is not None:
            manifest.write_atomic(cand_path, text)
        done = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not done:
            shutil.rmtree(out_dir, ignore_errors=True)

    out = []
    for kind in variants:
        p = finals[kind]
        out.append(Variant(kind, f"{base}-{SUFFIX[kind]}" if cand_path else None, p, p.stat().st_size,
                           _op_types(p), checks[kind]))
    return Outcome(model, info.size_bytes, tuple(out), pre, tuple(notes), cand_path,
                   kept if cand_path else True, eval_path)


# --- the three tools ---------------------------------------------------------

def _preprocess(model: Path, out: Path) -> tuple[Path, bool, Optional[str]]:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(model), str(out))
        return out, True, None
    except Exception as exc:
        return model, False, f"pre-processing skipped, quantising the model as it is ({type(exc).__name__}: {first_line(exc)})"


def _dynamic(src: Path, out: Path, s: Settings, weights: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(out), per_channel=s.per_channel, reduce_range=s.reduce_range,
                     weight_type=QuantType.QUInt8 if weights == "uint8" else QuantType.QInt8)


def _static(src: Path, out: Path, s: Settings, batches: Optional[list[dict]]) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self, items):
            self._items = iter(items)

        def get_next(self):
            return next(self._items, None)

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[s.calibrate]
    act = QuantType.QUInt8 if s.activation_type == "uint8" else QuantType.QInt8
    quantize_static(str(src), str(out), Reader(batches or []), quant_format=QuantFormat.QDQ,
                    per_channel=s.per_channel, reduce_range=s.reduce_range, activation_type=act,
                    weight_type=QuantType.QInt8, calibrate_method=method)


def _fp16(src: Path, out: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(m, str(out))


def _eval_batches(info, path: Path, limit: int) -> list[dict[str, np.ndarray]]:
    """Model-shaped batches from the eval set, shaped as `harness run` shapes
    probes (harness.config.inputs: symbolic dimensions take the arrays'
    sizes) and read by the same reader. Calibration needs every input there."""
    from harness.config.inputs import eval_shapes, resolve
    from harness.probes import load_eval

    arrays = eval_shapes(path)
    missing = [spec.name for spec in info.inputs if spec.name not in arrays]
    if missing:
        raise ConfigError(f"{path}: no array named {missing[0]!r} for model input {missing[0]!r} "
                          f"(arrays: {', '.join(arrays)})")
    batches, _ = load_eval(path, resolve(info.path.stem, info, {}, {}, arrays, path).inputs, limit)
    return batches


# --- helpers ----------------------------------------------------------------

@contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """ONNX Runtime's quantisation tools log advice through the root logger;
    the command reports what it did itself."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _op_types(path: Path) -> dict[str, int]:
    from collections import Counter

    import onnx

    return dict(Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node))


def _relpath(p: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(p).resolve(), Path(base).resolve())).as_posix()


def _describe(kind: str, s: Settings, dyn_weights: str = "int8") -> str:
    gran = "per-channel" if s.per_channel else "per-tensor"
    rr = ", reduce_range" if s.reduce_range else ""
    if kind == "dynamic":
        return f"ONNX Runtime dynamic INT8: {dyn_weights} {gran} weights, activations quantised at run time{rr}"
    if kind == "static":
        act = "uint8" if s.activation_type == "uint8" else "int8"
        return (f"ONNX Runtime static INT8 (QDQ): int8 {gran} weights, {act} activations "
                f"calibrated ({s.calibrate}) on the eval set{rr}")
    return "float16 weights and arithmetic, float32 inputs and outputs"
