"""Two matrices per candidate: runtime-version coverage and operator support.

**Coverage** — device profile × runtime version (``name version``: the
version that ran, else the version the target asked for, else ``any``).
A cell is ``ok`` (every execution provider that ran there ran the whole
graph where asked), ``fallback`` (it ran, with nodes placed on the CPU
although another EP was requested, or a strict probe refused the graph),
``failed`` (a job ran and ended in an error), or ``not run`` (planning gaps
only: no matching device, no such runtime, no artefact). The per-EP statuses
are kept in ``by_ep``; a cell takes the worst of them (failed > fallback >
ok), ``not run`` only when nothing ran.

**Operator support** — op type × ``runtime/ep``. Rows are the model's own op
inventory plus any op type a runtime reported as falling back. A cell is
``unsupported`` (a job failed with ``unsupported_op`` naming the op),
``cpu_fallback`` (the op is among the placement's ``fallback_op_types``),
``accelerated`` (placement known, the EP is not a CPU EP and the op stayed
on it), ``cpu`` (the EP is the CPU itself: nothing to accelerate, nothing
falls back) or ``unknown`` (no job with placement data ran there).
"""

from __future__ import annotations

import re
from typing import Mapping

from harness.analysis.baseline import row_status
from harness.kernel.eps import CPU_EPS
_RANK = {"not run": 0, "ok": 1, "fallback": 2, "failed": 3}


def _falls_back(r: dict) -> bool:
    p = r.get("placement") or {}
    return bool(p.get("cpu_fallback_nodes")) or p.get("fully_accelerated") is False


def cell_status(r: dict) -> str:
    s = row_status(r)
    if s == "not_run":
        return "not run"
    if s == "failed":
        return "failed"
    return "fallback" if _falls_back(r) else "ok"


def version_column(r: dict) -> str:
    rt = r.get("runtime") or {}
    if row_status(r) != "not_run" and rt.get("version"):
        # A host build (onnxruntime-openvino) is its own column beside the plain runtime of that version.
        return f"{rt.get('build') or rt.get('name')} {rt['version']}"
    want = (r.get("target") or "").split("/", 1)[0]  # "onnxruntime@1.20"
    name, _, ver = want.partition("@")
    return f"{name or rt.get('name')} {ver or rt.get('version') or 'any'}"


def coverage_matrix(rows: list[dict], profiles: list[str]) -> dict:
    cols: list[str] = []
    cells: dict[str, dict[str, dict]] = {}
    for r in rows:
        col = version_column(r)
        if col not in cols:
            cols.append(col)
        prof = r["device"].get("profile")
        cell = cells.setdefault(prof, {}).setdefault(col, {"status": "not run", "by_ep": {}, "messages": []})
        st = cell_status(r)
        ep = (r.get("runtime") or {}).get("ep") or "?"
        prev = cell["by_ep"].get(ep)
        if prev is None or _RANK[st] > _RANK[prev]:
            cell["by_ep"][ep] = st
        if _RANK[st] > _RANK[cell["status"]]:
            cell["status"] = st
        e = r.get("error")
        if e:
            cell["messages"].append(f"{ep}: {e.get('kind')}: {str(e.get('message', ''))[:160]}")
        elif st == "fallback":
            p = r.get("placement") or {}
            n, total = p.get("cpu_fallback_nodes"), p.get("nodes_total")
            of = f" of {total}" if total is not None else ""
            cell["messages"].append(f"{ep}: {'?' if n is None else n}{of} model node(s) on the CPU")
    rows_order = [p for p in profiles if p in cells] + [p for p in cells if p not in profiles]
    return {"rows": rows_order, "columns": sorted(cols), "cells": cells}


def _named_ops(message: str, ops) -> set:
    return {op for op in ops if re.search(rf"\b{re.escape(op)}\b", message)}


def operator_matrix(rows: list[dict], inventory_ops: Mapping[str, int]) -> dict:
    ops: dict[str, int] = dict(inventory_ops)
    for r in rows:
        for op in ((r.get("placement") or {}).get("fallback_op_types") or {}):
            ops.setdefault(op, 0)
    cols: list[str] = []
    cells: dict[str, dict[str, str]] = {op: {} for op in ops}
    # Model nodes of each op type the CPU EP received, per column (the most a job reported).
    fallback_nodes: dict[str, dict[str, int]] = {op: {} for op in ops}
    notes: list[str] = []
    rank = {"unknown": 0, "cpu": 1, "accelerated": 1, "cpu_fallback": 2, "unsupported": 3}
    for r in rows:
        rt = r.get("runtime") or {}
        ep = rt.get("ep") or "?"
        col = f"{rt.get('build') or rt.get('name')}/{ep}"
        if col not in cols:
            cols.append(col)
        status = row_status(r)
        found: dict[str, str] = {}
        e = r.get("error") or {}
        if status == "failed" and e.get("kind") == "unsupported_op":
            named = _named_ops(str(e.get("message", "")), ops)
            found.update({op: "unsupported" for op in named})
            if not named:
                notes.append(f"{col} on {r['device'].get('profile')}: unsupported_op without an op type named "
                             f"in the message ({str(e.get('message', ''))[:120]})")
        p = r.get("placement")
        if status == "ok" and p:
            fb = p.get("fallback_op_types") or {}
            for op in ops:
                if op in fb:
                    found[op] = "cpu_fallback"
                    fallback_nodes[op][col] = max(fallback_nodes[op].get(col, 0), int(fb[op]))
                elif op in inventory_ops:
                    found[op] = "cpu" if ep in CPU_EPS else "accelerated"
        for op, st in found.items():
            prev = cells[op].get(col, "unknown")
            if rank[st] > rank[prev] or prev == "unknown":
                cells[op][col] = st
    for op in ops:
        for col in cols:
            cells[op].setdefault(col, "unknown")
    return {"rows": sorted(ops), "columns": cols, "nodes": ops, "cells": cells,
            "fallback_nodes": {op: v for op, v in fallback_nodes.items() if v}, "notes": notes}


def matrices(results: list[dict], profiles: list[str], inventories: Mapping[str, dict]) -> tuple[dict, dict]:
    """({candidate: coverage}, {candidate: operator support})."""
    by_cand: dict[str, list[dict]] = {}
    for r in results:
        by_cand.setdefault(r["candidate"], []).append(r)
    cov, ops = {}, {}
    for c, rows in by_cand.items():
        cov[c] = coverage_matrix(rows, profiles)
        inv = inventories.get(c) or {}
        inv_ops = (inv.get("onnx") or {}).get("op_types") or {}
        ops[c] = operator_matrix(rows, inv_ops)
    return cov, ops
