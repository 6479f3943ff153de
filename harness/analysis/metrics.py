"""Numerical agreement between two sets of outputs on the same probe inputs.

Pure numpy. Everything is computed in float64 over all probes and all
matched outputs together, so one number describes a result:

* ``max_abs``  — largest absolute element difference;
* ``rel_l2``   — ||a - r|| / ||r|| (r: the reference side);
* ``cosine``   — a·r / (||a|| ||r||) over the flattened outputs;
* ``snr_db``   — 10·log10(Σr² / Σ(a - r)²); ``None`` with ``identical: true``
  when the difference is exactly zero (an infinite SNR has no JSON form);
* ``top1_agreement`` — for classifier outputs only: the share of samples
  whose arg-max class is the same on both sides;
* ``accuracy`` (see :func:`accuracy`) — arg-max against eval-set labels.

An output is treated as **class scores** when it is a floating-point tensor
of shape ``(N, C)`` with ``C >= 2`` (N samples, C classes; one-dimensional
``(C,)`` counts as one sample). The first such output, in the model's output
order, is the one top-1 and accuracy are read from. Anything else (a
sequence, an image, audio, a single score) is compared numerically only.

Outputs are matched by the names both sides have (the same model on two
runtimes; a sibling that lacks or adds an output); with no name in common, by
position when both sides have as many outputs (a student whose output is
named differently from its teacher's). ``outputs`` lists the pairs compared,
``unmatched`` the outputs only one side has; pairs whose shapes differ are
skipped and named in ``skipped``.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

Outputs = Sequence[Mapping[str, np.ndarray]]  # one dict per probe


def is_class_scores(arr: np.ndarray) -> bool:
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.floating):
        return False
    if a.ndim == 1:
        return a.shape[0] >= 2
    return a.ndim == 2 and a.shape[1] >= 2


def _rows(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    return a.reshape(1, -1) if a.ndim == 1 else a


def match_outputs(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    """Pairs (name in a, name in b): the names both sides have (an fp16
    build or a sibling with one extra output still shares the rest), or else
    by position when both have as many outputs (a student whose output is
    named differently from its teacher's)."""
    common = [k for k in a if k in b]
    if common:
        return [(k, k) for k in common]
    if len(a) == len(b):
        return list(zip(a.keys(), b.keys()))
    return []


def _finite(x: Optional[float]) -> Optional[float]:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def compare(cand: Outputs, ref: Outputs) -> dict:
    """Agreement of ``cand`` with ``ref``, probe by probe (see module doc)."""
    n = min(len(cand), len(ref))
    out: dict = {"probes": n, "outputs": [], "skipped": [], "unmatched": [], "max_abs": None, "rel_l2": None,
                 "cosine": None, "snr_db": None, "identical": False, "top1_agreement": None, "samples": None,
                 "non_finite": 0}
    if n == 0:
        out["note"] = "no probe outputs on one side"
        return out
    pairs = match_outputs(cand[0], ref[0])
    if not pairs:
        out["note"] = (f"outputs cannot be matched: {sorted(cand[0])} vs {sorted(ref[0])} "
                       "(different names and counts)")
        return out
    paired_a, paired_b = {p[0] for p in pairs}, {p[1] for p in pairs}
    out["unmatched"] = [f"{k} (only this side)" for k in cand[0] if k not in paired_a] + \
        [f"{k} (only the other side)" for k in ref[0] if k not in paired_b]
    diffs, refs, cands = [], [], []
    cls_pair = None
    for ka, kb in pairs:
        sa, sb = np.shape(cand[0][ka]), np.shape(ref[0][kb])
        if sa != sb:
            out["skipped"].append(f"{ka}: shape {list(sa)} vs {list(sb)}")
            continue
        out["outputs"].append(ka if ka == kb else f"{ka}~{kb}")
        if cls_pair is None and is_class_scores(cand[0][ka]) and is_class_scores(ref[0][kb]):
            cls_pair = (ka, kb)
        for i in range(n):
            x = np.asarray(cand[i][ka], dtype=np.float64).ravel()
            y = np.asarray(ref[i][kb], dtype=np.float64).ravel()
            if x.shape != y.shape:
                out["skipped"].append(f"{ka}: probe {i} shape differs")
                continue
            cands.append(x)
            refs.append(y)
    if not cands:
        out["note"] = "no output with the same shape on both sides"
        return out
    a = np.concatenate(cands)
    r = np.concatenate(refs)
    bad = ~(np.isfinite(a) & np.isfinite(r))
    out["non_finite"] = int(bad.sum())
    if bad.any():
        a, r = a[~bad], r[~bad]
    if a.size:
        d = a - r
        err = float(np.dot(d, d))
        sig = float(np.dot(r, r))
        na, nr = math.sqrt(float(np.dot(a, a))), math.sqrt(sig)
        out["max_abs"] = float(np.max(np.abs(d)))
        out["rel_l2"] = _finite(math.sqrt(err) / nr) if nr > 0 else (0.0 if err == 0 else None)
        if na > 0 and nr > 0:
            out["cosine"] = max(-1.0, min(1.0, float(np.dot(a, r)) / (na * nr)))
        elif na == 0 and nr == 0:
            out["cosine"] = 1.0
        out["identical"] = err == 0.0
        if out["identical"]:
            out["cosine"] = 1.0  # exact, not 1 - rounding
        out["snr_db"] = _finite(10 * math.log10(sig / err)) if err > 0 and sig > 0 else None
    if cls_pair is not None:
        agree, total = 0, 0
        for i in range(n):
            x, y = _rows(cand[i][cls_pair[0]]), _rows(ref[i][cls_pair[1]])
            agree += int(np.sum(np.argmax(x, axis=-1) == np.argmax(y, axis=-1)))
            total += x.shape[0]
        out["top1_agreement"] = agree / total if total else None
        out["samples"] = total
        out["class_output"] = cls_pair[0]
    return out


def classifier_output(outputs: Outputs) -> Optional[str]:
    if not outputs:
        return None
    return next((k for k, v in outputs[0].items() if is_class_scores(v)), None)


def accuracy(outputs: Outputs, labels: Sequence[np.ndarray]) -> Optional[dict]:
    """Top-1 accuracy of the class-score output against per-probe labels, or
    None when there is no class-score output or the counts do not line up."""
    key = classifier_output(outputs)
    if key is None or not labels:
        return None
    correct, total = 0, 0
    for probe, lab in zip(outputs, labels):
        rows = _rows(probe[key])
        lab = np.asarray(lab).reshape(-1)
        if rows.shape[0] != lab.shape[0]:
            return None
        correct += int(np.sum(np.argmax(rows, axis=-1) == lab.astype(np.int64)))
        total += rows.shape[0]
    return {"accuracy": correct / total if total else None, "samples": total, "output": key}


def within_tolerance(m: Optional[dict], quality: Mapping) -> Optional[dict]:
    """Judge one comparison against the cohort's quality policy.

    Class scores are judged by top-1 disagreement (``max_top1_disagreement``);
    other outputs by ``min_snr_db``; ``max_rel_l2``, when set, applies to both.
    Non-finite values always fail. Returns {ok, checks: [...]} or None when
    nothing could be compared.
    """
    if not m or m.get("max_abs") is None:
        return None
    checks = []
    if m.get("non_finite"):
        checks.append({"check": "finite", "value": m["non_finite"], "limit": 0, "ok": False})
    if m.get("top1_agreement") is not None:
        dis = 1.0 - m["top1_agreement"]
        lim = float(quality.get("max_top1_disagreement", 0.005))
        checks.append({"check": "top1_disagreement", "value": dis, "limit": lim, "ok": dis <= lim + 1e-12})
    else:
        lim = float(quality.get("min_snr_db", 30.0))
        snr = m.get("snr_db")
        ok = bool(m.get("identical")) or (snr is not None and snr >= lim)
        checks.append({"check": "snr_db", "value": None if m.get("identical") else snr, "limit": lim, "ok": ok})
    if quality.get("max_rel_l2") is not None and m.get("rel_l2") is not None:
        lim = float(quality["max_rel_l2"])
        checks.append({"check": "rel_l2", "value": m["rel_l2"], "limit": lim, "ok": m["rel_l2"] <= lim})
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def describe_checks(t: Optional[dict]) -> str:
    if not t:
        return "not compared"
    parts = []
    for c in t["checks"]:
        v, lim = c["value"], c["limit"]
        if c["check"] == "top1_disagreement":
            parts.append(f"top-1 disagreement {100 * v:.2f}% (allowed {100 * lim:.2f}%)")
        elif c["check"] == "snr_db":
            parts.append(f"SNR {'exact' if v is None else f'{v:.1f} dB'} (min {lim:g} dB)")
        elif c["check"] == "rel_l2":
            parts.append(f"rel. L2 {v:.2e} (max {lim:.2e})")
        else:
            parts.append(f"{v} non-finite values")
    return "; ".join(parts)
