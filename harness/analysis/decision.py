"""The quantisation-vs-distillation decision as explicit, ordered rules.

Each rule is a pure function of ``Facts`` (see ``facts``) returning whether it
fired (True / False / None = could not be judged), its recommendation, the
evidence it looked at and what would change its outcome. The decision is the
first rule that fires, in this order of precedence:

1. ``consistency``     quality.consistency_required          → distillation
2. ``platforms>=3``    three or more (platform, runtime) targets → distillation
3. ``memory-tight``    no full-precision candidate fits the lowest tier's
                       budget share, and the tolerance is loose  → quantisation
4. ``quality-strict``  a full-precision candidate fits, and the tolerance is
                       strict                                 → distillation
5. ``two-platforms``   two targets: the quantised candidate's measured
                       cross-platform divergence within tolerance
                       → quantisation per platform with cross-platform
                       validation; outside it → distillation; not yet measured
                       → quantisation per platform, validation pending
6. ``single-platform`` one target                             → quantisation

A decision is ``provisional`` while the evidence it rests on is missing — a
target the cohort declares has no result, or the winning rule's validation is
pending — and says what is missing and the command that measures it;
``final`` otherwise (``harness decide`` exits 3 and 0 for the two).

Requirements come first (a consistency requirement and the platform count
are properties of the product, not of a model); then the measured memory and
quality evidence, which can overrule the platform default (an INT8 model that
breaks the quality policy is no answer on one platform either).
"""

from __future__ import annotations

from typing import Callable, Optional

from harness.analysis.facts import Facts
from harness.analysis.metrics import describe_checks

LABELS = {
    "distillation": "Distillation to a shared portable model",
    "quantisation": "Quantisation",
    "quantisation_per_platform": "Quantisation per platform, with cross-platform validation",
}


def _rule(rid, title, condition, fired, recommendation, evidence, would_change, **extra) -> dict:
    return {"id": rid, "title": title, "condition": condition, "fired": fired,
            "recommendation": recommendation if fired else None, "evidence": evidence,
            "would_change": would_change, **extra}


def _targets(f: Facts) -> str:
    return f"{len(f.targets)} target(s): {', '.join(f.targets) or 'none'}"


def consistency(f: Facts) -> dict:
    on = f.consistency_required
    return _rule("consistency", "Real-time quality consistency required", "quality.consistency_required is true",
                 on, "distillation", [f"quality.consistency_required is {str(on).lower()}"],
                 ["quality.consistency_required: false would hand the decision to the next rules"] if on else
                 ["quality.consistency_required: true → distillation (only a shared model behaves identically "
                  "across runtimes)"])


def platforms3(f: Facts) -> dict:
    n = len(f.targets)
    return _rule("platforms>=3", "Three or more platforms", "three or more distinct (platform, runtime) targets",
                 n >= 3, "distillation", [f"the cohort declares {_targets(f)}"],
                 [f"removing {n - 2} target(s) would leave the two-platform rule to decide"] if n >= 3 else
                 [f"{3 - n} more (platform, runtime) target(s) → distillation (quantisation per platform would "
                  "need one validation cycle each)"])


def _memory_evidence(f: Facts) -> list[str]:
    m = f.memory
    out = []
    for c, v in (m.get("candidates") or {}).items():
        if v["fits"] is None:
            out.append(f"{c}: not measured on the lowest tier with a memory budget")
        else:
            out.append(f"{c}: peak {v['peak_mb']:.1f} MB on {v['profile']} vs budget share {v['limit_mb']:.1f} MB "
                       f"({100 * f.memory_fraction:.0f} % of the budget) → {'fits' if v['fits'] else 'does not fit'}")
    if not m.get("candidates"):
        out.append("no full-precision candidate in the run")
    return out


def _tolerance_evidence(f: Facts) -> list[str]:
    t = f.tolerance
    out = []
    for c, v in (t.get("candidates") or {}).items():
        if v["ok"] is None:
            out.append(f"{c}: no parity against the reference")
        else:
            out.append(f"{c}: {'within' if v['ok'] else 'outside'} the quality policy on {v['results']} result(s); "
                       f"worst: {describe_checks({'checks': v['checks']})}")
    if not t.get("candidates"):
        out.append("no quantised candidate in the run (see `harness quantize`)")
    return out


def _memory_change(f: Facts, to: str) -> str:
    fits = [(c, v) for c, v in (f.memory.get("candidates") or {}).items() if v["peak_mb"] is not None]
    if not fits:
        return "measure the full-precision candidates on the lowest tier"
    c, v = min(fits, key=lambda cv: cv[1]["peak_mb"])
    need = v["peak_mb"] / f.memory_fraction
    if to == "adequate":
        return f"a lowest-tier budget of at least {need:.0f} MB (for {c}'s {v['peak_mb']:.1f} MB) → memory adequate"
    return f"a lowest-tier budget below {need:.0f} MB, or every full-precision candidate over its share → memory tight"


def _tolerance_change(f: Facts, to: str) -> str:
    t = f.tolerance.get("candidates") or {}
    judged = [(c, v) for c, v in t.items() if v["ok"] is not None]
    if not judged:
        return "measure a quantised candidate's parity (`harness quantize`, then run it)"
    c, v = judged[0]
    if to == "strict":
        return f"a quality policy stricter than {c}'s measured {describe_checks({'checks': v['checks']})} → strict"
    return f"a quality policy loose enough for {c}'s {describe_checks({'checks': v['checks']})} → loose"


def memory_tight(f: Facts) -> dict:
    mem, tol = f.memory["status"], f.tolerance["status"]
    fired: Optional[bool] = True if (mem == "tight" and tol == "loose") else (
        False if mem == "adequate" or tol == "strict" else None)
    change = []
    if mem == "tight":
        change.append(_memory_change(f, "adequate"))
    else:
        change.append(_memory_change(f, "tight"))
    change.append(_tolerance_change(f, "strict" if tol == "loose" else "loose"))
    return _rule("memory-tight", "Memory budget tight, accuracy threshold flexible",
                 "no full-precision candidate fits the lowest tier's budget share, and a quantised candidate "
                 "stays within the quality policy", fired, "quantisation",
                 [f"memory: {mem}"] + _memory_evidence(f) + [f"tolerance: {tol}"] + _tolerance_evidence(f), change)


def quality_strict(f: Facts) -> dict:
    mem, tol = f.memory["status"], f.tolerance["status"]
    fired: Optional[bool] = True if (mem == "adequate" and tol == "strict") else (
        False if mem == "tight" or tol == "loose" else None)
    change = [_memory_change(f, "tight" if mem == "adequate" else "adequate"),
              _tolerance_change(f, "loose" if tol == "strict" else "strict")]
    return _rule("quality-strict", "Memory budget adequate, quality threshold strict",
                 "a full-precision candidate fits the lowest tier's budget share, and no quantised candidate "
                 "stays within the quality policy", fired, "distillation",
                 [f"memory: {mem}"] + _memory_evidence(f) + [f"tolerance: {tol}"] + _tolerance_evidence(f), change)


def two_platforms(f: Facts) -> dict:
    n = len(f.targets)
    ev = [f"the cohort declares {_targets(f)}"]
    measured = {c: d for c, d in f.divergence.items() if d.get("status") in ("within", "outside")}
    for c, d in f.divergence.items():
        w = d.get("worst_cross_target")
        if w:
            ev.append(f"{c}: cross-target divergence {d['status']} tolerance; worst pair {w['a']} vs {w['b']}: "
                      f"{describe_checks(w['tolerance'])}")
        else:
            ran = ", ".join(d.get("targets") or []) or "no target"
            ev.append(f"{c}: cross-target divergence not measured (it ran on {ran})")
    if not f.divergence:
        ev.append("no quantised candidate: the divergence between platforms cannot be measured")
    validation = "pending"
    rec = "quantisation_per_platform"
    if any(d["status"] == "within" for d in measured.values()):
        validation = "passed"
    elif measured:
        validation, rec = "failed", "distillation"
    # A third target is the platforms>=3 rule's to say; this rule names what flips it.
    change = [] if n == 2 else ["exactly two (platform, runtime) targets → this rule applies"]
    if n == 2:
        change.append("a quantised candidate's cross-platform divergence outside tolerance → distillation"
                      if rec != "distillation" else
                      "a quantised candidate within tolerance on both targets → quantisation per platform")
    return _rule("two-platforms", "Two platforms with tolerance for minor divergence",
                 "exactly two targets; the quantised candidate's cross-platform divergence within the quality policy",
                 n == 2, rec, ev, change, validation=validation if n == 2 else None)


def single_platform(f: Facts) -> dict:
    n = len(f.targets)
    return _rule("single-platform", "Single target platform", "exactly one (platform, runtime) target",
                 n == 1, "quantisation", [f"the cohort declares {_targets(f)}"],
                 ["a second target → quantisation per platform with cross-platform validation"] if n == 1 else
                 ["exactly one target → quantisation"])


RULES: tuple[Callable[[Facts], dict], ...] = (consistency, platforms3, memory_tight, quality_strict, two_platforms,
                                              single_platform)


def missing_evidence(f: Facts, winner: Optional[dict]) -> list[dict]:
    """What the recommendation still waits for, each with the command that
    measures it: a declared target without a result, a pending validation."""
    out = []
    for target, u in f.unmeasured.items():
        out.append({"what": f"{target} not measured", "cause": u["cause"], "why": u["why"], "command": f.command})
    if winner is not None and winner.get("validation") == "pending":
        ran = {c: ", ".join(d.get("targets") or []) or "no target" for c, d in f.divergence.items()}
        why = "; ".join(f"{c} ran on {t}" for c, t in ran.items()) or "no quantised candidate in the run"
        out.append({"what": "cross-platform validation pending", "cause": "no quantised candidate has run on "
                    "both targets", "why": why, "command": f.command})
    return out


def decide(f: Facts) -> dict:
    """Evaluate every rule; the first that fires decides. The decision is
    `provisional` while evidence it rests on is missing (see
    missing_evidence), `final` otherwise."""
    rules = [r(f) for r in RULES]
    winner = next((r for r in rules if r["fired"]), None)
    missing = missing_evidence(f, winner)
    out = {"recommendation": winner["recommendation"] if winner else None,
           "label": LABELS.get(winner["recommendation"]) if winner else None,
           "rule": winner["id"] if winner else None, "rules": rules,
           "status": ("provisional" if missing else "final") if winner else None, "missing": missing,
           "targets": list(f.targets), "target_count_rule": "distinct (platform, runtime) pairs the cohort declares",
           "measured_targets": [t for t in f.targets if t not in f.unmeasured],
           "memory": dict(f.memory), "tolerance": dict(f.tolerance), "caveats": [], "would_change": []}
    if winner is None:
        out["caveats"].append("no rule fired: the cohort declares no target")
        return out
    if winner.get("validation") == "pending":
        out["caveats"].append("cross-platform validation pending: run the quantised candidate on both targets")
    for r in rules:
        if r is winner:
            out["would_change"].extend(r["would_change"])
            break
        if r["fired"] is None:
            out["caveats"].append(f"rule {r['id']} could not be judged: " + "; ".join(
                e for e in r["evidence"] if e.startswith(("memory:", "tolerance:"))))
        out["would_change"].extend(r["would_change"][:1])
    out["would_change"] = list(dict.fromkeys(out["would_change"]))
    return out
