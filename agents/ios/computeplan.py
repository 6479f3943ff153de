"""Placement from Core ML's compute plan (MLComputePlan, macOS 14.4+ / iOS 17.4+).

coremltools exposes the plan as `MLComputePlan`: `model_structure` (an
ML program's functions -> block -> operations, each with nested blocks; or a
neural network's layers; or a pipeline's sub-models) and, per operation,
`get_compute_device_usage_for_mlprogram_operation` (preferred and supported
devices, or None when Core ML cannot tell, as for constants) and
`get_estimated_cost_for_mlprogram_operation` (a weight in [0, 1] of the whole
prediction). Neural-network layers have a device usage but no cost.

The plan becomes a Placement through `agents.placement.combine`, the very
function that counts ONNX Runtime's placement, so "CPU fallback" means the
same everywhere: operations placed on the CPU while another compute unit
was requested.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from agents.contract import Placement
from agents.placement import ProfilePlacement, combine

# coremltools' compute device classes -> the names placement uses: the Mac's
# MLComputeDevice classes (models/compute_device.py) and the device classes
# of a remote plan as the runner app sends it (remote_device.py ComputePlan).
DEVICE_NAMES = {
    "MLCPUComputeDevice": "cpu",
    "MLGPUComputeDevice": "gpu",
    "MLNeuralEngineComputeDevice": "neural_engine",
    "CPUDevice": "cpu",
    "GPUDevice": "gpu",
    "NeuralEngineDevice": "neural_engine",
}
ACCELERATORS = {"all": ("gpu", "neural_engine"), "cpu_and_ne": ("neural_engine",),
                "cpu_and_gpu": ("gpu",), "cpu_only": ()}


@dataclass(frozen=True)
class PlanOp:
    op_type: str
    preferred: Optional[str]  # cpu | gpu | neural_engine | None (no usage reported)
    supported: tuple[str, ...]
    cost: Optional[float]


def device_name(device: Any) -> str:
    # Match by class name through the MRO: the remote-device proxies of
    # coremltools construct the same classes, and a subclass keeps the name.
    for cls in type(device).__mro__:
        if cls.__name__ in DEVICE_NAMES:
            return DEVICE_NAMES[cls.__name__]
    return type(device).__name__


def _op(op_type: str, usage: Any, cost: Any) -> PlanOp:
    from harness.kernel.coreml_spec import plain_op_type

    preferred = device_name(usage.preferred_compute_device) if usage is not None else None
    supported = tuple(sorted({device_name(d) for d in (usage.supported_compute_devices or ())})) \
        if usage is not None else ()
    weight = float(cost.weight) if cost is not None else None
    return PlanOp(plain_op_type(op_type), preferred, supported, weight)


def plan_ops(plan: Any, function: str = "main") -> list[PlanOp]:
    """Every operation (or layer) of a compute plan with its placement."""
    out: list[PlanOp] = []
    _structure_ops(plan, plan.model_structure, function, out)
    return out


def _structure_ops(plan: Any, structure: Any, function: str, out: list[PlanOp]) -> None:
    if structure.program is not None:
        functions = structure.program.functions
        fn = functions.get(function) or next(iter(functions.values()), None)
        if fn is not None:
            _block_ops(plan, fn.block, out)
    elif structure.neuralnetwork is not None:
        for layer in structure.neuralnetwork.layers:
            usage = plan.get_compute_device_usage_for_neuralnetwork_layer(layer)
            out.append(_op(layer.type, usage, None))
    elif structure.pipeline is not None:
        for item in structure.pipeline.sub_models:
            sub = item[1] if isinstance(item, tuple) else item
            _structure_ops(plan, sub, function, out)


def _block_ops(plan: Any, block: Any, out: list[PlanOp]) -> None:
    for op in block.operations:
        usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
        cost = plan.get_estimated_cost_for_mlprogram_operation(op)
        out.append(_op(op.operator_name, usage, cost))
        for inner in op.blocks or ():
            _block_ops(plan, inner, out)


def placement_from_plan(ops: Iterable[PlanOp], compute_units: str) -> Optional[Placement]:
    """The compute plan as a Placement (source "plan"); None when no
    operation reported a device. Operations without a device usage
    (constants) are not nodes, as ONNX Runtime's initializers are not."""
    prof = ProfilePlacement()
    placed = [op for op in ops if op.preferred]
    if not placed:
        return None
    for i, op in enumerate(placed):
        node = f"{i}:{op.op_type}"
        prof.provider_by_node[node] = op.preferred
        prof.op_by_node[node] = op.op_type
        if op.cost is not None:
            prof.time_us_by_ep[op.preferred] += op.cost  # weights, normalised by combine
    accelerated = ACCELERATORS.get(compute_units, ())
    fully = None if not accelerated else all(op.preferred in accelerated for op in placed)
    p = combine(compute_units, None, prof, fully)
    return dataclasses.replace(p, source="plan") if p else None


def plan_details(ops: Iterable[PlanOp], compute_units: str) -> dict:
    """What the Placement fields do not carry: operations with no device
    usage, and, when the Neural Engine was requested, the operations Core ML
    preferred to run on the GPU instead."""
    ops = list(ops)
    gpu_not_ne: Counter = Counter()
    could_use_ne: Counter = Counter()
    if "neural_engine" in ACCELERATORS.get(compute_units, ()):
        for op in ops:
            if op.preferred == "gpu":
                gpu_not_ne[op.op_type] += 1
            if op.preferred == "cpu" and "neural_engine" in op.supported:
                could_use_ne[op.op_type] += 1
    no_usage = Counter(op.op_type for op in ops if not op.preferred)
    costs = [op.cost for op in ops if op.cost is not None]
    return {
        "operations": len(ops),
        "without_device_usage": dict(sorted(no_usage.items())),
        "on_gpu_not_neural_engine": dict(sorted(gpu_not_ne.items())),
        "cpu_though_neural_engine_supported": dict(sorted(could_use_ne.items())),
        "cost_weight_total": round(sum(costs), 6) if costs else None,
    }


@dataclass(frozen=True)
class _Usage:
    preferred_compute_device: Any
    supported_compute_devices: tuple


@dataclass(frozen=True)
class _Cost:
    weight: float


class RemotePlan:
    """A device's compute plan in MLComputePlan's surface: the structure
    read on the Mac (MLModelStructure.load_from_path) and the per-operation
    infos the runner app sent, keyed by ModelStructurePath
    (remote_device.py ComputePlan; paths from model_structure_path.py
    map_model_structure_to_path, as compute_plan_utils.py pairs them)."""

    def __init__(self, structure: Any, plan: Any):
        from coremltools.models.ml_program.experimental.model_structure_path import map_model_structure_to_path

        self.model_structure = structure
        infos = plan.infos if plan is not None else {}
        self._info = {id(item): infos.get(path) for item, path in map_model_structure_to_path(structure, [])}

    def _usage(self, item: Any) -> Optional[_Usage]:
        info = self._info.get(id(item))
        if info is None:
            return None
        return _Usage(info.device_usage.preferred, tuple(info.device_usage.supported))

    def get_compute_device_usage_for_mlprogram_operation(self, operation: Any) -> Optional[_Usage]:
        return self._usage(operation)

    def get_compute_device_usage_for_neuralnetwork_layer(self, layer: Any) -> Optional[_Usage]:
        return self._usage(layer)

    def get_estimated_cost_for_mlprogram_operation(self, operation: Any) -> Optional[_Cost]:
        info = self._info.get(id(operation))
        return _Cost(float(info.estimated_cost)) if info is not None and info.estimated_cost is not None else None
