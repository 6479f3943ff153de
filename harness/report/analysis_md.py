"""Markdown sections of the analysis, appended to report.md, and the one
decision line the CLI prints under its summary table."""

from __future__ import annotations

from typing import Optional

from harness.report.cells import fmt_ms, table


def _pct(v: Optional[float], digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}%"


def _num(v: Optional[float], fmt: str = ".3g") -> str:
    return "—" if v is None else format(v, fmt)


def _snr(p: dict) -> str:
    if p.get("identical"):
        return "exact"
    return "—" if p.get("snr_db") is None else f"{p['snr_db']:.1f} dB"


def _ok(v) -> str:
    return {True: "yes", False: "**no**", None: "—"}[v]


def decision_line(doc: dict) -> str:
    d = doc.get("decision") or {}
    if not d:
        return ""
    if not d.get("recommendation"):
        return "decision: none — " + "; ".join(d.get("caveats") or ["no rule fired"])
    s = d.get("suggested") or {}
    if d.get("status") == "provisional":
        # The headline itself says it may change, with what it waits for.
        parts = [f"decision (provisional): {d['label']} (rule {d['rule']}) — " + provisional_text(d)]
    else:
        parts = [f"decision: {d['label']} (rule {d['rule']})"]
    if s.get("candidate"):
        parts.append(f"candidate {s['candidate']}" + ("" if s.get("ok") else " (not yet passing)"))
    fails = d.get("budget_failures") or []
    judged = [b.get("passes") for b in ((doc.get("baseline") or {}).get("candidates") or {}).values()]
    if fails:
        parts.append(f"{len(fails)} budget failure(s)")
    elif any(j is not None for j in judged):
        parts.append("budgets ok")
    else:
        parts.append("no budget checked (none set, or nothing measured against one)")
    return " · ".join(parts)


def provisional_text(d: dict) -> str:
    """What a provisional decision waits for, and the command that measures it."""
    miss = d.get("missing") or []
    what = "; ".join(f"{m['what']} ({m['cause']})" if m.get("cause") else m["what"] for m in miss)
    cmds = list(dict.fromkeys(m["command"] for m in miss if m.get("command")))
    return f"missing: {what}" + (f"; measure with: {cmds[0]}" if cmds else "")


def _decision(d: dict) -> list[str]:
    out = ["## Decision", ""]
    if not d.get("recommendation"):
        out += ["No recommendation: " + "; ".join(d.get("caveats") or []), ""]
        return out
    winner = next(r for r in d["rules"] if r["id"] == d["rule"])
    s = d.get("suggested") or {}
    if d.get("status") == "provisional":
        out += [f"**Provisional: {d['label']}** — rule `{d['rule']}`: {winner['condition']}.", "",
                "This recommendation may change: evidence it rests on is missing.", ""]
        for m in d.get("missing") or []:
            out.append(f"- **{m['what']}** — {m.get('why') or m.get('cause') or ''}")
        cmds = list(dict.fromkeys(m["command"] for m in d.get("missing") or [] if m.get("command")))
        if cmds:
            out += ["", f"Measure it (after fixing the cause) with `{cmds[0]}`."]
        out.append("")
    else:
        out += [f"**{d['label']}** — rule `{d['rule']}`: {winner['condition']}.", ""]
    if s:
        out += [f"Suggested candidate: **{s.get('candidate') or 'none'}** — {s.get('reason')}.", ""]
    out += ["Evidence:", ""] + [f"- {e}" for e in winner["evidence"]] + [""]
    if d.get("caveats"):
        out += ["Caveats:", ""] + [f"- {c}" for c in d["caveats"]] + [""]
    if d.get("would_change"):
        out += ["What would change the outcome:", ""] + [f"- {c}" for c in d["would_change"]] + [""]
    rows = [[f"`{r['id']}`", r["condition"], {True: "**fired**", False: "no", None: "undetermined"}[r["fired"]],
             "; ".join(r["evidence"])] for r in d["rules"]]
    out += ["Every rule, in order of precedence (the first that fires decides); targets are counted as "
            f"{d.get('target_count_rule')}:", "", table(["rule", "condition", "fired", "evidence"], rows), ""]
    cap = d.get("capacity") or {}
    out += ["### Student capacity target", ""]
    if cap.get("status") == "ok":
        out.append(f"**{cap['params_fp32'][0]:,}–{cap['params_fp32'][1]:,} parameters at fp32, "
                   f"{cap['params_fp16'][0]:,}–{cap['params_fp16'][1]:,} at fp16** (60–70 % of the lowest tier's "
                   "budget after the measured overhead).")
        out.append("")
    out += [f"- {e}" for e in cap.get("explanation") or []] + [""]
    return out


def _validation(doc: dict) -> list[str]:
    v = doc.get("validation") or {}
    if not v:
        return []
    rows = []
    for c, x in v.items():
        t, g, r = x["teacher"], x["ground_truth"], x["runtime"]
        gt = "—" if g.get("min") is None else (f"{_pct(g['min'])}" if g["min"] == g["max"]
                                               else f"{_pct(g['min'])}–{_pct(g['max'])}")
        rows.append([c, _ok(t.get("ok")) + (f" ({t['worst']})" if t.get("worst") else ""),
                     gt + (f" (controller {_pct(g['controller'])})" if g.get("controller") is not None else ""),
                     _ok(r.get("ok")) + (f", max abs {_num(r.get('max_abs'))}" if r.get("max_abs") is not None else "")])
    return ["## Validation", "", "The three validation points: against the reference (teacher), against the eval "
            "labels, and against the candidate's own ONNX file run on the controller's CPU.", "",
            table(["candidate", "matches the reference", "task accuracy", "deployed = exported"], rows), ""]


def _parity(doc: dict) -> list[str]:
    rows = []
    for r in doc["results"]:
        p = r.get("parity")
        if not p:
            continue
        f = p.get("fidelity") or {}
        tol = p.get("tolerance")
        rows.append([r["device"].get("profile"), r["candidate"], f"{(r.get('runtime') or {}).get('name')} "
                     f"{(r.get('runtime') or {}).get('ep')}", _pct(p.get("top1_agreement")), _pct(p.get("accuracy")),
                     _snr(p), _num(p.get("rel_l2")), _num(p.get("max_abs")), _num(f.get("max_abs")),
                     _ok(tol["ok"]) if tol else "—"])
    if not rows:
        return []
    ref = next((r["parity"] for r in doc["results"] if r.get("parity")), {})
    return ["## Parity", "", f"Against **{ref.get('reference')}** on {ref.get('reference_on') or 'the controller'}; "
            "top-1 agreement only for class-score outputs (N, C); fidelity = the same candidate on the controller.", "",
            table(["device", "candidate", "runtime", "top-1 agr.", "accuracy", "SNR", "rel. L2", "max abs",
                   "fidelity max abs", "within policy"], rows), ""]


def _divergence(doc: dict) -> list[str]:
    out = []
    for c, m in (doc.get("divergence") or {}).items():
        if not m["pairs"]:
            continue
        rows = [[p["a"], p["b"], "yes" if p["cross_target"] else "no", _pct(p.get("top1_agreement")), _snr(p),
                 _num(p.get("rel_l2")), _num(p.get("max_abs")), _ok((p.get("tolerance") or {}).get("ok"))]
                for p in m["pairs"]]
        out += [f"### {c} — {m['status'].replace('_', ' ')}", "",
                table(["a", "b", "cross-target", "top-1 agr.", "SNR", "rel. L2", "max abs", "within policy"], rows), ""]
    return (["## Cross-platform divergence", ""] + out) if out else []


def _baseline(doc: dict) -> list[str]:
    b = doc.get("baseline") or {}
    if not b.get("candidates"):
        return []
    pol = b.get("policy") or {}
    out = ["## Cohort baseline", "", f"Budgets: p90 ≤ {pol.get('latency_p90_ms') or '—'} ms on the median device and "
           f"the lowest tier; peak memory ≤ {100 * pol.get('memory_fraction', 0.65):.0f} % of each device's budget.", ""]
    rows = []
    for c, x in b["candidates"].items():
        med, low, ch = x.get("median_device") or {}, x.get("lowest_tier") or {}, x["budgets"]
        rows.append([c, f"{med.get('profile', '—')} ({fmt_ms(med.get('p90_ms'))} ms)",
                     f"{low.get('tier', '—')}: {low.get('worst_profile') or '—'} ({fmt_ms(low.get('worst_p90_ms'))} ms)",
                     ch["latency_median"]["status"], ch["latency_lowest_tier"]["status"], ch["memory"]["status"],
                     {True: "pass", False: "**fail**", None: "—"}[x.get("passes")]])
    out += [table(["candidate", "median device (p90)", "lowest tier (worst p90)", "p90 median", "p90 lowest",
                   "memory", "overall"], rows), ""]
    for c, x in b["candidates"].items():
        drows = [[d["profile"], d["platform"], d["tier"], f"{d['share']:g}", d["status"], d.get("runtime") or "—",
                  fmt_ms(d.get("p90_ms")), _num(d.get("peak_mb"), ".1f"), _num(d.get("memory_limit_mb"), ".0f"),
                  _ok(d.get("memory_ok"))] for d in x["devices"]]
        out += [f"### {c}", "", table(["profile", "platform", "tier", "share", "status", "best target", "p90 ms",
                                       "peak MB", "limit MB", "memory ok"], drows), ""]
    return out


def _matrices(doc: dict) -> list[str]:
    out = []
    for c, m in (doc.get("coverage") or {}).items():
        rows = [[p] + [(m["cells"].get(p, {}).get(col) or {}).get("status", "not run") for col in m["columns"]]
                for p in m["rows"]]
        out += [f"### Runtime coverage — {c}", "", table(["device"] + m["columns"], rows), ""]
    for c, m in (doc.get("operator_support") or {}).items():
        if not m["rows"]:
            continue
        fb = m.get("fallback_nodes") or {}
        rows = [[op, str(m["nodes"].get(op) or "—")] + [m["cells"][op][col].replace("_", " ")
                                                        + (f" ({fb[op][col]})" if fb.get(op, {}).get(col) else "")
                                                        for col in m["columns"]]
                for op in m["rows"]]
        out += [f"### Operator support — {c}", "", "Model nodes per op type; a CPU fallback cell counts the model "
                "nodes of that op the CPU EP received.", "", table(["op type", "model nodes"] + m["columns"], rows),
                ""]
        out += [f"- {n}" for n in m.get("notes") or []] + ([""] if m.get("notes") else [])
    return (["## Coverage", ""] + out) if out else []


def render_analysis(doc: dict) -> str:
    if not doc.get("decision") and not doc.get("baseline"):
        return ""
    parts: list[str] = []
    if doc.get("decision"):
        parts += _decision(doc["decision"])
    parts += _validation(doc) + _parity(doc) + _divergence(doc) + _baseline(doc) + _matrices(doc)
    if doc.get("analysis_errors"):
        parts += ["## Analysis errors", ""] + [f"- {e}" for e in doc["analysis_errors"]] + [""]
    return "\n".join(parts)


def render_decision(doc: dict) -> str:
    """`harness decide`: the decision section and the budget verdicts."""
    d = doc.get("decision")
    if not d:
        errs = "; ".join(doc.get("analysis_errors") or []) or "no analysis in this report"
        return f"no decision: {errs}"
    lines = [f"# Decision for run {doc['run']['id']} (cohort {doc['run']['cohort']})", ""] + _decision(d)
    fails = d.get("budget_failures") or []
    lines += ["## Budgets", ""] + ([f"- FAIL {f}" for f in fails] or ["- every checked budget passes"]) + [""]
    return "\n".join(lines)
