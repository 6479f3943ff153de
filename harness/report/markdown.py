"""Markdown rendering of the report document."""

from __future__ import annotations

from harness.report.analysis_md import render_analysis
from harness.report.cells import HEADER, fmt_ms, memory_caveats, not_measured, summary_rows, table


def render(doc: dict) -> str:
    run = doc["run"]
    parts = [f"# harness report — run {run['id']}", "",
             f"Cohort **{run['cohort']}** · started {run['started']} · finished {run['finished'] or '—'} · "
             f"status {run['status']} · harness {run['harness_version']}", "",
             "## Results", "", table(HEADER, summary_rows(doc["results"])), "",
             "p99/p50 is the spread of the latency distribution (the workload's, reported, not flagged); "
             "`unstable` means the measurement itself cannot be trusted (see Measurement warnings).", ""]
    caveats = memory_caveats(doc["results"])
    if caveats:
        parts += ["Peak memory marked † leaves out memory held outside the measured process:", ""] + \
            [f"- {c}" for c in caveats] + [""]
    gaps = not_measured(doc["results"])
    if gaps:
        parts += ["## Not measured", "", "Why, and what fixes it:", ""] + [f"- {_one_line(g, 800)}" for g in gaps] + [""]
    errors = [r for r in doc["results"] if r.get("error") and r["error"].get("stage") != "plan"]
    if errors:
        parts += ["## Errors", ""]
        for r in errors:
            e = r["error"]
            parts.append(f"- `{r['job']}` — **{e.get('stage')}/{e.get('kind')}**: {_one_line(e.get('message', ''))}")
        parts.append("")
    warned = [r for r in doc["results"] if (r.get("validity") or {}).get("warnings")]
    if warned:
        parts += ["## Measurement warnings", ""]
        for r in warned:
            for w in r["validity"]["warnings"]:
                parts.append(f"- `{r['job']}`: {w}")
        parts.append("")
    parts += _sustained_section(doc) + _repeats_section(doc)
    extra = render_analysis(doc)
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def _sustained_section(doc: dict) -> list[str]:
    rows = []
    for r in doc["results"]:
        s = r.get("sustained")
        if not s:
            continue
        f, st = s.get("first_minute") or {}, s.get("steady_state") or {}
        onset = s.get("throttling_onset_s")
        rows.append([r["job"], f"{s['duration_s']:.0f}", fmt_ms(f.get("p50_ms")), fmt_ms(st.get("p50_ms")),
                     "—" if s.get("steady_vs_first") is None else f"{100 * s['steady_vs_first']:+.1f}%",
                     "none" if onset is None else f"{onset:.0f} s"])
    if not rows:
        return []
    return ["## Sustained load", "", table(["job", "seconds", "first-minute p50", "steady p50", "change",
                                             "throttling onset"], rows), ""]


def _repeats_section(doc: dict) -> list[str]:
    reps = doc.get("repeats") or {}
    if not reps:
        return []
    rows = []
    for key, r in reps.items():
        if not r.get("pooled"):
            rows.append([key, str(r["sessions"]), "—", "—", "—", r.get("reason", "")])
            continue
        rows.append([key, str(r["sessions"]), ", ".join(fmt_ms(x) for x in r["session_p50_ms"]),
                     fmt_ms(r["between_session_std_ms"]), fmt_ms(r["within_session_std_ms"]),
                     f"{100 * r['between_share']:.1f}% of variance between sessions"
                     + (f"; session p90s vary ±{100 * r['p90_cv']:.0f}%" if r.get("p90_cv") is not None else "")])
    return ["## Repeated sessions", "", table(["job", "sessions", "session p50 ms", "between-session std",
                                                "within-session std", "note"], rows), ""]


def _one_line(text: str, limit: int = 400) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= limit else t[: limit - 1] + "…"
