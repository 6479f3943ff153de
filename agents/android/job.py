"""One job on one phone: conditions, pushes, batches, memory, placement,
the strict probe, outputs, cleanup.

The order keeps numbers honest: timing batches run first and alone (no
verbose log, no profiler, whose per-node events would cost time in every
run); then a one-node baseline for the memory delta; then the placement pass
(`-v` into logcat, `-p` profile); then the strict probe; then the probe
outputs. Any failure becomes a DriverResult with an error and whatever was
measured before it.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from agents import placement as pl
from agents.android import batches, device, footprint, outputs, perftest, releases
from agents.android.adb import AdbUnavailable, DeviceLost, Phone, RemoteFileError, ShellCancelled, ShellResult, ShellTimeout
from agents.android.config import AndroidConfig, Runner
from agents.contract import DriverResult, JobError, JobSpec, ProgressFn, Validity
from harness.kernel import limits
from harness.kernel.eps import CPU_EPS
from harness.kernel.measure.policy import StopRule


class Failed(Exception):
    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


@dataclass
class Shared:
    """Driver-wide caches a job may read and fill, each behind the lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    affinity: dict = field(default_factory=dict)  # serial -> (big-core mask, its cpus, online CPUs)
    baseline: dict = field(default_factory=dict)  # (serial, runner digest, ep, flags) -> peak bytes


class AndroidJob:
    def __init__(self, phone: Phone, cfg: AndroidConfig, runner: Runner, job: JobSpec, progress: ProgressFn,
                 cancel: threading.Event, shared: Shared, plan: releases.OptionPlan):
        self.phone, self.cfg, self.runner, self.job, self.plan = phone, cfg, runner, job, plan
        self.progress, self.cancel, self.shared = progress, cancel, shared
        self.ep = job.target.ep
        self.deadline = time.monotonic() + job.timeout_s
        self.stage = "job"
        self.running_in: Optional[str] = None
        self.affinity: Optional[str] = None
        self.online_cpus: Optional[int] = None
        self.flags: list[str] = list(plan.flags)
        tag = re.sub(r"[^A-Za-z0-9]", "", job.job_id)[-24:] or "job"
        self.jobdir = f"{cfg.device_dir}/jobs/{tag}-{int(time.time() * 1000) % 10**8}"
        self.runner_dir = f"{cfg.device_dir}/runners/{runner.digest[:16]}"
        self.acc: dict[str, Any] = {"samples": []}
        self.warnings: list[str] = []
        self.details: dict[str, Any] = {
            "device": phone.serial,
            "runner": {"version": runner.version, "program": str(runner.perf_test), "digest": runner.digest[:16],
                       "abi": runner.abi},
        }

    # -- plumbing -------------------------------------------------------------------
    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ShellTimeout("the job's time limit")
        return left

    def _perf(self, folder: str, argv: list[str], *, program_dir: Optional[str] = None,
              env: Optional[dict] = None) -> ShellResult:
        line = perftest.launch_command(folder, program_dir or self.runner_dir, argv, affinity=self.affinity,
                                       env=env or {})
        self.running_in = folder
        r = self.phone.sh(line, timeout_s=self._left(), cancel=self.cancel)
        self.running_in = None
        return r

    def _kill(self) -> None:
        if self.running_in:
            device.kill_recorded(self.phone, self.running_in)

    def _runner_failed(self, r: ShellResult, what: str) -> Failed:
        kind = perftest.classify_failure(r.code, r.stdout, r.stderr)
        parts = [f"onnxruntime_perf_test ({what}) exited with status {r.code}"]
        if r.stderr.strip():
            parts.append("stderr: " + perftest.excerpt(r.stderr))
        if r.stdout.strip():
            parts.append("stdout: " + perftest.excerpt(r.stdout, 600))
        return Failed(self.stage, kind, "; ".join(parts))

    # -- the job ----------------------------------------------------------------------
    def run(self) -> DriverResult:
        error: Optional[JobError] = None
        lost = False
        try:
            self._run()
        except Failed as exc:
            error = JobError(exc.stage, exc.kind, exc.message)
        except ShellCancelled:
            self._kill()
            error = JobError(self.stage, "cancelled", "cancelled; the runner on the phone was killed")
        except ShellTimeout:
            self._kill()
            error = JobError(self.stage, "timeout", f"no result within the job's {self.job.timeout_s:.0f} s "
                                                    f"during {self.stage}; the runner on the phone was killed")
        except AdbUnavailable as exc:
            lost = True  # nothing reaches the phone any more, not even the cleanup
            error = JobError(self.stage, "adb_unavailable", f"during {self.stage}: {exc}")
        except DeviceLost as exc:
            lost = True
            error = JobError(self.stage, "device_disconnected",
                             f"lost the phone during {self.stage}: {exc} (check its USB cable or adb over TCP; "
                             f"`harness devices` shows its state)")
        except Exception as exc:  # a phone that refuses a push or a mkdir, an adb error: still a row
            error = JobError(self.stage, "driver_error", f"{type(exc).__name__}: {exc}")
        finally:
            if not lost:
                why = device.remove(self.phone, self.jobdir)
                if why:
                    self.details["cleanup_error"] = why
        if error is not None and not lost and "after" not in self.details.get("conditions", {}):
            try:
                self.details.setdefault("conditions", {})["after"] = device.read_conditions(self.phone)
            except Exception:
                pass
        return self._result(error)

    def _run(self) -> None:
        job, cfg = self.job, self.cfg
        for key, why in self.plan.not_applied.items():
            self.warnings.append(f"option {key} not applied: {why}")
        if self.plan.not_applied:
            self.details["options_not_applied"] = dict(self.plan.not_applied)
        models = [m for m in job.models if m.format == "onnx"]
        if not models:
            raise Failed("job", "unsupported_format", "the android driver runs ONNX models")
        if not job.probes:
            raise Failed("job", "bad_input", "the job carries no probe inputs")
        model = models[0]
        self.stage = "conditions"
        conditions = {"before": device.read_conditions(self.phone)}
        self.details["conditions"] = conditions
        if cfg.cooldown is not None:
            # The wait comes out of the job's time limit: leave the policy's
            # bound and room for pushes, placement and probes.
            room = self.deadline - time.monotonic() - job.measure.bound_s() - limits.ANDROID_AFTER_MEASURE_S
            wait = min(cfg.cooldown.wait_s, max(0.0, room))
            gate = device.cooldown_gate(self.phone, replace(cfg.cooldown, wait_s=wait), self.cancel)
            if wait < cfg.cooldown.wait_s:
                gate["wait_cut_to_s"] = round(wait, 1)
            self.details["cooldown"] = gate
            if self.cancel.is_set():
                raise ShellCancelled("cooldown")
            if gate.get("reached") is False:
                self.warnings.append(f"cooldown gate: {gate.get('end_c')} °C ({gate['sensor']}) still above "
                                     f"{gate['max_c']} °C after {gate['waited_s']} s; measured anyway")
            conditions["before"] = device.read_conditions(self.phone)
        if "cpu_affinity" in job.target.options:
            self.affinity = perftest.cores_mask(job.target.options["cpu_affinity"])
            mask = int(self.affinity, 16)
            self.details["affinity"] = {"pin": "cpu_affinity", "mask": self.affinity,
                                        "cpus": [i for i in range(mask.bit_length()) if mask >> i & 1]}
        else:
            self.affinity, self.details["affinity"] = device.affinity_mask(
                self.phone, cfg.pin, self.shared.affinity, self.shared.lock)
        _, _, self.online_cpus = device.cpu_layout(self.phone, self.shared.affinity, self.shared.lock)
        cpus = self.details["affinity"].get("cpus") if self.affinity else None
        extra, threads = releases.thread_plan(job.target.options.get("intra_op_threads"), cpus, self.online_cpus)
        self.flags = extra + self.flags
        if threads:
            self.details["threads"] = threads

        self.stage = "push"
        self.progress("push", 0, 0.0)
        files = device.runner_files(self.runner.perf_test, self.runner.libs)
        pushed = device.ensure_files(self.phone, self.runner_dir, files, self.runner.digest)
        remote_model = device.ensure_model(self.phone, f"{cfg.device_dir}/models", model.digest, Path(model.path))
        self.details["runner"]["pushed_now"] = pushed

        self.stage = "measure"
        case = device.make_case(self.phone, f"{self.jobdir}/measure", remote_model, job.probes[0])
        self._measure(case, f"{self.jobdir}/measure")

        self.stage = "memory"
        self._memory()

        self.stage = "placement"
        self.progress("placement", len(self.acc["samples"]), 0.0)
        self._placement(remote_model)

        self.stage = "probes"
        self.progress("probes", len(self.acc["samples"]), 0.0)
        self._outputs(remote_model, Path(model.path))
        conditions["after"] = device.read_conditions(self.phone)

    # -- measurement --------------------------------------------------------------------
    def _measure(self, case: str, folder: str) -> None:
        policy = self.job.measure
        rule = StopRule(policy)
        samples: list[float] = self.acc["samples"]
        measured_s, warm_all, est, session_s, reason = 0.0, True, 1.0, 0.0, None
        runs_log: list[dict] = []
        self.details["batches"] = runs_log
        t0 = time.monotonic()
        for b in range(limits.ANDROID_MAX_BATCHES):
            seconds = times = None
            if b == 0:
                seconds = batches.first_batch_seconds(policy)
            else:
                left = policy.bound_s() - (time.monotonic() - t0)
                times = batches.next_batch_runs(policy, len(samples), measured_s, est, left, session_s)
                if times <= 0:
                    reason = "max_s"
                    break
            result_file = f"{folder}/result-{b}.csv"
            argv = perftest.run_argv(self.ep, times=times, seconds=seconds, extra=self.flags, model=case,
                                     result_file=result_file)
            r = self._perf(folder, argv)
            if r.code != 0:
                raise self._runner_failed(r, "measurement")
            summary = perftest.parse_summary(r.stdout)
            try:
                csv = self.phone.read(result_file).decode("utf-8", "replace")
            except RemoteFileError:
                csv = ""
            batch = perftest.parse_result_file(csv, summary.average_ms)
            if not summary.complete or not batch:
                raise Failed("measure", "runner_output",
                             "onnxruntime_perf_test exited 0 but printed no summary or per-run results this "
                             "driver can read; stdout: " + (perftest.excerpt(r.stdout, 800) or "(empty)")
                             + ("; stderr: " + perftest.excerpt(r.stderr, 800) if r.stderr.strip() else ""))
            if b == 0:
                self.acc["load_ms"] = summary.session_s * 1e3 if summary.session_s is not None else None
                self.acc["first_run_ms"] = summary.first_run_ms
            cut, done = batches.warmup_cut(batch, summary.first_run_ms or 0.0, policy)
            warm_all = warm_all and done
            kept = batch[cut:]
            samples.extend(kept)
            measured_s += batches.kept_wall_s(batch, cut, summary.run_time_s)
            est = batches.estimate_ms(batch, summary.average_ms, summary.first_run_ms)
            session_s = summary.session_s or 0.0
            if summary.peak_bytes:
                self.acc["peak"] = max(self.acc.get("peak", 0), summary.peak_bytes)
            runs_log.append({"mode": "times" if times else "duration", "asked": times or seconds,
                             "runs": len(batch), "warmup_runs": cut, "session_s": summary.session_s,
                             "first_run_ms": summary.first_run_ms, "peak_bytes": summary.peak_bytes,
                             "cpu_pct": summary.cpu_pct, **releases.cpu_basis(summary.cpu_pct, self.online_cpus)})
            self.progress("measure", len(samples), time.monotonic() - t0)
            reason = rule.stop_reason(samples, measured_s)
            if reason is None and time.monotonic() - t0 >= policy.bound_s():
                reason = "max_s"
            if reason:
                break
        else:
            reason = "max_batches"
            self.warnings.append(f"stopped after {limits.ANDROID_MAX_BATCHES} perf_test batches")
        if policy.max_runs and len(samples) > policy.max_runs:
            del samples[policy.max_runs:]
        self.acc["validity"] = Validity(
            warmup_done=warm_all, min_runs_met=len(samples) >= policy.min_runs,
            min_time_met=measured_s >= policy.min_s, stop_reason=reason or "")
        self.details["samples_source"] = "perf_test result file (per-run session.Run time)"
        self.details["timer_resolution_ms"] = perftest.sample_resolution_ms(samples)
        self.details["measured_s"] = round(measured_s, 4)

    # -- memory -------------------------------------------------------------------------
    def _memory(self) -> None:
        peak = self.acc.get("peak")
        if not peak:
            return
        key = (self.phone.serial, self.runner.digest, self.ep, tuple(self.flags))
        with self.shared.lock:
            base = self.shared.baseline.get(key)
        why = ""
        if base is None:
            folder = f"{self.runner_dir}/baseline"
            if self.phone.size(f"{folder}/.complete") is None:
                import numpy as np

                device.make_case(self.phone, folder, f"{folder}/identity.onnx", {"x": np.zeros([1], np.float32)})
                self.phone.push_many([(device.identity_model(), f"{folder}/identity.onnx", 0o644),
                                      (b"baseline\n", f"{folder}/.complete", 0o644)])
            r = self._perf(folder, perftest.run_argv(self.ep, times=1, extra=self.flags, model=f"{folder}/model.onnx"))
            s = perftest.parse_summary(r.stdout)
            if r.code == 0 and s.peak_bytes:
                base = s.peak_bytes
                with self.shared.lock:
                    self.shared.baseline[key] = base
            else:
                why = perftest.excerpt(r.stderr or r.stdout, 300) or f"exit status {r.code}"
        self.acc["memory"] = footprint.memory_from(int(peak), base, why, self.ep)

    # -- placement ----------------------------------------------------------------------
    def _placement(self, remote_model: str) -> None:
        folder = f"{self.jobdir}/placement"
        case = device.make_case(self.phone, folder, remote_model, self.job.probes[0])
        argv = perftest.run_argv(self.ep, times=self.cfg.placement_runs, profile=f"{folder}/profile", verbose=True,
                                 extra=self.flags, model=case)
        r = self._perf(folder, argv)
        if r.code != 0:
            raise self._runner_failed(r, "placement pass")
        log = None
        pid = self.phone.read(f"{folder}/.pid").decode().strip()
        if pid.isdigit():
            # On Android ONNX Runtime logs to logcat (AndroidLogSink), not stderr.
            lines = self.phone.sh(f"logcat -d -v raw --pid={pid} | grep -E '{pl.LOG_GREP}'").stdout
            log = pl.parse_verbose_log(lines.splitlines())
        if log is None:
            self.warnings.append("no placement lines in logcat (if the phone filters verbose logs: "
                                 "`adb shell setprop log.tag.onnxruntime VERBOSE`); placement from the profile")
        profile = None
        names = sorted(n for n in self.phone.listdir(folder) if n.startswith("profile") and n.endswith(".json"))
        if names:
            size = self.phone.size(f"{folder}/{names[-1]}") or 0
            if size <= limits.ANDROID_PROFILE_MAX_BYTES:
                with tempfile.TemporaryDirectory(prefix="harness-android-") as tmp:
                    local = Path(tmp) / "profile.json"
                    self.phone.pull(f"{folder}/{names[-1]}", local)
                    profile = pl.parse_profile(pl.load_profile(str(local)))
            else:
                self.warnings.append(f"profile of {size} bytes not pulled (limit {limits.ANDROID_PROFILE_MAX_BYTES})")
        fully = None
        if self.ep not in CPU_EPS and releases.version_key(self.runner.version) < releases.STRICT_PROBE_SINCE:
            # session.disable_cpu_ep_fallback reaches perf_test only through -C (1.18+).
            gap = (f"fully_accelerated: the strict probe needs onnxruntime_perf_test "
                   f"{'.'.join(map(str, releases.STRICT_PROBE_SINCE))}+ (-C); this runner is {self.runner.version}")
            self.details.setdefault("not_measured", []).append(gap)
            self.warnings.append(f"not measured: {gap}")
        elif self.ep not in CPU_EPS:
            self.stage = "strict_probe"
            strict = releases.with_session_entry(self.flags, "session.disable_cpu_ep_fallback|1")
            s = self._perf(folder, perftest.run_argv(self.ep, times=1, extra=strict, model=case))
            if s.code == 0:
                fully = True
            elif perftest.fallback_disabled(s.stdout, s.stderr):
                fully = False
            else:
                self.details["strict_probe_error"] = perftest.excerpt(s.stderr or s.stdout, 600)
            self.stage = "placement"
        placement = pl.combine(self.ep, log, profile, fully)
        if placement is not None:
            self.acc["placement"] = placement
        self.details["placement_runs"] = self.cfg.placement_runs

    # -- outputs --------------------------------------------------------------------------
    def _outputs(self, remote_model: str, local_model: Path) -> None:
        runner = self.runner
        if runner.outputs_perf_test is None:
            self.details["outputs"] = outputs.NOTE_UNAVAILABLE
            return
        out_dir = f"{self.cfg.device_dir}/runners/{runner.outputs_digest[:16]}"
        files = device.runner_files(runner.outputs_perf_test, runner.outputs_libs)
        device.ensure_files(self.phone, out_dir, files, runner.outputs_digest)
        names = outputs.graph_outputs(local_model)
        got: list[dict] = []
        for i, probe in enumerate(self.job.probes):
            folder = f"{self.jobdir}/probe-{i}"
            case = device.make_case(self.phone, folder, remote_model, probe)
            device.check(self.phone.sh(f"mkdir -p {folder}/dump"), "mkdir dump")
            env = dict(outputs.NODE_IO_ENV, ORT_DEBUG_NODE_IO_OUTPUT_DIR=f"{folder}/dump")
            r = self._perf(folder, perftest.run_argv(self.ep, times=1, extra=self.flags, model=case),
                           program_dir=out_dir, env=env)
            if r.code != 0:
                self.details["outputs"] = f"probe {i} failed: " + str(self._runner_failed(r, "outputs"))
                return
            one = outputs.read_dump(self.phone, f"{folder}/dump", names)
            if isinstance(one, str):
                self.details["outputs"] = f"probe {i}: {one}"
                return
            got.append(one)
            self.progress("probes", len(self.acc["samples"]), float(i + 1))
        self.acc["outputs"] = tuple(got)
        self.details["outputs"] = f"from {runner.outputs_perf_test} (a node-IO dump build), one run per probe"

    # -- result -----------------------------------------------------------------------------
    def _result(self, error: Optional[JobError]) -> DriverResult:
        v: Validity = self.acc.get("validity") or Validity()
        reason = v.stop_reason
        if error is not None:
            reason = "cancelled" if error.kind == "cancelled" else "error"
        v = Validity(v.warmup_done, v.min_runs_met, v.min_time_met, reason, tuple(v.warnings) + tuple(self.warnings))
        return DriverResult(
            runtime_name="onnxruntime", runtime_version=self.runner.version, ep=self.ep,
            options=dict(self.plan.applied), load_ms=self.acc.get("load_ms"),
            first_run_ms=self.acc.get("first_run_ms"), samples_ms=tuple(self.acc["samples"]),
            memory=self.acc.get("memory"), placement=self.acc.get("placement"), validity=v,
            outputs=self.acc.get("outputs", ()), error=error, details=self.details,
        )
