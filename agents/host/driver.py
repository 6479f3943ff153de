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
from agents import placement as pl
from agents.host import runtimes, targets, warm
from agents.hostfacts import host_facts, run_conditions
from harness.kernel import limits, procs

_UNSET = object()
_OWN = "own"  # the template of harness's own environment


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
        # Runners fork from a warm template per environment (agents/host/warm.py).
        self.warm = warm.Pool(self.work_root, enabled=bool(self.config.get("warm_runners", True)))
        # (model digest, build, ep, options, custom ops) -> Placement, most recent last.
        self._placements = pl.Learnt()

    # -- inventory ------------------------------------------------------------
    def _builds(self) -> list[targets.Build]:
        """harness's own runtime first (imported once), then every installed
        environment (read from their markers each time, so a build installed
        while the agent serves shows up at the next Describe)."""
        with self._lock:
            if self._own is _UNSET:
                import importlib.util

                own = None
                template = self.warm.template(_OWN, None, None) \
                    if importlib.util.find_spec("onnxruntime") is not None else None
                if template is not None and template._socket(limits.FORK_SERVER_INVENTORY_WAIT_S) is not None:
                    # Warmed now, while the controller plans (the first job's
                    # runner then forks); it imported the runtime, so this
                    # process need not: it says which build it holds.
                    own = targets.from_template(template.info)
                if own is None:
                    own, self._own_why = targets.own_build()
                self._own = own
                if self._own is None:
                    self.warm.forget(_OWN)
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
        self.warm.close()

    # -- placement, once per model, build and options -------------------------------
    @staticmethod
    def _placement_key(job: JobSpec, build: targets.Build, model) -> tuple:
        return (model.digest, str(build.python), build.label, job.target.ep,
                tuple(sorted((str(k), str(v)) for k, v in job.target.options.items())),
                tuple(str(p) for p in job.custom_ops))

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
        key = self._placement_key(job, build, onnx_models[0])
        known = self._placements.get(key)
        jd = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        try:
            (jd / "job.json").write_text(json.dumps({
                "model_path": str(onnx_models[0].path),
                "ep": target.ep,
                "options": dict(target.options),
                "custom_ops": [str(p) for p in job.custom_ops],
                "measure": job.measure.__dict__,
                "placement": pl.as_dict(known[0]) if known else None,
            }))
            jobdir.write_probes(jd, job.probes)
            template = self.warm.template(_OWN if build.python is None else str(build.python), python, env)
            started: dict = {}

            def forked(**kw):
                fin = template.run(str(jd), **kw)
                if fin is not None:
                    started.update(runner_start="fork", template_pid=template.info.get("pid"),
                                   template_threads=template.info.get("threads"))
                return fin

            before = run_conditions()
            fin, phase = jobdir.run_runner(["agents.host.runner", str(jd)], jd, job.timeout_s, progress, cancel,
                                           python=python, env=env, warm=forked if template else None)
            after = run_conditions()
            details = {"host_runtime": build.label, **(started or {"runner_start": "spawn"})}
            if not started:
                why = (template.broken or "its fork server did not come up in time") if template else self.warm.why_not
                details["runner_start_why"] = why
            if build.python is not None:
                details["runtime_environment"] = str(build.python.parent.parent)
            if known:
                details["placement_from"] = f"an earlier job of this model, build and options ({known[1]})"
            res = self._collect(jd, fin, base, phase, {"before": before, "after": after}, details)
            if not known:
                self._placements.remember(key, res.placement, res.error, job.job_id)
            return res
        finally:
            shutil.rmtree(jd, ignore_errors=True)

    def _collect(self, jd: Path, fin: procs.Finished, base: dict, phase: str, conditions: dict,
                 extra: dict) -> DriverResult:
        details: dict[str, Any] = {"conditions": conditions, "runner_wall_s": round(fin.wall_s, 3), **extra}
        if fin.maxrss_bytes is not None:
            details["runner_maxrss_bytes"] = fin.maxrss_bytes
        return jobdir.collect(jd, fin, base, phase, details)
