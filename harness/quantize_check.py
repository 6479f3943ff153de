"""Whether a quantised variant is usable: it loads in ONNX Runtime, and how
close its outputs stay to the float model's on the eval set — as deployed
(default graph optimisation) and, for QDQ variants, as quantised (QDQ pairs
run as written), so an error of the runtime's fused kernels is told apart
from the quantisation's own (harness.quantize uses these)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from harness.kernel.configfile import ConfigError


class QuantizeError(ConfigError):
    """A quantisation step failed; the text is one line naming the model."""


@dataclass(frozen=True)
class Check:
    """How close a variant's outputs stay to the float model on the eval set."""
    samples: int
    max_abs: float
    rel_l2: float
    top1_agreement: Optional[float]
    # The same comparison with the runtime's graph optimisations off, so the
    # QuantizeLinear/DequantizeLinear pairs run as written: the quantisation's
    # own error. Level-2 optimisation fuses QDQ chains into integer kernels
    # (QLinearConv, QLinearMatMul, ...) whose results can differ from the QDQ
    # semantics (microsoft/onnxruntime#32132); `rel_l2` is what a deployment
    # with default options gets. Only for QDQ variants (static).
    rel_l2_unfused: Optional[float] = None


def check(float_model: Path, variant: Path, kind: str, batches: Optional[list[dict]]) -> Optional[Check]:
    """Load the variant in ONNX Runtime (a variant that does not load is a
    failure, not an artefact) and compare its first output with the float
    model's on the eval batches, as deployed (default optimisation) and, for
    QDQ variants, as quantised (optimisation off)."""
    import onnxruntime as ort

    def session(path: Path, level=None):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if level is not None:
            opts.graph_optimization_level = level
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    try:
        sess = session(variant)
    except Exception as exc:
        raise QuantizeError(f"{float_model}: the {kind} variant does not load in ONNX Runtime "
                            f"({type(exc).__name__}: {first_line(exc)})") from None
    if not batches:
        return None
    ra = [np.asarray(r, dtype=np.float64) for r in first_outputs(session(float_model), batches)]
    a = np.concatenate([r.reshape(-1) for r in ra])

    def flat(s) -> np.ndarray:
        return np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1) for r in first_outputs(s, batches)])

    def rel_l2(b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))

    b = flat(sess)
    top1 = None
    if ra[0].ndim >= 2 and ra[0].shape[-1] > 1:
        k = ra[0].shape[-1]
        top1 = float(np.mean(a.reshape(-1, k).argmax(1) == b.reshape(-1, k).argmax(1)))
    unfused = rel_l2(flat(session(variant, ort.GraphOptimizationLevel.ORT_DISABLE_ALL))) if kind == "static" else None
    return Check(len(batches), float(np.max(np.abs(a - b))) if a.size else 0.0, rel_l2(b), top1, unfused)


def first_outputs(sess, batches: list[dict]) -> list:
    return [sess.run(None, x)[0] for x in batches]


# A deployed error this many times the quantised one (and above FUSION_FLOOR)
# is the runtime's fused kernels, not the quantisation: worth a line.
FUSION_RATIO = 2.0
FUSION_FLOOR = 0.01


def fusion_note(kind: str, check: Optional[Check]) -> Optional[str]:
    if check is None or check.rel_l2_unfused is None:
        return None
    if check.rel_l2 > FUSION_FLOOR and check.rel_l2 > FUSION_RATIO * check.rel_l2_unfused:
        import onnxruntime as ort

        return (f"{kind}: onnxruntime {ort.__version__}'s fused integer kernels move the outputs: rel L2 "
                f"{check.rel_l2:.3g} with default optimisation against {check.rel_l2_unfused:.3g} with the QDQ "
                f"graph run as written; measure this variant on every target runtime before choosing it")
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]
