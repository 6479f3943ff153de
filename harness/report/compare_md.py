"""`harness compare` as text: one row per job with its sessions and noise
floor, then the rows that cannot tell, the per-pair ratios of an A/B run,
devices and regressions."""

from __future__ import annotations

from harness.analysis.noise import floor_line
from harness.report.cells import fmt_ms, table


def _ratio(lat: dict, metric: str) -> str:
    if lat.get(f"{metric}_ratio") is None:
        return "—"
    ci = lat.get(f"{metric}_ratio_ci")
    return f"×{lat[f'{metric}_ratio']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _floor(lat: dict) -> str:
    f = (lat.get("noise_floor") or {}).get("p90") or {}
    return "unknown" if f.get("fraction") is None else f"±{100 * f['fraction']:.1f}%"


def render_compare(c: dict) -> str:
    paired = c.get("design") == "interleaved pairs"
    rows = []
    for r in c["rows"]:
        lat = r.get("latency") or {}
        mem = r.get("memory") or {}
        sessions = f"{lat['old_sessions']} → {lat['new_sessions']}" if "old_sessions" in lat else "—"
        rows.append([r["job"], sessions, fmt_ms(lat.get("old_p90_ms")), fmt_ms(lat.get("new_p90_ms")),
                     _ratio(lat, "p90"), _ratio(lat, "p50"), _floor(lat),
                     "—" if not mem else f"{100 * (mem['ratio'] - 1):+.1f}%",
                     r["bucket"] + (" ⚠" if r["regression"] else ""),
                     "; ".join(r["notes"] + ([r["refused"]] if r.get("refused") else [])
                               + ([f"{', '.join(lat['below_floor'])} inside the noise floor"]
                                  if lat.get("below_floor") else []))])
    head = (f"Interleaved A/B run {c.get('run')}: {c['old']} and {c['new']} measured in alternating sessions (ABBA) "
            "on the same devices; ratios and intervals over the pairs." if paired else
            f"Runs {c['old']} → {c['new']}, judged on their sessions.")
    out = [f"# Compare {c['old']} → {c['new']}", "", head, "",
           f"A regression: the p50 or p90 slower by more than {100 * c['threshold']:g}%, its 95% interval "
           "(hierarchical bootstrap over sessions, then runs) above 1, and the change beyond the device target's "
           "noise floor (how far noise alone moves it between " + ("interleaved pairs" if paired else "two runs")
           + " on that device target and model size class, from the store).", "",
           table(["job", "sessions" if not paired else "pairs", "old p90 ms", "new p90 ms", "p90 ratio [95% CI]",
                  "p50 ratio [95% CI]", "noise floor (p90)", "peak mem", "bucket", "notes"], rows), "",
           "Buckets: " + ", ".join(f"{k} {v}" for k, v in sorted(c["buckets"].items())), ""]
    floors = [(r["job"], (r.get("latency") or {}).get("noise_floor") or {}) for r in c["rows"] if r.get("latency")]
    if floors:
        out += ["## Noise floors", ""] + [f"- `{job}`: p90 {floor_line(f.get('p90'))}; p50 {floor_line(f.get('p50'))}"
                                          for job, f in floors] + [""]
    if paired:
        for r in c["rows"]:
            pairs = (r.get("latency") or {}).get("pairs") or []
            if pairs:
                out += [f"## Pairs — {r['job']}", "",
                        table(["pair", "old p90 ms", "new p90 ms", "p90 ratio", "old p50 ms", "new p50 ms",
                               "p50 ratio"],
                              [[str(p["session"]), fmt_ms(p["old_p90_ms"]), fmt_ms(p["new_p90_ms"]),
                                "—" if p["p90_ratio"] is None else f"×{p['p90_ratio']:.3f}", fmt_ms(p["old_p50_ms"]),
                                fmt_ms(p["new_p50_ms"]), "—" if p["p50_ratio"] is None else f"×{p['p50_ratio']:.3f}"]
                               for p in pairs]), ""]
    dv = c["devices"]
    if dv["new_profiles"] or dv["missing_profiles"] or dv["changed"]:
        out += ["## Devices", ""]
        out += [f"- new: {p}" for p in dv["new_profiles"]] + [f"- missing: {p}" for p in dv["missing_profiles"]]
        out += [f"- {p}: device {', '.join(x['old'])} → {', '.join(x['new'])}" for p, x in dv["changed"].items()]
        out.append("")
    if c.get("forced"):
        out += ["**Forced:** rows whose environments differ were compared anyway (marked in notes).", ""]
    if c.get("undetermined"):
        out += ["## Cannot tell", ""] + [f"- {u}" for u in c["undetermined"]] + [""]
    out += ["## Regressions", ""] + ([f"- {r}" for r in c["regressions"]] or ["none"])
    return "\n".join(out) + "\n"
