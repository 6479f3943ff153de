"""The driver contract: one small interface per device family.

A driver enumerates the devices it can reach and runs one job on one device.
It never sees gRPC: the server hands it plain values and turns what it
returns into protocol messages. Heavy imports (onnxruntime, playwright,
adbutils, coremltools) live only inside each driver's package and are made in
`available()`, `devices()` or `run()`, never at import time.

A driver's package exports `Config` (a pydantic model of its section of
agent.yaml) and `create(config) -> Driver`; agents/registry.py names the
packages. docs/writing-a-driver.md walks through one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

from harness.kernel.measure.policy import MeasurePolicy


@dataclass(frozen=True)
class RuntimeSpec:
    name: str  # onnxruntime | onnxruntime-web | coreml
    version: str
    eps: tuple[str, ...]
    formats: tuple[str, ...] = ("onnx",)
    # The distribution a host runtime comes from (onnxruntime, onnxruntime-openvino, ...); "" elsewhere.
    build: str = ""


@dataclass(frozen=True)
class DeviceInfo:
    local_id: str  # unique within the driver
    platform: str  # linux | macos | windows | android | ios | browser
    facts: Mapping[str, str]
    runtimes: tuple[RuntimeSpec, ...]
    state: str = "ready"
    state_reason: str = ""
    # Hardware this device shares with others of the same agent: devices with
    # the same non-empty name never run jobs at the same time (the host CPU
    # that the host driver and the browser both compute on). Empty: its own.
    exclusive: str = ""


# The `exclusive` name of everything that computes on the agent's own machine.
AGENT_MACHINE = "agent-machine"


@dataclass(frozen=True)
class RuntimeTarget:
    runtime: str
    version: str = ""
    ep: str = "cpu"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFile:
    digest: str
    format: str  # onnx | mlpackage | mlmodel
    path: Path


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    device_local_id: str
    models: tuple[ModelFile, ...]
    target: RuntimeTarget
    measure: MeasurePolicy
    # Probe inputs; probes[0] is also the timing input.
    probes: tuple[Mapping[str, np.ndarray], ...]
    timeout_s: float
    labels: Mapping[str, str] = field(default_factory=dict)
    # Custom-op libraries the target named, resolved from the agent's own
    # configuration (never a path from the wire); drivers that load them set
    # `takes_custom_ops = True`, the others never receive a job naming one.
    custom_ops: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Memory:
    peak_bytes: int
    delta_bytes: int
    method: str
    # What the method cannot see (memory held outside the measured process);
    # "" when none is known. Such a figure is not compared across platforms
    # without saying so.
    blind_spot: str = ""


@dataclass(frozen=True)
class Placement:
    # Model nodes (before an EP fuses what it takes); None where the source
    # cannot tell (a compiling EP's fused nodes hide how many nodes they took).
    nodes_total: Optional[int]
    nodes_by_ep: Mapping[str, int]
    cpu_fallback_nodes: Optional[int]
    fallback_op_types: Mapping[str, int]
    time_share_by_ep: Mapping[str, float]
    fully_accelerated: Optional[bool]
    source: str
    # Fused subgraphs per compiling EP (OpenVINO, TensorRT, CoreML, NNAPI, QNN, WebNN ...).
    partitions_by_ep: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Validity:
    warmup_done: bool = False
    min_runs_met: bool = False
    min_time_met: bool = False
    stop_reason: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobError:
    stage: str  # job | load | warmup | measure | probes | placement | runner
    kind: str  # model_invalid | unsupported_op | crash | timeout | cancelled | ...
    message: str


@dataclass(frozen=True)
class DriverResult:
    """What a driver measured. Partial measurements stay when `error` is set."""

    runtime_name: str = ""
    runtime_version: str = ""
    ep: str = ""
    runtime_build: str = ""  # see RuntimeSpec.build
    options: Mapping[str, str] = field(default_factory=dict)
    load_ms: Optional[float] = None
    first_run_ms: Optional[float] = None
    samples_ms: tuple[float, ...] = ()
    memory: Optional[Memory] = None
    placement: Optional[Placement] = None
    validity: Validity = Validity()
    outputs: tuple[Mapping[str, np.ndarray], ...] = ()
    error: Optional[JobError] = None
    details: Mapping[str, Any] = field(default_factory=dict)


# progress(phase, samples_so_far, elapsed_s)
ProgressFn = Callable[[str, int, float], None]


class Driver(Protocol):
    name: str

    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, why not and what fixes it)."""

    def devices(self) -> Sequence[DeviceInfo]:
        """Every device this driver reaches now, in any state."""

    def run(self, job: JobSpec, progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        """Run one job on one device. Never raises for model or runtime
        failures: those are a DriverResult with `error` set. Must return
        promptly (killing whatever it started) once `cancel` is set or
        `job.timeout_s` has passed."""

    def close(self) -> None:
        """Release what the driver holds (browsers, adb connections)."""


__all__ = ["Driver", "DeviceInfo", "RuntimeSpec", "RuntimeTarget", "ModelFile", "JobSpec", "Memory",
           "Placement", "Validity", "JobError", "DriverResult", "ProgressFn", "AGENT_MACHINE"]
