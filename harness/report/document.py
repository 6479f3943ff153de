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
    try:
        from harness.analysis import analyse
    except ImportError:
        return doc
    doc.update(analyse(doc, store, run))
    return doc


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
