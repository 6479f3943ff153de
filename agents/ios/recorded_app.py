"""A recorded coremltools runner app: answers the app's JSON-RPC file
protocol from a recording, for the recorded Mac (agents.ios.recorded).

The protocol is the one coremltools' `modelrunner` app speaks
(modelrunner/ModelRunner/DeviceCtl.swift, ModelService.swift, JSONRPC.swift
in coremltools 8.3) inside its data container, under `Documents/modelrunnerd`:
requests arrive as `requests/messages/<id>/message.json` with their resource
in `requests/resources/<id>/<name>`; answers are written as
`responses/<id>/message.json` (`{jsonrpc, id, result?, resource?, error?}`)
with their resource beside it, the resource first and the message last, as
the app moves a finished payload folder into place. Results:

* MLModelService.Load: the resource must be a compiled `.mlmodelc` folder;
  `{modelID, duration (ns), isCached}`;
* MLModelService.Prediction: inputs as tensor descriptors over the resource
  file; `{modelID, outputs: {name: descriptor}, duration, resource}`;
* MLModelService.ComputePlan: `{modelID, infos: [{deviceUsage: {preferred,
  supported}, estimatedCost, path}]}`, devices as `{"cpu": {}}`,
  `{"gpu": {}}`, `{"neuralEngine": {"totalCoreCount": n}}`;
* MLModelService.Unload: `{modelID}`.

A recording can make a method answer late (`respond_after_s`), as a busy
phone does, or fail (`load_error`, `plan_error`).
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np

SOURCE = "Documents/modelrunnerd"
NEURAL_ENGINE_CORES = 16  # what an A15/M2 Neural Engine reports (MLNeuralEngineComputeDevice.totalCoreCount)
_DEVICES = {"cpu": {"cpu": {}}, "gpu": {"gpu": {}}, "neural_engine": {"neuralEngine": {"totalCoreCount": NEURAL_ENGINE_CORES}}}


class RecordedApp:
    """The app's process: poll() is None while it runs, terminate() stops it."""

    def __init__(self, container: Path, rec: Mapping[str, Any], base: Path):
        self.container = Path(container)
        self.root = self.container / SOURCE
        self.rec = dict(rec)
        self.base = Path(base)
        self._stop = threading.Event()
        self._done: set[str] = set()
        self._predictions = 0
        self._outputs: Optional[dict] = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name="recorded-modelrunner")

    @classmethod
    @contextmanager
    def start(cls, container: Path, rec: Mapping[str, Any], base: Path) -> Iterator["RecordedApp"]:
        app = cls(container, rec, base).launch()
        try:
            yield app
        finally:
            app.terminate()

    def launch(self) -> "RecordedApp":
        for sub in ("requests/messages", "requests/resources", "responses"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def poll(self) -> Optional[int]:
        return 0 if self._stop.is_set() else None

    def terminate(self) -> None:
        self._stop.set()

    def device(self, name: str, udid: str = "RECORDED-DEVICE", sessions: Optional[Path] = None):
        """coremltools' Device, prepared, with this app as its session."""
        from coremltools.models.ml_program.experimental import remote_device as rd

        from agents.ios.remote import SimulatorAppSession

        session = SimulatorAppSession(self, self.container, "org.example.modelrunner",
                                      sessions or self.container.parent / "sessions")
        return rd.Device(name=name, type=rd.DeviceType.IPHONE, identifier=udid, udid=udid, os_version="",
                         os_build_number="", developer_mode_state="enabled", state=rd.DeviceState.CONNECTED,
                         session=session)

    @staticmethod
    def compiled_stub(folder: Path) -> Path:
        """A folder shaped as Core ML's compiler writes a .mlmodelc."""
        out = Path(folder) / "model.mlmodelc"
        (out / "weights").mkdir(parents=True, exist_ok=True)
        (out / "analytics").mkdir(exist_ok=True)
        for name in ("coremldata.bin", "analytics/coremldata.bin", "weights/weight.bin"):
            (out / name).write_bytes(b"")
        (out / "model.mil").write_text("program(1.0)\n")
        (out / "metadata.json").write_text("[]\n")
        return out

    # -- the app's loop -------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.wait(0.05):
            for msg_file in sorted((self.root / "requests" / "messages").glob("*/message.json")):
                rid = msg_file.parent.name
                if rid in self._done:
                    continue
                try:
                    message = json.loads(msg_file.read_text())
                except (OSError, ValueError):
                    continue  # still being copied in; read it on the next pass
                self._done.add(rid)
                threading.Thread(target=self._answer, args=(rid, message), daemon=True).start()

    def _answer(self, rid: str, message: Mapping[str, Any]) -> None:
        method = str(message.get("method", ""))
        delay = float((self.rec.get("respond_after_s") or {}).get(method, 0.0))
        if self._stop.wait(delay):
            return
        out = self.root / "responses" / rid
        tmp = self.root / "responses" / f".{rid}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        response: dict = {"jsonrpc": "2.0", "id": rid}
        try:
            response.update(self._result(method, message, tmp))
        except _AppError as exc:
            response["error"] = {"code": exc.code, "message": exc.message}
        (tmp / "message.json").write_text(json.dumps(response))
        tmp.rename(out)

    def _resource(self, rid: str, message: Mapping[str, Any]) -> Optional[Path]:
        name = message.get("resource")
        if not name:
            return None
        return self.root / "requests" / "resources" / rid / str(name)

    def _result(self, method: str, message: Mapping[str, Any], out: Path) -> dict:
        params = message.get("params") or {}
        model_id = params.get("modelID", "")
        resource = self._resource(str(message.get("id", "")), message)
        if method == "MLModelService.Load":
            if resource is None or not resource.is_dir() or not (resource / "coremldata.bin").is_file():
                raise _AppError(-32602, f"invalid resource: {resource.name if resource else None} is not a compiled "
                                        "model (.mlmodelc folder)")
            if self.rec.get("load_error"):
                raise _AppError(-32000, str(self.rec["load_error"]))
            load_ms = float((self.rec.get("load") or {}).get("load_ms", 1.0))
            return {"result": {"modelID": model_id, "duration": int(load_ms * 1e6), "isCached": False}}
        if method == "MLModelService.Prediction":
            return self._predict(model_id, params, resource, out)
        if method == "MLModelService.ComputePlan":
            if self.rec.get("plan_error"):
                raise _AppError(-32000, str(self.rec["plan_error"]))
            return {"result": {"modelID": model_id, "infos": plan_infos(self.rec.get("compute_plan") or {})}}
        if method == "MLModelService.Unload":
            return {"result": {"modelID": model_id}}
        raise _AppError(-32601, "Method not found")

    def _predict(self, model_id: str, params: Mapping[str, Any], resource: Optional[Path], out: Path) -> dict:
        from coremltools.models.ml_program.experimental.remote_device import _TensorDescriptor

        from agents.ios.recorded_plan import feed_key

        if resource is None or not resource.is_file():
            raise _AppError(-32602, "missing resource: the prediction's input data")
        with open(resource, "rb") as fh:
            feed = {name: _TensorDescriptor.from_dict(d).to_array(fh) for name, d in (params.get("inputs") or {}).items()}
        outputs = self._recorded_outputs().get(feed_key(feed))
        if outputs is None:
            raise _AppError(-32000, f"no recorded prediction for these inputs (key {feed_key(feed)[:12]})")
        descriptors = {}
        with open(out / "outputs.bin", "wb") as fh:
            for name, value in outputs.items():
                descriptors[name] = _TensorDescriptor.from_array(np.ascontiguousarray(value), fh).as_dict()
        times = self.rec.get("predict_ms") or [1.0]
        ms = float(times[self._predictions % len(times)])
        self._predictions += 1
        return {"result": {"modelID": model_id, "outputs": descriptors, "duration": int(ms * 1e6),
                           "resource": "outputs.bin"}, "resource": "outputs.bin"}

    def _recorded_outputs(self) -> dict:
        if self._outputs is None:
            self._outputs = {}
            name = self.rec.get("outputs")
            if name:
                with np.load(self.base / name) as data:
                    for key in data.files:
                        k, _, out = key.partition("/")
                        self._outputs.setdefault(k, {})[out] = data[key]
        return self._outputs


class _AppError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def plan_infos(plan: Mapping[str, Any]) -> list[dict]:
    """The app's ComputePlan infos for a recorded plan: one per operation
    with a device usage, keyed by its ModelStructurePath."""
    from coremltools.models.ml_program.experimental.model_structure_path import map_model_structure_to_path

    from agents.ios.recorded_plan import RecordedComputePlan

    rp = RecordedComputePlan(plan)
    infos = []
    for item, path in map_model_structure_to_path(rp.model_structure, []):
        usage = rp.recorded_usage(item)
        if usage is None:
            continue
        preferred, supported, cost = usage
        infos.append({"deviceUsage": {"preferred": _DEVICES[preferred], "supported": [_DEVICES[s] for s in supported]},
                      "estimatedCost": cost, "path": path.to_dict()})
    return infos
