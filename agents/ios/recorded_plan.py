"""What a recorded Mac replays of Core ML itself: the identity of a
prediction's inputs, and compute plans rebuilt from coremltools' own
structure classes (MLModelStructure, MLComputePlanDeviceUsage,
MLComputePlanCost and the MLComputeDevice subclasses), so the code that reads
a real plan reads a recorded one. Shared by the recorded Mac
(agents.ios.recorded) and its recorded runner app (agents.ios.recorded_app).
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Optional

import numpy as np


def feed_key(feed: Mapping[str, np.ndarray]) -> str:
    """Identity of one prediction's inputs: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(feed):
        a = np.ascontiguousarray(feed[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def _device(name: str):
    from harness.kernel.coreml_spec import quiet_coremltools

    with quiet_coremltools():
        from coremltools.models import compute_device as cd

    cls = {"cpu": cd.MLCPUComputeDevice, "gpu": cd.MLGPUComputeDevice,
           "neural_engine": cd.MLNeuralEngineComputeDevice}[name]
    # The classes wrap a native proxy that exists only on macOS; an instance
    # without one is what this side can hold.
    return object.__new__(cls)


class RecordedComputePlan:
    """coremltools' MLComputePlan surface over a recorded plan."""

    def __init__(self, data: Mapping[str, Any]):
        from harness.kernel.coreml_spec import quiet_coremltools

        with quiet_coremltools():
            from coremltools.models import compute_plan as cp

        self._cp = cp
        self._usage: dict[int, Any] = {}
        self._cost: dict[int, Any] = {}
        self._raw: dict[int, Mapping[str, Any]] = {}
        self._next = 0
        self.model_structure = self._structure(data)

    def recorded_usage(self, item: Any) -> Optional[tuple[str, list[str], Optional[float]]]:
        """(preferred, supported, cost) of an operation or layer, as recorded."""
        raw = self._raw.get(item.__proxy__) or {}
        u = raw.get("device_usage")
        return (u["preferred"], list(u.get("supported") or []), raw.get("estimated_cost")) if u else None

    def _usage_of(self, item: Mapping[str, Any], key: int) -> None:
        self._raw[key] = item
        u = item.get("device_usage")
        if u:
            self._usage[key] = self._cp.MLComputePlanDeviceUsage(
                preferred_compute_device=_device(u["preferred"]),
                supported_compute_devices=[_device(s) for s in u.get("supported") or []])
        if item.get("estimated_cost") is not None:
            self._cost[key] = self._cp.MLComputePlanCost(weight=float(item["estimated_cost"]))

    def _block(self, data: Mapping[str, Any]):
        ops = []
        for item in data.get("operations") or []:
            self._next += 1
            key = self._next
            self._usage_of(item, key)
            # Named outputs: a remote plan's paths name each operation by its
            # first output (model_structure_path.py).
            outputs = [self._cp.MLModelStructureProgramNamedValueType(
                name=name, type=self._cp.MLModelStructureProgramValueType())
                for name in item.get("outputs") or [f"var_{key}"]]
            ops.append(self._cp.MLModelStructureProgramOperation(
                inputs={}, operator_name=item["operator_name"], outputs=outputs,
                blocks=[self._block(b) for b in item.get("blocks") or []], __proxy__=key))
        return self._cp.MLModelStructureProgramBlock(inputs=[], operations=ops, output_names=[])

    def _structure(self, data: Mapping[str, Any]):
        cp = self._cp
        program = network = pipeline = None
        if "program" in data:
            functions = {name: cp.MLModelStructureProgramFunction(inputs=[], block=self._block(fn["block"]))
                         for name, fn in data["program"]["functions"].items()}
            program = cp.MLModelStructureProgram(functions=functions)
        elif "neuralnetwork" in data:
            layers = []
            for item in data["neuralnetwork"]["layers"]:
                self._next += 1
                self._usage_of(item, self._next)
                layers.append(cp.MLModelStructureNeuralNetworkLayer(
                    name=item.get("name") or f"layer_{self._next}", type=item["type"], input_names=[], output_names=[],
                    __proxy__=self._next))
            network = cp.MLModelStructureNeuralNetwork(layers=layers)
        elif "pipeline" in data:
            pipeline = cp.MLModelStructurePipeline(
                sub_models=[(name, self._structure(sub)) for name, sub in data["pipeline"]])
        return cp.MLModelStructure(neuralnetwork=network, program=program, pipeline=pipeline)

    def get_compute_device_usage_for_mlprogram_operation(self, operation):
        return self._usage.get(operation.__proxy__)

    def get_compute_device_usage_for_neuralnetwork_layer(self, layer):
        return self._usage.get(layer.__proxy__)

    def get_estimated_cost_for_mlprogram_operation(self, operation):
        return self._cost.get(operation.__proxy__)
