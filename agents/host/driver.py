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
from agents.host import runtimes, targets
from agents.hostfacts import host_facts, run_conditions
from harness.kernel import procs

_UNSET = object()


class HostDriver:
    name = "host"
    takes_custom_ops = True  # the runner registers them with SessionOptions.register_custom_ops_library

    def __init__(self, config: Mapping[str, Any]):
        self.config = dict(config)
        self.work_root = Path(self.config.get("work_dir") or tempfile.gettempdir()) / "harness-host-jobs"
        self.runtimes_root = runtimes.cache_root(self.config.get("runtimes_dir"))
        self._own: Any = _UNSET
        self._own_why = ""
        self._lock = threading.Lock()

    # -- inventory ------------------------------------------------------------
    def _builds(self) -> list[targets.Build]:
        """harness's own runtime first (imported once), then every installed
        environment (read from their markers each time, so a build installed
        while the agent serves shows up at the next Describe)."""
        with self._lock:
            if self._own is _UNSET:
                self._own, self._own_why = targets.own_build()
        own = [self._own] if self._own is not None else []
        return own + targets.environment_builds(self.runtimes_root)

    def available(self) -> tuple[bool, str]:
        if self._builds():
            return True, ""
        return False, (f"no ONNX Runtime: {self._own_why or 'none in harness environment'}, and no runtime "
                       f"environment in {self.runtimes_root}; `pip install 'harness[cpu]'` or "
                       "`harness runtime install onnxruntime` adds one")

    def devices(self) -> list[DeviceInfo]:
        builds = self._builds()
        if not builds:
            return []
        local_id = self.config.get("device_id") or socket.gethostname()
        return [
            DeviceInfo(
                local_id=local_id,
                platform={"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux"),
                facts=host_facts(),
                runtimes=tuple(RuntimeSpec(targets.RUNTIME, b.version, b.eps, ("onnx",), b.build) for b in builds),
                exclusive=AGENT_MACHINE,
            )
        ]

    def close(self) -> None:
        pass

    # -- jobs -----------------------------------------------------------------
    def run(self, job: JobSpec, progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        target = job.target
        build, kind, why = targets.choose(self._builds(), target.runtime, target.version, target.ep)
        base = dict(runtime_name=targets.RUNTIME, runtime_version=build.runtime_version or build.version if build
                    else target.version, runtime_build=build.build if build else "", ep=target.ep,
                    options=dict(target.options))
        if build is None:
            return DriverResult(**base, error=JobError("job", kind, why))
        onnx_models = [m for m in job.models if m.format == "onnx"]
        if not onnx_models:
            return DriverResult(**base, error=JobError("job", "unsupported_format", "the host driver needs an ONNX model"))

        self.work_root.mkdir(parents=True, exist_ok=True)
        python = env = None
        if build.python is not None:
            # The build's own environment: only a runtime and numpy there,
            # this project's packages through a folder of links.
            python = str(build.python)
            env = runtimes.child_env(runtimes.runner_path(self.work_root / "runner-path"))
        jd = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        try:
            (jd / "job.json").write_text(json.dumps({
                "model_path": str(onnx_models[0].path),
                "ep": target.ep,
                "options": dict(target.options),
                "custom_ops": [str(p) for p in job.custom_ops],
                "measure": job.measure.__dict__,
            }))
            jobdir.write_probes(jd, job.probes)
            before = run_conditions()
            fin, phase = jobdir.run_runner(["agents.host.runner", str(jd)], jd, job.timeout_s, progress, cancel,
                                           python=python, env=env)
            after = run_conditions()
            details = {"host_runtime": build.label}
            if build.python is not None:
                details["runtime_environment"] = str(build.python.parent.parent)
            return self._collect(jd, fin, base, phase, {"before": before, "after": after}, details)
        finally:
            shutil.rmtree(jd, ignore_errors=True)

    def _collect(self, jd: Path, fin: procs.Finished, base: dict, phase: str, conditions: dict,
                 extra: dict) -> DriverResult:
        details: dict[str, Any] = {"conditions": conditions, "runner_wall_s": round(fin.wall_s, 3), **extra}
        if fin.maxrss_bytes is not None:
            details["runner_maxrss_bytes"] = fin.maxrss_bytes
        return jobdir.collect(jd, fin, base, phase, details)
