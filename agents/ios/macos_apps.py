"""coremltools' runner app on a phone or a simulator, prepared on the Mac
(macOS only; the recorded Mac has its own, agents.ios.recorded_app).

* phones and iPads: coremltools' own `Device.prepare_for_model_debugging`
  (remote_device.py, 8.3+), which builds the app with xcodebuild, installs and
  launches it with devicectl; signed with the lab's team and bundle
  identifier (the driver refuses phones without them);
* simulators: the same Xcode project built for the iOS Simulator SDK
  (unsigned), installed and launched with simctl; its files are exchanged
  through the data container `simctl get_app_container` names.
"""

from __future__ import annotations

import asyncio
import plistlib
import subprocess
from pathlib import Path
from typing import Any, Mapping

from agents.ios.backend import _run, coremltools_dir
from harness.kernel import limits

# The simulator build's bundle id; phones use the lab's (config bundle_identifier).
SIMULATOR_BUNDLE_ID = "com.coremltools.modelrunnerd"


def phone_app(device: Mapping[str, str], config: Mapping[str, Any], app_dir: Path):
    """coremltools' Device for the phone, with its runner app launched."""
    from coremltools.models.ml_program.experimental import remote_device as rd

    udid = device["udid"]
    kind = rd.DeviceType.IPAD if device.get("device_type", "").lower() == "ipad" else rd.DeviceType.IPHONE
    found = [d for d in rd.Device.get_connected_devices(kind) if d.udid == udid]
    if not found:
        raise RuntimeError(f"device {udid} has no connected devicectl tunnel (woken before the job; unlock it and "
                           "keep it on USB or the Mac's network)")
    creds = rd.AppSigningCredentials(development_team=config.get("development_team") or "",
                                     provisioning_profile_uuid=config.get("provisioning_profile_uuid"),
                                     bundle_identifier=config.get("bundle_identifier"))
    app_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.get_event_loop().run_until_complete(
        found[0].prepare_for_model_debugging(credentials=creds, working_directory=app_dir))


def simulator_app(device: Mapping[str, str], app_dir: Path, work_dir: Path):
    """coremltools' Device for a booted simulator, over its data container."""
    from coremltools.models.ml_program.experimental import remote_device as rd

    from agents.ios.remote import SimulatorAppSession

    udid = device["udid"]
    build = app_dir / "build-simulator"
    app = next(build.rglob("*.app"), None) if build.is_dir() else None
    if app is None:
        workspace = coremltools_dir() / "modelrunner" / "ModelRunner.xcworkspace"
        _run(["xcodebuild", "-workspace", str(workspace), "-scheme", "modelrunner", "-sdk", "iphonesimulator",
              "-destination", f"platform=iOS Simulator,id={udid}", "-configuration", "Release",
              f"SYMROOT={build}", "CODE_SIGNING_ALLOWED=NO", f"PRODUCT_BUNDLE_IDENTIFIER={SIMULATOR_BUNDLE_ID}"],
             limits.RUNNER_APP_BUILD_TIMEOUT_S)
        app = next(build.rglob("*.app"), None)
        if app is None:
            raise RuntimeError(f"xcodebuild produced no .app under {build}")
    with open(app / "Info.plist", "rb") as fh:
        bundle = plistlib.load(fh).get("CFBundleIdentifier", SIMULATOR_BUNDLE_ID)
    _run(["xcrun", "simctl", "install", udid, str(app)], limits.SIMCTL_APP_TIMEOUT_S)
    log = open(work_dir / "simulator-app.log", "wb")
    proc = subprocess.Popen(["xcrun", "simctl", "launch", "--console-pty", "--terminate-running-process",
                             udid, bundle], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    container = Path(_run(["xcrun", "simctl", "get_app_container", udid, bundle, "data"],
                          limits.SIMCTL_APP_TIMEOUT_S).strip())
    session = SimulatorAppSession(proc, container, bundle, app_dir / "sessions")
    return rd.Device(name=device.get("model", "simulator"), type=rd.DeviceType.IPHONE, identifier=udid,
                     udid=udid, os_version=device.get("os_version", ""), os_build_number="",
                     developer_mode_state="enabled", state=rd.DeviceState.CONNECTED, session=session)
