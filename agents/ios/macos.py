"""The Mac itself as the ios driver's backend (sysctl, sw_vers, devicectl,
simctl, coremltools), and the factory that picks it or a recorded Mac."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

from agents.ios.backend import (UNAVAILABLE, BackendError, CoreMLSession, MacBackend, _run, coremltools_dir,
                                coremltools_gaps)
from harness.kernel import limits


class MacOSBackend:
    kind = "macos"

    def __init__(self, config: Mapping[str, Any] | None = None):
        self.config = dict(config or {})

    def spec(self) -> dict:
        return {"kind": self.kind}

    def check(self) -> tuple[bool, str]:
        if sys.platform != "darwin":
            return False, UNAVAILABLE.format(os=platform.system() or sys.platform)
        if not shutil.which("xcrun"):
            return False, "xcrun not found: install the Xcode command line tools (xcode-select --install)"
        ct = coremltools_dir()
        if ct is None:
            return False, "coremltools is not installed here (pip install 'harness[ios]')"
        if not list(ct.glob("libcoremlpython*")):
            return False, (f"coremltools at {ct} has no native library (libcoremlpython), so it cannot predict; "
                           "install a macOS wheel of coremltools")
        return True, ""

    def sysctl(self) -> str:
        return _run(["sysctl", "hw.model", "hw.machine", "machdep.cpu.brand_string", "hw.memsize"],
                    limits.MAC_TOOL_TIMEOUT_S)

    def sw_vers(self) -> str:
        return _run(["sw_vers"], limits.MAC_TOOL_TIMEOUT_S)

    def hostname(self) -> str:
        return platform.node()

    def devicectl_devices(self) -> dict:
        fd, tmp = tempfile.mkstemp(suffix=".json", prefix="devicectl-")
        os.close(fd)
        try:
            # devicectl's own --timeout bounds its wait for network devices;
            # ours is a little longer so its answer arrives first.
            _run(["xcrun", "devicectl", "list", "devices", "--json-output", tmp,
                  "--timeout", str(int(limits.DEVICECTL_LIST_TIMEOUT_S))], limits.DEVICECTL_LIST_TIMEOUT_S + 10)
            with open(tmp, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise BackendError(f"devicectl wrote no readable JSON ({exc})") from None
        finally:
            os.unlink(tmp)

    def simctl_booted(self) -> dict:
        text = _run(["xcrun", "simctl", "list", "-j", "devices", "booted"], limits.MAC_TOOL_TIMEOUT_S)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BackendError(f"simctl printed no JSON ({exc})") from None

    def remote_support(self) -> tuple[bool, str]:
        """Phones and simulators run models in coremltools' `modelrunner`
        app (coremltools 8.3+), built here with xcodebuild from the Xcode
        project coremltools looks for inside its package
        (`_ModelRunnerAppBuilder._get_project_path`: coremltools/modelrunner).
        The macOS wheel ships that project (setup.py adds `modelrunner/**/*`
        to the package data on darwin)."""
        version = coremltools_version()
        gaps = [g for g in coremltools_gaps(version) if "phones and simulators" in g]
        if gaps:
            return False, f"{gaps[0]}; pip install 'coremltools>=8.3' on this Mac"
        ct = coremltools_dir()
        workspace = ct / "modelrunner" / "ModelRunner.xcworkspace" if ct else None
        if workspace is None or not workspace.is_dir():
            return False, (f"coremltools' runner app project is missing ({workspace}): the coremltools macOS wheel "
                           "ships it; reinstall it on this Mac with pip install 'coremltools>=8.3'")
        if not shutil.which("xcodebuild"):
            return False, "xcodebuild not found: phones and simulators need full Xcode to build the runner app"
        return True, ""

    def coremltools_version(self) -> str:
        return coremltools_version()

    def devicectl_path(self) -> Optional[str]:
        """Where devicectl is: Xcode's usr/bin, found through xcrun."""
        try:
            path = _run(["xcrun", "--find", "devicectl"], limits.MAC_TOOL_TIMEOUT_S).strip()
        except BackendError:
            return None
        return path or None

    def runner_env(self) -> dict:
        """coremltools runs `devicectl device copy` by name, without xcrun, and
        checks shutil.which("devicectl") before every devicectl command
        (remote_device.py _DeviceCtl._validate): its folder goes first on the
        runner's PATH."""
        path = self.devicectl_path()
        if not path:
            return {}
        return {"PATH": os.path.dirname(path) + os.pathsep + os.environ.get("PATH", "")}

    def wake_device(self, identifier: str) -> None:
        """Open a paired phone's devicectl tunnel: an idle one lists as
        `disconnected`, and coremltools uses only `connected` devices
        (Device.get_connected_devices). Any devicectl request to the device
        connects it; `device info details` is the lightest."""
        fd, tmp = tempfile.mkstemp(suffix=".json", prefix="devicectl-")
        os.close(fd)
        try:
            _run(["xcrun", "devicectl", "device", "info", "details", "--device", identifier, "--json-output", tmp,
                  "--timeout", str(int(limits.DEVICECTL_WAKE_TIMEOUT_S))], limits.DEVICECTL_WAKE_TIMEOUT_S + 10)
        except BackendError:
            pass  # the list that follows shows the state it is left in
        finally:
            os.unlink(tmp)

    def open_session(self, device: Mapping[str, str], model_path: Path, compute_units: str,
                     config: Mapping[str, Any], work_dir: Path, deadline: Optional[float] = None) -> CoreMLSession:
        if device.get("kind") == "mac":
            from agents.ios.coreml_local import LocalSession

            return LocalSession(model_path, compute_units)
        from agents.ios.remote import RemoteSession

        return RemoteSession(dict(device), model_path, compute_units, dict(config), work_dir, self, deadline)

    # -- the Mac's side of a remote session ---------------------------------------------
    def prepare_app(self, device: Mapping[str, str], config: Mapping[str, Any], app_dir: Path, work_dir: Path):
        from agents.ios import macos_apps

        if device.get("kind") == "simulator":
            return macos_apps.simulator_app(device, app_dir, work_dir)
        return macos_apps.phone_app(device, config, app_dir)

    def compile_model(self, package: Path, dest: Path) -> Path:
        from coremltools.models.utils import compile_model

        dest.mkdir(parents=True, exist_ok=True)
        return Path(compile_model(str(package), destination_path=str(dest / "model.mlmodelc")))

    def model_structure(self, compiled: Path) -> Any:
        from coremltools.models.compute_plan import MLModelStructure

        return MLModelStructure.load_from_path(compiled_model_path=str(compiled))


def coremltools_version() -> str:
    try:
        from importlib.metadata import version

        return version("coremltools")
    except Exception:
        return ""


def backend_from_spec(spec: Mapping[str, Any]) -> MacBackend:
    kind = spec.get("kind", "macos")
    if kind == "macos":
        return MacOSBackend()
    if kind == "recorded":
        from agents.ios.recorded import RecordedBackend

        return RecordedBackend.from_file(Path(spec["recording"]))
    raise ValueError(f"ios: backend {kind!r}: expected macos or recorded")


def backend_from_config(config: Mapping[str, Any]) -> MacBackend:
    """`ios:` in agent.yaml: `backend: recorded` with `recording: FILE`
    replays a recorded Mac (for tests and demos); anything else is the Mac."""
    kind = config.get("backend", "macos")
    if kind == "recorded":
        if not config.get("recording"):
            raise ValueError("ios: backend recorded needs recording: FILE")
        return backend_from_spec({"kind": "recorded", "recording": str(Path(config["recording"]).expanduser())})
    return backend_from_spec({"kind": kind})
