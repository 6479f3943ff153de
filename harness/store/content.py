"""Content-addressed entries of the store: model facts and reference outputs.

Neither belongs to a run. An entry's key is made of exactly what determines
its value (the model's bytes by digest; for reference outputs also the probe
inputs and the runtime that computed them), so reading one back is the same
as computing it again, and a repeat write of a key is a no-op (the first
write wins, as for results).
"""

from __future__ import annotations

import json
import time
from typing import Optional

from sqlalchemy import select

from harness.store.schema import model_facts, reference_outputs


def get_facts(store, digest: str, fmt: str, version: int) -> Optional[dict]:
    with store._read() as c:
        raw = c.execute(select(model_facts.c.facts_json).where(
            model_facts.c.digest == digest, model_facts.c.format == fmt,
            model_facts.c.facts_version == version)).scalar()
    return json.loads(raw) if raw else None


def put_facts(store, digest: str, fmt: str, version: int, facts: dict) -> None:
    ins = store._insert(model_facts)
    with store.engine.begin() as c:
        c.execute(ins.values(digest=digest, format=fmt, facts_version=version, facts_json=json.dumps(facts),
                             created=time.time()).on_conflict_do_nothing())


def get_reference(store, key: str) -> Optional[tuple[bytes, dict]]:
    with store._read() as c:
        row = c.execute(select(reference_outputs.c.outputs, reference_outputs.c.meta_json).where(
            reference_outputs.c.key == key)).first()
    return (bytes(row[0]), json.loads(row[1])) if row else None


def put_reference(store, key: str, model_digest: str, outputs: bytes, meta: dict) -> None:
    ins = store._insert(reference_outputs)
    with store.engine.begin() as c:
        c.execute(ins.values(key=key, model_digest=model_digest, outputs=outputs, meta_json=json.dumps(meta),
                             created=time.time()).on_conflict_do_nothing())
