"""IOSDriver: the Mac, its connected iPhones/iPads and booted simulators.

Targets: runtime `coreml` with compute units `all`, `cpu_and_ne`,
`cpu_and_gpu`, `cpu_only` on every device; and, on the Mac, `onnxruntime`
with whatever execution providers its ONNX Runtime offers (the CoreML EP
among them), run exactly as the host driver runs them so the node placement
is counted the same way.

Each Core ML job runs in a child process (`agents.ios.runner`) in its own
process group: a timeout or cancel kills Core ML, devicectl transfers and the
simulator app launch with it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Optional

from agents import jobdir

from agents.contract import DeviceInfo, DriverResult, JobError, JobSpec, ProgressFn, Validity
from agents.ios import inventory
from agents.ios.backend import BackendError
from agents.ios.macos import backend_from_config
from harness.kernel import procs
from harness.kernel import limits
from harness.kernel.formats import COREML_FORMATS

log = logging.getLogger("harness.agent.ios")


class IOSDriver:
    name = "ios"

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)
        self.backend = backend_from_config(self.config)
        self.work_root = Path(self.config.get("work_dir") or tempfile.gettempdir()) / "harness-ios-jobs"
        self._devices: dict[str, DeviceInfo] = {}
        self._lock = threading.Lock()
        # Jobs that compute on the Mac's own chip (Core ML or ONNX Runtime on
        # the Mac, simulators) run one at a time, so none is timed while
        # another loads the same CPU, GPU or Neural Engine. Phones compute on
        # their own hardware and do not take it.
        self._mac_busy = threading.Lock()
        self._host = None  # agents.host driver for onnxruntime targets on the Mac

    # -- inventory --------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        return self.backend.check()

    def _host_driver(self):
        if self._host is None:
            from agents.host.driver import HostDriver

            self._host = HostDriver({"work_dir": str(self.work_root), **(self.config.get("host") or {})})
        return self._host

    def _ort_runtimes(self) -> tuple:
        host = self._host_driver()
        ok, _ = host.available()
        if not ok:
            return ()
        devs = host.devices()
        return tuple(devs[0].runtimes) if devs else ()

    def devices(self) -> list[DeviceInfo]:
        b = self.backend
        notes: dict[str, str] = {}
        remote = b.remote_support()
        try:
            sysctl, sw_vers = b.sysctl(), b.sw_vers()
        except BackendError as exc:
            log.warning("ios: this Mac's facts are unreadable: %s", exc)
            sysctl = sw_vers = None
        phones: list[DeviceInfo] = []
        try:
            listing = b.devicectl_devices()
            woken = self._wake_idle(listing)
            if woken:
                listing = b.devicectl_devices()
            phones = inventory.phone_devices(listing, self._phone_requirements(remote), woken)
        except BackendError as exc:
            notes["phones"] = f"not listed: {exc}"
            log.warning("ios: devicectl: %s", exc)
        sims: list[DeviceInfo] = []
        try:
            soc = inventory.parse_keyed_lines(sysctl or "").get("machdep.cpu.brand_string", "")
            sims = inventory.simulator_devices(b.simctl_booted(), soc, remote)
        except BackendError as exc:
            notes["simulators"] = f"not listed: {exc}"
            log.warning("ios: simctl: %s", exc)
        found: list[DeviceInfo] = []
        if sysctl is not None:
            found.append(inventory.mac_device(sysctl, sw_vers or "", self._ort_runtimes(), b.hostname(), notes))
        found.extend(phones)
        found.extend(sims)
        mac_os = next((d.facts.get("os_version", "") for d in found if d.local_id == inventory.MAC_ID), "")
        found = [dataclasses.replace(d, facts={**d.facts, "limits": inventory.limits_of(d, mac_os)})
                 if inventory.limits_of(d, mac_os) else d for d in found]
        with self._lock:
            self._devices = {d.local_id: d for d in found}
        return found

    def _phone_requirements(self, remote: tuple[bool, str]) -> tuple[bool, str]:
        """What a phone needs on this Mac before a job, with the reason it
        is not ready when something is missing."""
        if not remote[0]:
            return remote
        if not self.backend.devicectl_path():
            return False, ("devicectl not found (`xcrun --find devicectl` failed): install Xcode 15 or later; "
                           "coremltools runs devicectl by name, so the runner gets its folder on PATH")
        missing = [k for k in ("development_team", "bundle_identifier") if not self.config.get(k)]
        if missing:
            return False, (f"phones need {' and '.join('ios.' + k for k in missing)} in agent.yaml: without a team "
                           "coremltools signs its runner app ad hoc (CODE_SIGN_IDENTITY=\"-\"), which a phone "
                           "does not install, and its default bundle identifier com.coremltools.modelrunnerd is "
                           "no lab's (remote_device.py _AppBuilder.build)")
        return True, ""

    def _wake_idle(self, listing: dict) -> frozenset:
        """Wake the tunnels of paired phones that list as not connected (an
        idle phone shows `disconnected`); returns the identifiers woken."""
        idle = [d.get("identifier") for d in inventory.listed_phones(listing)
                if (d.get("connectionProperties") or {}).get("pairingState", "paired") == "paired"
                and (d.get("connectionProperties") or {}).get("tunnelState") != "connected" and d.get("identifier")]
        if idle:
            with ThreadPoolExecutor(max_workers=min(8, len(idle)), thread_name_prefix="devicectl-wake") as pool:
                list(pool.map(self.backend.wake_device, idle))
        return frozenset(idle)

    def close(self) -> None:
        pass

    # -- jobs -----------------------------------------------------------------------
    def _device(self, local_id: str) -> Optional[DeviceInfo]:
        with self._lock:
            dev = self._devices.get(local_id)
        if dev is None:
            dev = next((d for d in self.devices() if d.local_id == local_id), None)
        return dev

    def run(self, job: JobSpec, progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        dev = self._device(job.device_local_id)
        if inventory.device_kind(dev) not in ("mac", "simulator"):
            return self._run(job, dev, progress, cancel)
        start = time.monotonic()
        deadline = start + job.timeout_s
        waiting = False
        while not self._mac_busy.acquire(timeout=limits.EVENT_POLL_S):
            if not waiting:
                waiting = True
                progress("waiting for the Mac", 0, time.monotonic() - start)
            if cancel.is_set() or time.monotonic() > deadline:
                t = job.target
                why = "cancelled" if cancel.is_set() else "timeout"
                return DriverResult(runtime_name=t.runtime, runtime_version=t.version, ep=t.ep, options=dict(t.options),
                                    error=JobError("job", why, f"{why} while another job used this Mac's chip"),
                                    validity=Validity(stop_reason="cancelled" if why == "cancelled" else "error"))
        try:
            # The wait counted against the job's time limit.
            left = dataclasses.replace(job, timeout_s=max(1.0, deadline - time.monotonic()))
            return self._run(left, dev, progress, cancel)
        finally:
            self._mac_busy.release()

    def _run(self, job: JobSpec, dev: Optional[DeviceInfo], progress: ProgressFn,
             cancel: threading.Event) -> DriverResult:
        target = job.target
        base = dict(runtime_name=target.runtime, runtime_version=target.version, ep=target.ep,
                    options=dict(target.options))
        if dev is None:
            return DriverResult(**base, error=JobError("job", "unknown_device",
                                                       f"no device {job.device_local_id!r} on this Mac"))
        kind = inventory.device_kind(dev)
        if target.runtime == "onnxruntime":
            if kind != "mac":
                return DriverResult(**base, error=JobError(
                    "job", "unsupported_target", "onnxruntime runs on the Mac itself only; phones and simulators "
                                                 "run Core ML (runtime coreml)"))
            return self._host_driver().run(job, progress, cancel)
        if target.runtime != "coreml":
            return DriverResult(**base, error=JobError("job", "unsupported_target",
                                                       f"the ios driver runs coreml and onnxruntime, not {target.runtime!r}"))
        coreml = next((r for r in dev.runtimes if r.name == "coreml"), None)
        base["runtime_version"] = coreml.version if coreml else ""
        if coreml is None or target.ep not in coreml.eps:
            offered = ", ".join(coreml.eps) if coreml else "none"
            return DriverResult(**base, error=JobError(
                "job", "unsupported_ep", f"compute units {target.ep!r} are not offered by {dev.local_id} "
                                         f"(offered: {offered})"))
        if kind in ("phone", "tablet"):
            if dev.state != "ready":
                return DriverResult(**base, error=JobError("job", "device_not_ready",
                                                           f"{dev.local_id} is {dev.state}: {dev.state_reason}"))
            # Tunnels go idle between jobs; coremltools needs it connected.
            self.backend.wake_device(dev.facts.get("devicectl_id", dev.facts.get("udid", "")))
        model = next((m for m in job.models if m.format in COREML_FORMATS), None)
        if model is None:
            return DriverResult(**base, error=JobError(
                "job", "unsupported_format", "Core ML needs an .mlpackage or .mlmodel artefact (coreml: in the "
                                             "candidates file)"))
        self.work_root.mkdir(parents=True, exist_ok=True)
        jd = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        try:
            return self._run_coreml(job, dev, model, jd, base, progress, cancel)
        finally:
            shutil.rmtree(jd, ignore_errors=True)

    def _run_coreml(self, job: JobSpec, dev: DeviceInfo, model, jd: Path, base: dict,
                    progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        try:
            model_path = unpack_model(model.path, model.format, jd / "model")
        except ValueError as exc:
            return DriverResult(**base, error=JobError("load", "model_invalid", str(exc)))
        device = {"local_id": dev.local_id, **{k: str(v) for k, v in dev.facts.items()}}
        config = {k: v for k, v in self.config.items() if k not in ("backend", "recording", "host")}
        (jd / "job.json").write_text(json.dumps({
            "backend": self.backend.spec(), "device": device, "compute_units": job.target.ep,
            "model_path": str(model_path), "measure": job.measure.__dict__, "config": config,
            "work_dir": str(jd), "mac_os_version": self._mac_os_version(), "timeout_s": job.timeout_s,
            "coremltools": self.backend.coremltools_version(),
        }))
        jobdir.write_probes(jd, job.probes)
        env = {**procs.child_env(), **self.backend.runner_env()}
        fin, phase = jobdir.run_runner(["agents.ios.runner", str(jd)], jd, job.timeout_s, progress, cancel, env=env)
        return collect(jd, fin, base, phase, inventory.device_kind(dev))


    def _mac_os_version(self) -> str:
        with self._lock:
            mac = self._devices.get(inventory.MAC_ID)
        return mac.facts.get("os_version", "") if mac else ""


def unpack_model(path: Path, fmt: str, dest: Path) -> Path:
    """The cached artefact as Core ML opens it: an `.mlpackage` folder from
    its zip (every member checked to stay inside), or the `.mlmodel` file
    under a name with its suffix (coremltools picks the loader by suffix)."""
    dest.mkdir(parents=True, exist_ok=True)
    if fmt == "mlmodel":
        target = dest / "model.mlmodel"
        shutil.copyfile(path, target)
        return target
    try:
        with zipfile.ZipFile(path) as zf:
            root = dest.resolve()
            tops = set()
            for info in zf.infolist():
                out = (dest / info.filename).resolve()
                if root not in out.parents:
                    raise ValueError(f"zip member {info.filename!r} would land outside the job folder")
                tops.add(Path(info.filename).parts[0])
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"the mlpackage.zip artefact is not a zip ({exc})") from None
    packages = [dest / t for t in sorted(tops) if t.endswith(".mlpackage") and (dest / t).is_dir()]
    if len(packages) != 1:
        raise ValueError(f"the mlpackage.zip artefact holds {len(packages)} .mlpackage folders; expected exactly 1")
    return packages[0]


def collect(jd: Path, fin: procs.Finished, base: dict, phase: str, kind: str) -> DriverResult:
    def annotate(details: dict, warnings: list) -> None:
        if kind == "simulator":
            warnings.append("simulator: " + inventory.SIMULATOR_NOTE)
            details["not_representative"] = "a simulator: " + inventory.SIMULATOR_NOTE
        if kind in ("phone", "tablet"):
            warnings.append("remote device: samples are the prediction times the runner app reports; "
                            "each prediction is one devicectl round trip, so runs are far apart in time")
        for item in details.get("not_measured") or ():
            warnings.append(f"not measured: {item}")

    details: dict[str, Any] = {"runner_wall_s": round(fin.wall_s, 3), "device_kind": kind}
    return jobdir.collect(jd, fin, base, phase, details, annotate=annotate)
