"""The sim driver's configuration: simulated devices, validated up front.

Written under `sim:` in agent.yaml:

    sim:
      seed: 7
      devices:
        - id: pixel-7
          platform: android
          facts: {model: "Pixel 7", soc: "Tensor G2", ram_mb: 8192}
          runtime_version: "1.20.0"
          eps: [cpu, nnapi, xnnpack]
          latency: {dist: lognormal, p50_ms: 12, sigma: 0.08}
          latency_by_ep: {nnapi: {dist: lognormal, p50_ms: 5, sigma: 0.15}}
          drift_per_s: 0.01
          fail: {every_n: 5, kind: crash, stage: measure}
          load_ms: 150
          memory_mb: 60
          fallback_ops: [TopK]

Every problem is one line naming the key: `sim: devices[0].latency.p50_ms:
expected a number, got 'fast'`.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

from pydantic import Field, field_validator, model_validator

from harness.kernel.configfile import Strict, validate_section
from harness.kernel.latency import LatencyModel

# What a simulated device runs when the config does not say, by platform:
# the runtime each real driver of that platform offers.
DEFAULT_RUNTIME = {"browser": "onnxruntime-web", "ios": "coreml"}
DEFAULT_EPS = {
    "onnxruntime": ("cpu",),
    "onnxruntime-web": ("wasm",),
    # Core ML's compute-unit choices stand where ONNX Runtime has EPs.
    "coreml": ("all", "cpu_and_gpu", "cpu_and_ne", "cpu_only"),
}
DEFAULT_VERSION = {"onnxruntime": "1.20.0", "onnxruntime-web": "1.20.0", "coreml": "8.0"}


class Latency(Strict):
    dist: Literal["lognormal", "normal", "fixed"] = "lognormal"
    p50_ms: float = Field(..., gt=0)
    # lognormal: standard deviation of log-latency (0.05 = about 5 % spread).
    sigma: Optional[float] = Field(None, ge=0, le=3)
    # normal: standard deviation in ms.
    std: Optional[float] = Field(None, ge=0)

    @model_validator(mode="after")
    def _spread_matches(self):
        if self.sigma is not None and self.dist != "lognormal":
            raise ValueError(f"sigma is for dist: lognormal (dist is {self.dist}; use std for normal)")
        if self.std is not None and self.dist != "normal":
            raise ValueError(f"std is for dist: normal (dist is {self.dist}; use sigma for lognormal)")
        return self

    def spread(self) -> float:
        if self.dist == "lognormal":
            return 0.05 if self.sigma is None else self.sigma
        if self.dist == "normal":
            return 0.05 * self.p50_ms if self.std is None else self.std
        return 0.0


class Fail(Strict):
    every_n: Optional[int] = Field(None, ge=1)
    probability: Optional[float] = Field(None, ge=0, le=1)
    kind: Literal["crash", "hang", "error"]
    stage: Literal["load", "warmup", "measure"] = "measure"
    # The error kind an `error` failure reports (runtime_error, unsupported_op, oom, ...).
    error_kind: str = Field("runtime_error", pattern=r"^[a-z][a-z0-9_]*$")
    message: str = ""

    @model_validator(mode="after")
    def _one_trigger(self):
        if (self.every_n is None) == (self.probability is None):
            raise ValueError("give exactly one of every_n or probability")
        return self


class SimDevice(Strict):
    id: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    platform: Literal["linux", "macos", "windows", "android", "ios", "browser"]
    facts: dict[str, str] = Field(default_factory=dict)
    runtime: Optional[Literal["onnxruntime", "onnxruntime-web", "coreml"]] = None
    runtime_version: Optional[str] = None
    eps: Optional[list[str]] = Field(None, min_length=1)
    latency: Latency
    latency_by_ep: dict[str, Latency] = Field(default_factory=dict)
    drift_per_s: float = Field(0.0, ge=-1, le=10)
    fail: Optional[Fail] = None
    load_ms: float = Field(50.0, ge=0)
    first_run_ms: Optional[float] = Field(None, ge=0)
    # Footprint before the model loads; the peak adds memory_factor x the model's size.
    memory_mb: float = Field(40.0, ge=0)
    memory_factor: float = Field(1.5, ge=0)
    # Op types that run on the CPU when a non-CPU EP is requested.
    fallback_ops: list[str] = Field(default_factory=list)
    # none: no probe outputs; onnx: the model's real outputs on this machine's
    # ONNX Runtime CPU EP, with relative Gaussian noise output_noise added.
    outputs: Literal["none", "onnx"] = "none"
    output_noise: float = Field(0.0, ge=0)
    state: Literal["ready", "busy", "offline", "unauthorized", "too_hot"] = "ready"
    state_reason: str = ""
    # Devices naming the same `exclusive` share hardware: never two jobs at once.
    exclusive: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

    @field_validator("facts", mode="before")
    @classmethod
    def _facts_str(cls, v):
        if isinstance(v, dict):
            return {str(k): str(x) for k, x in v.items()}
        return v

    @field_validator("runtime_version", mode="before")
    @classmethod
    def _version_str(cls, v):
        # YAML reads 1.20 as a float; a version is text.
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _eps_known(self):
        eps = self.runtime_eps()
        for ep in self.latency_by_ep:
            if ep not in eps:
                raise ValueError(f"latency_by_ep: {ep!r} is not one of this device's eps ({', '.join(eps)})")
        return self

    def runtime_name(self) -> str:
        return self.runtime or DEFAULT_RUNTIME.get(self.platform, "onnxruntime")

    def runtime_eps(self) -> tuple[str, ...]:
        return tuple(self.eps) if self.eps else DEFAULT_EPS[self.runtime_name()]

    def version(self) -> str:
        return self.runtime_version or DEFAULT_VERSION[self.runtime_name()]

    def latency_model(self, ep: Optional[str] = None) -> LatencyModel:
        lat = self.latency_by_ep.get(ep, self.latency) if ep else self.latency
        return LatencyModel(dist=lat.dist, p50_ms=lat.p50_ms, spread=lat.spread(), drift_per_s=self.drift_per_s,
                            load_ms=self.load_ms, first_run_ms=self.first_run_ms)


class SimConfig(Strict):
    seed: int = 0
    devices: list[SimDevice] = Field(default_factory=list)

    @field_validator("devices")
    @classmethod
    def _unique_ids(cls, devices):
        seen: set[str] = set()
        for d in devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} appears twice")
            seen.add(d.id)
        return devices


def parse(config: Mapping[str, Any]) -> SimConfig:
    """The `sim:` mapping -> SimConfig, or one ConfigError line."""
    return validate_section("sim", dict(config or {}), SimConfig)
