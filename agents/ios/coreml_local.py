"""Core ML on the Mac itself, through coremltools' MLModel (macOS only).

`MLModel(path, compute_units=...)` compiles an `.mlpackage` to `.mlmodelc`
and loads it, so the wall clock around it is compile + load; coremltools
also reports Core ML's own load duration (`loadContentsOfURL:`) and each
prediction's duration (`predictionFromFeatures:`). The compute plan is
loaded from the compiled model the MLModel already holds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np


def compute_unit(name: str):
    from harness.kernel.coreml_spec import quiet_coremltools

    with quiet_coremltools():
        import coremltools as ct
    try:
        return getattr(ct.ComputeUnit, name.upper())
    except AttributeError:
        raise ValueError(f"compute units {name!r}: expected all, cpu_and_ne, cpu_and_gpu or cpu_only") from None


def _ms(ns: Any) -> Optional[float]:
    return None if ns is None else float(ns) / 1e6


class LocalSession:
    in_process = True

    def __init__(self, model_path: Path, compute_units: str):
        self.model_path = Path(model_path)
        self.units = compute_unit(compute_units)
        self.model = None

    def load(self) -> dict:
        import coremltools as ct

        t0 = time.perf_counter()
        self.model = ct.models.MLModel(str(self.model_path), compute_units=self.units)
        wall = (time.perf_counter() - t0) * 1e3
        try:
            framework = _ms(self.model.load_duration_in_nano_seconds)
        except AttributeError:  # coremltools before 8.1 does not report it
            framework = None
        out = {"load_ms": wall, "method": "wall clock around MLModel(path): compile to .mlmodelc + load"}
        if framework is not None:
            out["coreml_load_ms"] = framework
            out["compile_ms"] = max(0.0, wall - framework)
        return out

    def inputs(self) -> list:
        from harness.kernel.coreml_spec import inspect_spec

        return list(inspect_spec(self.model.get_spec()).inputs)

    def predict(self, feed: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return self.model.predict(dict(feed))

    def last_predict_ms(self) -> Optional[float]:
        try:
            return _ms(self.model.last_predict_duration_in_nano_seconds)
        except AttributeError:
            return None

    def compute_plan(self) -> Any:
        from agents.ios.backend import PlanUnavailable
        from coremltools.models.compute_plan import MLComputePlan

        path = self.model.get_compiled_model_path()
        try:
            return MLComputePlan.load_from_path(path=path, compute_units=self.units)
        except ValueError as exc:  # "MLComputePlan is not supported." on older macOS
            raise PlanUnavailable(str(exc)) from None

    def close(self) -> None:
        self.model = None
