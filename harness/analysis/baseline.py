"""The cohort baseline of each candidate: what the cohort's devices measured,
where the population's median device sits, how the lowest tier fares, and
whether the budgets hold.

Rules, stated once:

* **Device row** — one per device profile. A profile measured on several
  targets is judged on its fastest successful one (the target a team would
  ship there); every target stays listed under ``targets``. Status: ``ok``
  (a target succeeded), ``failed`` (targets ran and all failed), ``not_run``
  (planning gaps only: no device, no runtime, no artefact),
  ``not_representative`` (it ran only where the driver says the device cannot
  stand for real hardware: a software WebGPU adapter, a simulator; shown,
  never judged, and left out like ``not_run``).
* **Median device** — the population-weighted median of the device rows
  ordered by p90: rows sorted by p90 (failed rows last, as if infinitely
  slow: a device where the model does not run is part of the population),
  weights = profile ``share``; the median device is the first whose
  cumulative weight reaches half the total. Profiles with share 0 carry no
  weight unless every measured profile has share 0: then all count equally
  (the plain lower median). ``not_run`` rows are left out and counted apart.
* **Lowest tier** — the lowest ``tier`` (low < mid < high) among the cohort's
  profiles, measured or not. Its latency check takes the worst p90 among its
  profiles; its memory budget is the smallest ``memory_budget_mb`` among them.
* **Budgets** — latency: p90 ≤ ``budgets.latency_p90_ms`` on the median
  device and on every lowest-tier profile; memory: peak ≤ ``memory_fraction``
  × ``memory_budget_mb`` on every measured profile that declares a budget.
  A check without a budget is ``no_budget``; one without a measurement is
  ``unmeasured`` (shown, never counted as a pass or a failure).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

MiB = 1024 * 1024
TIERS = {"low": 0, "mid": 1, "high": 2}


def runtime_label(r: dict) -> str:
    """`onnxruntime 1.32.0 cpu`, or the host build that ran: `onnxruntime-openvino 1.24.1 openvino`."""
    rt = r.get("runtime") or {}
    return f"{rt.get('build') or rt.get('name')} {rt.get('version') or ''} {rt.get('ep')}".replace("  ", " ")


def row_status(r: dict) -> str:
    e = r.get("error")
    if not e:
        return "ok"
    if e.get("stage") == "plan" or e.get("kind") == "not_run":
        return "not_run"
    return "failed"


def _peak_mb(r: dict) -> Optional[float]:
    m = r.get("memory") or {}
    return m["peak_bytes"] / MiB if m.get("peak_bytes") else None


def device_rows(results: list[dict], profiles: list[dict], fraction: float) -> list[dict]:
    by_prof: dict[str, list[dict]] = {}
    for r in results:
        by_prof.setdefault(r["device"].get("profile"), []).append(r)
    rows = []
    for prof in profiles:
        every = by_prof.get(prof["id"], [])
        # Results a driver marked as not standing for real hardware (software
        # WebGPU, simulators) are shown but never judged against budgets.
        rs = [r for r in every if (r.get("validity") or {}).get("representative", True)]
        skipped = [r for r in every if r not in rs]
        targets = [{"job": r["job"], "target": r.get("target"), "runtime": runtime_label(r), "status": row_status(r),
                    "p90_ms": (r.get("timing") or {}).get("p90_ms"), "peak_mb": _peak_mb(r),
                    "error": (r.get("error") or {}).get("kind")} for r in rs]
        ok = [r for r in rs if row_status(r) == "ok" and r.get("timing")]
        budget = prof.get("memory_budget_mb")
        row = {"profile": prof["id"], "platform": prof.get("platform"), "tier": prof.get("tier", "mid"),
               "share": float(prof.get("share") or 0.0), "memory_budget_mb": budget,
               "memory_limit_mb": budget * fraction if budget else None, "device_id": None, "job": None,
               "runtime": None, "p50_ms": None, "p90_ms": None, "p90_ci_ms": None, "peak_mb": None,
               "memory_ok": None, "targets": targets}
        if ok:
            # Too few samples for a p90 (see measure.stats) sorts last.
            best = min(ok, key=lambda r: _or_inf(r["timing"].get("p90_ms")))
            t = best["timing"]
            row.update(status="ok", device_id=best["device"].get("id"), job=best["job"], runtime=runtime_label(best),
                       p50_ms=t.get("p50_ms"), p90_ms=t.get("p90_ms"), p90_ci_ms=t.get("p90_ci_ms"),
                       peak_mb=_peak_mb(best))
            if row["peak_mb"] is not None and row["memory_limit_mb"]:
                row["memory_ok"] = row["peak_mb"] <= row["memory_limit_mb"]
        elif any(row_status(r) == "failed" for r in rs):
            row["status"] = "failed"
        elif skipped:
            row["status"] = "not_representative"
            row["reason"] = (skipped[0].get("details") or {}).get("not_representative") or "not representative"
        else:
            row["status"] = "not_run"
        rows.append(row)
    return rows


def _or_inf(v: Optional[float]) -> float:
    return math.inf if v is None else v


def weighted_median(rows: list[dict]) -> Optional[dict]:
    """The population-weighted median device row (see module doc)."""
    pop = [r for r in rows if r["status"] == "failed" or (r["status"] == "ok" and r["p90_ms"] is not None)]
    if not pop:
        return None
    total = sum(r["share"] for r in pop)
    equal = total <= 0
    weights = [1.0 if equal else r["share"] for r in pop]
    total = sum(weights)
    order = sorted(range(len(pop)), key=lambda i: (pop[i]["p90_ms"] if pop[i]["status"] == "ok" else math.inf,
                                                   pop[i]["profile"]))
    cum = 0.0
    for i in order:
        cum += weights[i]
        if cum >= total / 2 - 1e-12:
            return {"profile": pop[i]["profile"], "status": pop[i]["status"], "p90_ms": pop[i]["p90_ms"],
                    "cumulative_weight": cum / total, "weighting": "equal (every profile's share is 0)"
                    if equal else "profile share", "population": len(pop)}
    return None


def lowest_tier(rows: list[dict]) -> Optional[dict]:
    if not rows:
        return None
    tier = min((r["tier"] for r in rows), key=lambda t: TIERS.get(t, 1))
    members = [r for r in rows if r["tier"] == tier]
    budgets = [r for r in members if r["memory_budget_mb"]]
    smallest = min(budgets, key=lambda r: r["memory_budget_mb"]) if budgets else None
    measured = [r for r in members if r["status"] == "ok" and r["p90_ms"] is not None]
    worst = max(measured, key=lambda r: r["p90_ms"]) if measured else None
    return {"tier": tier, "profiles": [r["profile"] for r in members],
            "failed": [r["profile"] for r in members if r["status"] == "failed"],
            "not_run": [r["profile"] for r in members if r["status"] == "not_run"],
            "worst_profile": worst["profile"] if worst else None, "worst_p90_ms": worst["p90_ms"] if worst else None,
            "memory_budget_mb": smallest["memory_budget_mb"] if smallest else None,
            "memory_budget_profile": smallest["profile"] if smallest else None}


def per_platform(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        p = out.setdefault(r["platform"], {"profiles": [], "share": 0.0, "ok": 0, "failed": 0, "not_run": 0,
                                           "not_representative": 0, "p90_ms": []})
        p["profiles"].append(r["profile"])
        p["share"] += r["share"]
        p[r["status"]] += 1
        if r["status"] == "ok" and r["p90_ms"] is not None:
            p["p90_ms"].append(r["p90_ms"])
    for p in out.values():
        v = sorted(p.pop("p90_ms"))
        p["p90_min_ms"] = v[0] if v else None
        p["p90_median_ms"] = (v[(len(v) - 1) // 2] if v else None)
        p["p90_max_ms"] = v[-1] if v else None
    return out


def _latency_check(row: Optional[dict], limit: Optional[float], what: str) -> dict:
    if limit is None:
        return {"status": "no_budget", "what": what}
    if row is None or row["status"] in ("not_run", "not_representative"):
        return {"status": "unmeasured", "what": what, "limit_ms": limit,
                **({"profile": row["profile"], "reason": row.get("reason")} if row and row.get("reason") else {})}
    if row["status"] == "ok" and row["p90_ms"] is None:
        return {"status": "unmeasured", "what": what, "profile": row["profile"], "limit_ms": limit,
                "reason": "too few samples for a p90"}
    if row["status"] == "failed":
        return {"status": "fail", "what": what, "profile": row["profile"], "limit_ms": limit, "p90_ms": None,
                "reason": "the candidate failed on this device"}
    return {"status": "pass" if row["p90_ms"] <= limit else "fail", "what": what, "profile": row["profile"],
            "runtime": row.get("runtime"), "p90_ms": row["p90_ms"], "limit_ms": limit}


def budgets(rows: list[dict], median: Optional[dict], low: Optional[dict], policy: Mapping) -> dict:
    limit = policy.get("latency_p90_ms")
    by_id = {r["profile"]: r for r in rows}
    med_row = by_id.get(median["profile"]) if median else None
    checks = {"latency_median": _latency_check(med_row, limit, "p90 on the median device")}
    low_rows = [by_id[p] for p in (low or {}).get("profiles", [])]
    low_checks = [_latency_check(r, limit, "p90 on the lowest tier") for r in low_rows]
    fails = [c for c in low_checks if c["status"] == "fail"]
    measured = [c for c in low_checks if c["status"] == "pass"]
    if limit is None:
        checks["latency_lowest_tier"] = {"status": "no_budget", "what": "p90 on the lowest tier"}
    elif fails:
        checks["latency_lowest_tier"] = max(fails, key=lambda c: c.get("p90_ms") or math.inf)
    elif measured:
        checks["latency_lowest_tier"] = max(measured, key=lambda c: c["p90_ms"])
    else:
        checks["latency_lowest_tier"] = {"status": "unmeasured", "what": "p90 on the lowest tier", "limit_ms": limit}
    mem = [r for r in rows if r["memory_budget_mb"]]
    over = [{"profile": r["profile"], "peak_mb": r["peak_mb"], "limit_mb": r["memory_limit_mb"]}
            for r in mem if r["memory_ok"] is False]
    judged = [r for r in mem if r["memory_ok"] is not None]
    if not mem:
        checks["memory"] = {"status": "no_budget", "what": "peak memory within the budget share"}
    else:
        checks["memory"] = {"status": "fail" if over else ("pass" if judged else "unmeasured"),
                            "what": "peak memory within the budget share", "failures": over,
                            "checked": [r["profile"] for r in judged],
                            "unmeasured": [r["profile"] for r in mem if r["memory_ok"] is None]}
    low_mem = [r for r in low_rows if r["memory_budget_mb"]]
    if not low_mem:
        checks["memory_lowest_tier"] = {"status": "no_budget", "what": "peak memory on the lowest tier"}
    else:
        judged_low = [r for r in low_mem if r["memory_ok"] is not None]
        worst = max(judged_low, key=lambda r: r["peak_mb"] / r["memory_limit_mb"]) if judged_low else None
        checks["memory_lowest_tier"] = {
            "status": "unmeasured" if worst is None else ("pass" if worst["memory_ok"] else "fail"),
            "what": "peak memory on the lowest tier", "profile": worst["profile"] if worst else None,
            "peak_mb": worst["peak_mb"] if worst else None, "limit_mb": worst["memory_limit_mb"] if worst else None}
    return checks


def candidate_baseline(results: list[dict], profiles: list[dict], policy: Mapping) -> dict:
    fraction = float(policy.get("memory_fraction") or 0.65)
    rows = device_rows(results, profiles, fraction)
    med = weighted_median(rows)
    low = lowest_tier(rows)
    checks = budgets(rows, med, low, policy)
    statuses = [c["status"] for k, c in checks.items() if k != "memory_lowest_tier"]
    return {"devices": rows, "median_device": med, "lowest_tier": low, "per_platform": per_platform(rows),
            "budgets": checks, "passes": None if all(s in ("unmeasured", "no_budget") for s in statuses)
            else "fail" not in statuses,
            "not_run": [r["profile"] for r in rows if r["status"] == "not_run"]}


def cohort_baseline(results: list[dict], config: Mapping) -> dict:
    profiles = list(config.get("profiles") or [])
    known = {p["id"] for p in profiles}
    for r in results:  # a run whose config lacks a profile still gets a row
        pid = r["device"].get("profile")
        if pid not in known:
            known.add(pid)
            profiles.append({"id": pid, "platform": r["device"].get("platform"), "tier": r["device"].get("tier"),
                             "share": r["device"].get("share"), "memory_budget_mb": r["device"].get("memory_budget_mb")})
    policy = dict((config.get("cohort") or {}).get("budgets") or {})
    policy.setdefault("memory_fraction", 0.65)
    order = list(dict.fromkeys(r["candidate"] for r in results))
    return {"policy": policy, "candidates": {c: candidate_baseline([r for r in results if r["candidate"] == c],
                                                                 profiles, policy) for c in order}}


def _describe(cand: str, key: str, c: dict) -> str:
    if key.startswith("latency"):
        if c.get("p90_ms") is None:
            return f"{cand}: {c['what']} ({c.get('profile')}): {c.get('reason', 'no measurement')}"
        return (f"{cand}: {c['what']} is {c['p90_ms']:.2f} ms on {c['profile']} ({c.get('runtime')}), "
                f"over the {c['limit_ms']:g} ms budget")
    return f"{cand}: peak memory over the budget share on " + ", ".join(
        f"{f['profile']} ({f['peak_mb']:.1f} MB > {f['limit_mb']:.1f} MB)" for f in c["failures"])


def budget_failures(doc: Mapping) -> list[str]:
    """One line per failed budget check, for `harness run`'s exit status.

    Every candidate is checked except the quality reference when other
    candidates exist (the reference is the yardstick, not what ships).
    Unmeasured checks are not failures; they show in the report.
    """
    base = (doc.get("baseline") or {}).get("candidates") or {}
    ref = ((doc.get("run") or {}).get("reference")) or (doc.get("decision") or {}).get("reference")
    lines = []
    for cand, b in base.items():
        if cand == ref and len(base) > 1:
            continue
        for key in ("latency_median", "latency_lowest_tier", "memory"):
            c = b["budgets"].get(key) or {}
            if c.get("status") == "fail":
                lines.append(_describe(cand, key, c))
    return lines
