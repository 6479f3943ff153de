"""Markdown rendering of the report document."""

from __future__ import annotations

from typing import Any, Optional


def fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def fmt_mb(b: Optional[float]) -> str:
    return "—" if b is None else f"{b / (1024 * 1024):.1f}"


def status(r: dict) -> str:
    e = r.get("error")
    if e:
        return f"{e.get('stage')}: {e.get('kind')}"
    v = r.get("validity") or {}
    return "ok" if v.get("stable", True) else "ok (unstable)"


def summary_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        t = r.get("timing") or {}
        m = r.get("memory") or {}
        p = r.get("placement") or {}
        rt = r.get("runtime") or {}
        fb = p.get("cpu_fallback_nodes")
        rows.append([
            f"{r['device'].get('profile')}" + (f" ({r['device'].get('id')})" if r["device"].get("id") else ""),
            r.get("candidate", ""),
            f"{rt.get('name')} {rt.get('version') or ''} {rt.get('ep')}".replace("  ", " "),
            fmt_ms(t.get("p50_ms")), fmt_ms(t.get("p90_ms")), fmt_ms(t.get("p99_ms")),
            str(t.get("n") or "—"), fmt_ms(t.get("load_ms")), fmt_mb(m.get("peak_bytes")),
            "—" if not p else f"{fb}/{p.get('nodes_total')}",
            status(r),
        ])
    return rows


HEADER = ["device", "candidate", "runtime", "p50 ms", "p90 ms", "p99 ms", "n", "load ms", "peak MB",
          "CPU fallback", "status"]


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def render(doc: dict) -> str:
    run = doc["run"]
    parts = [f"# harness report — run {run['id']}", "",
             f"Cohort **{run['cohort']}** · started {run['started']} · finished {run['finished'] or '—'} · "
             f"status {run['status']} · harness {run['harness_version']}", "",
             "## Results", "", table(HEADER, summary_rows(doc["results"])), ""]
    errors = [r for r in doc["results"] if r.get("error")]
    if errors:
        parts += ["## Errors and gaps", ""]
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
    extra = _analysis_sections(doc)
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
                     f"{100 * r['between_share']:.1f}% of variance between sessions"])
    return ["## Repeated sessions", "", table(["job", "sessions", "session p50 ms", "between-session std",
                                                "within-session std", "note"], rows), ""]


def _one_line(text: str, limit: int = 400) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= limit else t[: limit - 1] + "…"


def _analysis_sections(doc: dict) -> str:
    try:
        from harness.report.analysis_md import render_analysis
    except ImportError:
        return ""
    return render_analysis(doc)
