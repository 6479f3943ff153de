"""The student capacity target: how many parameters a distilled student may
have on the cohort's lowest tier.

The distillation procedure sizes the student before training against the
lowest-tier device's memory budget, targeting 60–70 % of it so activations
and the runtime keep their headroom. Here the headroom is not guessed: it is
measured. For every successful result on the lowest tier's smallest-budget
profile (else on the lowest tier, else anywhere — and then said so),

    overhead = peak memory − weight bytes of that candidate

is what the runtime, its arena, the activations and the process itself
needed beyond the weights. The largest such overhead is used (conservative:
a bigger model's activations bound a smaller one's). Then, for a fraction f
of the budget B,

    weight room = f × B − overhead
    parameters  = weight room / 4 bytes (fp32)  or  / 2 bytes (fp16)
"""

from __future__ import annotations

from typing import Mapping, Optional

MiB = 1024 * 1024
FRACTIONS = (0.60, 0.70)  # the 60–70 % headroom rule


def _weights(cand: str, inventories: Mapping[str, dict], results: list[dict]) -> Optional[int]:
    inv = (inventories.get(cand) or {}).get("onnx") or {}
    if inv.get("weight_bytes"):
        return int(inv["weight_bytes"])
    for r in results:
        if r["candidate"] == cand and (r.get("model") or {}).get("size_bytes"):
            return int(r["model"]["size_bytes"])  # the file's size: weights plus a little graph
    return None


def overhead_samples(results: list[dict], profiles: list[str], inventories: Mapping[str, dict]) -> list[dict]:
    out = []
    for r in results:
        if r.get("error") or r["device"].get("profile") not in profiles:
            continue
        peak = (r.get("memory") or {}).get("peak_bytes")
        w = _weights(r["candidate"], inventories, results)
        if not peak or w is None:
            continue
        out.append({"candidate": r["candidate"], "profile": r["device"].get("profile"), "job": r["job"],
                    "peak_bytes": int(peak), "weight_bytes": w, "overhead_bytes": int(peak) - w})
    return out


def student_capacity(results: list[dict], baseline: Mapping, inventories: Mapping[str, dict],
                     memory_fraction: float) -> dict:
    """The capacity target (see module doc); ``status`` says whether it could
    be computed and ``explanation`` walks through the arithmetic."""
    low = None
    for b in (baseline.get("candidates") or {}).values():
        low = b.get("lowest_tier")
        if low:
            break
    if not low or not low.get("memory_budget_mb"):
        return {"status": "no_budget", "explanation": ["the lowest tier declares no memory_budget_mb, so there is "
                                                       "no budget to size a student against"]}
    budget_mb = float(low["memory_budget_mb"])
    prof = low["memory_budget_profile"]
    scope = f"{prof} (lowest tier, smallest budget)"
    samples = overhead_samples(results, [prof], inventories)
    if not samples:
        samples = overhead_samples(results, low["profiles"], inventories)
        scope = f"the {low['tier']} tier ({', '.join(low['profiles'])})"
    if not samples:
        everyone = sorted({r["device"].get("profile") for r in results})
        samples = overhead_samples(results, everyone, inventories)
        where = sorted({s["profile"] for s in samples})
        scope = f"{', '.join(where)} — not the lowest tier, which has no measurement"
    if not samples:
        return {"status": "unmeasured", "budget_mb": budget_mb, "profile": prof,
                "explanation": [f"no successful result with a peak memory figure, so the overhead on {prof} "
                                "is unknown; run at least one candidate there"]}
    worst = max(samples, key=lambda s: s["overhead_bytes"])
    overhead = max(worst["overhead_bytes"], 0)
    fractions = sorted(set(FRACTIONS) | {round(float(memory_fraction), 4)})
    budget = budget_mb * MiB
    targets = []
    for f in fractions:
        room = f * budget - overhead
        targets.append({"fraction": f, "budget_share_mb": f * budget_mb, "weight_room_mb": room / MiB,
                        "params_fp32": int(room // 4) if room > 0 else 0,
                        "params_fp16": int(room // 2) if room > 0 else 0})
    lo, hi = targets[0], targets[-1]
    expl = [
        f"lowest-tier budget: {budget_mb:g} MB on {prof}",
        f"measured overhead: {overhead / MiB:.1f} MB = peak {worst['peak_bytes'] / MiB:.1f} MB − weights "
        f"{worst['weight_bytes'] / MiB:.2f} MB of {worst['candidate']} on {worst['profile']} "
        f"(largest of {len(samples)} result(s) on {scope})",
    ]
    for t in (lo, hi):
        expl.append(f"{100 * t['fraction']:.0f} % of the budget = {t['budget_share_mb']:.1f} MB; minus the overhead "
                    f"leaves {t['weight_room_mb']:.1f} MB for weights = {t['params_fp32']:,} parameters at fp32 "
                    f"(4 B each) or {t['params_fp16']:,} at fp16 (2 B each)")
    if hi["params_fp32"] <= 0:
        expl.append("the runtime overhead alone exceeds the budget share: no student fits until the overhead "
                    "shrinks (a lighter runtime or build) or the budget grows")
    return {"status": "ok" if hi["params_fp32"] > 0 else "no_room", "budget_mb": budget_mb, "profile": prof,
            "overhead_bytes": overhead, "overhead_from": worst, "samples": samples, "targets": targets,
            "params_fp32": [lo["params_fp32"], hi["params_fp32"]],
            "params_fp16": [lo["params_fp16"], hi["params_fp16"]], "explanation": expl}


def fits(params: Optional[int], capacity: Mapping, precision: str = "fp32") -> Optional[bool]:
    """Whether a model of ``params`` parameters is within the upper target."""
    rng = capacity.get(f"params_{'fp16' if precision == 'fp16' else 'fp32'}")
    if params is None or not rng:
        return None
    return params <= rng[1]
