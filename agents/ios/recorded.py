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

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from agents.ios.backend import BackendError, PlanUnavailable
from agents.ios.recorded_plan import RecordedComputePlan, feed_key

# Where Xcode installs devicectl (`xcrun --find devicectl` on a lab Mac).
DEVICECTL = "/Applications/Xcode.app/Contents/Developer/usr/bin/devicectl"


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
