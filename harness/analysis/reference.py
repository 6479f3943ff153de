"""Reference outputs, computed once per run on the controller.

For every candidate with an ONNX artefact, its probes run through ONNX
Runtime's CPU execution provider on the controller (see ``refrun``). Two
comparisons use them:

* each result against the **reference candidate's** outputs (the teacher):
  does the compressed model still do what the teacher does?
* each result against the **same candidate's** outputs here: does the model,
  as deployed on that device and runtime, compute what its ONNX file says?
  (the third validation point of the distillation protocol).

The controller also stores each candidate's inventory (op types, parameter
count, weight bytes), so a report rebuilt later needs no model files.

Blobs: ``reference/<candidate>`` (packed outputs), ``reference-meta/<candidate>``
and ``model/<candidate>`` (JSON). Nothing here raises: a candidate whose
reference cannot be computed is recorded as failed, with the reason.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from harness.kernel import arrays, limits, procs

log = logging.getLogger("harness.analysis")

# Bytes per element by onnx.TensorProto data type (float8 kinds 17-20: 1 byte;
# int4/uint4 21-22: two per byte).
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1, 21: 0.5, 22: 0.5}


def weight_bytes(path: Path) -> Optional[int]:
    """Bytes held by a model's initializers (its weights), from the graph."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    total = 0.0
    for init in model.graph.initializer:
        count = int(np.prod(init.dims)) if len(init.dims) else 1
        total += count * _ITEMSIZE.get(init.data_type, 4)
    return int(round(total))


def model_inventory(info: Any) -> dict:
    """JSON-able facts about one artefact (a harness.kernel.modelfile.ModelInfo)."""
    out = {"format": info.format, "size_bytes": info.size_bytes, "params": info.params,
           "precision": info.precision, "op_types": dict(info.op_types), "opset": info.opset,
           "inputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in info.inputs],
           "outputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in info.outputs],
           "weight_bytes": None}
    if info.format == "onnx":
        out["weight_bytes"] = weight_bytes(info.path)
    return out


class _Failed(Exception):
    pass


def _run_child(model: Path, probes: list, timeout_s: float) -> tuple[list, dict]:
    work = Path(tempfile.mkdtemp(prefix="harness-ref-"))
    try:
        (work / "job.json").write_text(json.dumps({"model": str(model)}))
        arrays.save(work / "probes.npz", probes)
        fin = procs.run_child([sys.executable, "-m", "harness.analysis.refrun", str(work)], timeout_s=timeout_s,
                              cancel=threading.Event(), stderr_path=str(work / "stderr.log"), env=procs.child_env())
        if fin.reason == "timeout":
            raise _Failed(f"no reference outputs within {timeout_s:.0f} s; the process was killed")
        code = fin.returncode
        if code != 0 or not (work / "meta.json").exists():
            # The child's last stderr line is the exception ONNX Runtime raised.
            lines = [ln for ln in (work / "stderr.log").read_text(errors="replace").splitlines() if ln.strip()]
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise _Failed(f"ONNX Runtime CPU failed ({how})" + (f": {lines[-1].strip()}" if lines else ""))
        meta = json.loads((work / "meta.json").read_text())
        return arrays.load(work / "outputs.npz"), meta
    finally:
        shutil.rmtree(work, ignore_errors=True)


def store_references(store, run_id: str, prep: Any, progress: Callable[[dict], None] = lambda e: None,
                     timeout_s: float = limits.REFERENCE_TIMEOUT_S) -> dict:
    """Compute and store every candidate's reference outputs and inventory.

    Runs before any job so the host's measurements never share the CPU with
    it. Returns {candidate: meta}; never raises for a model's failure.
    """
    metas: dict = {}
    facts = getattr(prep, "facts", None)
    runtime = reference_runtime()
    for c in prep.cands.candidates:
        infos = prep.infos.get(c.name, {})
        try:
            inv = {fmt: (facts.get(i.sha256, fmt) if facts is not None else None) or model_inventory(i)
                   for fmt, i in infos.items()}
            store.put_blob(run_id, f"model/{c.name}", json.dumps(inv).encode())
        except Exception as exc:  # an inventory is a convenience, never fatal
            log.warning("model inventory of %s: %s", c.name, exc)
        info = infos.get("onnx")
        probes = prep.probes.get(c.name) or []
        if info is None:
            meta = {"status": "skipped", "reason": "no ONNX artefact to run on the controller"}
        elif not probes:
            meta = {"status": "skipped", "reason": "no probe inputs"}
        else:
            key = reference_key(info.sha256, probes, runtime) if runtime else None
            cached = _cached(store, key)
            try:
                if cached is not None:
                    packed, meta = cached
                    meta = {**meta, "cached": True}
                else:
                    outputs, meta = _run_child(Path(info.path), probes, timeout_s)
                    meta["status"] = "ok"
                    packed = arrays.pack(outputs)
                    _keep(store, key, info.sha256, packed, meta)
                store.put_blob(run_id, f"reference/{c.name}", packed)
            except _Failed as exc:
                meta = {"status": "failed", "reason": str(exc)[:2000]}
            except Exception as exc:  # the controller's own trouble (disk, fork): recorded, the run goes on
                meta = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:2000]}
        metas[c.name] = meta
        store.put_blob(run_id, f"reference-meta/{c.name}", json.dumps(meta).encode())
        progress({"event": "reference", "candidate": c.name, **meta})
    return metas


# What the reference session is (refrun.py: CPU EP, optimisations off, one
# thread); bump when that changes, and every reference is computed again.
REFERENCE_VERSION = 1


def reference_runtime() -> Optional[str]:
    """The controller's ONNX Runtime as `<distribution> <version>`, read from
    the wheel's capi/build_and_package_info.py (package_name, __version__),
    without importing it; None when it cannot be told (then nothing is cached)."""
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    info = Path(list(spec.submodule_search_locations)[0]) / "capi" / "build_and_package_info.py"
    try:
        text = info.read_text()
    except OSError:
        return None
    name = re.search(r"^package_name\s*=\s*'([^']+)'", text, re.M)
    version = re.search(r"^__version__\s*=\s*'([^']+)'", text, re.M)
    return f"{name.group(1)} {version.group(1)}" if name and version else None


def reference_key(model_digest: str, probes: list, runtime: str) -> str:
    """The content address of one model's reference outputs: its digest, the
    probe inputs' bytes (names, dtypes, shapes, values) and the runtime."""
    import hashlib

    h = hashlib.sha256()
    for part in (model_digest, runtime, f"reference v{REFERENCE_VERSION}"):
        h.update(part.encode() + b"\0")
    for i, probe in enumerate(probes):  # not the npz bytes: a zip entry carries the time it was written
        for name in sorted(probe):
            a = np.ascontiguousarray(probe[name])
            h.update(f"{i}/{name}:{a.dtype.str}:{a.shape}\0".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _cached(store, key: Optional[str]) -> Optional[tuple[bytes, dict]]:
    if key is None:
        return None
    from harness.store import content

    try:
        return content.get_reference(store, key)
    except Exception as exc:  # a miss, never a failed run
        log.debug("reference cache lookup: %s", exc)
        return None


def _keep(store, key: Optional[str], digest: str, packed: bytes, meta: dict) -> None:
    if key is None:
        return
    from harness.store import content

    try:
        content.put_reference(store, key, digest, packed, meta)
    except Exception as exc:
        log.debug("reference not kept: %s", exc)


def load_reference(store, run_id: str, candidate: str) -> tuple[list, dict]:
    """(outputs, meta) stored for a candidate; ([], {status: missing}) if none."""
    raw = store.get_blob(run_id, f"reference-meta/{candidate}")
    meta = json.loads(raw) if raw else {"status": "missing", "reason": "no reference was computed for this run"}
    outputs = arrays.unpack(store.get_blob(run_id, f"reference/{candidate}")) if meta.get("status") == "ok" else []
    return outputs, meta


def load_inventory(store, run_id: str, candidate: str) -> dict:
    raw = store.get_blob(run_id, f"model/{candidate}")
    return json.loads(raw) if raw else {}
