"""Writing a run's reports with memory flat in the number of results.

The analysis needs every record's statistics, not its raw samples (those
are in the record); only report.json carries the samples, and the HTML's
latency plot needs eight percentiles of each. So the document is built
without samples (`build_report(samples=False)`), and report.json is written
result by result while the samples stream from the store one batch at a time
(`Store.iter_samples`, `limits.REPORT_BATCH` results): what is held at once
is the records' statistics and one batch of samples, whatever the number of
results. The file parses to the same document `json_text` gives (NaN, which
JSON lacks, is null here).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import numpy as np

from harness.report import html
from harness.report.document import _atomic_write, build_report, write_reports


@functools.lru_cache(maxsize=64)
def _positions(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = (n - 1) * np.asarray(html.PLOT_PERCENTILES, dtype=np.float64) / 100.0
    lo = np.floor(pos).astype(np.intp)
    return lo, np.minimum(lo + 1, n - 1), pos - lo


def plot_quantiles(a: np.ndarray) -> np.ndarray:
    """html.PLOT_PERCENTILES of a, as numpy's default ("linear") method
    computes them, from one sort (np.percentile's generality costs more than
    the arithmetic for a thousand samples, ten thousand times)."""
    s = np.sort(a)
    lo, hi, frac = _positions(s.size)
    return s[lo] + (s[hi] - s[lo]) * frac


def _dumps(value, indent: bool = False) -> bytes:
    """orjson, as json_text's settings allow: numpy values, non-text keys,
    anything else as its str(); NaN becomes null (JSON has no NaN)."""
    import orjson

    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(value, default=str, option=opts)


def write_json(store, run_id: str, doc: dict, path: Path) -> dict:
    """report.json of `doc` (built without samples) with every result's
    samples from the store; returns job -> (plot percentiles, n) for the HTML.

    Written by orjson: every section indented, each result on one line (its
    samples among its other fields), as json_text's layout puts the samples
    on one line; a report of 10,000 results spends seconds less than with
    json's encoders."""
    by_job = {r.get("job"): r for r in doc["results"]}
    quantiles: dict = {}
    tmp = path.with_name(f".{path.name}.tmp")
    keys = list(doc)
    with open(tmp, "wb") as fh:
        fh.write(b"{")
        for i, k in enumerate(keys):
            fh.write((b"," if i else b"") + b"\n " + _dumps(k) + b": ")
            if k != "results":
                fh.write(_dumps(doc[k], indent=True).replace(b"\n", b"\n "))
                continue
            fh.write(b"[")
            first = True
            for key, samples in store.iter_samples(run_id):
                rec = by_job.get(key)
                if rec is None:
                    continue
                timing = rec.get("timing")
                if timing is None:
                    timing = rec["timing"] = {}
                held = timing.get("samples_ms")
                timing["samples_ms"] = samples
                try:
                    line = _dumps(rec)
                finally:
                    timing["samples_ms"] = held if held is not None else []
                fh.write((b"" if first else b",") + b"\n  " + line)
                first = False
                if samples.size:
                    quantiles[key] = (plot_quantiles(samples), int(samples.size))
            fh.write(b"]" if first else b"\n ]")
        fh.write(b"\n}\n")
    os.replace(tmp, path)
    return quantiles


def write_run_reports(store, run_id: str, out: Path, formats=("json", "md", "html"),
                      doc: Optional[dict] = None) -> tuple[dict, list[Path]]:
    """(the document without samples, the files written) — report.json,
    report.md, report.html of a stored run, streaming its samples."""
    doc = doc if doc is not None else build_report(store, run_id, samples=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    quantiles = None
    if "json" in formats:
        p = out / "report.json"
        quantiles = write_json(store, run_id, doc, p)
        written.append(p)
    if "html" in formats and quantiles is None:
        quantiles = {k: (plot_quantiles(a), int(a.size)) for k, a in store.iter_samples(run_id) if a.size}
    written += write_reports(doc, out, [f for f in formats if f != "json"], quantiles)
    return doc, written

