"""The history as a terminal table: one block per series, one line per run."""

from __future__ import annotations

from harness.analysis.noise import floor_line


def _ci(ci) -> str:
    return f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "—"


def _num(v, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def render(doc: dict) -> str:
    out = [f"history of {doc['candidate']} — change points on {doc['metric']} "
           f"(alpha {doc['alpha']:g}, min effect {100 * doc['min_effect']:g}%)",
           f"test: {doc['test']}"]
    if not doc["series"]:
        out.append("no stored results for this candidate")
    for s in doc["series"]:
        marks: dict[str, list[str]] = {}
        for c in s["changes"]:
            arrow = "▲" if c["direction"] == "up" else "▼"
            text = f"{arrow} {c['kind']}" + (f" ×{c['ratio']:.2f}" if "ratio" in c else f" {c['before']}→{c['after']}")
            marks.setdefault(c["run_id"], []).append(text)
        for p in s["points"]:
            if p.get("environment_change"):
                marks.setdefault(p["run_id"], []).append(
                    "env: " + ", ".join(f"{c['field']} {c['before']}→{c['after']}" for c in p["environment_change"]))
        header = ("run", "started", "status", "n", "p50 ms", "95% CI", "p90 ms", "95% CI", "peak MB", "fallback",
                  "")
        rows = [(p["run_id"], (p["started"] or "")[:19].replace("T", " "), p["status"], _num(p.get("n"), "d"),
                 _num(p.get("p50_ms"), ".3f"), _ci(p.get("p50_ci_ms")), _num(p.get("p90_ms"), ".3f"),
                 _ci(p.get("p90_ci_ms")), _num(p["peak_bytes"] / 2 ** 20 if p.get("peak_bytes") else None, ".1f"),
                 _num(p.get("fallback_nodes"), "d"), "; ".join(marks.get(p["run_id"], [])))
                for p in s["points"]]
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
        v = s["latest"]
        out += ["", f"{s['profile']} · {s['target']}", line(header), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        out.append(f"newest run {v['run_id']}: {v['verdict']}" + (f" — {'; '.join(v['reasons'])}" if v["reasons"]
                                                                  else ""))
        if v.get("sessions"):
            out.append(f"  {' → '.join(str(n) for n in v['sessions'])} session(s); {floor_line(v.get('noise_floor'))}")
    return "\n".join(out)
