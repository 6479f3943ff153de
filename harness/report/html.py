"""The HTML report: one self-contained file a release manager can open
anywhere. Plots are inline SVG drawn here, styles are inline, there is no
script at all, and a Content-Security-Policy forbids every fetch, so the file
renders the same offline as on a build server."""

from __future__ import annotations

import html
import math
from typing import Callable, Optional, Sequence

import numpy as np

from harness.kernel import limits
from harness.report.cells import HEADER, memory_caveats, not_measured, summary_rows

E = html.escape
COLORS = {"pass": "#2e7d32", "fail": "#c62828", "ok": "#2e7d32", "fallback": "#f9a825", "failed": "#c62828",
          "not run": "#bdbdbd", "accelerated": "#2e7d32", "cpu": "#90caf9", "cpu_fallback": "#f9a825",
          "unsupported": "#c62828", "unknown": "#eeeeee", "bar": "#5c6bc0", "budget": "#c62828"}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#212121;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px} .meta{color:#616161}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px;background:#fff}
th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;vertical-align:top} th{background:#f5f5f5}
.card{background:#fff;border:2px solid #3949ab;border-radius:8px;padding:12px 18px;margin:12px 0}
.card .rec{font-size:20px;font-weight:600;color:#1a237e} .bad{color:#c62828;font-weight:600}
.good{color:#2e7d32;font-weight:600} svg{background:#fff;border:1px solid #e0e0e0;margin:6px 0;display:block}
svg text{font:11px system-ui,sans-serif;fill:#212121} .legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
details{margin:6px 0} summary{cursor:pointer;color:#3949ab}
.grid{display:flex;flex-wrap:wrap;gap:4px 18px;align-items:flex-start} figure{margin:0}
figcaption{font-weight:600;font-size:13px;margin-top:8px}
"""
DARK = {COLORS[k] for k in ("ok", "failed", "accelerated")}


def _f(v: float) -> str:
    return f"{v:.1f}"


def _svg(w: int, h: int, body: list[str], pid: str, cls: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" id="{E(pid)}" class="plot {cls}" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{E(title)}"><title>{E(title)}</title>' + "".join(body)
            + "</svg>")


def _text(x, y, s, anchor="start", extra="") -> str:
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" {extra}>{E(str(s))}</text>'


def _rect(x, y, w, h, fill, tip="", extra="") -> str:
    t = f"<title>{E(tip)}</title>" if tip else ""
    return f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0))}" height="{_f(h)}" fill="{fill}" {extra}>{t}</rect>'


def _line(x1, y1, x2, y2, color="#9e9e9e", width=1.0, extra="") -> str:
    return (f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="{color}" '
            f'stroke-width="{width}" {extra}/>')


def _scale(lo: float, hi: float, x0: float, x1: float, log: bool) -> Callable[[float], float]:
    if log:
        a, b = math.log10(lo), math.log10(hi)
        return lambda v: x0 + (math.log10(max(v, lo)) - a) / (b - a) * (x1 - x0)
    return lambda v: x0 + (v - lo) / (hi - lo) * (x1 - x0)


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                if lo <= 10.0 ** e <= hi]
    step = 10 ** math.floor(math.log10((hi - lo) / 4 or 1))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= 6:
            step *= m
            break
    return [i * step for i in range(int(lo // step), int(hi // step) + 1) if lo <= i * step <= hi]


def _axis(sx, lo, hi, log, top, bottom, unit) -> list[str]:
    out = []
    for t in _ticks(lo, hi, log):
        x = sx(t)
        out += [_line(x, top, x, bottom, "#eeeeee"), _text(x, bottom + 13, f"{t:g}", "middle")]
    out.append(_text(sx(hi), bottom + 26, unit, "end"))
    return out


def _bars(pid: str, title: str, rows: Sequence[tuple[str, Optional[float], Optional[float], str]], unit: str) -> str:
    """Horizontal bars: (label, value, limit, tooltip); a limit draws a red tick."""
    vals = [v for _, v, _, _ in rows if v is not None] + [lim for _, _, lim, _ in rows if lim is not None]
    if not rows:
        return ""
    hi = max(vals, default=1.0) * 1.12 or 1.0
    lw, w, rh = 300, 820, 20
    h = 30 + rh * len(rows) + 32
    sx = _scale(0.0, hi, lw, w - 20, False)
    body = _axis(sx, 0.0, hi, False, 20, h - 32, unit)
    for i, (label, v, lim, tip) in enumerate(rows):
        y = 24 + i * rh
        body.append(_text(lw - 6, y + 12, label[:48], "end"))
        if v is None:
            body.append(_text(lw + 4, y + 12, "not measured", extra='fill="#9e9e9e"'))
        else:
            color = COLORS["fail"] if lim is not None and v > lim else COLORS["bar"]
            body.append(_rect(lw, y + 2, sx(v) - lw, rh - 6, color, tip, 'class="bar"'))
            body.append(_text(sx(v) + 4, y + 12, f"{v:.3g}"))
        if lim is not None:
            body.append(_line(sx(lim), y, sx(lim), y + rh - 2, COLORS["budget"], 2, 'class="limit"'))
    return _svg(w, h, body, pid, "bars", title)


PLOT_PERCENTILES = (1, 5, 25, 50, 75, 90, 95, 99)


def _latency_plot(results: list[dict], budget: Optional[float], quantiles: Optional[dict] = None) -> str:
    """`quantiles` (job -> (PLOT_PERCENTILES values, n)), from a report that
    streamed the samples past (harness/report/stream.py); else from each
    row's samples."""
    if quantiles is not None:
        rows = [r for r in results if r.get("job") in quantiles]
    else:
        rows = [r for r in results if (r.get("timing") or {}).get("samples_ms")]
    # A box per row: past a few hundred the plot is taller than any screen
    # (and the page a multiple of its tables); the tables and report.json
    # keep every row.
    shown, total = rows[:limits.REPORT_PLOT_ROWS], len(rows)
    rows = shown
    if quantiles is not None:
        qs = [quantiles[r["job"]][0] for r in rows]
        ns = [quantiles[r["job"]][1] for r in rows]
    else:
        qs = [np.percentile(np.asarray(r["timing"]["samples_ms"]), PLOT_PERCENTILES) for r in rows]
        ns = [len(r["timing"]["samples_ms"]) for r in rows]
    if not rows:
        return ""
    note = (f"<p>The first {len(rows)} of {total} rows; every row's figures are in the tables below and in "
            "report.json.</p>") if total > len(rows) else ""
    lo = max(min(q[0] for q in qs) * 0.8, 1e-4)
    hi = max(max(q[-1] for q in qs), budget or 0) * 1.2
    log = hi / lo > 20
    lw, w, rh = 300, 820, 24
    h = 30 + rh * len(rows) + 32
    sx = _scale(lo, hi, lw, w - 20, log)
    body = _axis(sx, lo, hi, log, 20, h - 32, "ms" + (" (log scale)" if log else ""))
    if budget:
        body.append(_line(sx(budget), 18, sx(budget), h - 32, COLORS["budget"], 2,
                          'stroke-dasharray="5,3" class="limit"'))
        body.append(_text(sx(budget) - 3, 16, f"p90 budget {budget:g} ms", "end", f'fill="{COLORS["budget"]}"'))
    for i, (r, q, n) in enumerate(zip(rows, qs, ns)):
        y = 24 + i * rh + rh / 2
        p1, p5, p25, p50, p75, p90, p95, p99 = (sx(v) for v in q)
        tip = (f"{r['job']}: p5 {q[1]:.3g} · p25 {q[2]:.3g} · p50 {q[3]:.3g} · p75 {q[4]:.3g} · p90 {q[5]:.3g} · "
               f"p95 {q[6]:.3g} ms · n={n}")
        label = f"{r['device'].get('profile')} · {r['candidate']} · {r['runtime'].get('ep')}"
        dot = COLORS["budget"] if budget and q[5] > budget else "#ff7043"
        body += [_text(lw - 6, y + 4, label[:48], "end"), _line(p5, y, p95, y, "#616161"),
                 _line(p1, y - 3, p1, y + 3, "#bdbdbd"), _line(p99, y - 3, p99, y + 3, "#bdbdbd"),
                 _rect(p25, y - 7, p75 - p25, 14, "#c5cae9", tip, 'class="box" stroke="#3949ab"'),
                 _line(p50, y - 7, p50, y + 7, "#1a237e", 2),
                 f'<circle cx="{_f(p90)}" cy="{_f(y)}" r="3.5" fill="{dot}"><title>p90 {q[5]:.3g} ms</title></circle>']
    return _svg(w, h, body, "plot-latency", "latency", "Latency distribution per device (box p25–p75, whiskers p5–p95, "
                "ticks p1/p99, dot p90)") + note


def _sustained_plots(results: list[dict]) -> str:
    """Latency over time for `--sustained` runs: p50 and p90 per window, the
    throttling onset marked where there is one."""
    plots = []
    for k, r in enumerate(x for x in results if (x.get("sustained") or {}).get("windows")):
        s = r["sustained"]
        ws = s["windows"]
        t_hi = max(ws[-1]["start_s"] + s["window_s"], 1e-9)
        v_hi = max(w["p90_ms"] for w in ws) * 1.15
        lw, w, h = 60, 820, 220
        sx = _scale(0.0, t_hi, lw, w - 20, False)
        sy = _scale(0.0, v_hi, h - 32, 20, False)
        body = _axis(sx, 0.0, t_hi, False, 20, h - 32, "s")
        for t in _ticks(0.0, v_hi, False):
            body += [_line(lw, sy(t), w - 20, sy(t), "#eeeeee"), _text(lw - 4, sy(t) + 4, f"{t:g}", "end")]
        for key, color in (("p50_ms", "#1a237e"), ("p90_ms", "#ff7043")):
            pts = " ".join(f"{_f(sx(x['start_s'] + s['window_s'] / 2))},{_f(sy(x[key]))}" for x in ws)
            body.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2" '
                        f'class="series"><title>{key[:3]} per {s["window_s"]:.3g} s window</title></polyline>')
        onset = s.get("throttling_onset_s")
        if onset is not None:
            body += [_line(sx(onset), 20, sx(onset), h - 32, COLORS["budget"], 2, 'stroke-dasharray="5,3"'),
                     _text(sx(onset) + 4, 30, f"throttling from {onset:.0f} s", extra=f'fill="{COLORS["budget"]}"')]
        body.append(_text(lw, 14, "ms (p50 blue, p90 orange)"))
        title = f"{r['job']}: latency over {s['duration_s']:.0f} s"
        plots.append(f"<figure>{_svg(w, h, body, f'plot-sustained-{k}', 'sustained', title)}"
                     f"<figcaption>{E(title)}</figcaption></figure>")
    return ("<h2>Sustained load</h2>" + "".join(plots)) if plots else ""


def _heatmap(pid: str, cls: str, title: str, rows: list[str], cols: list[str],
             cell: Callable[[str, str], tuple[str, str, str]]) -> str:
    if not rows or not cols:
        return ""
    lw = min(max(len(r) for r in rows) * 6.6 + 14, 320)
    cw, rh, top = 92, 22, 26 + min(max(len(c) for c in cols), 44) * 4.6
    # Rotated column labels reach right of their column: leave room for the last.
    w, h = int(lw + cw * len(cols) + min(max(len(c) for c in cols), 44) * 5.4 + 10), int(top + rh * len(rows) + 8)
    body = []
    for j, c in enumerate(cols):
        x = lw + j * cw + cw / 2
        body.append(_text(x, top - 6, c[:44], "start", f'transform="rotate(-35 {_f(x)} {_f(top - 6)})"'))
    for i, r in enumerate(rows):
        y = top + i * rh
        body.append(_text(lw - 6, y + 15, r[:46], "end"))
        for j, c in enumerate(cols):
            color, label, tip = cell(r, c)
            body.append(_rect(lw + j * cw + 1, y + 1, cw - 2, rh - 2, color, tip, 'class="cell"'))
            body.append(_text(lw + j * cw + cw / 2, y + 15, label[:14], "middle",
                              'style="fill:#fff"' if color in DARK else ""))
    return _svg(w, h, body, pid, f"heatmap {cls}", title)


def _legend(keys: Sequence[str]) -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{COLORS[k]}"></i>{E(k.replace("_", " "))}</span>'
                                          for k in keys) + "</div>"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    return ("<table><tr>" + "".join(f"<th>{E(str(h))}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{E(str(c))}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def _ul(items: Sequence[str], cls: str = "") -> str:
    return f'<ul class="{cls}">' + "".join(f"<li>{E(i)}</li>" for i in items) + "</ul>" if items else ""


def _decision_card(d: Optional[dict]) -> str:
    if not d:
        return '<div class="card" id="decision"><p>No decision: the analysis did not run.</p></div>'
    s = d.get("suggested") or {}
    cap = d.get("capacity") or {}
    fails = d.get("budget_failures") or []
    provisional = d.get("status") == "provisional"
    label = d.get("label") or "No recommendation"
    parts = ['<div class="card" id="decision">',
             f'<div class="rec">{"Provisional: " if provisional else ""}{E(label)}</div>']
    if provisional:
        cmds = list(dict.fromkeys(m["command"] for m in d.get("missing") or [] if m.get("command")))
        parts += ['<p class="bad">This recommendation may change: evidence it rests on is missing.</p>',
                  _ul([f"{m['what']} — {m.get('why') or m.get('cause') or ''}" for m in d.get("missing") or []])]
        if cmds:
            parts.append(f"<p>Measure it (after fixing the cause) with <code>{E(cmds[0])}</code>.</p>")
    if d.get("rule"):
        winner = next(r for r in d["rules"] if r["id"] == d["rule"])
        parts.append(f"<p>Rule <b>{E(d['rule'])}</b>: {E(winner['condition'])}.</p>")
        if s:
            parts.append(f'<p>Candidate: <b class="{"good" if s.get("ok") else "bad"}">{E(s.get("candidate") or "none")}'
                         f"</b> — {E(s.get('reason') or '')}</p>")
        parts += ["<h3>Evidence</h3>", _ul(winner["evidence"])]
    if d.get("caveats"):
        parts += ["<h3>Caveats</h3>", _ul(d["caveats"])]
    if d.get("would_change"):
        parts += ["<h3>What would change the outcome</h3>", _ul(d["would_change"])]
    parts += ["<h3>Budgets</h3>", _ul([f"FAIL {f}" for f in fails], "bad") if fails else
              '<p class="good">Every checked budget passes.</p>']
    if cap:
        head = cap.get("status")
        if head == "ok":
            head = (f"{cap['params_fp32'][0]:,}–{cap['params_fp32'][1]:,} parameters at fp32, "
                    f"{cap['params_fp16'][0]:,}–{cap['params_fp16'][1]:,} at fp16")
        parts += [f"<h3>Student capacity target: {E(str(head))}</h3>", _ul(cap.get("explanation") or [])]
    rows = [[r["id"], {True: "fired", False: "no", None: "undetermined"}[r["fired"]], r["condition"],
             "; ".join(r["evidence"])] for r in d.get("rules") or []]
    parts += [f"<details><summary>All rules (targets counted as {E(d.get('target_count_rule') or '')})</summary>",
              _table(["rule", "fired", "condition", "evidence"], rows), "</details></div>"]
    return "".join(parts)


def _budget_plots(doc: dict) -> str:
    base = (doc.get("baseline") or {}).get("candidates") or {}
    pol = (doc.get("baseline") or {}).get("policy") or {}
    p90_rows, mem_rows = [], []
    for c, b in base.items():
        for d in b["devices"]:
            label = f"{c} · {d['profile']}"
            p90_rows.append((label, d.get("p90_ms"), pol.get("latency_p90_ms"),
                             f"{label}: {d.get('runtime') or d['status']}"))
            mem_rows.append((label, d.get("peak_mb"), d.get("memory_limit_mb"),
                             f"{label}: peak {d.get('peak_mb') or 0:.1f} MB, limit {d.get('memory_limit_mb') or 0:.0f} MB"))
    return ("<h2>p90 against the budget</h2>" + _bars("plot-p90-budget", "p90 per device (fastest target) against the "
                                                        "latency budget", p90_rows, "ms")
            + "<h2>Memory against the budget</h2>" + _bars("plot-memory", "Peak memory per device against "
                                                            "memory_fraction × memory_budget_mb", mem_rows, "MB"))


def _op_cell(m: dict, op: str, col: str) -> tuple[str, str, str]:
    """An operator-support cell: model nodes of the op in the model, and how
    many of them the CPU EP received there."""
    st = m["cells"][op][col]
    n = (m.get("fallback_nodes") or {}).get(op, {}).get(col)
    label = st.replace("cpu_fallback", "fallback") + (f" {n}" if n else "")
    where = f"; {n} on the CPU" if n else ""
    return COLORS[st], label, f"{op} ({m['nodes'].get(op) or 0} model node(s){where}) on {col}: {st}"


def _matrices(doc: dict) -> str:
    out = ["<h2>Operator support (CPU fallback heatmap)</h2>", _legend(["accelerated", "cpu", "cpu_fallback",
                                                                      "unsupported", "unknown"]), '<div class="grid">']
    for c, m in (doc.get("operator_support") or {}).items():
        out.append(f"<figure><figcaption>{E(c)}</figcaption>" + _heatmap(
            f"plot-fallback-{c}", "fallback", f"Operator support of {c}", m["rows"], m["columns"],
            lambda r, col, m=m: _op_cell(m, r, col)) + "</figure>")
    out.append("</div>")
    out += ["<h2>Cross-platform divergence</h2>", "<p>Top-1 disagreement for class scores, else relative L2, "
            "between the same candidate's outputs on two targets; red when outside the quality policy.</p>",
            '<div class="grid">']
    for c, m in (doc.get("divergence") or {}).items():
        pairs = {(p["a"], p["b"]): p for p in m["pairs"]}
        pairs.update({(p["b"], p["a"]): p for p in m["pairs"]})

        def cell(r, col, pairs=pairs):
            if r == col:
                return "#f5f5f5", "—", r
            p = pairs.get((r, col))
            ok = (p.get("tolerance") or {}).get("ok")
            v = f"{100 * (1 - p['top1_agreement']):.2f}%" if p.get("top1_agreement") is not None else \
                ("exact" if p.get("identical") else f"{p.get('rel_l2') or 0:.2e}")
            return (COLORS["ok"] if ok else COLORS["fail"] if ok is False else COLORS["unknown"], v,
                    f"{p['a']} vs {p['b']}: max abs {p.get('max_abs')}, rel L2 {p.get('rel_l2')}, SNR {p.get('snr_db')}")
        out.append(f"<figure><figcaption>{E(c)} — {E(m['status'].replace('_', ' '))}</figcaption>"
                   + (_heatmap(f"plot-divergence-{c}", "divergence", f"Divergence matrix of {c}", m["entries"],
                               m["entries"], cell) if len(m["entries"]) > 1 else
                      "<p>Ran on fewer than two targets: nothing to compare.</p>") + "</figure>")
    out += ["</div>", "<h2>Runtime-version coverage</h2>", _legend(["ok", "fallback", "failed", "not run"]),
            '<div class="grid">']
    for c, m in (doc.get("coverage") or {}).items():
        def cov(r, col, m=m):
            x = m["cells"].get(r, {}).get(col) or {"status": "not run", "by_ep": {}, "messages": []}
            eps = "; ".join(f"{k}: {v}" for k, v in x["by_ep"].items()) or "not run"
            why = (" — " + " | ".join(x["messages"])) if x["messages"] else ""
            return COLORS[x["status"]], x["status"], f"{r} × {col}: {eps}{why}"
        out.append(f"<figure><figcaption>{E(c)}</figcaption>" + _heatmap(
            f"plot-coverage-{c}", "coverage", f"Runtime coverage of {c}", m["rows"], m["columns"], cov) + "</figure>")
    return "".join(out) + "</div>"


def _parity_table(doc: dict) -> str:
    rows = []
    for r in doc["results"]:
        p = r.get("parity")
        if not p:
            continue
        pct = lambda v: "—" if v is None else f"{100 * v:.2f}%"
        rows.append([r["job"], pct(p.get("top1_agreement")), pct(p.get("accuracy")),
                     "exact" if p.get("identical") else ("—" if p.get("snr_db") is None else f"{p['snr_db']:.1f} dB"),
                     "—" if p.get("rel_l2") is None else f"{p['rel_l2']:.3g}",
                     "—" if p.get("max_abs") is None else f"{p['max_abs']:.3g}",
                     "—" if not p.get("fidelity") else f"{p['fidelity'].get('max_abs')}",
                     {True: "yes", False: "NO", None: "—"}[(p.get("tolerance") or {}).get("ok")]])
    return _table(["job", "top-1 agreement", "accuracy", "SNR", "rel. L2", "max abs", "fidelity max abs",
                   "within policy"], rows) if rows else "<p>No outputs to compare.</p>"


def render(doc: dict, quantiles: Optional[dict] = None) -> str:
    run = doc["run"]
    budget = ((doc.get("baseline") or {}).get("policy") or {}).get("latency_p90_ms")
    body = [f"<h1>harness report — run {E(run['id'])}</h1>",
            f'<p class="meta">Cohort <b>{E(str(run["cohort"]))}</b> · started {E(str(run["started"]))} · finished '
            f"{E(str(run.get('finished') or '—'))} · status {E(str(run.get('status')))} · harness "
            f"{E(str(run.get('harness_version')))}</p>",
            "<h2>Decision</h2>", _decision_card(doc.get("decision")),
            "<h2>Latency distribution per device</h2>", _latency_plot(doc["results"], budget, quantiles) or "<p>No samples.</p>",
            _sustained_plots(doc["results"]), _budget_plots(doc), _matrices(doc),
            "<h2>Parity against the reference</h2>", _parity_table(doc),
            "<h2>All results</h2>", _table(HEADER, summary_rows(doc["results"]))]
    if memory_caveats(doc["results"]):
        body += ["<p>Peak memory marked † leaves out memory held outside the measured process:</p>",
                 _ul(memory_caveats(doc["results"]))]
    gaps = not_measured(doc["results"])
    if gaps:
        body += ["<h2>Not measured — why, and what fixes it</h2>", _ul([g[:1200] for g in gaps])]
    errs = [f"{r['job']}: {r['error'].get('stage')}/{r['error'].get('kind')}: {str(r['error'].get('message'))[:300]}"
            for r in doc["results"] if r.get("error") and r["error"].get("stage") != "plan"]
    if errs:
        body += ["<h2>Errors</h2>", _ul(errs)]
    if doc.get("analysis_errors"):
        body += ["<h2>Analysis errors</h2>", _ul(doc["analysis_errors"], "bad")]
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>harness report {E(run['id'])}</title><style>{CSS}</style></head><body><main>"
            + "".join(body) + "</main></body></html>\n")
