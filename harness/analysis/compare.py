"""`harness compare OLD NEW`: what changed between two runs, and whether any
change is a regression a CI job should stop on.

Rows are matched by job key (device profile / candidate / runtime target).
For each pair of successful rows the verdict is made at the level of
*sessions* (each an independent runner process; harness.kernel.measure
.sessions), never from the runs of one session as if they were independent:

* the p50 and p90 shift new/old of the sessions (harness.kernel.measure
  .shift: the Hodges–Lehmann estimate over every new/old session pair, of
  each session's own percentile; the one-sample estimate of the pairs'
  differences for an interleaved A/B) — beside the ratio of the two
  mixtures' percentiles the headline reports (`*_headline_ratio`), which a
  few sessions in a slow machine state can flip;
* their 95 % intervals from a hierarchical bootstrap of each side (resample
  sessions, then runs), widened for the number of sessions (Student's t at
  Welch's degrees of freedom);
* the device target's **noise floor** (harness.analysis.noise): how far
  noise alone moves this metric between two runs with these session counts
  on this device target and model size class, learnt from the store.

A change is **significant** when the interval excludes 1 *and* the change is
larger than the floor; the p50 and the p90 are both judged (slower in the
typical run or in the tail). Buckets: ``regression`` (significantly slower
by more than the threshold), ``slower`` (significant, within it),
``unchanged``, ``faster``, ``improvement``, ``cannot tell`` (one session on
either side: no between-session evidence; the row says by how much noise
could move it), ``broken`` (ran before, fails now), ``fixed``, ``new``,
``missing``, ``not comparable`` (the two rows ran in environments that
differ in a must-match field — device model, OS, runtime version, EP,
options, CPU governor; ``--force`` compares anyway and marks the row).
Fallback changes (more nodes on the CPU, new fallback op types) are reported
and count as regressions: placement is deterministic. Memory changes are
reported; with ``memory_threshold`` set, a peak growing by more than it
counts as a regression too.

`compare_pairs` judges an interleaved A/B run (`harness compare --ab`):
session k of A and session k of B ran back to back on one device, so the
bootstrap resamples the pairs together and the floor is that of pairs.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from harness.analysis.baseline import row_status
from harness.analysis.environment import NotComparable, check_comparable
from harness.analysis.noise import METRICS, NoiseBook, floor_line
from harness.kernel import limits
from harness.kernel.measure import sessions as ses_stats
from harness.kernel.measure import shift as shift_stats

QS = {"p50": 0.5, "p90": 0.9}
CANNOT_TELL = "cannot tell"


def _welch_factor(vo: float, vn: float, so: int, sn: int) -> float:
    """How much wider than the bootstrap's arms the ratio's interval is: each
    side's variance scaled by S/(S-1), Student's t at Welch's df."""
    vo2, vn2 = vo * so / (so - 1), vn * sn / (sn - 1)
    if vo2 + vn2 <= 0:
        return ses_stats.widening(so + sn - 1)
    df = (vo2 + vn2) ** 2 / ((vo2 ** 2 / (so - 1) if vo2 else 0.0) + (vn2 ** 2 / (sn - 1) if vn2 else 0.0))
    return ses_stats.t_quantile(0.975, df) / 1.959964 * math.sqrt((vo2 + vn2) / max(vo + vn, 1e-300))


def session_delta(old: Sequence[np.ndarray], new: Sequence[np.ndarray], threshold: float,
                  floors: Optional[Mapping[str, Optional[dict]]] = None, seed: int = 0, paired: bool = False,
                  rounds: int = limits.COMPARE_BOOTSTRAP) -> dict:
    """The latency verdict of one row from its sessions (lists of arrays).
    `floors`: metric -> noise floor document (harness.analysis.noise)."""
    old = [np.asarray(s, dtype=np.float64) for s in old if len(s)]
    new = [np.asarray(s, dtype=np.float64) for s in new if len(s)]
    floors = dict(floors or {})
    if paired:
        k = min(len(old), len(new))
        old, new = old[:k], new[:k]
    out: dict = {"old_sessions": len(old), "new_sessions": len(new), "noise_floor": floors,
                 "design": "interleaved pairs" if paired else "two runs"}
    if not old or not new:
        return {**out, "bucket": "unmeasured", "reason": "no samples on a side"}
    for name, q in QS.items():
        qo, qn = ses_stats.mixture_quantiles(old, [q])[0], ses_stats.mixture_quantiles(new, [q])[0]
        out[f"old_{name}_ms"], out[f"new_{name}_ms"] = qo, qn
        out[f"{name}_headline_ratio"] = qn / qo if qo > 0 else None
        out[f"{name}_ratio"] = out[f"{name}_headline_ratio"]  # the sessions' shift replaces it below
    if paired:
        out["pairs"] = [{"session": i + 1, **{f"{side}_{m}_ms": float(np.percentile(s, 100 * QS[m]))
                                              for side, s in (("old", a), ("new", b)) for m in METRICS}}
                        for i, (a, b) in enumerate(zip(old, new))]
        for p in out["pairs"]:
            for m in METRICS:
                p[f"{m}_ratio"] = p[f"new_{m}_ms"] / p[f"old_{m}_ms"] if p[f"old_{m}_ms"] > 0 else None
    if min(len(old), len(new)) < 2:
        f = floors.get("p90") or {}
        out.update(bucket=CANNOT_TELL, significant=False, could_move=f.get("fraction"),
                   reason=(f"{len(old)} → {len(new)} session(s): one session on a side says nothing about how "
                           "much sessions differ; " + (f"noise could move this p90 by ±{100 * f['fraction']:.0f}% "
                                                       f"(the device target's history)" if f.get("fraction")
                                                       is not None else "and the store has no between-session "
                                                       "history for this device target and size class")
                           + "; measure with `measure: {sessions: 5}` (the default) or more"))
        return out
    rng = np.random.default_rng(seed)
    sh = shift_stats.shift(old, new, [QS[m] for m in METRICS], rng, paired=paired, rounds=rounds)
    verdicts = {}
    for col, m in enumerate(METRICS):
        ratio = out[f"{m}_ratio"] = sh["ratio"][col]
        if paired:
            factor = ses_stats.widening(len(old))
        else:
            factor = _welch_factor(float(sh["old_spread"][col]), float(sh["new_spread"][col]), len(old), len(new))
        lo, hi = ses_stats.arms(ratio, sh["replicates"][:, col], factor)
        out[f"{m}_ratio_ci"] = [lo, hi]
        floor = (floors.get(m) or {}).get("fraction")
        beyond = floor is None or abs(math.log(ratio)) > math.log1p(floor)
        if lo > 1.0 and beyond:
            verdicts[m] = "regression" if ratio > 1 + threshold else "slower"
        elif hi < 1.0 and beyond:
            verdicts[m] = "improvement" if ratio < 1 / (1 + threshold) else "faster"
        else:
            verdicts[m] = "unchanged"
            if (lo > 1.0 or hi < 1.0) and not beyond:
                out.setdefault("below_floor", []).append(m)
    out["verdicts"] = verdicts
    for bucket in ("regression", "slower", "improvement", "faster"):
        hit = [m for m, v in verdicts.items() if v == bucket]
        if hit:
            out.update(bucket=bucket, significant=True, judged_on=hit)
            break
    else:
        out.update(bucket="unchanged", significant=False)
    return out


def _fallback(r: dict) -> tuple[int, dict]:
    p = r.get("placement") or {}
    return int(p.get("cpu_fallback_nodes") or 0), dict(p.get("fallback_op_types") or {})


def _peak(r: dict) -> Optional[int]:
    return (r.get("memory") or {}).get("peak_bytes")


def floors_for(noise: NoiseBook, o: dict, so: int, sn: int, paired: bool, exclude: Sequence[str]) -> dict:
    from harness.analysis.noise import device_target

    book = noise.get(*device_target(o), (o.get("timing") or {}).get("p50_ms"))
    if book is None:
        return {m: None for m in METRICS}
    return {m: book.floor(m, so, sn, paired=paired, exclude=exclude) for m in METRICS}


def compare_rows(o: Optional[dict], n: Optional[dict], threshold: float, memory_threshold: Optional[float],
                 seed: int, force: bool = False, noise: Optional[NoiseBook] = None,
                 exclude: Sequence[str] = (), paired: bool = False) -> dict:
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
    old_s, new_s = ses_stats.of_timing(o.get("timing")), ses_stats.of_timing(n.get("timing"))
    floors = floors_for(noise or NoiseBook(), o, len(old_s), len(new_s), paired, exclude)
    row["latency"] = session_delta(old_s, new_s, threshold, floors, seed=seed, paired=paired)
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


def latency_text(lat: Mapping) -> str:
    """'p90 0.031 → 0.041 ms (×1.32, 95% CI ×1.18–×1.48); 5 → 5 sessions; noise floor ±9.8% (...)'."""
    judged = lat.get("judged_on") or ["p90"]
    parts = []
    for metric in judged + [m for m in ("p90", "p50") if m not in judged]:
        if lat.get(f"{metric}_ratio") is not None:
            ci = lat.get(f"{metric}_ratio_ci")
            parts.append(f"{metric} {lat[f'old_{metric}_ms']:.4g} → {lat[f'new_{metric}_ms']:.4g} ms "
                         f"(×{lat[f'{metric}_ratio']:.2f}" + (f", 95% CI ×{ci[0]:.2f}–×{ci[1]:.2f})" if ci else ")"))
    unit = "pairs" if lat.get("design") == "interleaved pairs" else "sessions"
    parts.append(f"{lat.get('old_sessions')} → {lat.get('new_sessions')} {unit}")
    parts.append(floor_line((lat.get("noise_floor") or {}).get(judged[0])))
    return "; ".join(parts)


def summarize(rows: list[dict], head: dict) -> dict:
    """The comparison document from its rows: buckets, regressions (what CI
    fails on), rows that cannot tell, refusals."""
    buckets: dict[str, int] = {}
    for r in rows:
        buckets[r["bucket"]] = buckets.get(r["bucket"], 0) + 1
    regressions, undetermined = [], []
    for r in rows:
        lat = r.get("latency") or {}
        if r["bucket"] == CANNOT_TELL:
            undetermined.append(f"{r['job']}: cannot tell: {lat.get('reason')}")
        if not r["regression"]:
            continue
        what = ([latency_text(lat)] if r["bucket"] == "regression" else []) + r["notes"]
        regressions.append(f"{r['job']}: {r['bucket']}: {'; '.join(what)}")
    return {**head, "rows": rows, "buckets": buckets, "regressions": regressions, "undetermined": undetermined,
            "refused": [r["refused"] for r in rows if r.get("refused")]}


def compare_docs(old: Mapping, new: Mapping, threshold: float = 0.05, memory_threshold: Optional[float] = None,
                 seed: int = 0, force: bool = False, noise: Optional[NoiseBook] = None) -> dict:
    """The comparison document; ``regressions`` lists what should fail CI,
    ``undetermined`` the rows with too few sessions to judge. `noise`: what
    the store knows of each device target's noise (the two runs are learnt
    from too)."""
    book = noise if noise is not None else NoiseBook()
    book.learn(old["results"], run_id=old["run"]["id"]).learn(new["results"], run_id=new["run"]["id"])
    exclude = (old["run"]["id"], new["run"]["id"])
    ob = {r["job"]: r for r in old["results"]}
    nb = {r["job"]: r for r in new["results"]}
    keys = list(dict.fromkeys(list(ob) + list(nb)))
    rows = [compare_rows(ob.get(k), nb.get(k), threshold, memory_threshold, seed, force, book, exclude) for k in keys]
    do, dn = _devices(old), _devices(new)
    devices = {"new_profiles": sorted(set(dn) - set(do)), "missing_profiles": sorted(set(do) - set(dn)),
               "changed": {p: {"old": sorted(do[p]), "new": sorted(dn[p])} for p in set(do) & set(dn) if do[p] != dn[p]}}
    return summarize(rows, {"old": old["run"]["id"], "new": new["run"]["id"], "threshold": threshold,
                            "memory_threshold": memory_threshold, "devices": devices, "forced": force,
                            "design": "two runs"})


def compare_pairs(doc: Mapping, old: str, new: str, threshold: float = 0.05,
                  memory_threshold: Optional[float] = None, seed: int = 0,
                  noise: Optional[NoiseBook] = None) -> dict:
    """An interleaved A/B run: candidates `old` and `new` measured in
    alternating sessions on the same devices; rows per profile and target."""
    book = noise if noise is not None else NoiseBook()
    book.learn(doc["results"], run_id=doc["run"]["id"])
    book.learn_pairs([r for r in doc["results"] if r["candidate"] in (old, new)], run_id=doc["run"]["id"])
    by: dict[tuple, dict[str, dict]] = {}
    for r in doc["results"]:
        if r["candidate"] in (old, new):
            by.setdefault((r["device"].get("profile"), r.get("target")), {})[r["candidate"]] = r
    rows = []
    for (profile, target), pair in by.items():
        o, n = pair.get(old), pair.get(new)
        if o is not None and n is not None:
            # One job key for both sides, as two runs of one job would have.
            o, n = {**o, "job": f"{profile}/{target}"}, {**n, "job": f"{profile}/{target}"}
        rows.append(compare_rows(o, n, threshold, memory_threshold, seed, noise=book, paired=True))
    run = doc["run"]["id"]
    return summarize(rows, {"old": f"{run}:{old}", "new": f"{run}:{new}", "run": run, "threshold": threshold,
                            "memory_threshold": memory_threshold, "forced": False, "design": "interleaved pairs",
                            "devices": {"new_profiles": [], "missing_profiles": [], "changed": {}}})
