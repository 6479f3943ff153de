"""The three validation points of the distillation protocol, per candidate,
and which measured candidate best carries the recommendation.

1. ``teacher``      — does it match the reference candidate within the quality
                      policy, on every target it ran on? (parity)
2. ``ground_truth`` — does it do the task? (accuracy against the eval labels,
                      on the controller and on each target)
3. ``runtime``      — does the deployed model compute what its ONNX file says?
                      (fidelity: each target against the controller's CPU run)
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

from harness.analysis.metrics import describe_checks


def _worst(results: list[dict], pick) -> dict:
    judged = [(r, pick(r)) for r in results]
    judged = [(r, t) for r, t in judged if t]
    if not judged:
        return {"ok": None, "results": 0, "worst": None}
    bad = [(r, t) for r, t in judged if not t["ok"]]
    r, t = bad[0] if bad else judged[-1]
    return {"ok": not bad, "results": len(judged), "worst": f"{r['job']}: {describe_checks(t)}",
            "failing": [r["job"] for r, _ in bad]}


def candidate_validation(cand: str, results: list[dict], reference: Optional[str],
                         ref_accuracy: Mapping[str, Optional[float]]) -> dict:
    ok = [r for r in results if r["candidate"] == cand and not r.get("error") and r.get("parity")]
    teacher = ({"ok": True, "results": len(ok), "worst": None, "note": "this is the reference"}
               if cand == reference else _worst(ok, lambda r: r["parity"].get("tolerance")))
    accs = {r["job"]: r["parity"]["accuracy"] for r in ok if r["parity"].get("accuracy") is not None}
    gt = {"controller": ref_accuracy.get(cand), "reference_controller": ref_accuracy.get(reference) if reference else None,
          "by_result": accs, "min": min(accs.values()) if accs else None, "max": max(accs.values()) if accs else None}
    runtime = _worst(ok, lambda r: (r["parity"].get("fidelity") or {}).get("tolerance"))
    fid = [r["parity"]["fidelity"] for r in ok if r["parity"].get("fidelity")]
    runtime["max_abs"] = max((f["max_abs"] for f in fid if f.get("max_abs") is not None), default=None)
    return {"teacher": teacher, "ground_truth": gt, "runtime": runtime}


def all_validation(results: list[dict], reference: Optional[str], ref_accuracy: Mapping) -> dict:
    cands = list(dict.fromkeys(r["candidate"] for r in results))
    return {c: candidate_validation(c, results, reference, ref_accuracy) for c in cands}


def suggest(recommendation: Optional[str], facts, baseline: Mapping, validation: Mapping) -> dict:
    """The measured candidate that carries the recommendation, if one does."""
    if recommendation is None:
        return {"candidate": None, "reason": "no recommendation"}
    pool = list(facts.distilled if recommendation == "distillation" else facts.quantised)
    kind = "distilled" if recommendation == "distillation" else "quantised"
    if not pool:
        return {"candidate": None, "reason": f"no {kind} candidate was measured; "
                + ("train a student to the capacity target below" if kind == "distilled"
                   else "create one with `harness quantize`")}
    base = baseline.get("candidates") or {}

    def score(c):
        b = base.get(c) or {}
        med = (b.get("median_device") or {}).get("p90_ms")
        v = (validation.get(c) or {}).get("teacher") or {}
        return (b.get("passes") is False, v.get("ok") is False, v.get("ok") is None,
                med if med is not None else math.inf, c)

    best = min(pool, key=score)
    b, v = base.get(best) or {}, (validation.get(best) or {}).get("teacher") or {}
    problems = []
    if b.get("passes") is False:
        problems.append("fails a budget")
    if v.get("ok") is False:
        problems.append("is outside the quality policy against the reference")
    if not problems:
        reason = f"{best} passes the budgets and the quality policy" if b.get("passes") and v.get("ok") else \
            f"{best} is the best measured {kind} candidate (some checks could not be judged)"
        return {"candidate": best, "ok": True, "reason": reason}
    return {"candidate": best, "ok": False,
            "reason": f"the best measured {kind} candidate, {best}, " + " and ".join(problems)
            + (": size a new student to the capacity target" if kind == "distilled" else "")}
