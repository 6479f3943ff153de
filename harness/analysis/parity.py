"""Parity of every result: against the reference candidate, against the
candidate's own ONNX file, and against the eval set's labels.

``parity`` in a result record::

  reference       the candidate the quality policy compares against (teacher)
  reference_on    where its outputs were computed (the controller's ORT CPU EP)
  max_abs rel_l2 cosine snr_db identical top1_agreement samples
                  this result's outputs vs the reference candidate's
  accuracy        top-1 accuracy against the eval labels (None without labels
                  or without a class-score output)
  tolerance       {ok, checks} against the cohort's quality policy
  fidelity        the same metrics against this candidate's own outputs on the
                  controller: is the deployed model numerically the model?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from harness.analysis import metrics

KEYS = ("max_abs", "rel_l2", "cosine", "snr_db", "identical", "top1_agreement", "samples")


@dataclass
class ParityContext:
    reference: Optional[str]  # reference candidate name
    quality: Mapping  # the cohort's quality policy
    refs: dict = field(default_factory=dict)  # candidate -> reference outputs (controller CPU)
    ref_meta: dict = field(default_factory=dict)  # candidate -> meta
    probes: dict = field(default_factory=dict)  # candidate -> probe inputs
    labels: dict = field(default_factory=dict)  # candidate -> list of label arrays

    def same_probes(self, a: str, b: str) -> bool:
        pa, pb = self.probes.get(a) or [], self.probes.get(b) or []
        if len(pa) != len(pb) or not pa:
            return False
        for x, y in zip(pa, pb):
            if set(x) != set(y) or any(not np.array_equal(x[k], y[k]) for k in x):
                return False
        return True


def _pick(m: dict) -> dict:
    return {k: m.get(k) for k in KEYS}


def _where(meta: Mapping) -> Optional[str]:
    rt = meta.get("runtime") or {}
    return f"controller {rt.get('name')} {rt.get('version')} {rt.get('ep')}" if rt else None


def result_parity(candidate: str, outputs: list, ctx: ParityContext) -> dict:
    """The parity block of one successful result (see module doc)."""
    ref = ctx.reference
    p: dict = {"reference": ref, "reference_on": None, **{k: None for k in KEYS},
               "accuracy": None, "tolerance": None, "fidelity": None, "notes": []}
    if not outputs:
        p["notes"].append("the driver returned no outputs, so nothing could be compared")
        return p
    labels = ctx.labels.get(candidate)
    if labels:
        acc = metrics.accuracy(outputs, labels)
        if acc:
            p["accuracy"] = acc["accuracy"]
    if ref is not None:
        ref_out = ctx.refs.get(ref) or []
        meta = ctx.ref_meta.get(ref) or {}
        p["reference_on"] = _where(meta)
        if not ref_out:
            p["notes"].append(f"reference {ref}: {meta.get('reason') or meta.get('status') or 'no outputs'}")
        elif ref != candidate and not ctx.same_probes(candidate, ref):
            p["notes"].append(f"{candidate} and {ref} were given different probe inputs (their inputs differ), "
                              "so their outputs are not comparable")
        else:
            m = metrics.compare(outputs, ref_out)
            p.update(_pick(m))
            p["tolerance"] = metrics.within_tolerance(m, ctx.quality)
            p["notes"].extend(s for s in [m.get("note")] + m.get("skipped", []) if s)
    own = ctx.refs.get(candidate) or []
    if own:
        f = metrics.compare(outputs, own)
        p["fidelity"] = {**_pick(f), "against": f"{candidate} on {_where(ctx.ref_meta.get(candidate) or {})}",
                         "tolerance": metrics.within_tolerance(f, ctx.quality)}
    else:
        meta = ctx.ref_meta.get(candidate) or {}
        p["notes"].append(f"no controller outputs of {candidate}: {meta.get('reason') or meta.get('status')}")
    return p


def reference_accuracy(ctx: ParityContext) -> dict:
    """Accuracy of each candidate's own controller outputs against the labels
    (the 'against ground truth' validation point, free of device effects)."""
    out = {}
    for cand, outs in ctx.refs.items():
        labels = ctx.labels.get(cand)
        acc = metrics.accuracy(outs, labels) if labels and outs else None
        out[cand] = acc["accuracy"] if acc else None
    return out


def fill(results: list[dict], outputs_by_job: Mapping[str, list], ctx: ParityContext) -> None:
    """Set ``parity`` on every result record, in place (None for error rows)."""
    for r in results:
        if r.get("error") or not r.get("timing"):
            r["parity"] = None
            continue
        r["parity"] = result_parity(r["candidate"], outputs_by_job.get(r["job"]) or [], ctx)
