"""Cells and the summary table every renderer shares: Markdown, HTML and
the terminal summary print the same numbers the same way."""

from __future__ import annotations

from typing import Optional


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
        if e.get("stage") == "plan":
            # The why in a few words; `not_measured` has the whole reason and its fix.
            return f"not run: {e.get('cause') or str(e.get('kind', '')).replace('_', ' ')}"
        return f"{e.get('stage')}: {e.get('kind')}"
    v = r.get("validity") or {}
    return "ok" if v.get("stable", True) else "ok (unstable)"


def fmt_spread(t: dict) -> str:
    """The tail against the median: p99/p50 (p90/p50 when p99 needs more
    samples than were taken). A property of the workload, not a flag."""
    sp = t.get("spread") or {}
    if sp.get("p99_over_p50") is not None:
        return f"{sp['p99_over_p50']:.2g}×"
    if sp.get("p90_over_p50") is not None:
        return f"{sp['p90_over_p50']:.2g}× (p90)"
    return "—"


def not_measured(results: list[dict]) -> list[str]:
    """One line per device profile with rows the plan could not run: which
    candidates and targets, and the whole reason with its fix."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        e = r.get("error") or {}
        if e.get("stage") == "plan":
            by.setdefault((r["device"].get("profile") or "?", e.get("message") or ""), []).append(r)
    lines = []
    for (profile, message), rows in by.items():
        cands = sorted({r.get("candidate") or "?" for r in rows})
        what = f"{len(cands)} candidate(s)" if len(cands) > 3 else ", ".join(cands)
        lines.append(f"{profile} ({what}): {message}")
    return lines


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
            fmt_ms(t.get("p50_ms")), fmt_ms(t.get("p90_ms")), fmt_ms(t.get("p99_ms")), fmt_spread(t),
            str(t.get("n") or "—"), fmt_ms(t.get("load_ms")), fmt_mb(m.get("peak_bytes")),
            "—" if not p else f"{fb}/{p.get('nodes_total')}",
            status(r),
        ])
    return rows


HEADER = ["device", "candidate", "runtime", "p50 ms", "p90 ms", "p99 ms", "p99/p50", "n", "load ms", "peak MB",
          "CPU fallback", "status"]


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)
