"""SimDriver: simulated devices that take real wall-clock time.

A job's timeline (load, first run, warm-up runs, measured runs) is drawn
from the device's latency model and ended by the same StopRule every real
runner uses (`harness.kernel.latency.simulate_job`); the driver then lives through
it, sleeping until each step is due. So fan-out, queueing, cancellation,
timeouts and injected faults are real behaviour of the agent and the
controller; only the numbers are made up, and seeded.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from agents.contract import (
    DeviceInfo, DriverResult, JobError, JobSpec, Memory, Placement, ProgressFn, RuntimeSpec, Validity,
)
from agents.sim.config import Fail, SimConfig, SimDevice, parse
from harness.kernel import limits
from harness.kernel.eps import CPU_EPS
from harness.kernel.formats import RUNTIME_FORMATS
from harness.kernel.latency import simulate_job

MiB = 1024 * 1024
# The driver wakes at most this often while measured runs elapse, to report
# progress; a cancel or the deadline wakes it at once (Event.wait), so a
# lab of hundreds of simulated devices costs its agents next to nothing.
# The agent passes progress on no more often (agents/jobs.py): waking more
# often would cost CPU for events it holds back.
SLICE_S = limits.PROGRESS_INTERVAL_S
PROGRESS_EVERY_S = limits.PROGRESS_INTERVAL_S


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class _Clock:
    """Sleeps to offsets from the job's start; stops at cancel or timeout."""

    def __init__(self, start: float, timeout_s: float, cancel: threading.Event):
        self.start, self.deadline, self.cancel = start, start + timeout_s, cancel
        self.stopped: Optional[str] = None  # cancelled | timeout

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def until(self, offset_s: float) -> bool:
        """Wait until start + offset_s; False if stopped first."""
        target = self.start + offset_s
        while True:
            if self.cancel.is_set():
                self.stopped = "cancelled"
                return False
            now = time.monotonic()
            if now >= self.deadline:
                self.stopped = "timeout"
                return False
            if now >= target:
                return True
            if self.cancel.wait(min(target, self.deadline) - now):
                self.stopped = "cancelled"
                return False


class SimDriver:
    name = "sim"

    def __init__(self, config: SimConfig | Mapping[str, Any]):
        self.cfg = config if isinstance(config, SimConfig) else parse(config)
        self._devices = {d.id: d for d in self.cfg.devices}
        self._jobs_started: dict[str, int] = {}
        self._nodes: dict[str, Optional[dict[str, int]]] = {}
        self._lock = threading.Lock()

    # -- inventory ------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        if not self._devices:
            return False, "no simulated devices configured (add sim: {devices: [...]} to the agent config)"
        return True, ""

    def devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                local_id=d.id, platform=d.platform, facts=self._facts(d),
                runtimes=(RuntimeSpec(d.runtime_name(), d.version(), d.runtime_eps(),
                                      RUNTIME_FORMATS[d.runtime_name()]),),
                state=d.state, state_reason=d.state_reason, exclusive=d.exclusive or "",
            )
            for d in self._devices.values()
        ]

    @staticmethod
    def _facts(d: SimDevice) -> dict[str, str]:
        facts = {"model": f"simulated {d.id}", "os_version": "simulated"}
        facts.update(d.facts)
        # Published so a controller can plan capacity without running a job.
        facts["simulated"] = "true"
        facts["sim_latency"] = d.latency_model().to_fact()
        for ep in d.latency_by_ep:
            facts[f"sim_latency_{ep}"] = d.latency_model(ep).to_fact()
        return facts

    def close(self) -> None:
        pass

    # -- jobs -----------------------------------------------------------------
    def run(self, job: JobSpec, progress: ProgressFn, cancel: threading.Event) -> DriverResult:
        clock = _Clock(time.monotonic(), job.timeout_s, cancel)
        dev = self._devices.get(job.device_local_id)
        target = job.target
        base = dict(runtime_name=target.runtime, runtime_version=dev.version() if dev else "", ep=target.ep,
                    options=dict(target.options))
        refused = self._refuse(dev, job)
        if refused is not None:
            return DriverResult(**base, error=refused, validity=Validity(stop_reason="error"))
        assert dev is not None
        base["runtime_name"] = dev.runtime_name()
        with self._lock:
            number = self._jobs_started[dev.id] = self._jobs_started.get(dev.id, 0) + 1
        seed = [self.cfg.seed, _crc(dev.id), _crc(job.job_id)]
        failure = self._failure(dev.fail, number, seed + [1])
        timeline = simulate_job(dev.latency_model(target.ep), job.measure, np.random.default_rng(seed))
        details: dict[str, Any] = {"simulated": True, "seed": seed, "job_number": number,
                                   "simulated_s": round(timeline.total_s, 6)}

        def stopped(stage: str, **partial) -> DriverResult:
            details["runner_wall_s"] = round(clock.elapsed(), 3)
            if clock.stopped == "cancelled":
                err = JobError(stage, "cancelled", "cancelled; the simulated runner was stopped")
            else:
                err = JobError(stage, "timeout", f"no result within the job's time limit ({job.timeout_s:g} s) "
                                                 f"during {stage}; the simulated runner was stopped")
            return DriverResult(**base, **partial, error=err, details=details,
                                validity=Validity(stop_reason="cancelled" if clock.stopped == "cancelled" else "error"))

        def failed(stage: str, f: Fail, **partial) -> DriverResult:
            if f.kind == "hang":
                clock.until(math.inf)  # ends at the job's timeout or a cancel, as a hung runner does
                return stopped(stage, **partial)
            details["runner_wall_s"] = round(clock.elapsed(), 3)
            if f.kind == "crash":
                err = JobError(stage, "crash", f.message or f"runner died (SIGSEGV) during {stage} "
                                                             f"(simulated crash, job {number} on {dev.id})")
                partial = {}  # a crashed runner writes no result: its measurements are lost
            else:
                err = JobError(stage, f.error_kind, f.message or f"simulated {f.error_kind} during {stage} "
                                                                 f"(job {number} on {dev.id})")
            return DriverResult(**base, **partial, error=err, details=details, validity=Validity(stop_reason="error"))

        load_s = timeline.load_ms / 1e3
        if not clock.until(load_s):
            return stopped("load")
        progress("load", 0, load_s)
        if failure and failure.stage == "load":
            return failed("load", failure)
        loaded = {"load_ms": timeline.load_ms}

        warm_end = load_s + timeline.warmup_total_ms / 1e3
        if not clock.until(warm_end):
            return stopped("warmup", **loaded)
        warmed = dict(loaded, first_run_ms=timeline.first_run_ms)
        if failure and failure.stage == "warmup":
            return failed("warmup", failure, **warmed)
        details["warmup_runs"] = 1 + len(timeline.warmup_ms)

        samples = timeline.samples_ms
        due = warm_end + np.cumsum(np.asarray(samples, dtype=np.float64)) / 1e3
        # An injected fault mid-measurement strikes halfway through the runs.
        end = max(1, len(samples) // 2) if failure and failure.stage == "measure" else len(samples)
        i, last_progress = 0, 0.0
        while i < end:
            j = min(end, int(np.searchsorted(due, due[i] + SLICE_S, side="right")))
            if not clock.until(float(due[j - 1])):
                return stopped("measure", **warmed)
            i = j
            now = clock.elapsed()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                progress("measure", i, float(due[i - 1]) - warm_end)
        if failure and failure.stage == "measure":
            return failed("measure", failure, **warmed)

        progress("probes", len(samples), timeline.measure_ms / 1e3)
        outputs = self._outputs(dev, job, seed + [2])
        details.update(measure_s=round(timeline.measure_ms / 1e3, 6), runner_wall_s=round(clock.elapsed(), 3))
        p = job.measure
        return DriverResult(
            **base, **warmed,
            samples_ms=samples,
            memory=self._memory(dev, job),
            placement=self._placement(dev, job),
            validity=Validity(
                warmup_done=timeline.warmup_done,
                min_runs_met=len(samples) >= p.min_runs,
                min_time_met=timeline.measure_ms / 1e3 >= p.min_s,
                stop_reason=timeline.stop_reason,
            ),
            outputs=outputs,
            details=details,
        )

    # -- helpers --------------------------------------------------------------
    def _refuse(self, dev: Optional[SimDevice], job: JobSpec) -> Optional[JobError]:
        """The same refusals a real driver gives, before any time passes."""
        t = job.target
        if dev is None:
            return JobError("job", "unknown_device", f"no simulated device {job.device_local_id!r}")
        if t.runtime != dev.runtime_name():
            return JobError("job", "unsupported_target",
                            f"simulated device {dev.id} runs {dev.runtime_name()}, not {t.runtime!r}")
        if t.ep not in dev.runtime_eps():
            return JobError("job", "unsupported_ep", f"execution provider {t.ep!r} is not available on {dev.id} "
                                                     f"(available: {', '.join(dev.runtime_eps())})")
        v = dev.version()
        if t.version and not (v == t.version or v.startswith(t.version + ".")):
            return JobError("job", "unsupported_version", f"{t.runtime} {t.version} requested; {dev.id} has {v}")
        formats = RUNTIME_FORMATS[dev.runtime_name()]
        if not any(m.format in formats for m in job.models):
            return JobError("job", "unsupported_format",
                            f"{dev.runtime_name()} needs a model in {' or '.join(formats)}")
        return None

    @staticmethod
    def _failure(fail: Optional[Fail], number: int, seed: list) -> Optional[Fail]:
        # Generators are drawn only where used: a lab of hundreds of devices runs thousands of jobs.
        if fail is None:
            return None
        if fail.every_n is not None:
            return fail if number % fail.every_n == 0 else None
        return fail if np.random.default_rng(seed).random() < float(fail.probability or 0.0) else None

    @staticmethod
    def _model_bytes(job: JobSpec) -> int:
        total = 0
        for m in job.models:
            try:
                total += Path(m.path).stat().st_size
            except OSError:
                pass
        return total

    def _memory(self, dev: SimDevice, job: JobSpec) -> Memory:
        delta = int(dev.memory_factor * self._model_bytes(job))
        return Memory(peak_bytes=int(dev.memory_mb * MiB) + delta, delta_bytes=delta,
                      method="simulated: memory_mb + memory_factor x model size (sim driver configuration)")

    def _op_counts(self, path: Path, digest: str) -> Optional[dict[str, int]]:
        with self._lock:
            if digest in self._nodes:
                return self._nodes[digest]
        counts: Optional[dict[str, int]] = None
        try:
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            counts = {}
            for node in model.graph.node:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
        except Exception:  # not an ONNX file we can read: no placement, as a real driver without a log
            counts = None
        with self._lock:
            self._nodes[digest] = counts
        return counts

    def _placement(self, dev: SimDevice, job: JobSpec) -> Optional[Placement]:
        onnx_models = [m for m in job.models if m.format == "onnx"]
        if not onnx_models:
            return None
        counts = self._op_counts(Path(onnx_models[0].path), onnx_models[0].digest)
        if not counts:
            return None
        ep = job.target.ep
        total = sum(counts.values())
        fallback = {op: counts[op] for op in dev.fallback_ops if op in counts} if ep not in CPU_EPS else {}
        n_fb = sum(fallback.values())
        by_ep = {ep: total - n_fb}
        if n_fb:
            by_ep["cpu"] = by_ep.get("cpu", 0) + n_fb
        by_ep = {k: v for k, v in by_ep.items() if v}
        share = {k: v / total for k, v in by_ep.items()} if total else {}
        return Placement(nodes_total=total, nodes_by_ep=by_ep, cpu_fallback_nodes=n_fb, fallback_op_types=fallback,
                         time_share_by_ep=share, fully_accelerated=None if ep in CPU_EPS else n_fb == 0,
                         source="simulated (sim driver: node counts from the model, fallback_ops from configuration)")

    def _outputs(self, dev: SimDevice, job: JobSpec, seed: list) -> tuple:
        if dev.outputs == "none" or not job.probes:
            return ()
        onnx_models = [m for m in job.models if m.format == "onnx"]
        if not onnx_models:
            return ()
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(onnx_models[0].path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        out_names = [o.name for o in sess.get_outputs()]
        outputs, rng = [], np.random.default_rng(seed)
        for probe in job.probes:
            values = sess.run(None, {n: probe[n] for n in names if n in probe})
            res = {}
            for name, v in zip(out_names, values):
                if not isinstance(v, np.ndarray):
                    continue
                if dev.output_noise and np.issubdtype(v.dtype, np.floating):
                    rms = float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) if v.size else 0.0
                    v = (v + rng.normal(0.0, dev.output_noise * rms, size=v.shape)).astype(v.dtype)
                res[name] = v
            outputs.append(res)
        return tuple(outputs)

