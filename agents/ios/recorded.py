"""A recorded Mac: the MacBackend that replays what macOS tools and Core ML
returned, in the shapes they return it.

A recording is one JSON file:

    {
      "sysctl": "hw.model: Mac14,2\\nhw.machine: arm64\\n...",      # `sysctl` text
      "sw_vers": "ProductName:\\tmacOS\\nProductVersion:\\t14.5\\n...",  # `sw_vers` text
      "hostname": "lab-mac",
      "devicectl": {"info": {...}, "result": {"devices": [...]}},   # devicectl JSON
      "simctl": {"devices": {"com.apple.CoreSimulator.SimRuntime.iOS-17-4": [...]}},
      "remote_support": [true, ""],
      "wakes": {"<devicectl identifier>": "connected"},   # the tunnel state waking a phone gives it
      "xcode": {"devicectl": null},        # no devicectl on this Mac (default: Xcode's path)
      "coremltools": "8.3",                # the version the Mac has (default 9.0)
      "sessions": {                       # by "<device id>/<units>", "<kind>/<units>", "<units>" or "*"
        "all": {
          "load": {"load_ms": 41.0, "compile_ms": 30.2},
          "predict_ms": [1.91, 1.88, ...],                # Core ML's per-prediction durations
          "outputs": "outputs.npz",                       # "<feed key>/<output name>" -> array
          "compute_plan": {"program": {"functions": {"main": {"block": {"operations": [
              {"operator_name": "ios17.conv", "estimated_cost": 0.61,
               "device_usage": {"preferred": "neural_engine", "supported": ["cpu", "gpu", "neural_engine"]},
               "blocks": []}]}}}}},
          "plan_error": null,
          "respond_after_s": {"MLModelService.Load": 12.0}   # the runner app answers late
        }
      }
    }

The compute plan is rebuilt from coremltools' own structure classes
(MLModelStructure, MLComputePlanDeviceUsage, MLComputePlanCost and the
MLComputeDevice subclasses), so the code that reads a real plan reads this one.
Predictions replay the outputs recorded for the exact input bytes; an input
that was never recorded fails like a device error would. On the Mac the
session stands in for MLModel; phones and simulators run coremltools' own
remote-device code against a recorded runner app (agents.ios.recorded_app).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from agents.ios.backend import BackendError, PlanUnavailable

# Where Xcode installs devicectl (`xcrun --find devicectl` on a lab Mac).
DEVICECTL = "/Applications/Xcode.app/Contents/Developer/usr/bin/devicectl"


def feed_key(feed: Mapping[str, np.ndarray]) -> str:
    """Identity of one prediction's inputs: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(feed):
        a = np.ascontiguousarray(feed[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


class RecordedBackend:
    kind = "recorded"

    def __init__(self, recording: Mapping[str, Any], path: Optional[Path] = None):
        self.recording = dict(recording)
        self.path = path
        self.woken: list[str] = []  # devicectl identifiers whose tunnel was woken
        self._session_rec: Mapping[str, Any] = {}

    @classmethod
    def from_file(cls, path: Path) -> "RecordedBackend":
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")), Path(path))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"ios: recording {path}: cannot read ({exc})") from None

    def spec(self) -> dict:
        if self.path is None:
            raise ValueError("a recorded backend built in memory cannot be named to a runner process")
        return {"kind": self.kind, "recording": str(self.path)}

    def check(self) -> tuple[bool, str]:
        return True, ""

    def _text(self, key: str) -> str:
        value = self.recording.get(key)
        if isinstance(value, dict) and "error" in value:
            raise BackendError(str(value["error"]))
        return str(value or "")

    def sysctl(self) -> str:
        return self._text("sysctl")

    def sw_vers(self) -> str:
        return self._text("sw_vers")

    def hostname(self) -> str:
        return str(self.recording.get("hostname", ""))

    def _json(self, key: str) -> dict:
        value = self.recording.get(key) or {}
        if "error" in value:
            raise BackendError(str(value["error"]))
        return value

    def devicectl_devices(self) -> dict:
        """devicectl's JSON; a phone whose tunnel was woken shows the state
        the recording says waking gives it (`wakes`: identifier -> state)."""
        data = json.loads(json.dumps(self._json("devicectl")))
        wakes = self.recording.get("wakes") or {}
        for dev in (data.get("result") or {}).get("devices") or []:
            ident = dev.get("identifier")
            if ident in self.woken and ident in wakes:
                dev.setdefault("connectionProperties", {})["tunnelState"] = wakes[ident]
        return data

    def wake_device(self, identifier: str) -> None:
        self.woken.append(identifier)

    def devicectl_path(self) -> Optional[str]:
        xcode = self.recording.get("xcode") or {}
        return xcode.get("devicectl", DEVICECTL) if "devicectl" in xcode else DEVICECTL

    def coremltools_version(self) -> str:
        return str(self.recording.get("coremltools", "9.0"))

    def runner_env(self) -> dict:
        return {}

    def simctl_booted(self) -> dict:
        return self._json("simctl")

    def remote_support(self) -> tuple[bool, str]:
        ok, why = (self.recording.get("remote_support") or [True, ""])[:2]
        return bool(ok), str(why)

    def _base(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def open_session(self, device: Mapping[str, str], model_path: Path, compute_units: str,
                     config: Mapping[str, Any], work_dir: Path, deadline: Optional[float] = None):
        """The Mac runs Core ML in-process (a recorded MLModel); phones and
        simulators go through coremltools' remote-device code against a
        recorded runner app (agents.ios.recorded_app)."""
        sessions = self.recording.get("sessions") or {}
        for key in (f"{device.get('local_id')}/{compute_units}", f"{device.get('kind')}/{compute_units}",
                    compute_units, "*"):
            if key in sessions:
                if device.get("kind") == "mac":
                    return RecordedSession(sessions[key], model_path, True, self._base())
                from agents.ios.remote import RemoteSession

                self._session_rec = sessions[key]
                return RemoteSession(device, model_path, compute_units, config, work_dir, self, deadline)
        raise BackendError(f"the recording has no session for {device.get('local_id')} with {compute_units}")

    # -- the Mac's side of a remote session ---------------------------------------------
    def prepare_app(self, device: Mapping[str, str], config: Mapping[str, Any], app_dir: Path, work_dir: Path):
        from agents.ios.recorded_app import RecordedApp

        app = RecordedApp(Path(work_dir) / "app-container", self._session_rec, self._base()).launch()
        return app.device(device.get("model", "device"), str(device.get("udid", "")), Path(work_dir) / "sessions")

    def compile_model(self, package: Path, dest: Path) -> Path:
        """A .mlmodelc folder in the layout Core ML's compiler writes
        (coremldata.bin, model.mil, weights/weight.bin, ...), with the
        package's own weights."""
        from agents.ios.recorded_app import RecordedApp

        out = RecordedApp.compiled_stub(Path(dest))
        weights = Path(package) / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
        if weights.is_file():
            (out / "weights" / "weight.bin").write_bytes(weights.read_bytes())
        return out

    def model_structure(self, compiled: Path) -> Any:
        plan = self._session_rec.get("compute_plan")
        if not plan:
            raise PlanUnavailable("the recording holds no compute plan")
        return RecordedComputePlan(plan).model_structure


class RecordedSession:
    def __init__(self, rec: Mapping[str, Any], model_path: Path, in_process: bool, base: Path):
        self.rec = dict(rec)
        self.model_path = Path(model_path)
        self.in_process = in_process
        self.base = base
        self._i = -1
        self._outputs: Optional[dict] = None

    def load(self) -> dict:
        if self.rec.get("load_error"):
            raise RuntimeError(self.rec["load_error"])
        out = dict(self.rec.get("load") or {})
        out.setdefault("method", "recorded")
        return out

    def inputs(self) -> list:
        from harness.kernel.coreml_spec import inspect_coreml

        return list(inspect_coreml(self.model_path).inputs)

    def predict(self, feed: Mapping[str, np.ndarray]) -> dict:
        if self._outputs is None:
            self._outputs = {}
            name = self.rec.get("outputs")
            if name:
                with np.load(self.base / name) as data:
                    for key in data.files:
                        k, _, out = key.partition("/")
                        self._outputs.setdefault(k, {})[out] = data[key]
        key = feed_key(feed)
        if key not in self._outputs:
            raise RuntimeError(f"no recorded prediction for these inputs (key {key[:12]})")
        self._i += 1
        return dict(self._outputs[key])

    def last_predict_ms(self) -> Optional[float]:
        times = self.rec.get("predict_ms") or []
        if not times or self._i < 0:
            return None
        return float(times[self._i % len(times)])

    def compute_plan(self) -> Any:
        if self.rec.get("plan_error"):
            raise PlanUnavailable(self.rec["plan_error"])
        if not self.rec.get("compute_plan"):
            raise PlanUnavailable("the recording holds no compute plan")
        return RecordedComputePlan(self.rec["compute_plan"])

    def close(self) -> None:
        self._outputs = None


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
