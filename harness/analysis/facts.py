"""What the decision rules look at, gathered from the cohort and the run.

Definitions the rules depend on:

* **Targets** — the distinct (platform, runtime) pairs the cohort declares
  (every profile's platform with each of its targets' runtimes), measured or
  not: the cohort is what must be shipped to. Two EPs of one runtime on one
  platform (NNAPI and XNNPACK on Android) load the same artefact through the
  same quantisation tooling, so they are one target; Core ML and ONNX Runtime
  on iOS are two, each with its own quantisation scheme and validation cycle.
* **Full-precision candidate** — not ``technique: quantisation`` and stored at
  fp32 (or fp64): the teacher and any distilled student.
* **Quantised candidate** — ``technique: quantisation``, or a model whose
  weights are int8 / int4 / fp16.
* **Memory** — ``tight`` when full-precision candidates were measured on the
  lowest tier and none fits its budget share (peak ≤ memory_fraction ×
  budget); ``adequate`` when one fits; ``unknown`` otherwise.
* **Tolerance** — judged by measurement, not by the policy's numbers alone:
  ``loose`` when some quantised candidate stays within the cohort's quality
  policy against the reference on every target it ran on (quantisation's
  error is acceptable to this use case); ``strict`` when quantised
  candidates were measured and none does; ``unknown`` with no quantised
  candidate measured.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Mapping, Optional

QUANT_PRECISIONS = ("int8", "int4", "fp16")
FULL_PRECISIONS = ("fp32", "fp64")


@dataclass(frozen=True)
class Facts:
    targets: tuple[str, ...]  # "platform/runtime"
    consistency_required: bool = False
    memory: Mapping = field(default_factory=lambda: {"status": "unknown", "candidates": {}})
    tolerance: Mapping = field(default_factory=lambda: {"status": "unknown", "candidates": {}})
    divergence: Mapping = field(default_factory=dict)  # quantised candidate -> divergence matrix summary
    memory_fraction: float = 0.65
    quantised: tuple[str, ...] = ()
    distilled: tuple[str, ...] = ()
    full_precision: tuple[str, ...] = ()
    # Declared targets with no successful result -> why (the gaps' reasons).
    unmeasured: Mapping = field(default_factory=dict)
    # The command that measures what is missing (the run's own, again).
    command: str = ""


def cohort_targets(config: Mapping, results: list[dict]) -> tuple[str, ...]:
    pairs = set()
    for p in config.get("profiles") or []:
        for t in p.get("targets") or []:
            pairs.add(f"{p.get('platform')}/{t.get('runtime')}")
    if not pairs:  # an old run without profiles in its config: what ran
        pairs = {f"{r['device'].get('platform')}/{(r.get('runtime') or {}).get('name')}" for r in results}
    return tuple(sorted(pairs))


def _target_of(r: Mapping) -> str:
    return f"{r['device'].get('platform')}/{(r.get('runtime') or {}).get('name')}"


def unmeasured_targets(targets: tuple[str, ...], results: list[dict]) -> dict[str, dict]:
    """Declared targets without one successful result, each with why: the
    reasons its rows give (a gap names the driver status and its fix) in
    full and in a few words."""
    ok = {_target_of(r) for r in results if not r.get("error") and (r.get("timing") or {}).get("n")}
    out = {}
    for t in targets:
        if t in ok:
            continue
        why: dict[str, list[str]] = {}
        causes: list[str] = []
        for r in results:
            if _target_of(r) == t and r.get("error"):
                e = r["error"]
                why.setdefault(str(e.get("message") or e.get("kind")), []).append(str(r["device"].get("profile")))
                causes.append(str(e.get("cause") or str(e.get("kind") or "failed").replace("_", " ")))
        out[t] = {"why": "; ".join(f"{', '.join(dict.fromkeys(p))}: {msg}" for msg, p in why.items())
                  or "no result for it in this run",
                  "cause": ", ".join(dict.fromkeys(causes)) or "no result"}
    return out


def measure_command(config: Mapping) -> str:
    """The run's own command line: what measures its missing targets once
    their causes are fixed."""
    parts = ["harness", "run", "--cohort", str(config.get("cohort_path") or (config.get("cohort") or {}).get("name"))]
    if config.get("candidates_file"):
        parts += ["--candidates", str(config["candidates_file"])]
    for m in config.get("models") or []:
        parts += ["--model", str(m)]
    for flag, key in (("--shape", "shapes"), ("--dim", "dims")):
        for v in config.get(key) or []:
            parts += [flag, str(v)]
    if config.get("eval_flag"):
        parts += ["--eval", str(config["eval_flag"])]
    if config.get("lab"):
        parts += ["--lab", str(config["lab"])]
    return shlex.join(parts)


def _classes(config: Mapping, results: list[dict], inventories: Mapping) -> dict[str, tuple[str, str]]:
    """candidate -> (technique, precision)."""
    out = {}
    cands = config.get("candidates") or {}
    for r in results:
        c = r["candidate"]
        prec = (r.get("model") or {}).get("precision")
        if c not in out or (out[c][1] == "unknown" and prec):
            out[c] = (r.get("technique") or (cands.get(c) or {}).get("technique") or "baseline", prec or "unknown")
    for c, spec in cands.items():
        inv = ((inventories.get(c) or {}).get("onnx") or {})
        if c not in out or out[c][1] == "unknown":
            out[c] = (spec.get("technique") or "baseline", inv.get("precision") or "unknown")
    return out


def memory_fact(baseline: Mapping, full: tuple[str, ...], fraction: float) -> dict:
    per = {}
    for c in full:
        chk = (((baseline.get("candidates") or {}).get(c) or {}).get("budgets") or {}).get("memory_lowest_tier") or {}
        st = chk.get("status")
        per[c] = {"fits": True if st == "pass" else (False if st == "fail" else None), "profile": chk.get("profile"),
                  "peak_mb": chk.get("peak_mb"), "limit_mb": chk.get("limit_mb")}
    if any(v["fits"] for v in per.values()):
        status = "adequate"
    elif per and all(v["fits"] is False for v in per.values()):
        status = "tight"
    else:
        status = "unknown"
    return {"status": status, "candidates": per, "fraction": fraction}


def tolerance_fact(results: list[dict], quantised: tuple[str, ...]) -> dict:
    per = {}
    for c in quantised:
        tols = [(r, (r.get("parity") or {}).get("tolerance")) for r in results
                if r["candidate"] == c and not r.get("error")]
        judged = [(r, t) for r, t in tols if t]
        if not judged:
            per[c] = {"ok": None, "results": 0}
            continue
        bad = [(r, t) for r, t in judged if not t["ok"]]
        worst_r, worst_t = bad[0] if bad else max(judged, key=lambda rt: _margin(rt[1]))
        per[c] = {"ok": not bad, "results": len(judged), "worst_job": worst_r["job"], "checks": worst_t["checks"]}
    if any(v["ok"] for v in per.values()):
        status = "loose"
    elif any(v["ok"] is False for v in per.values()):
        status = "strict"
    else:
        status = "unknown"
    return {"status": status, "candidates": per}


def _margin(t: Mapping) -> float:
    """How close a passing comparison came to its limit (1 = at the limit)."""
    worst = 0.0
    for c in t["checks"]:
        v, lim = c.get("value"), c.get("limit")
        if v is None or lim in (None, 0):
            continue
        worst = max(worst, (v / lim) if c["check"] != "snr_db" else (lim / v if v > 0 else 1e9))
    return worst


def gather(config: Mapping, results: list[dict], baseline: Mapping, divergence: Mapping,
           inventories: Optional[Mapping] = None) -> Facts:
    inventories = inventories or {}
    classes = _classes(config, results, inventories)
    quantised = tuple(c for c, (tech, prec) in classes.items() if tech == "quantisation" or prec in QUANT_PRECISIONS)
    full = tuple(c for c, (tech, prec) in classes.items() if c not in quantised and prec in FULL_PRECISIONS)
    distilled = tuple(c for c, (tech, _) in classes.items() if tech == "distillation")
    cohort = config.get("cohort") or {}
    fraction = float((cohort.get("budgets") or {}).get("memory_fraction") or 0.65)
    targets = cohort_targets(config, results)
    return Facts(
        targets=targets, unmeasured=unmeasured_targets(targets, results), command=measure_command(config),
        consistency_required=bool((cohort.get("quality") or {}).get("consistency_required")),
        memory=memory_fact(baseline, full, fraction),
        tolerance=tolerance_fact(results, quantised),
        divergence={c: divergence.get(c) or {"status": "not_measured"} for c in quantised},
        memory_fraction=fraction, quantised=quantised, distilled=distilled, full_precision=full)
