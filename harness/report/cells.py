"""Cells and the summary table every renderer shares: Markdown, HTML and
the terminal summary print the same numbers the same way."""

from __future__ import annotations

from typing import Optional

from harness.analysis.baseline import runtime_label


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
    ratio = lambda v: f"{v:.1f}×" if v < 100 else f"{v:.0f}×"  # noqa: E731
    if sp.get("p99_over_p50") is not None:
        return ratio(sp["p99_over_p50"])
    if sp.get("p90_over_p50") is not None:
        return ratio(sp["p90_over_p50"]) + " (p90)"
    return "—"


def memory_caveats(results: list[dict]) -> list[str]:
    """One line per runtime whose peak memory has a blind spot (memory.
    blind_spot: held outside the measured process): such a figure (marked †)
    is not comparable with another platform's."""
    seen: dict[str, str] = {}
    for r in results:
        m = r.get("memory") or {}
        if m.get("blind_spot") and m.get("peak_bytes") is not None:
            seen.setdefault(f"{r['device'].get('platform') or '?'} {runtime_label(r)}", m["blind_spot"])
    return [f"† {who}: {why}; not comparable with other platforms' peak memory" for who, why in seen.items()]


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


def fmt_placement(p: Optional[dict]) -> str:
    """`fallback nodes / model nodes`, and the partitions compiling EPs made;
    `?` where the runtime's output could not count (a fused subgraph's nodes)."""
    if not p:
        return "—"
    fb, total = p.get("cpu_fallback_nodes"), p.get("nodes_total")
    cell = f"{'?' if fb is None else fb} / {'?' if total is None else total}"
    parts = sum((p.get("partitions_by_ep") or {}).values())
    return cell + (f" ({parts} partition{'' if parts == 1 else 's'})" if parts else "")


def summary_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        t = r.get("timing") or {}
        m = r.get("memory") or {}
        p = r.get("placement") or {}
        rows.append([
            f"{r['device'].get('profile')}" + (f" ({r['device'].get('id')})" if r["device"].get("id") else ""),
            r.get("candidate", ""),
            runtime_label(r),
            fmt_ms(t.get("p50_ms")), fmt_ms(t.get("p90_ms")), fmt_ms(t.get("p99_ms")), fmt_spread(t),
            str(t.get("n") or "—"), fmt_ms(t.get("load_ms")),
            fmt_mb(m.get("peak_bytes")) + (" †" if m.get("blind_spot") and m.get("peak_bytes") is not None else ""),
            fmt_placement(p),
            status(r),
        ])
    return rows


HEADER = ["device", "candidate", "runtime", "p50 ms", "p90 ms", "p99 ms", "p99/p50", "n", "load ms", "peak MB",
          "fallback / model nodes", "status"]


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)
