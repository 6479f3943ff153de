"""HostDriver: devices and jobs for ONNX Runtime on this machine."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

from agents import jobdir

from agents.contract import AGENT_MACHINE, DeviceInfo, DriverResult, JobError, JobSpec, ProgressFn, RuntimeSpec
from agents.hostfacts import host_facts, run_conditions
from harness.kernel import procs
from harness.kernel.eps import short_ep

# Providers that do not run a model on this machine's hardware.
_NOT_LOCAL_EPS = {"azure"}


class HostDriver:
    name = "host"

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)
        self.work_root = Path(self.config.get("work_dir") or tempfile.gettempdir()) / "harness-host-jobs"
        self._runtime: RuntimeSpec | None = None
        self._lock = threading.Lock()

    # -- inventory ------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except Exception as exc:  # broken wheels raise more than ImportError
            return False, f"onnxruntime cannot be imported ({exc}); install it with `pip install onnxruntime`"
        return True, ""

    def _runtime_spec(self) -> RuntimeSpec:
        with self._lock:
            if self._runtime is None:
                import onnxruntime as ort

                eps = []
                for p in ort.get_available_providers():
                    s = short_ep(p)
                    if s not in _NOT_LOCAL_EPS and s not in eps:
                        eps.append(s)
                self._runtime = RuntimeSpec("onnxruntime", ort.__version__, tuple(eps), ("onnx",))
            return self._runtime

    def devices(self) -> list[DeviceInfo]:
        ok, _ = self.available()
        if not ok:
            return []
        local_id = self.config.get("device_id") or socket.gethostname()
        return [
            DeviceInfo(
                local_id=local_id,
                platform={"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux"),
                facts=host_facts(),
                runtimes=(self._runtime_spec(),),
                exclusive=AGENT_MACHINE,
            )
        ]

    def close(self) -> None:
        pass

    # -- jobs -----------------------------------------------------------------
    def run(self, job: JobSpec, progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        runtime = self._runtime_spec()
        target = job.target
        base = dict(runtime_name="onnxruntime", runtime_version=runtime.version, ep=target.ep,
                    options=dict(target.options))
        if target.runtime != "onnxruntime":
            return DriverResult(**base, error=JobError("job", "unsupported_target",
                                f"the host driver runs onnxruntime, not {target.runtime!r}"))
        if target.ep not in runtime.eps:
            return DriverResult(**base, error=JobError(
                "job", "unsupported_ep",
                f"execution provider {target.ep!r} is not available here (available: {', '.join(runtime.eps)})"))
        if target.version and not runtime.version.startswith(target.version):
            return DriverResult(**base, error=JobError(
                "job", "unsupported_version",
                f"onnxruntime {target.version} requested; this host has {runtime.version}"))
        onnx_models = [m for m in job.models if m.format == "onnx"]
        if not onnx_models:
            return DriverResult(**base, error=JobError("job", "unsupported_format", "the host driver needs an ONNX model"))

        self.work_root.mkdir(parents=True, exist_ok=True)
        jd = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        try:
            (jd / "job.json").write_text(json.dumps({
                "model_path": str(onnx_models[0].path),
                "ep": target.ep,
                "options": dict(target.options),
                "measure": job.measure.__dict__,
            }))
            jobdir.write_probes(jd, job.probes)
            before = run_conditions()
            fin, phase = jobdir.run_runner(["agents.host.runner", str(jd)], jd, job.timeout_s, progress, cancel)
            after = run_conditions()
            return self._collect(jd, fin, base, phase, {"before": before, "after": after})
        finally:
            shutil.rmtree(jd, ignore_errors=True)

    def _collect(self, jd: Path, fin: procs.Finished, base: dict, phase: str, conditions: dict) -> DriverResult:
        details: dict[str, Any] = {"conditions": conditions, "runner_wall_s": round(fin.wall_s, 3)}
        if fin.maxrss_bytes is not None:
            details["runner_maxrss_bytes"] = fin.maxrss_bytes
        return jobdir.collect(jd, fin, base, phase, details)
