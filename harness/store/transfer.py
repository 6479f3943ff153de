"""`harness store copy`: runs from one store into another — a laptop's
SQLite file into the lab's shared PostgreSQL store, say.

Rows are copied as stored (records, raw samples and blobs byte for byte),
one run per transaction: a run lands whole or not at all, and a run the
target already has is skipped, never merged, so copying twice adds nothing.
Results go through the target's bulk path (COPY on PostgreSQL).
"""

from __future__ import annotations

from typing import Optional, Sequence

from sqlalchemy import select

from harness.store import postgres
from harness.store.schema import attempts, blobs, jobs, results, run_sessions, runs

CHILDREN = (run_sessions, jobs, attempts, blobs)


def copy_runs(src, dst, run_ids: Optional[Sequence[str]] = None) -> dict:
    """Copy runs (all, or these ids) from src to dst; returns what was
    copied and what the target had already."""
    with src._read() as c:
        ids = list(run_ids) if run_ids else [r[0] for r in c.execute(select(runs.c.id).order_by(runs.c.started))]
    copied, present, missing = [], [], []
    for rid in ids:
        with src._read() as c:
            run = c.execute(select(runs).where(runs.c.id == rid)).mappings().first()
            if run is None:
                missing.append(rid)
                continue
            children = {t.name: [dict(r) for r in c.execute(select(t).where(t.c.run_id == rid)).mappings()]
                        for t in CHILDREN}
            rows = [dict(r) for r in c.execute(select(results).where(results.c.run_id == rid)
                                               .order_by(results.c.created, results.c.job_key)).mappings()]
        with dst.engine.begin() as c:
            if c.execute(select(runs.c.id).where(runs.c.id == rid)).first() is not None:
                present.append(rid)
                continue
            c.execute(runs.insert().values(**{**dict(run), "lease_owner": None, "lease_until": None}))
            for t in CHILDREN:
                if children[t.name]:
                    c.execute(t.insert(), children[t.name])
            if rows:
                for r in rows:
                    r["samples"] = bytes(r["samples"]) if r["samples"] is not None else None
                    r["outputs"] = bytes(r["outputs"]) if r["outputs"] is not None else None
                if dst.backend == "postgresql":
                    postgres.copy_results(c, rows)
                else:
                    c.execute(results.insert(), rows)
        copied.append(rid)
    return {"copied": copied, "already_there": present, "missing": missing}
