"""The report document: run metadata, every result row, and the analysis.

`build_report` reads only the store and returns the document checked
against the typed record (harness.record); `write_reports` renders the
formats.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
from pathlib import Path
from typing import Optional

from harness.analysis import analyse
from harness.kernel.configfile import ConfigError
from harness.record.load import load_document
from harness.record.types import SCHEMA_VERSION
from harness.report import html, markdown


def _iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def build_report(store, run_id: str, samples: bool = True) -> dict:
    """The whole document; samples=False leaves every `timing.samples_ms`
    empty (the statistics stay: they are in the record), for reports of
    many results that stream the samples past instead (stream.py)."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    results = store.results(run_id) if samples else store.results_without_samples(run_id)
    if not samples and any("#" in r.get("job", "") for r in results):
        # Rows of releases before sessions (`--repeat`) are pooled from their samples.
        legacy = {r["job"]: r for r in results if "#" in r.get("job", "")}
        for key, a in store.iter_samples(run_id):
            if key in legacy:
                legacy[key]["timing"]["samples_ms"] = a.tolist()
    doc = {
        "schema_version": SCHEMA_VERSION,
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
    if not samples:
        for r in results:
            if "#" in r.get("job", ""):
                r["timing"]["samples_ms"] = []
    doc.update(analyse(doc, store, run))
    try:
        return load_document(doc, f"run {run_id}")
    except ConfigError as exc:
        # A field the harness itself wrote but the record does not declare.
        raise ConfigError(f"{exc} — declare it in harness/record/types.py (docs/record.md, 'Adding a field')") \
            from None


def repeat_summary(results: list[dict]) -> dict:
    """Between- vs within-session variation of each job measured in several
    sessions. Older reports' `--repeat` rows are pooled only when their
    environments match."""
    from harness.kernel.measure import repeats
    from harness.analysis.environment import fingerprint, mismatches

    groups: dict[str, list[dict]] = {}
    out = {}
    for r in results:
        key = r.get("job", "")
        t = r.get("timing") or {}
        if len(t.get("sessions") or ()) >= 2 and not r.get("error"):
            # A record measured in sessions (every session of one device):
            # the figures the record built (kernel.measure.sessions.describe).
            b = t.get("between_sessions") or {}
            out[key] = {**b, "sessions": len(t["sessions"]), "pooled": True,
                        "session_p50_ms": [x.get("p50_ms") for x in t["sessions"]]}
        elif "#" in key and not r.get("error") and t.get("samples_ms"):
            # Records of releases before sessions: one row per `--repeat` session.
            groups.setdefault(key.rsplit("#", 1)[0], []).append(r)
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


def json_text(doc: dict) -> str:
    """report.json's text: indented for people, but every raw `samples_ms`
    array on one line.

    json's fast C encoder runs only without `indent`; with it, a report of
    1,000 results x 1,000 samples went through the pure-Python encoder one
    number per line, which took about twice as long and made the file a
    third larger (bench/aggregate.py). The arrays are encoded compactly by
    the C encoder and spliced into the indented rest.
    """
    token = secrets.token_hex(8)
    arrays: list[str] = []

    def swap(o):
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                if k == "samples_ms" and isinstance(v, list):
                    arrays.append(samples_text(v))
                    out[k] = f"{token}:{len(arrays) - 1}"
                else:
                    out[k] = swap(v)
            return out
        if isinstance(o, (list, tuple)):
            return [swap(v) for v in o]
        return o

    text = json.dumps(swap(doc), indent=1, default=str)
    return re.sub(f'"{token}:([0-9]+)"', lambda m: arrays[int(m.group(1))], text)


def samples_text(samples) -> str:
    """A samples array (list or float64 array) as compact JSON, each float
    its shortest exact repr, by orjson (a report of 10,000 x 1,000 samples
    spends most of its time here with json's encoder). A value orjson refuses
    (not a float) goes through json, as before."""
    import orjson

    try:
        return orjson.dumps(samples, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(list(samples), separators=(",", ":"), default=str)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(doc: dict, out: Path, formats=("json", "md", "html"), quantiles=None) -> list[Path]:
    """report.json / .md / .html of a whole document; `quantiles` (the
    latency plot's, by result) when the samples are not in the document."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "json" in formats:
        p = out / "report.json"
        _atomic_write(p, json_text(doc))
        written.append(p)
    if "md" in formats:
        p = out / "report.md"
        _atomic_write(p, markdown.render(doc))
        written.append(p)
    if "html" in formats:
        p = out / "report.html"
        _atomic_write(p, html.render(doc, quantiles))
        written.append(p)
    return written
