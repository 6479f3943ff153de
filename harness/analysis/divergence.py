"""The cross-platform divergence matrix: one candidate's outputs on every
target it ran on, compared pairwise.

This is the measured form of the claim that per-platform precision
reduction diverges: the same INT8 file on two runtimes is not the same
numerical object. Each successful result with outputs is one entry
(``profile · runtime version ep``); each pair is compared with the metrics of
``metrics.compare``, the earlier entry (cohort order) taken as the pair's
reference side. ``cross_target`` pairs differ in (platform, runtime) — the
unit the decision engine counts — and only those decide whether a
candidate's divergence is within the cohort's tolerance.
"""

from __future__ import annotations

from typing import Mapping

from harness.analysis import metrics


def entry_label(r: dict) -> str:
    rt = r.get("runtime") or {}
    ver = f" {rt.get('version')}" if rt.get("version") else ""
    return f"{r['device'].get('profile')} · {rt.get('build') or rt.get('name')}{ver} {rt.get('ep')}"


def target_of(r: dict) -> tuple[str, str]:
    """(platform, runtime): the unit the decision engine counts."""
    return (r["device"].get("platform") or "?", (r.get("runtime") or {}).get("name") or "?")


def candidate_matrix(rows: list[dict], outputs_by_job: Mapping[str, list], quality: Mapping) -> dict:
    entries = []
    for r in rows:
        outs = outputs_by_job.get(r["job"]) or []
        if r.get("error") or not outs:
            continue
        entries.append((r, outs))
    labels = [entry_label(r) for r, _ in entries]
    dupes = {x for x in labels if labels.count(x) > 1}
    for i, (r, _) in enumerate(entries):  # two targets differing only in options: name the options
        if labels[i] in dupes:
            opts = ",".join(f"{k}={v}" for k, v in sorted(((r.get("runtime") or {}).get("options") or {}).items()))
            labels[i] += f" [{opts or r.get('target')}]"
    pairs = []
    for i in range(len(entries)):
        for j in range(i + 1, len(entries)):
            (ri, oi), (rj, oj) = entries[i], entries[j]
            m = metrics.compare(oj, oi)
            tol = metrics.within_tolerance(m, quality)
            pairs.append({
                "a": labels[i], "b": labels[j], "a_job": ri["job"], "b_job": rj["job"],
                "a_target": "/".join(target_of(ri)), "b_target": "/".join(target_of(rj)),
                "cross_target": target_of(ri) != target_of(rj),
                **{k: m.get(k) for k in ("max_abs", "rel_l2", "cosine", "snr_db", "identical", "top1_agreement",
                                         "samples")},
                "tolerance": tol,
            })
    cross = [p for p in pairs if p["cross_target"]]
    worst = None
    if cross:
        worst = max(cross, key=_badness)
    targets = sorted({"/".join(target_of(r)) for r, _ in entries})
    if not cross:
        status = "not_measured"
    elif any(p["tolerance"] is None for p in cross):
        status = "not_comparable"
    else:
        status = "within" if all(p["tolerance"]["ok"] for p in cross) else "outside"
    return {"entries": labels, "targets": targets, "pairs": pairs, "cross_target_pairs": len(cross),
            "worst_cross_target": worst, "status": status}


def _badness(p: dict) -> tuple:
    """Order pairs worst-first: failing tolerance, then top-1 disagreement,
    then relative L2."""
    tol_fail = 0 if (p["tolerance"] or {}).get("ok", True) else 1
    dis = 1.0 - p["top1_agreement"] if p.get("top1_agreement") is not None else 0.0
    return (tol_fail, dis, p.get("rel_l2") or 0.0)


def matrices(results: list[dict], outputs_by_job: Mapping[str, list], quality: Mapping) -> dict:
    """{candidate: matrix} for every candidate in the run."""
    by_cand: dict[str, list[dict]] = {}
    for r in results:
        by_cand.setdefault(r["candidate"], []).append(r)
    return {c: candidate_matrix(rows, outputs_by_job, quality) for c, rows in by_cand.items()}
