"""Model facts by digest: inspect an ONNX file once per content, ever.

Inspecting a model (parsing it with `onnx`, whose import alone is a few
tenths of a second, then counting weights) is the same work for the same
bytes every run. The facts — inputs and outputs with their dims, parameter
count, precision, op types, opset, weight bytes — are kept in the store's
`model_facts` table under the file's SHA-256 (harness/store/content.py), so
a later run of the same file only hashes it. A file that fails inspection is
never cached: its error is raised again, from the file, each time.

`FACTS_VERSION` is part of the key: when what the inspector computes
changes, bump it and every file is inspected again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from harness.kernel.modelfile import ModelInfo, TensorSpec, inspect_onnx, sha256_file

log = logging.getLogger("harness")

FACTS_VERSION = 1


class FactsCache:
    """Facts from a store's table (when a store is open) and those learnt
    this run, which `flush` writes once the run's store is open."""

    def __init__(self, store=None):
        self.store = store
        self.new: dict[tuple[str, str], dict] = {}

    def get(self, digest: str, fmt: str) -> Optional[dict]:
        if (digest, fmt) in self.new:
            return self.new[(digest, fmt)]
        if self.store is None:
            return None
        from harness.store import content

        try:
            return content.get_facts(self.store, digest, fmt, FACTS_VERSION)
        except Exception as exc:  # a cache miss, never a failed run
            log.debug("model facts lookup: %s", exc)
            return None

    def put(self, digest: str, fmt: str, facts: dict) -> None:
        self.new[(digest, fmt)] = facts

    def flush(self, store) -> None:
        from harness.store import content

        for (digest, fmt), facts in self.new.items():
            try:
                content.put_facts(store, digest, fmt, FACTS_VERSION, facts)
            except Exception as exc:  # a read-only or foreign store: the run goes on
                log.debug("model facts not kept: %s", exc)
        self.new.clear()


def _tensors(items) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t["name"], t["dtype"], tuple(t["dims"])) for t in items)


def info_from_facts(path: Path, digest: str, facts: dict) -> ModelInfo:
    return ModelInfo(path=Path(path), sha256=digest, format=facts["format"], size_bytes=int(facts["size_bytes"]),
                     inputs=_tensors(facts["inputs"]), outputs=_tensors(facts["outputs"]), params=facts["params"],
                     precision=facts["precision"], op_types=dict(facts["op_types"]), opset=facts["opset"])


def onnx_facts(path: Path, cache: Optional[FactsCache] = None) -> tuple[ModelInfo, dict]:
    """(ModelInfo, inventory) of an ONNX file, from the cache when it holds
    this digest; raises ModelError (one line) for a file that is not a
    model harness can deploy."""
    from harness.analysis.reference import model_inventory

    path = Path(path)
    digest = sha256_file(path) if cache is not None and path.is_file() else None
    if digest is not None:
        hit = cache.get(digest, "onnx")
        if hit is not None:
            return info_from_facts(path, digest, hit), hit
    info = inspect_onnx(path, sha256=digest)
    inventory = model_inventory(info)
    if cache is not None:
        cache.put(info.sha256, "onnx", inventory)
    return info, inventory
