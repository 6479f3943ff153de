"""Core ML on a phone or a simulator, through coremltools' remote device
support (macOS only; `coremltools.models.ml_program.experimental`).

coremltools builds its `modelrunner` app with xcodebuild, installs and
launches it, and talks JSON-RPC to it through files in the app's data
container (`Documents/modelrunnerd/requests|responses`), copied with
`xcrun devicectl device copy to|from`. The app loads the compiled model with
the requested compute units, predicts, reports Core ML's own load and
prediction durations, and returns the compute plan.

A simulator has no devicectl: the app is built for the iOS Simulator SDK
(no signing), installed with `simctl install`, and the same files are
copied straight into the data container `simctl get_app_container` names.
Everything above the file transport is coremltools' own code path.
"""

from __future__ import annotations

import asyncio
import plistlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from harness.kernel import limits

_BUNDLE_ID = "com.coremltools.modelrunnerd"  # coremltools' default for the runner app


def _ms(ns: Any) -> Optional[float]:
    return None if ns is None else float(ns) / 1e6


@dataclass(frozen=True)
class _Transfer:
    source: str
    destination: str


class SimulatorAppSession:
    """The part of coremltools' `_AppSession` its JSON-RPC socket uses,
    over a simulator's data container instead of devicectl."""

    def __init__(self, process: subprocess.Popen, container: Path, bundle_identifier: str, working_directory: Path):
        self._process = process
        self.container = container
        self.bundle_identifier = bundle_identifier
        self.working_directory = working_directory

    @property
    def is_alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        self._process.terminate()

    def send_file_to_app(self, source_path: Path, destination: str) -> _Transfer:
        target = self.container / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_path, target)
        return _Transfer(str(source_path), str(target))

    def receive_file_from_app(self, destination_path: Path, source: str) -> _Transfer:
        from coremltools.models.ml_program.experimental.remote_device import _DeviceCtlError

        src = self.container / source
        if not src.is_file():
            # The same error devicectl's copy gives for a file not written
            # yet; coremltools' service polls again on it.
            raise _DeviceCtlError(f"{source} is not in the app container yet")
        shutil.copyfile(src, destination_path)
        return _Transfer(str(src), str(destination_path))


def _run(argv: list[str], timeout_s: float) -> str:
    from agents.ios.backend import _run as run

    return run(argv, timeout_s)


class RemoteSession:
    in_process = False

    def __init__(self, device: Mapping[str, str], model_path: Path, compute_units: str,
                 config: Mapping[str, Any], work_dir: Path):
        from agents.ios.coreml_local import compute_unit

        self.device = dict(device)
        self.model_path = Path(model_path)
        self.units = compute_unit(compute_units)
        self.config = dict(config)
        self.app_dir = Path(self.config.get("runner_app_dir") or "~/.cache/harness/ios-runner").expanduser()
        self.app_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = Path(work_dir)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.wrapper = None
        self.app_session = None

    def _wait(self, coro):
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    # -- devices -----------------------------------------------------------------
    def _phone(self):
        from coremltools.models.ml_program.experimental import remote_device as rd

        udid = self.device["udid"]
        kind = rd.DeviceType.IPAD if self.device.get("device_type", "").lower() == "ipad" else rd.DeviceType.IPHONE
        found = [d for d in rd.Device.get_connected_devices(kind) if d.udid == udid]
        if not found:
            raise RuntimeError(f"device {udid} is not connected (devicectl tunnel not connected)")
        creds = rd.AppSigningCredentials(
            development_team=self.config.get("development_team", ""),
            provisioning_profile_uuid=self.config.get("provisioning_profile_uuid"),
            bundle_identifier=self.config.get("bundle_identifier"),
        )
        prepared = self._wait(found[0].prepare_for_model_debugging(credentials=creds, working_directory=self.app_dir))
        self.app_session = prepared.session
        return prepared

    def _simulator(self):
        from coremltools.models.ml_program.experimental import remote_device as rd

        from agents.ios.backend import coremltools_dir

        udid = self.device["udid"]
        build = self.app_dir / "build-simulator"
        app = next(build.rglob("*.app"), None) if build.is_dir() else None
        if app is None:
            workspace = coremltools_dir() / "modelrunner" / "ModelRunner.xcworkspace"
            _run(["xcodebuild", "-workspace", str(workspace), "-scheme", "modelrunner", "-sdk", "iphonesimulator",
                  "-destination", f"platform=iOS Simulator,id={udid}", "-configuration", "Release",
                  f"SYMROOT={build}", "CODE_SIGNING_ALLOWED=NO", f"PRODUCT_BUNDLE_IDENTIFIER={_BUNDLE_ID}"],
                 limits.RUNNER_APP_BUILD_TIMEOUT_S)
            app = next(build.rglob("*.app"), None)
            if app is None:
                raise RuntimeError(f"xcodebuild produced no .app under {build}")
        with open(app / "Info.plist", "rb") as fh:
            bundle = plistlib.load(fh).get("CFBundleIdentifier", _BUNDLE_ID)
        _run(["xcrun", "simctl", "install", udid, str(app)], limits.SIMCTL_APP_TIMEOUT_S)
        log = open(self.work_dir / "simulator-app.log", "wb")
        proc = subprocess.Popen(["xcrun", "simctl", "launch", "--console-pty", "--terminate-running-process",
                                 udid, bundle], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        container = Path(_run(["xcrun", "simctl", "get_app_container", udid, bundle, "data"],
                              limits.SIMCTL_APP_TIMEOUT_S).strip())
        self.app_session = SimulatorAppSession(proc, container, bundle, self.app_dir / "sessions")
        self.app_session.working_directory.mkdir(parents=True, exist_ok=True)
        return rd.Device(name=self.device.get("model", "simulator"), type=rd.DeviceType.IPHONE, identifier=udid,
                         udid=udid, os_version=self.device.get("os_version", ""), os_build_number="",
                         developer_mode_state="enabled", state=rd.DeviceState.CONNECTED, session=self.app_session)

    # -- the session ----------------------------------------------------------------
    def load(self) -> dict:
        from coremltools.models.ml_program.experimental.async_wrapper import MLModelAsyncWrapper

        # coremltools' remote service binds the current event loop when built.
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        t0 = time.perf_counter()
        ct_device = self._simulator() if self.device.get("kind") == "simulator" else self._phone()
        prepare_ms = (time.perf_counter() - t0) * 1e3
        weights = self.model_path / "Data" / "com.apple.CoreML" / "weights"
        t1 = time.perf_counter()
        self.wrapper = MLModelAsyncWrapper.from_spec_or_path(
            spec_or_path=str(self.model_path), weights_dir=str(weights), compute_units=self.units, device=ct_device)
        self._wait(self.wrapper.load())
        wall = (time.perf_counter() - t1) * 1e3
        device_ms = _ms(self.wrapper.load_duration_in_nano_seconds)
        return {
            "load_ms": device_ms if device_ms is not None else wall,
            "method": ("Core ML load of the compiled model on the device, as the runner app reports it "
                       "(the .mlmodelc is compiled on the Mac, as apps that bundle it do)"
                       if device_ms is not None else "wall clock of compile on the Mac + transfer + load"),
            "host_compile_transfer_load_ms": wall,
            "runner_app_prepare_ms": prepare_ms,
        }

    def inputs(self) -> list:
        from harness.kernel.coreml_spec import inspect_coreml

        return list(inspect_coreml(self.model_path).inputs)

    def predict(self, feed: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return self._wait(self.wrapper.predict(dict(feed)))

    def last_predict_ms(self) -> Optional[float]:
        return _ms(self.wrapper.last_predict_duration_in_nano_seconds) if self.wrapper else None

    def compute_plan(self) -> Any:
        from agents.ios.backend import PlanUnavailable

        try:
            return self._wait(self.wrapper.retrieve_compute_plan())
        except ValueError as exc:  # remote plan support missing in this coremltools
            raise PlanUnavailable(str(exc)) from None

    def close(self) -> None:
        try:
            if self.wrapper is not None and self.loop is not None:
                self._wait(self.wrapper.unload())
        except Exception:
            pass  # the app is stopped below either way
        if self.app_session is not None:
            try:
                self.app_session.stop()
            except Exception:
                pass
        if self.loop is not None:
            self.loop.close()
