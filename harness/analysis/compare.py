"""`harness compare OLD NEW`: what changed between two runs, and whether any
change is a regression a CI job should stop on.

Rows are matched by job key (device profile / candidate / runtime target).
For each pair of successful rows the raw samples of both runs decide:

* the p50 and p90 ratios new/old, each with a 95 % percentile-bootstrap
  confidence interval (both sides resampled independently; numpy only);
* a one-sided Mann–Whitney U test (normal approximation with tie
  correction) in the direction of the change.

A change is **significant** when the ratio's interval excludes 1 *and* the
rank test agrees (p < alpha). Buckets: ``regression`` (significantly slower
by more than the threshold), ``slower`` (significant, within it),
``unchanged``, ``faster``, ``improvement`` (significantly faster by more than
the threshold), ``broken`` (ran before, fails now), ``fixed``, ``new``,
``missing``, ``not comparable`` (the two rows ran in environments that
differ in a must-match field — device model, OS, runtime version, EP,
options, CPU governor — so their latencies cannot be compared; ``--force``
compares anyway and marks the row). Samples are treated as independent draws; consecutive runs on a
busy machine are not, so the intervals are optimistic and the threshold is
what protects against noise. Fallback changes (more nodes on the CPU, new
fallback op types) are reported and count as regressions: placement is
deterministic. Memory changes are reported; with ``memory_threshold`` set,
a peak growing by more than it counts as a regression too.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from harness.analysis.baseline import row_status
from harness.analysis.environment import NotComparable, check_comparable
from harness.kernel import limits


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value for 'x tends to be larger than y' (normal
    approximation with tie correction and continuity correction)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return 1.0
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty(allv.size, dtype=np.float64)
    # Average ranks over runs of equal values.
    boundaries = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [allv.size]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    ties = (ends - starts).astype(np.float64)
    var = n1 * n2 / 12.0 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def bootstrap_ratio_ci(old: np.ndarray, new: np.ndarray, qs: Sequence[float], rng: np.random.Generator,
                       rounds: int = limits.COMPARE_BOOTSTRAP, chunk: int = 250) -> list[tuple[float, float]]:
    """95 % percentile-bootstrap intervals of quantile(new, q) / quantile(old, q),
    one per q, from the same resamples."""
    ratios = []
    for start in range(0, rounds, chunk):
        k = min(chunk, rounds - start)
        qo = np.quantile(old[rng.integers(0, old.size, (k, old.size))], qs, axis=1)
        qn = np.quantile(new[rng.integers(0, new.size, (k, new.size))], qs, axis=1)
        ratios.append(qn / np.maximum(qo, 1e-12))  # shape (len(qs), k)
    r = np.concatenate(ratios, axis=1)
    return [(float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))) for x in r]


def _subset(a: np.ndarray, rng: np.random.Generator, cap: int) -> np.ndarray:
    return a if a.size <= cap else rng.choice(a, cap, replace=False)


def latency_delta(old_s: Sequence[float], new_s: Sequence[float], threshold: float, alpha: float = 0.01,
                  seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    o = _subset(np.asarray(old_s, dtype=np.float64), rng, limits.COMPARE_MAX_SAMPLES)
    n = _subset(np.asarray(new_s, dtype=np.float64), rng, limits.COMPARE_MAX_SAMPLES)
    if o.size < 2 or n.size < 2:
        return {"bucket": "unmeasured", "reason": "fewer than 2 samples on a side"}
    out: dict = {"old_n": len(old_s), "new_n": len(new_s)}
    cis = bootstrap_ratio_ci(o, n, (0.5, 0.9), rng)
    for (name, q), ci in zip((("p50", 0.5), ("p90", 0.9)), cis):
        qo, qn = float(np.quantile(np.asarray(old_s), q)), float(np.quantile(np.asarray(new_s), q))
        out[f"old_{name}_ms"], out[f"new_{name}_ms"] = qo, qn
        out[f"{name}_ratio"] = qn / qo if qo > 0 else None
        out[f"{name}_ratio_ci"] = list(ci)
    ratio, (lo, hi) = out["p90_ratio"], out["p90_ratio_ci"]
    p_slower, p_faster = mann_whitney_greater(n, o), mann_whitney_greater(o, n)
    out["mann_whitney_p"] = {"slower": p_slower, "faster": p_faster}
    slower = lo > 1.0 and p_slower < alpha
    faster = hi < 1.0 and p_faster < alpha
    out["significant"] = slower or faster
    if ratio is None:
        out["bucket"] = "unmeasured"
    elif slower:
        out["bucket"] = "regression" if ratio > 1 + threshold else "slower"
    elif faster:
        out["bucket"] = "improvement" if ratio < 1 / (1 + threshold) else "faster"
    else:
        out["bucket"] = "unchanged"
    return out


def _fallback(r: dict) -> tuple[int, dict]:
    p = r.get("placement") or {}
    return int(p.get("cpu_fallback_nodes") or 0), dict(p.get("fallback_op_types") or {})


def _peak(r: dict) -> Optional[int]:
    return (r.get("memory") or {}).get("peak_bytes")


def compare_rows(o: Optional[dict], n: Optional[dict], threshold: float, memory_threshold: Optional[float],
                 seed: int, force: bool = False) -> dict:
    key = (n or o)["job"]
    row: dict = {"job": key, "profile": (n or o)["device"].get("profile"), "candidate": (n or o)["candidate"],
                 "target": (n or o).get("target"), "regression": False, "notes": []}
    if o is None or n is None:
        row["bucket"] = "new" if o is None else "missing"
        return row
    so, sn = row_status(o), row_status(n)
    row["old_status"], row["new_status"] = so, sn
    row["old_device"], row["new_device"] = o["device"].get("id"), n["device"].get("id")
    if so == "ok" and sn == "failed":
        row.update(bucket="broken", regression=True)
        e = n.get("error") or {}
        row["notes"].append(f"now fails: {e.get('kind')}: {str(e.get('message'))[:200]}")
        return row
    if so != "ok" or sn != "ok":
        row["bucket"] = "fixed" if sn == "ok" else ("not run" if "not_run" in (so, sn) else "still failing")
        return row
    try:
        forced = check_comparable(o, n, key, force=force)
    except NotComparable as exc:
        row.update(bucket="not comparable", refused=str(exc))
        return row
    if forced:
        row["forced"] = forced
        row["notes"].append(forced)
    row["latency"] = latency_delta(o["timing"]["samples_ms"], n["timing"]["samples_ms"], threshold, seed=seed)
    row["bucket"] = row["latency"]["bucket"]
    row["regression"] = row["bucket"] == "regression"
    (fo, to), (fn, tn) = _fallback(o), _fallback(n)
    added, removed = sorted(set(tn) - set(to)), sorted(set(to) - set(tn))
    row["fallback"] = {"old_nodes": fo, "new_nodes": fn, "added_op_types": added, "removed_op_types": removed}
    if fn > fo or added:
        row["regression"] = True
        row["notes"].append(f"CPU fallback grew: {fo} → {fn} node(s)" + (f", new op types {added}" if added else ""))
    elif fn < fo or removed:
        row["notes"].append(f"CPU fallback shrank: {fo} → {fn} node(s)")
    po, pn = _peak(o), _peak(n)
    if po and pn:
        ratio = pn / po
        row["memory"] = {"old_peak_bytes": po, "new_peak_bytes": pn, "ratio": ratio}
        if memory_threshold is not None and ratio > 1 + memory_threshold:
            row["regression"] = True
            row["notes"].append(f"peak memory grew {100 * (ratio - 1):.1f}% (threshold {100 * memory_threshold:.0f}%)")
    return row


def _devices(doc: Mapping) -> dict[str, set]:
    out: dict[str, set] = {}
    for r in doc["results"]:
        if r["device"].get("id"):
            out.setdefault(r["device"]["profile"], set()).add(r["device"]["id"])
    return out


def compare_docs(old: Mapping, new: Mapping, threshold: float = 0.05, memory_threshold: Optional[float] = None,
                 seed: int = 0, force: bool = False) -> dict:
    """The comparison document; ``regressions`` lists what should fail CI."""
    ob = {r["job"]: r for r in old["results"]}
    nb = {r["job"]: r for r in new["results"]}
    keys = list(dict.fromkeys(list(ob) + list(nb)))
    rows = [compare_rows(ob.get(k), nb.get(k), threshold, memory_threshold, seed, force) for k in keys]
    do, dn = _devices(old), _devices(new)
    devices = {"new_profiles": sorted(set(dn) - set(do)), "missing_profiles": sorted(set(do) - set(dn)),
               "changed": {p: {"old": sorted(do[p]), "new": sorted(dn[p])} for p in set(do) & set(dn) if do[p] != dn[p]}}
    buckets: dict[str, int] = {}
    for r in rows:
        buckets[r["bucket"]] = buckets.get(r["bucket"], 0) + 1
    regressions = []
    for r in rows:
        if not r["regression"]:
            continue
        lat = r.get("latency") or {}
        what = ([f"p90 {lat['old_p90_ms']:.3f} → {lat['new_p90_ms']:.3f} ms (×{lat['p90_ratio']:.2f}, "
                 f"95% CI ×{lat['p90_ratio_ci'][0]:.2f}–×{lat['p90_ratio_ci'][1]:.2f})"]
                if r["bucket"] == "regression" else []) + r["notes"]
        regressions.append(f"{r['job']}: {r['bucket']}: {'; '.join(what)}")
    return {"old": old["run"]["id"], "new": new["run"]["id"], "threshold": threshold,
            "memory_threshold": memory_threshold, "rows": rows, "buckets": buckets, "devices": devices,
            "regressions": regressions, "refused": [r["refused"] for r in rows if r.get("refused")],
            "forced": force}
