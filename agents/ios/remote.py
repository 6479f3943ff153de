"""Core ML on a phone or a simulator, through coremltools' remote-device code
(`coremltools.models.ml_program.experimental.remote_device`, coremltools
8.3+).

The backend prepares coremltools' `modelrunner` app on the device (phones:
coremltools' own build, install and launch through devicectl; simulators:
simctl) and compiles the model on the Mac. From there on this is
coremltools' own code path: `_DeviceCtlSocket` writes JSON-RPC requests and
their resource (for `MLModelService.Load`, the compiled `.mlmodelc` folder)
into the app's data container under `Documents/modelrunnerd` and reads its
responses; `_RemoteMLModelService` loads, predicts, returns Core ML's own
load and prediction durations and the compute plan.

Two things differ from coremltools' defaults, both read in remote_device.py
(8.3, unchanged in 9.0):

* `_DeviceCtlRemoteService` polls 20 times, 0.5 s apart, so an answer later
  than about 10 s (a first load that compiles for the Neural Engine, a busy
  phone) fails; here the same poll runs until the job's deadline.
* a simulator has no devicectl: its transport copies into the container
  `simctl get_app_container` names, folders included.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from harness.kernel import limits

# coremltools' _RemoteMLModelService.load_on_device talks to this folder of the app's container.
APP_SOURCE = "Documents/modelrunnerd"


def _ms(ns: Any) -> Optional[float]:
    return None if ns is None else float(ns) / 1e6


@dataclass(frozen=True)
class _Transfer:
    source: str
    destination: str


class SimulatorAppSession:
    """The part of coremltools' `_AppSession` its JSON-RPC socket uses, over
    a simulator's data container instead of devicectl. `process` is the
    launched app (anything with poll() and terminate())."""

    def __init__(self, process: Any, container: Path, bundle_identifier: str, working_directory: Path):
        self._process = process
        self.container = Path(container)
        self.bundle_identifier = bundle_identifier
        self.working_directory = Path(working_directory)
        self.working_directory.mkdir(parents=True, exist_ok=True)

    @property
    def is_alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        self._process.terminate()

    def send_file_to_app(self, source_path: Path, destination: str) -> _Transfer:
        # devicectl's `copy to` takes files and folders; Load's resource is
        # the compiled .mlmodelc folder (_DeviceCtlSocket.send).
        source_path, target = Path(source_path), self.container / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        if source_path.is_dir():
            shutil.copytree(source_path, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(source_path, target)
        return _Transfer(str(source_path), str(target))

    def receive_file_from_app(self, destination_path: Path, source: str) -> _Transfer:
        from coremltools.models.ml_program.experimental.remote_device import _DeviceCtlError

        src = self.container / source
        if not src.is_file():
            # What devicectl's copy gives for a file not written yet; the
            # service polls again on it.
            raise _DeviceCtlError(f"{source} is not in the app container yet")
        shutil.copyfile(src, destination_path)
        return _Transfer(str(src), str(destination_path))


def deadline_service(socket: Any, deadline: float, poll_s: float = limits.REMOTE_POLL_S):
    """coremltools' _DeviceCtlRemoteService, polling until `deadline`
    (time.monotonic()) instead of 20 attempts."""
    from coremltools.models.ml_program.experimental import remote_device as rd

    class DeadlineService(rd._DeviceCtlRemoteService):
        async def call_method(self, name, params, resource=None):
            request = rd._JSONRPCRequest(id=str(uuid.uuid4()), method=name, params=params)
            loop = asyncio.get_event_loop()
            await self._retry(lambda: loop.run_in_executor(None, self.socket.send, request, resource), name, False)
            response = await self._retry(lambda: loop.run_in_executor(None, self.socket.receive, request.id),
                                         name, True)
            if response.error is not None:
                raise rd._DeviceCtlError(error_code=response.error.code, message=response.error.message)
            return response.result, response.resource

        async def _retry(self, attempt, name: str, need_answer: bool):
            while True:
                try:
                    got = await attempt()
                    if got is not None or not need_answer:
                        return got
                except rd._DeviceCtlError:
                    if not self.socket.is_alive or time.monotonic() + self.poll_time > deadline:
                        raise
                if time.monotonic() + self.poll_time > deadline:
                    raise rd._DeviceCtlError(f"no answer to {name} from the runner app before the job's deadline")
                await asyncio.sleep(self.poll_time)

    return DeadlineService(socket=socket, poll_time=poll_s)


class RemoteSession:
    in_process = False

    def __init__(self, device: Mapping[str, str], model_path: Path, compute_units: str,
                 config: Mapping[str, Any], work_dir: Path, backend: Any, deadline: Optional[float] = None):
        from agents.ios.coreml_local import compute_unit

        self.device = dict(device)
        self.model_path = Path(model_path)
        self.units = compute_unit(compute_units)
        self.config = dict(config)
        self.backend = backend
        self.work_dir = Path(work_dir)
        self.app_dir = Path(self.config.get("runner_app_dir") or "~/.cache/harness/ios-runner").expanduser()
        self.deadline = deadline or time.monotonic() + 3600
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.ct_device = None
        self.remote = None
        self.compiled: Optional[Path] = None

    def _wait(self, coro):
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def load(self) -> dict:
        from coremltools.models.ml_program.experimental import remote_device as rd

        # coremltools' remote service binds the current event loop when built.
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        t0 = time.perf_counter()
        self.ct_device = self.backend.prepare_app(self.device, self.config, self.app_dir, self.work_dir)
        prepare_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        # Compiled on the Mac, as an app that bundles its model does; the
        # app loads the .mlmodelc with the requested compute units.
        self.compiled = self.backend.compile_model(self.model_path, self.work_dir / "compiled")
        socket = rd._DeviceCtlSocket(device=self.ct_device, source=APP_SOURCE)
        self.remote = rd._RemoteMLModelService(service=deadline_service(socket, self.deadline),
                                               compiled_model_path=self.compiled, compute_units=self.units)
        self._wait(self.remote.load())
        wall = (time.perf_counter() - t1) * 1e3
        device_ms = _ms(self.remote.load_duration_in_nano_seconds)
        return {
            "load_ms": device_ms if device_ms is not None else wall,
            "method": ("Core ML load of the compiled model on the device, as the runner app reports it "
                       "(the .mlmodelc is compiled on the Mac)" if device_ms is not None
                       else "wall clock of compile on the Mac + transfer + load"),
            "sent": self.compiled.name + "/",
            "host_compile_transfer_load_ms": wall,
            "runner_app_prepare_ms": prepare_ms,
        }

    def inputs(self) -> list:
        from harness.kernel.coreml_spec import inspect_coreml

        return list(inspect_coreml(self.model_path).inputs)

    def predict(self, feed: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return self._wait(self.remote.predict(inputs=dict(feed)))

    def last_predict_ms(self) -> Optional[float]:
        return _ms(self.remote.last_predict_duration_in_nano_seconds) if self.remote else None

    def compute_plan(self) -> Any:
        """The device's plan over the model structure read on the Mac
        (async_wrapper.py RemoteMLModelAsyncWrapper.retrieve_compute_plan:
        MLModelStructure.load_from_path runs here, macOS 14.4+)."""
        from agents.ios.computeplan import RemotePlan

        plan = self._wait(self.remote.retrieve_compute_plan())
        return RemotePlan(self.backend.model_structure(self.compiled), plan)

    def close(self) -> None:
        try:
            if self.remote is not None and self.loop is not None:
                self._wait(self.remote.unload())
        except Exception:
            pass  # the app is stopped below either way
        session = getattr(self.ct_device, "session", None)
        if session is not None:
            try:
                session.stop()
            except Exception:
                pass
        if self.loop is not None:
            self.loop.close()
