"""The history's HTML: a trend plot per series (inline SVG, no script) and
the page `harness history --format html` writes. The dashboard shows the
same plots, with each run's point a link to that run's page.

Plot: runs evenly spaced in order; p50 (blue) and p90 (orange) with their
95 % intervals as whiskers; a change point is a vertical line (red: slower,
green: faster) with its ratio; an environment change is a grey dashed line
naming the fields; a failed run is a red cross on the axis. Peak memory and
CPU-fallback nodes follow in two small plots.
"""

from __future__ import annotations

import html
import math
from typing import Callable, Optional

from harness.analysis.noise import floor_line

E = html.escape
Link = Callable[[str], Optional[str]]
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#212121;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px} h1{font-size:22px} h2{font-size:17px;margin:26px 0 6px}
table{border-collapse:collapse;font-size:12.5px;background:#fff;margin:6px 0}
th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left} th{background:#f5f5f5}
svg{background:#fff;border:1px solid #e0e0e0;display:block;margin:6px 0} svg text{font:11px system-ui,sans-serif}
.bad{color:#c62828;font-weight:600} .good{color:#2e7d32;font-weight:600} .meta{color:#616161}
"""
W, LEFT, RIGHT = 860, 64, 16


def _f(v: float) -> str:
    return f"{v:.1f}"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    return next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= v)


def _frame(h: int, top: int, bottom: int, hi: float, unit: str) -> list[str]:
    out = []
    for i in range(5):
        v = hi * i / 4
        y = bottom - (bottom - top) * i / 4
        out += [f'<line x1="{LEFT}" y1="{_f(y)}" x2="{W - RIGHT}" y2="{_f(y)}" stroke="#eeeeee"/>',
                f'<text x="{LEFT - 4}" y="{_f(y + 4)}" text-anchor="end">{v:.3g}</text>']
    out.append(f'<text x="4" y="{top - 6}">{E(unit)}</text>')
    return out


def _xs(n: int) -> Callable[[int], float]:
    span = W - LEFT - RIGHT
    return (lambda i: LEFT + span / 2) if n == 1 else (lambda i: LEFT + 8 + (span - 16) * i / (n - 1))


def _point_mark(x: float, y: float, color: str, tip: str, href: Optional[str], cls: str) -> str:
    dot = f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3.2" fill="{color}" class="{cls}"><title>{E(tip)}</title></circle>'
    return f'<a href="{E(href)}">{dot}</a>' if href else dot


def trend_svg(series: dict, metric: str, pid: str, link: Link = lambda run_id: None) -> str:
    pts = series["points"]
    n = len(pts)
    if not n:
        return ""
    x = _xs(n)
    h, top, bottom = 260, 26, 222
    vals = [p[k] for p in pts for k in ("p50_ms", "p90_ms") if p.get(k) is not None]
    if not vals:
        return ""
    # Scaled to the percentiles, not their intervals: one wide interval (a
    # tail from few samples) must not flatten the whole series; whiskers clip.
    hi = _nice_max(max(vals) * 1.3)
    sy = lambda v: bottom - (bottom - top) * min(v, hi) / hi
    body = _frame(h, top, bottom, hi, "ms")
    for e in series["epochs"][1:]:
        i = next(k for k, p in enumerate(pts) if p["run_id"] == e["from_run"])
        fields = ", ".join(c["field"] for c in pts[i].get("environment_change") or [])
        body += [f'<line x1="{_f(x(i) - 4)}" y1="{top}" x2="{_f(x(i) - 4)}" y2="{bottom}" stroke="#9e9e9e" '
                 f'stroke-dasharray="3,3" class="epoch"><title>environment changed: {E(fields)}</title></line>',
                 f'<text x="{_f(x(i) - 2)}" y="{bottom - 4}" fill="#757575">env: {E(fields[:40])}</text>']
    for c in series["changes"]:
        if c["kind"] != "latency":
            continue
        cx = x(c["position"]) - 4
        color = "#c62828" if c["regression"] else "#2e7d32"
        body += [f'<line x1="{_f(cx)}" y1="{top}" x2="{_f(cx)}" y2="{bottom}" stroke="{color}" stroke-width="2" '
                 f'stroke-dasharray="6,3" class="change"><title>change at run {E(c["run_id"])}: ×{c["ratio"]:.2f} '
                 f'(95% CI ×{c["ratio_ci"][0]:.2f}–×{c["ratio_ci"][1]:.2f}, p={c["p_value"]:.2g})</title></line>',
                 f'<text x="{_f(cx + 3)}" y="{top + 10}" fill="{color}">×{c["ratio"]:.2f}</text>']
    for name, color in (("p50", "#1a237e"), ("p90", "#ff7043")):
        coords = [(x(i), sy(p[f"{name}_ms"])) for i, p in enumerate(pts) if p.get(f"{name}_ms") is not None]
        if len(coords) > 1:
            body.append(f'<polyline points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in coords)}" fill="none" '
                        f'stroke="{color}" stroke-width="1.5" class="series {name}"/>')
        for i, p in enumerate(pts):
            if p.get(f"{name}_ms") is None:
                continue
            ci = p.get(f"{name}_ci_ms")
            if ci:
                body.append(f'<line x1="{_f(x(i))}" y1="{_f(sy(ci[0]))}" x2="{_f(x(i))}" y2="{_f(sy(ci[1]))}" '
                            f'stroke="{color}" stroke-opacity="0.5"/>')
            tip = (f"run {p['run_id']} ({p['started']}): {name} {p[f'{name}_ms']:.4g} ms"
                   + (f", 95% CI {ci[0]:.4g}–{ci[1]:.4g}" if ci else "") + f", n={p.get('n')}")
            body.append(_point_mark(x(i), sy(p[f"{name}_ms"]), color, tip, link(p["run_id"]), f"point {name}"))
    for i, p in enumerate(pts):
        if p["status"] == "failed":
            tip = f"run {p['run_id']} failed: {p.get('error')}"
            mark = (f'<text x="{_f(x(i))}" y="{bottom + 4}" text-anchor="middle" fill="#c62828" class="failed" '
                    f'font-size="14">×<title>{E(tip)}</title></text>')
            href = link(p["run_id"])
            body.append(f'<a href="{E(href)}">{mark}</a>' if href else mark)
    step = max(1, n // 8)
    for i in range(0, n, step):
        body.append(f'<text x="{_f(x(i))}" y="{bottom + 18}" text-anchor="middle" fill="#616161">'
                    f'{E((pts[i]["started"] or "")[5:16].replace("T", " "))}</text>')
    body.append(f'<text x="{W - RIGHT}" y="{top - 6}" text-anchor="end">p50 (blue), p90 (orange), 95% intervals; '
                f'changes tested on {E(metric)}</text>')
    title = f"{series['profile']} · {series['target']}: latency over {n} run(s)"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="{E(pid)}" class="plot history" width="{W}" height="{h}" '
            f'viewBox="0 0 {W} {h}" role="img" aria-label="{E(title)}"><title>{E(title)}</title>{"".join(body)}</svg>')


def small_svg(series: dict, key: str, unit: str, scale: float, pid: str, label: str) -> str:
    pts = series["points"]
    vals = [(i, p[key] / scale) for i, p in enumerate(pts) if p.get(key) is not None]
    if not vals:
        return ""
    h, top, bottom = 120, 20, 100
    x = _xs(len(pts))
    hi = _nice_max(max(v for _, v in vals) * 1.1 or 1.0)
    sy = lambda v: bottom - (bottom - top) * v / hi
    body = _frame(h, top, bottom, hi, unit)
    body.append(f'<polyline points="{" ".join(f"{_f(x(i))},{_f(sy(v))}" for i, v in vals)}" fill="none" '
                f'stroke="#5c6bc0" stroke-width="1.5" class="series {E(key)}"/>')
    for c in series["changes"]:
        if c["kind"] == ("memory" if key == "peak_bytes" else "fallback"):
            color = "#c62828" if c["regression"] else "#2e7d32"
            body.append(f'<line x1="{_f(x(c["position"]) - 4)}" y1="{top}" x2="{_f(x(c["position"]) - 4)}" '
                        f'y2="{bottom}" stroke="{color}" stroke-dasharray="6,3" class="change"/>')
    title = f"{series['profile']} · {series['target']}: {label}"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="{E(pid)}" class="plot history-small" width="{W}" '
            f'height="{h}" viewBox="0 0 {W} {h}" role="img" aria-label="{E(title)}"><title>{E(title)}</title>'
            f'{"".join(body)}</svg>')


VERDICT_CLASS = {"regressed": "bad", "broken": "bad", "improved": "good"}


def series_html(doc: dict, k: int, s: dict, link: Link = lambda run_id: None) -> str:
    v = s["latest"]
    parts = [f'<h2 id="series-{k}">{E(s["profile"])} · {E(s["target"])}</h2>',
             f'<p>Newest run {E(v["run_id"])}: <span class="{VERDICT_CLASS.get(v["verdict"], "")}">'
             f'{E(v["verdict"])}</span>' + (" — " + E("; ".join(v["reasons"])) if v["reasons"] else "")
             + (f' <span class="floor">({E(" → ".join(str(n) for n in v["sessions"]))} session(s); '
                f'{E(floor_line(v.get("noise_floor")))})</span>' if v.get("sessions") else "") + "</p>",
             trend_svg(s, doc["metric"], f"plot-history-{k}", link) or "<p>No measured run.</p>",
             small_svg(s, "peak_bytes", "MB", 1024 * 1024, f"plot-memory-{k}", "peak memory"),
             small_svg(s, "fallback_nodes", "nodes", 1, f"plot-fallback-{k}", "CPU-fallback nodes")]
    if s["changes"]:
        rows = []
        for c in s["changes"]:
            href = link(c["run_id"])
            run = f'<a href="{E(href)}">{E(c["run_id"])}</a>' if href else E(c["run_id"])
            ratio = (f'×{c["ratio"]:.3f} (×{c["ratio_ci"][0]:.3f}–×{c["ratio_ci"][1]:.3f})' if "ratio" in c else "")
            pval = f'{c["p_value"]:.2g}' if "p_value" in c else ""
            cls, word = ("bad", "regression") if c["regression"] else ("good", "improvement")
            rows.append(f"<tr><td>{E(c['kind'])}</td><td>{run}</td><td>{c['before']:.4g} → {c['after']:.4g} "
                        f"{E(c['unit'])}</td><td>{ratio}</td><td>{pval}</td><td class=\"{cls}\">{word}</td></tr>")
        parts.append("<table><tr><th>what</th><th>from run</th><th>level</th><th>ratio (95% CI)</th><th>p</th>"
                     "<th></th></tr>" + "".join(rows) + "</table>")
    return "".join(parts)


def page(doc: dict, link: Link = lambda run_id: None, nav: str = "") -> str:
    """The whole page: self-contained, no script, no fetch (as report.html)."""
    body = [nav, f"<h1>History of {E(doc['candidate'])}</h1>",
            f'<p class="meta">Change points on {E(doc["metric"])}: {E(doc["test"])} (alpha {doc["alpha"]:g}, '
            f'min effect {100 * doc["min_effect"]:g}%).</p>']
    if doc["regressions"]:
        body.append('<ul class="bad">' + "".join(f"<li>{E(r)}</li>" for r in doc["regressions"]) + "</ul>")
    if not doc["series"]:
        body.append("<p>No stored results for this candidate.</p>")
    for k, s in enumerate(doc["series"]):
        body.append(series_html(doc, k, s, link))
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f"<title>harness history {E(doc['candidate'])}</title><style>{CSS}</style></head><body><main>"
            + "".join(body) + "</main></body></html>\n")
