"""A result record <-> its stored row.

The store treats the record as JSON-able data it does not interpret, except
for three things: the raw samples travel apart from it (packed float64, the
compact form), the probe outputs travel apart as an npz blob, and a few
fields are copied into indexed columns so queries across runs need not parse
every record. Reading puts the samples back, so a record read equals the
record written.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import orjson

SAMPLE_DTYPE = "<f8"  # little-endian float64: exact round trip of every sample, on any host


def row_status(record: Mapping[str, Any]) -> str:
    """ok | not_run (planned but never measured) | failed — the status the
    store indexes (the analysis has the same three, harness.analysis.baseline)."""
    e = record.get("error")
    if not e:
        return "ok"
    if e.get("stage") == "plan" or e.get("kind") == "not_run":
        return "not_run"
    return "failed"


def pack_samples(samples: Optional[Sequence[float]]) -> bytes:
    return np.asarray(samples if samples is not None else [], dtype=SAMPLE_DTYPE).tobytes()


def unpack_samples(blob: Optional[bytes]) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype=SAMPLE_DTYPE)


def to_row(run_id: str, job_key: str, record: Mapping[str, Any], outputs_blob: Optional[bytes],
           created: float) -> dict:
    rec = dict(record)
    timing = dict(rec.get("timing") or {})
    samples = timing.pop("samples_ms", None)
    rec["timing"] = timing
    dev = rec.get("device") or {}
    return {"run_id": run_id, "job_key": job_key, "record_json": json.dumps(rec), "samples": pack_samples(samples),
            "outputs": outputs_blob, "created": created, "candidate": str(rec.get("candidate") or ""),
            "profile": str(dev.get("profile") or ""), "target": str(rec.get("target") or ""),
            "device_id": dev.get("id"), "status": row_status(rec)}


def from_row(record_json: str, samples: Optional[bytes], as_array: bool = False) -> dict:
    """The record as written; with as_array, its samples as a read-only
    float64 array instead of a list (analyses over many runs skip the list)."""
    # orjson: a third less memory than json (it shares the keys of every
    # record) and faster, for reports and analyses that read many records.
    rec = orjson.loads(record_json)
    rec.setdefault("timing", {})
    if rec["timing"] is None:  # a failed job's record has no timing block; the reader still gets the key
        rec["timing"] = {}
    a = unpack_samples(samples)
    rec["timing"]["samples_ms"] = a if as_array else a.tolist()
    return rec
