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
  compared        {inputs, outputs, outputs_not_compared}: what the reference
                  comparison rests on. Candidates share probes by input name
                  (each fed the arrays it declares), so a sibling that lacks
                  an input of the reference is compared on the inputs both
                  take, and on the outputs both have by name.
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

    def shared_inputs(self, a: str, b: str) -> dict:
        """How a's probes relate to b's, input by input name: the inputs
        both take (`shared`), those only one takes, and shared ones that were
        not fed the same values (`differ`; the same values at each model's
        precision count as the same: an fp16 build gets the fp32 one's
        values rounded). Comparable when something is shared and nothing
        differs."""
        pa, pb = self.probes.get(a) or [], self.probes.get(b) or []
        n = min(len(pa), len(pb))
        first_a, first_b = (pa[0] if pa else {}), (pb[0] if pb else {})
        shared = [k for k in first_a if k in first_b]
        differ = []
        for k in shared:
            for i in range(n):
                x, y = np.asarray(pa[i].get(k)), np.asarray(pb[i].get(k))
                if x.shape != y.shape:
                    differ.append(f"{k}: shape {list(x.shape)} vs {list(y.shape)}")
                    break
                if not (np.array_equal(x, y.astype(x.dtype)) or np.array_equal(y, x.astype(y.dtype))):
                    differ.append(f"{k}: other values (probe {i})")
                    break
        return {"shared": shared, "only_a": [k for k in first_a if k not in first_b],
                "only_b": [k for k in first_b if k not in first_a], "differ": differ, "probes": n,
                "comparable": bool(shared) and n > 0 and not differ}


def _pick(m: dict) -> dict:
    return {k: m.get(k) for k in KEYS}


def _where(meta: Mapping) -> Optional[str]:
    rt = meta.get("runtime") or {}
    return f"controller {rt.get('name')} {rt.get('version')} {rt.get('ep')}" if rt else None


def result_parity(candidate: str, outputs: list, ctx: ParityContext) -> dict:
    """The parity block of one successful result (see module doc)."""
    ref = ctx.reference
    p: dict = {"reference": ref, "reference_on": None, **{k: None for k in KEYS},
               "accuracy": None, "tolerance": None, "fidelity": None, "compared": None, "notes": []}
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
        else:
            sh = ctx.shared_inputs(candidate, ref) if ref != candidate else None
            if sh is not None and not sh["comparable"]:
                why = "; ".join(sh["differ"]) or (f"no input in common ({candidate}: {', '.join(sh['only_a'])}; "
                                                  f"{ref}: {', '.join(sh['only_b'])})")
                p["notes"].append(f"{candidate} and {ref} were not fed the same inputs ({why}), so their outputs "
                                  "are not comparable")
            else:
                m = metrics.compare(outputs, ref_out)
                p.update(_pick(m))
                p["tolerance"] = metrics.within_tolerance(m, ctx.quality)
                p["compared"] = {"inputs": sh["shared"] if sh else sorted(ctx.probes.get(candidate, [{}])[0]),
                                 "outputs": m.get("outputs") or [], "outputs_not_compared": m.get("unmatched") or []}
                p["notes"].extend(s for s in [m.get("note")] + m.get("skipped", []) if s)
                if sh and (sh["only_a"] or sh["only_b"]):
                    p["notes"].append(
                        f"compared on the inputs both take ({', '.join(sh['shared'])})"
                        + (f"; only {ref} takes {', '.join(sh['only_b'])} ({candidate} runs without)"
                           if sh["only_b"] else "")
                        + (f"; only {candidate} takes {', '.join(sh['only_a'])}" if sh["only_a"] else ""))
                if m.get("unmatched"):
                    p["notes"].append(f"outputs compared by name: {', '.join(m['outputs'])}; not compared: "
                                      f"{', '.join(m['unmatched'])}")
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
