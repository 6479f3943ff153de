"""`harness history`: one candidate's results across runs, per device profile
and runtime target, with the change points in them and a verdict on the
newest run.

Every figure of a point is recomputed from the run's raw samples (older
runs' `--repeat` rows of a job pooled): p50 and p90 with their
distribution-free 95 % intervals (`kernel.measure.intervals`) — for a record
of several sessions its session-weighted percentiles and hierarchical p90
interval (`kernel.measure.sessions`) — plus the run's peak memory and CPU
fallback nodes from its records. Points are cut into *epochs* wherever the
environment fingerprint changes in a must-match field (device model, OS,
runtime version, EP, options, governor — `analysis.environment`): such runs
measure something else, so the cut is marked and no segment, level or
change point ever spans it.

Change points (see `changepoint`) are found per epoch for latency (the
chosen metric) and peak memory; CPU fallback is deterministic, so any change
in the node count is a change. The newest run's verdict:
* regressed — its segment begins with an upward change (latency, memory or
  fallback) in its epoch: what `--check` fails on;
* broken — it failed where the run before it measured (also a failure);
* improved / steady — its segment begins with a downward change / none;
* insufficient — fewer than three measured runs in its epoch: no test.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from harness.analysis import changepoint
from harness.analysis.environment import MUST_MATCH, fingerprint, mismatches
from harness.kernel.measure import sessions
from harness.kernel.measure.intervals import percentile_interval

METRICS = {"p50": 0.5, "p90": 0.9}


def _iso(ts: Optional[float]) -> Optional[str]:
    return None if ts is None else _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def _quantile_sorted(s: np.ndarray, q: float) -> float:
    """numpy.percentile's default (linear between order statistics) on an
    already sorted sample, without its per-call overhead (500 runs a page)."""
    pos = q * (s.size - 1)
    lo = int(pos)
    hi = min(lo + 1, s.size - 1)
    return float(s[lo] + (pos - lo) * (s[hi] - s[lo]))


def _point(run: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> dict:
    """One run of one series: its rows (one, or one per repeated session)."""
    recs = [r["record"] for r in rows]
    ok = [r for r, row in zip(recs, rows) if row["status"] == "ok" and len(r["timing"].get("samples_ms", ()))]
    status = "ok" if ok else ("failed" if any(row["status"] == "failed" for row in rows) else "not_run")
    point: dict = {"run_id": run["run_id"], "started": _iso(run["run_started"]), "started_unix": run["run_started"],
                   "cohort": run["cohort"], "run_status": run["run_status"], "status": status,
                   "jobs": [row["job"] for row in rows], "devices": sorted({str(r["device"].get("id")) for r in recs
                                                                          if (r.get("device") or {}).get("id")})}
    if not ok:
        err = next((r.get("error") for r in recs if r.get("error")), None) or {}
        point["error"] = f"{err.get('stage')}/{err.get('kind')}: {str(err.get('message'))[:200]}" if err else None
        return point
    samples = np.sort(np.concatenate([np.asarray(r["timing"]["samples_ms"], dtype=np.float64) for r in ok]))
    point["n"] = int(samples.size)
    point["sessions"] = sum(max(1, len(r["timing"].get("sessions") or ())) for r in ok)
    timing = ok[0]["timing"]
    multi = len(ok) == 1 and len(timing.get("sessions") or ()) >= 2
    for name, q in METRICS.items():
        if multi:
            # A record of several sessions: its percentiles weigh sessions
            # alike (kernel.measure.sessions), as `harness report` gives them;
            # the p90's interval is the record's hierarchical one.
            point[f"{name}_ms"] = sessions.mixture_quantiles(sessions.of_timing(timing), [q])[0]
            ci = timing.get("p90_ci_ms") if name == "p90" else percentile_interval(samples, q)
        else:
            point[f"{name}_ms"] = _quantile_sorted(samples, q)
            ci = percentile_interval(samples, q)
        point[f"{name}_ci_ms"] = list(ci) if ci else None
    peaks = [(r.get("memory") or {}).get("peak_bytes") for r in ok]
    point["peak_bytes"] = max((p for p in peaks if p), default=None)
    placements = [r.get("placement") or {} for r in ok]
    nodes = [p.get("cpu_fallback_nodes") for p in placements if p.get("cpu_fallback_nodes") is not None]
    point["fallback_nodes"] = max(nodes) if nodes else None
    ops: dict[str, int] = {}
    for p in placements:
        for op, k in (p.get("fallback_op_types") or {}).items():
            ops[op] = max(ops.get(op, 0), int(k))
    point["fallback_op_types"] = ops
    env = ok[0].get("environment") or fingerprint(ok[0])
    point["environment"] = {k: env.get(k) for k in MUST_MATCH}
    return point


def _change_doc(kind: str, c: changepoint.Change, points: list[dict], index: list[int], unit: str) -> dict:
    at = points[index[c.index]]
    return {"kind": kind, "run_id": at["run_id"], "started": at["started"], "position": index[c.index],
            "before": c.before, "after": c.after, "ratio": c.ratio, "ratio_ci": list(c.ratio_ci),
            "p_value": c.p_value, "direction": c.direction, "regression": c.direction == "up", "unit": unit}


def _fallback_changes(points: list[dict], index: list[int]) -> list[dict]:
    out, prev = [], None
    for i in index:
        v = points[i].get("fallback_nodes")
        if v is None:
            continue
        if prev is not None and v != points[prev]["fallback_nodes"]:
            was = points[prev]["fallback_nodes"]
            new_ops = sorted(set(points[i]["fallback_op_types"]) - set(points[prev]["fallback_op_types"]))
            out.append({"kind": "fallback", "run_id": points[i]["run_id"], "started": points[i]["started"],
                        "position": i, "before": was, "after": v, "direction": "up" if v > was else "down",
                        "regression": v > was, "new_op_types": new_ops, "unit": "nodes"})
        prev = i
    return out


def _epochs(points: list[dict]) -> list[list[int]]:
    """Positions of measured points, cut where a must-match field changes."""
    epochs: list[list[int]] = []
    last: Optional[int] = None
    for i, p in enumerate(points):
        if p["status"] != "ok":
            continue
        if last is not None:
            diff = mismatches(points[last]["environment"], p["environment"])
            if diff:
                p["environment_change"] = [{"field": k, "before": a, "after": b} for k, a, b in diff]
        if last is None or p.get("environment_change"):
            epochs.append([])
        epochs[-1].append(i)
        last = i
    return epochs


def _floor(noise, profile: str, target: str, points: list[dict], metric: str) -> Optional[dict]:
    """The noise floor between the newest measured run and the one before
    it (harness.analysis.noise), or None."""
    measured = [p for p in points if p["status"] == "ok"]
    if noise is None or not measured:
        return None
    book = noise.get(profile, target, measured[-1].get("p50_ms"))
    if book is None:
        return None
    before = measured[-2]["sessions"] if len(measured) > 1 else measured[-1]["sessions"]
    return book.floor(metric, before, measured[-1]["sessions"],
                      exclude=[p["run_id"] for p in measured[-2:]])


def _verdict(points: list[dict], epochs: list[list[int]], changes: list[dict]) -> dict:
    latest = points[-1]
    measured_before = [p for p in points[:-1] if p["status"] == "ok"]
    if latest["status"] == "failed":
        if measured_before and points[-2]["status"] == "ok":
            return {"run_id": latest["run_id"], "verdict": "broken",
                    "reasons": [f"fails now ({latest.get('error')}); run {points[-2]['run_id']} measured"]}
        return {"run_id": latest["run_id"], "verdict": "failing", "reasons": [latest.get("error") or "failed"]}
    if latest["status"] != "ok":
        return {"run_id": latest["run_id"], "verdict": "not run", "reasons": []}
    epoch = epochs[-1]
    reasons, verdict = [], "steady"
    if latest.get("environment_change"):
        fields = ", ".join(c["field"] for c in latest["environment_change"])
        return {"run_id": latest["run_id"], "verdict": "new environment",
                "reasons": [f"differs from the run before it in {fields}: nothing measured alike to compare with"]}
    for kind in ("latency", "memory", "fallback"):
        mine = [c for c in changes if c["kind"] == kind and epoch[0] <= c["position"] <= epoch[-1]]
        if not mine:
            continue
        c = mine[-1]
        what = (f"{kind} {c['before']:.4g} → {c['after']:.4g} {c['unit']} since run {c['run_id']}"
                + (f" (×{c['ratio']:.2f}, 95% CI ×{c['ratio_ci'][0]:.2f}–×{c['ratio_ci'][1]:.2f}, "
                   f"p={c['p_value']:.2g})" if "ratio" in c else ""))
        if c["regression"]:
            verdict = "regressed"
            reasons.append(what)
        elif verdict == "steady":
            verdict = "improved"
            reasons.append(what)
    if verdict == "steady" and len(epoch) < 3:
        verdict = "insufficient"
        reasons.append(f"{len(epoch)} measured run(s) in this environment: a change needs at least 3")
    return {"run_id": latest["run_id"], "verdict": verdict, "reasons": reasons}


def one_series(profile: str, target: str, rows: list[Mapping[str, Any]], metric: str, alpha: float,
               min_effect: float, noise=None) -> dict:
    by_run: dict[str, list] = {}
    runs: dict[str, Mapping] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
        runs.setdefault(r["run_id"], r)
    points = [_point(runs[rid], rs) for rid, rs in by_run.items()]  # rows come oldest run first
    epochs = _epochs(points)
    changes: list[dict] = []
    for epoch in epochs:
        for kind, key, unit in (("latency", f"{metric}_ms", "ms"), ("memory", "peak_bytes", "bytes")):
            idx = [i for i in epoch if points[i].get(key)]
            for c in changepoint.detect([points[i][key] for i in idx], alpha, min_effect):
                changes.append(_change_doc(kind, c, points, idx, unit))
        changes += _fallback_changes(points, epoch)
    changes.sort(key=lambda c: (c["position"], c["kind"]))
    floor = _floor(noise, profile, target, points, metric)
    for c in changes:
        # A latency change inside the device target's noise floor is noise.
        if c["kind"] == "latency" and floor and floor.get("fraction") is not None \
                and abs(np.log(c["ratio"])) <= np.log1p(floor["fraction"]):
            c.update(regression=False, below_floor=True)
    latest = _verdict(points, epochs, changes)
    measured = [p for p in points if p["status"] == "ok"]
    latest["noise_floor"] = floor
    latest["sessions"] = [p["sessions"] for p in measured[-2:]]
    return {"profile": profile, "target": target, "points": points,
            "epochs": [{"from_run": points[e[0]]["run_id"], "to_run": points[e[-1]]["run_id"], "runs": len(e)}
                       for e in epochs],
            "changes": changes, "latest": latest}


def history(rows: Iterable[Mapping[str, Any]], candidate: str, metric: str = "p90",
            alpha: float = changepoint.ALPHA, min_effect: float = changepoint.MIN_EFFECT, noise=None) -> dict:
    """The history document of `Store.series(...)` rows (oldest run first);
    `noise` (a harness.analysis.noise.NoiseBook) puts each series' noise
    floor beside its verdict, and no latency change inside it is a regression."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r["profile"], r["target"]), []).append(r)
    series = [one_series(p, t, rs, metric, alpha, min_effect, noise) for (p, t), rs in sorted(groups.items())]
    regressions = [f"{s['profile']} · {s['target']}: {s['latest']['verdict']} at run {s['latest']['run_id']}: "
                   + "; ".join(s["latest"]["reasons"]) for s in series if s["latest"]["verdict"] in
                   ("regressed", "broken")]
    return {"candidate": candidate, "metric": metric, "alpha": alpha, "min_effect": min_effect,
            "test": changepoint.TEST, "series": series, "regressions": regressions}


def from_store(store, candidate: str, profile: Optional[str] = None, target: Optional[str] = None,
               last: Optional[int] = None, metric: str = "p90", alpha: float = changepoint.ALPHA,
               min_effect: float = changepoint.MIN_EFFECT) -> dict:
    from harness.analysis import noise

    rows = store.series(candidate, profile=profile, target=target, last=last)
    # The candidate's own records are these rows; the store adds the others'.
    book = noise.NoiseBook()
    for r in rows:
        if r["status"] == "ok":
            book.learn([r["record"]], run_id=r["run_id"])
    book = noise.from_store(store, [(r["profile"], r["target"]) for r in rows], book, other_than=candidate)
    doc = history(rows, candidate, metric, alpha, min_effect, noise=book)
    doc.update(profile=profile, target=target, last=last)
    return doc
