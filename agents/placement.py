"""Node placement from ONNX Runtime's own output, for every driver that runs it.

Two sources, both written by ONNX Runtime itself:
* the verbose session log (`VerifyEachNodeIsAssignedToAnEp`), which lists how
  many nodes each EP was given and, per EP, each node as `OpType (name)`;
  when one EP takes everything it prints only `All nodes placed on [EP]`.
  The same lines appear from the C++ logger (Python, perf_test) and from ONNX
  Runtime Web with `logSeverityLevel: 0`.
* the profiling JSON (`enable_profiling`): one `Node` event per kernel run
  with `args.provider` and `args.op_name`, which gives the time share per EP.

ORT inserts Memcpy nodes at EP boundaries; they are not model nodes, so they
are counted apart (`copy_nodes`) and kept out of the fallback figures.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from agents.base import CPU_EPS, Placement, short_ep

_PLACED = re.compile(r"(All nodes|Node\(s\)) placed on \[(\w+)\]\.\s*Number of nodes:\s*(\d+)")
# A node line: "<prefix>]   OpType (node name)" from the C++ logger, or the
# bare "  OpType (name)" form ORT Web prints to the console.
_NODE = re.compile(r"(?:VerifyEachNodeIsAssignedToAnEp\]|^)\s{2,}([A-Za-z_][\w.]*) \((.*)\)\s*$")
COPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost"})


@dataclass
class LogPlacement:
    nodes_by_ep: dict[str, int] = field(default_factory=dict)  # long EP names
    ops_by_ep: dict[str, Counter] = field(default_factory=dict)
    complete_listing: bool = False


def parse_verbose_log(lines: Iterable[str]) -> Optional[LogPlacement]:
    """Placement from ORT's verbose log lines; None if the log has none."""
    out = LogPlacement()
    current = None
    saw_any = False
    all_listed = True
    for raw in lines:
        line = raw.rstrip("\n")
        m = _PLACED.search(line)
        if m:
            saw_any = True
            ep = m.group(2)
            out.nodes_by_ep[ep] = out.nodes_by_ep.get(ep, 0) + int(m.group(3))
            out.ops_by_ep.setdefault(ep, Counter())
            current = ep if m.group(1) == "Node(s)" else None
            if m.group(1) == "All nodes":
                all_listed = False
            continue
        if current is not None:
            n = _NODE.search(line)
            if n:
                out.ops_by_ep[current][n.group(1)] += 1
                continue
            if "VerifyEachNodeIsAssignedToAnEp" not in line:
                current = None
    if not saw_any:
        return None
    out.complete_listing = all_listed and all(
        sum(out.ops_by_ep[ep].values()) == n for ep, n in out.nodes_by_ep.items()
    )
    return out


@dataclass
class ProfilePlacement:
    provider_by_node: dict[str, str] = field(default_factory=dict)  # long EP names
    op_by_node: dict[str, str] = field(default_factory=dict)
    time_us_by_ep: Counter = field(default_factory=Counter)


def parse_profile(events: Iterable[Mapping]) -> ProfilePlacement:
    """Per-node provider, op type and kernel time from ORT's profiling events."""
    out = ProfilePlacement()
    for ev in events:
        if ev.get("cat") != "Node":
            continue
        args = ev.get("args") or {}
        provider = args.get("provider")
        name = str(ev.get("name", ""))
        if not provider or not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        out.provider_by_node[node] = provider
        out.op_by_node[node] = str(args.get("op_name", ""))
        out.time_us_by_ep[provider] += float(ev.get("dur", 0) or 0)
    return out


def load_profile(path: str) -> list:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    # ORT writes a JSON array; some builds wrap it as {"traceEvents": [...]}.
    return data.get("traceEvents", []) if isinstance(data, dict) else data


def as_dict(p: Optional[Placement]) -> Optional[dict]:
    """A Placement as the plain mapping runners write into result.json."""
    if p is None:
        return None
    return {"nodes_total": p.nodes_total, "nodes_by_ep": dict(p.nodes_by_ep),
            "cpu_fallback_nodes": p.cpu_fallback_nodes, "fallback_op_types": dict(p.fallback_op_types),
            "time_share_by_ep": dict(p.time_share_by_ep), "fully_accelerated": p.fully_accelerated,
            "source": p.source}


def combine(
    requested_ep: str,
    log: Optional[LogPlacement],
    profile: Optional[ProfilePlacement],
    fully_accelerated: Optional[bool],
) -> Optional[Placement]:
    """One Placement from whichever sources exist; the log wins for counts
    (it sees every assigned node, the profile only nodes that ran)."""
    requested = requested_ep
    ops_by_ep: dict[str, Counter] = {}
    counts: Counter = Counter()
    sources = []
    if log is not None:
        sources.append("verbose log")
        for ep, n in log.nodes_by_ep.items():
            ops = log.ops_by_ep.get(ep, Counter())
            copies = sum(ops[o] for o in COPY_OPS)
            counts[short_ep(ep)] += n - copies
            ops_by_ep.setdefault(short_ep(ep), Counter()).update(
                {o: c for o, c in ops.items() if o not in COPY_OPS}
            )
    if profile is not None and profile.provider_by_node:
        sources.append("profile")
        prof_ops: dict[str, Counter] = {}
        prof_counts: Counter = Counter()
        for node, prov in profile.provider_by_node.items():
            op = profile.op_by_node.get(node, "")
            if op in COPY_OPS:
                continue
            prof_counts[short_ep(prov)] += 1
            prof_ops.setdefault(short_ep(prov), Counter())[op] += 1
        if log is None:
            counts = prof_counts
            ops_by_ep = prof_ops
        else:
            # The log's "All nodes placed" form lists no op types: take them
            # from the profile where the log has none for an EP.
            for ep, ops in prof_ops.items():
                if not ops_by_ep.get(ep):
                    ops_by_ep[ep] = ops
    if not sources:
        return None
    time_share: dict[str, float] = {}
    if profile is not None:
        total = sum(profile.time_us_by_ep.values())
        if total > 0:
            for ep, us in profile.time_us_by_ep.items():
                time_share[short_ep(ep)] = time_share.get(short_ep(ep), 0.0) + us / total
    if requested in CPU_EPS:
        fallback = 0
        fallback_ops: Counter = Counter()
    else:
        cpu_like = [ep for ep in counts if ep in CPU_EPS and ep != requested]
        fallback = sum(counts[ep] for ep in cpu_like)
        fallback_ops = Counter()
        for ep in cpu_like:
            fallback_ops.update(ops_by_ep.get(ep, Counter()))
    return Placement(
        nodes_total=int(sum(counts.values())),
        nodes_by_ep={k: int(v) for k, v in sorted(counts.items())},
        cpu_fallback_nodes=int(fallback),
        fallback_op_types={k: int(v) for k, v in sorted(fallback_ops.items()) if k},
        time_share_by_ep={k: round(v, 6) for k, v in sorted(time_share.items())},
        fully_accelerated=fully_accelerated,
        source=" + ".join(sources),
    )
