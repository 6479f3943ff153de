"""The report document: run metadata, every result row, and the analysis.

`build_report` reads only the store; `write_reports` renders the formats.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Optional


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def build_report(store, run_id: str) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    results = store.results(run_id)
    doc = {
        "run": {
            "id": run["id"], "cohort": run["cohort"], "started": _iso(run["started"]),
            "finished": _iso(run["finished"]), "harness_version": run["harness_version"],
            "status": run["status"],
        },
        "results": results,
        "baseline": None,
        "decision": None,
    }
    reps = repeat_summary(results)
    if reps:
        doc["repeats"] = reps
    try:
        from harness.analysis import analyse
    except ImportError:
        return doc
    doc.update(analyse(doc, store, run))
    return doc


def repeat_summary(results: list[dict]) -> dict:
    """Between- vs within-session variation of each job run as `--repeat N`
    sessions. Sessions are pooled only when their environments match."""
    from harness.measure import repeats
    from harness.measure.fingerprint import fingerprint, mismatches

    groups: dict[str, list[dict]] = {}
    for r in results:
        key = r.get("job", "")
        if "#" in key and not r.get("error") and (r.get("timing") or {}).get("samples_ms"):
            groups.setdefault(key.rsplit("#", 1)[0], []).append(r)
    out = {}
    for base, rows in groups.items():
        if len(rows) < 2:
            continue
        first = fingerprint(rows[0])
        diff = sorted({k for r in rows[1:] for k, _, _ in mismatches(first, fingerprint(r))})
        summary = repeats.analyse([r["timing"]["samples_ms"] for r in rows])
        if diff:
            summary = {"sessions": len(rows), "pooled": False,
                       "reason": f"not pooled: sessions ran in environments that differ in {', '.join(diff)}"}
        else:
            summary["pooled"] = True
        out[base] = summary
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(doc: dict, out: Path, formats=("json", "md", "html")) -> list[Path]:
    from harness.report import markdown

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "json" in formats:
        p = out / "report.json"
        _atomic_write(p, json.dumps(doc, indent=1, default=str))
        written.append(p)
    if "md" in formats:
        p = out / "report.md"
        _atomic_write(p, markdown.render(doc))
        written.append(p)
    if "html" in formats:
        try:
            from harness.report import html
        except ImportError:
            html = None
        if html is not None:
            p = out / "report.html"
            _atomic_write(p, html.render(doc))
            written.append(p)
    return written
