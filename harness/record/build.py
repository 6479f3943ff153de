"""Building the result record (docs/record.md) from what an agent sent.

Statistics are recomputed here from the raw samples; validity combines the
driver's own flags with the trust checks run on those samples (only those
make a result unstable, and over several sessions only what moves the
headline: kernel.measure.job_trust; the distribution's spread is reported
in `timing.spread`).
"""

from __future__ import annotations

from typing import Any, Optional

from harness.analysis.environment import fingerprint
from harness.kernel.measure import job_trust, stats, sustained, trust


def build_record(
    *,
    job_key: str,
    candidate: str,
    technique: str,
    profile: Any,  # DeviceProfile
    target: Any,  # Target
    model: Optional[dict],
    device: Optional[dict],  # {id, agent, platform, facts}
    result: Optional[dict],  # harness.kernel.wire.result_from_pb output
    attempts: int = 1,
    error: Optional[dict] = None,
    policy: Any = None,  # MeasurePolicy the job ran under
    sustained_s: Optional[float] = None,
) -> dict:
    dev = device or {}
    record: dict = {
        "job": job_key,
        "device": {
            "id": dev.get("id"),
            "agent": dev.get("agent"),
            "profile": profile.id,
            "platform": dev.get("platform") or profile.platform,
            "tier": profile.tier,
            "share": profile.share,
            "memory_budget_mb": profile.memory_budget_mb,
            "facts": _facts(dev.get("facts") or {}),
        },
        "candidate": candidate,
        "technique": technique,
        "model": model,
        "runtime": {"name": target.runtime, "version": target.version or None, "ep": target.ep,
                    "options": target.str_options()},
        "target": target.key(),
        "timing": None,
        "memory": None,
        "placement": None,
        "parity": None,
        "validity": None,
        "error": error,
        "attempts": attempts,
        "measure": ({**policy.__dict__, "sustained_s": sustained_s or None} if policy is not None else None),
        "ran": None,
        "details": {},
    }
    if result is None:
        return record
    rt = result.get("runtime") or {}
    if rt.get("name"):
        record["runtime"] = {"name": rt["name"], "version": rt.get("version") or None,
                             "ep": rt.get("ep") or target.ep, "options": rt.get("options") or {}}
        if rt.get("build"):
            # The host build that ran (onnxruntime-openvino ...): builds of one version differ in EPs.
            record["runtime"]["build"] = rt["build"]
    samples = list(result.get("samples_ms") or [])
    timing = {"load_ms": result.get("load_ms"), "first_run_ms": result.get("first_run_ms"),
              "samples_ms": samples}
    v = result.get("validity") or {}
    details = result.get("details") or {}
    # Statistics over the job's sessions (hierarchical when there are several;
    # kernel.measure.sessions) and only what breaks the trust in the headline,
    # which makes a result unstable; a session's drift or disturbance that
    # does not move the headline is a note (kernel.measure.job_trust).
    figures, problems, notes = job_trust.describe(samples, result.get("sessions") or [],
                                                  target_ci=policy.target_ci if policy is not None else None,
                                                  stop_reason=v.get("stop_reason"),
                                                  tick=details.get("timer_resolution_ms"))
    timing.update(figures)
    # How wide the distribution is: reported, never a flag (trust.py).
    timing["spread"] = trust.spread(samples) if samples else None
    record["timing"] = timing
    record["memory"] = result.get("memory")
    record["placement"] = result.get("placement")
    warnings = list(v.get("warnings") or [])
    warnings.extend(problems)
    warnings.extend(notes)
    if samples:
        warnings.extend(stats.timer_warnings(samples, details.get("timer_resolution_ms")))
        if timing.get("p99_ms") is None:
            warnings.append(f"p99 not reported: {len(samples)} samples, its 95% CI needs at least "
                            f"{stats.min_samples_for(0.99)}")
    cond = details.get("conditions") or {}
    record["validity"] = {
        "warmup_done": bool(v.get("warmup_done")),
        "min_runs_met": bool(v.get("min_runs_met")),
        "min_time_met": bool(v.get("min_time_met")),
        "stable": not problems,
        # Why not (drift, a disturbance, the target interval not reached, too
        # few samples); empty when stable.
        "instability": problems,
        # False where the driver says the device cannot stand for real hardware
        # (a software WebGPU adapter, a simulator): budgets do not judge it.
        "representative": not details.get("not_representative"),
        "stop_reason": v.get("stop_reason") or None,
        "thermal": {"before": cond.get("before", {}).get("thermal_c") or cond.get("before", {}).get("thermal"),
                    "after": cond.get("after", {}).get("thermal_c") or cond.get("after", {}).get("thermal")}
        if cond else None,
        "warnings": warnings,
    }
    record["details"] = details
    if result.get("started_unix"):
        record["ran"] = {"started_unix": result["started_unix"], "finished_unix": result.get("finished_unix")}
    if result.get("error"):
        record["error"] = result["error"]
    record["environment"] = fingerprint(record)
    if sustained_s and samples:
        # Load over time is one continuous process: the first session's.
        first = (result.get("sessions") or [{}])[0].get("n") or len(samples)
        record["sustained"] = sustained.analyse(samples[:first])
    return record


_NUMERIC_FACTS = ("ram_mb", "cpu_count", "cpu_cores", "sdk")


def _facts(facts: dict) -> dict:
    out: dict = {}
    for k, v in facts.items():
        if k in _NUMERIC_FACTS:
            try:
                out[k] = int(v)
                continue
            except (TypeError, ValueError):
                pass
        out[k] = v
    return out
