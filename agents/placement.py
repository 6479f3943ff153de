"""Node placement from ONNX Runtime's own word: one normalisation for every driver.

Counts are **model nodes**: the nodes of the graph ONNX Runtime partitions
(after its basic optimisations, before an execution provider fuses what it
takes). A compiling EP (OpenVINO, TensorRT, CoreML, NNAPI, QNN, WebNN, ...)
turns each group it takes into one fused node, counted apart as a partition.
Sources, best first; `source` names the one the counts came from:

1. runtime API: `InferenceSession.get_provider_graph_assignment_info()` with
   session config `session.record_ep_graph_assignment_info=1`, from ONNX
   Runtime 1.24 (commit d8f0318694, #26781, cherry-picked into 1.24.0 by
   fe30e5c750). One entry per capability the partitioner assigned, recorded
   before fusion (onnxruntime/core/session/inference_session.cc,
   CreateEpAssignedSubgraph): a compiling EP's entry is a partition with its
   nodes, a kernel EP's entry is one node. Removed-by-optimisation nodes and
   Memcpy nodes never appear; inlined function bodies and nested-graph nodes do.
2. capability summary: the line an EP logs from GetCapability with its own
   count of original nodes (each wording, its file and releases: agents/ortlog.py).
3. verbose log: `VerifyEachNodeIsAssignedToAnEp`
   (onnxruntime/core/framework/session_state.cc), written after partitioning
   and every optimisation: a fused subgraph is ONE node there, so it is
   counted as a partition and its EP's node count is unknown, never guessed.
4. profile (`enable_profiling`): one `<node>_kernel_time` event per node run
   with `args.provider`; fused nodes the same way. Also the time share per EP.

The same C++ log text reaches every driver: the Python runner's fd 2,
perf_test's logcat lines on Android, ONNX Runtime Web's console.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from agents.contract import Placement
from agents.ortlog import (  # noqa: F401 - the parsers are part of this module's surface
    LOG_GREP, LogPlacement, ProfilePlacement, Summary, is_fused, load_profile, parse_profile, parse_summary,
    parse_verbose_log,
)
from harness.kernel.eps import CPU_EPS, short_ep

API, SUMMARY, LOG, PROFILE = "runtime API", "capability summary", "verbose log", "profile"
API_CONFIG_KEY = "session.record_ep_graph_assignment_info"
API_SINCE = (1, 24)
COPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost"})
# Providers that take nodes one by one through kernels: an API entry of
# theirs is a node, never a partition. DML is one too: it takes single nodes
# and fuses them later in a graph transformer (DmlGraphFusionTransformer), so
# its partitions are seen only as `DmlFusedNode_*` nodes in the log and profile.
KERNEL_PROVIDERS = frozenset({
    "CPUExecutionProvider", "CUDAExecutionProvider", "CUDANHWCExecutionProvider", "ROCMExecutionProvider",
    "DmlExecutionProvider", "XnnpackExecutionProvider", "JsExecutionProvider", "WebGpuExecutionProvider",
    "ACLExecutionProvider", "ArmNNExecutionProvider", "AzureExecutionProvider",
})


def has_assignment_api(version: str) -> bool:
    """Whether an ONNX Runtime version has the graph-assignment API."""
    nums = [int(n) for n in re.findall(r"\d+", version or "")[:2]]
    return len(nums) == 2 and tuple(nums) >= API_SINCE


def assignment_entries(session) -> list[tuple[str, list[tuple[str, str]]]]:
    """The API's answer as plain values: (provider, [(op_type, node name)]) per entry."""
    return [(str(s.ep_name), [(str(n.op_type), str(n.name)) for n in s.get_nodes()])
            for s in session.get_provider_graph_assignment_info()]


@dataclass
class Share:
    """What one provider (long name) received."""
    nodes: Optional[int] = 0  # model nodes; None: unknown (hidden inside fused nodes)
    partitions: int = 0
    ops: Counter = field(default_factory=Counter)  # op types of its model nodes


def from_assignment(entries: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> dict[str, Share]:
    out: dict[str, Share] = {}
    for provider, nodes in entries:
        share = out.setdefault(provider, Share())
        share.nodes += len(nodes)
        share.ops.update(op for op, _ in nodes)
        if provider not in KERNEL_PROVIDERS:
            share.partitions += 1
    return out


# -- normalisation --------------------------------------------------------------------
def _from_listing(provider: str, listed: list[tuple[str, str]], count: Optional[int]) -> Share:
    """A provider's share from node lines (log or profile); `count` is what
    the log printed when it listed no nodes."""
    share = Share()
    if not listed:
        # "All nodes placed on [EP]. Number of nodes: n" lists nothing: a
        # compiling EP's n is fused nodes (it fuses every group it takes).
        if provider in KERNEL_PROVIDERS:
            share.nodes = count
        else:
            share.nodes, share.partitions = None, count or 0
        return share
    for op, name in listed:
        if op in COPY_OPS:
            continue  # inserted at EP boundaries, not model nodes
        if is_fused(provider, op, name):
            share.partitions += 1
        else:
            share.nodes += 1
            share.ops[op] += 1
    if share.partitions:
        share.nodes = None  # the fused nodes hide how many model nodes they took
    return share


def _listings(log: Optional[LogPlacement], profile: Optional[ProfilePlacement]) -> dict[str, list[tuple[str, str]]]:
    """Node lines per provider: the log's, or the profile's where the log listed none."""
    prof = profile.listed() if profile is not None else {}
    if log is None or not log.counted:
        return prof
    return {p: log.listed.get(p) or prof.get(p, []) for p in log.counted}


def _from_log(log: LogPlacement, profile: Optional[ProfilePlacement]) -> dict[str, Share]:
    return {p: _from_listing(p, listed, log.counted.get(p)) for p, listed in _listings(log, profile).items()}


def _apply_summary(shares: dict[str, Share], s: Summary) -> None:
    """The EP's own count of the original nodes it took, where the log showed
    only its fused nodes; the rest of the graph went to the CPU EP."""
    mine = shares.setdefault(s.provider, Share())
    mine.partitions = s.partitions or 0
    mine.nodes = s.supported if s.supported is not None else (0 if s.partitions == 0 else None)
    if s.graph_nodes is not None and s.supported is not None:
        shares.setdefault("CPUExecutionProvider", Share()).nodes = s.graph_nodes - s.supported
    elif not s.whole:
        # Partitions only: what the CPU EP got is known from the log's lines, or not at all.
        shares.setdefault("CPUExecutionProvider", Share(nodes=None))


def _summary_for(log: Optional[LogPlacement], requested_ep: str) -> Optional[Summary]:
    """The requested EP's last summary: the main graph's (nested graphs are
    partitioned first, and NHWC EPs log again after the layout transform)."""
    if log is None or requested_ep in CPU_EPS:
        return None
    mine = [s for s in log.summaries if short_ep(s.provider) == requested_ep]
    return mine[-1] if mine else None


def _shares(requested_ep, log, profile, api) -> tuple[dict[str, Share], list[str]]:
    if api is not None:
        shares = from_assignment(api)
        # A kernel provider's partitions (DML's, XNNPACK's fusions) show only
        # as fused nodes in the log or profile.
        for provider, listed in _listings(log, profile).items():
            if provider in KERNEL_PROVIDERS and provider in shares:
                shares[provider].partitions = sum(is_fused(provider, op, name) for op, name in listed)
        return shares, [API]
    summary = _summary_for(log, requested_ep)
    if log is not None and log.counted:
        shares, sources = _from_log(log, profile), [LOG]
    elif profile is not None:
        shares, sources = {p: _from_listing(p, listed, None) for p, listed in profile.listed().items()}, [PROFILE]
    else:
        shares, sources = {}, []
    if summary is not None:
        _apply_summary(shares, summary)
        sources.insert(0, SUMMARY)
    return shares, sources


def combine(
    requested_ep: str,
    log: Optional[LogPlacement] = None,
    profile: Optional[ProfilePlacement] = None,
    fully_accelerated: Optional[bool] = None,
    *,
    api: Optional[Iterable[tuple[str, Sequence[tuple[str, str]]]]] = None,
) -> Optional[Placement]:
    """One Placement from whichever sources exist, counts from the best one."""
    if profile is not None and not profile.provider_by_node:
        profile = None
    shares, sources = _shares(requested_ep, log, profile, api)
    if not sources:
        return None
    if profile is not None and PROFILE not in sources:
        sources.append(PROFILE)  # the time share, and op types the log did not list
    nodes: dict[str, Optional[int]] = {}
    partitions: Counter = Counter()
    ops: dict[str, Counter] = {}
    for provider, share in shares.items():
        ep = short_ep(provider)
        prev = nodes.get(ep, 0)
        nodes[ep] = None if prev is None or share.nodes is None else prev + share.nodes
        partitions[ep] += share.partitions
        ops.setdefault(ep, Counter()).update(share.ops)
    fallback: Optional[int] = 0
    fallback_ops: Counter = Counter()
    if requested_ep not in CPU_EPS:
        for ep in nodes:
            if ep in CPU_EPS:
                fallback = None if fallback is None or nodes[ep] is None else fallback + nodes[ep]
                fallback_ops.update(ops[ep])
    time_share: Counter = Counter()
    total = sum(profile.time_us_by_ep.values()) if profile is not None else 0
    if total > 0:
        for provider, us in profile.time_us_by_ep.items():
            time_share[short_ep(provider)] += us / total
    known = all(v is not None for v in nodes.values())
    return Placement(
        nodes_total=int(sum(nodes.values())) if known else None,
        nodes_by_ep={k: int(v) for k, v in sorted(nodes.items()) if v},
        partitions_by_ep={k: int(v) for k, v in sorted(partitions.items()) if v},
        cpu_fallback_nodes=fallback,
        fallback_op_types={k: int(v) for k, v in sorted(fallback_ops.items()) if k},
        time_share_by_ep={k: round(v, 6) for k, v in sorted(time_share.items())},
        fully_accelerated=fully_accelerated,
        source=" + ".join(sources),
    )


def from_log_text(text: str, requested_ep: str, profile_events: Optional[Iterable[Mapping]] = None,
                  fully_accelerated: Optional[bool] = None) -> Optional[Placement]:
    """Placement from a session's log text (perf_test's logcat lines, a
    console capture) and optionally its profile events."""
    log = parse_verbose_log(text.splitlines())
    profile = parse_profile(profile_events) if profile_events is not None else None
    return combine(requested_ep, log, profile, fully_accelerated)


def as_dict(p: Optional[Placement]) -> Optional[dict]:
    """A Placement as the plain mapping runners write into result.json."""
    if p is None:
        return None
    return {"nodes_total": p.nodes_total, "nodes_by_ep": dict(p.nodes_by_ep),
            "partitions_by_ep": dict(p.partitions_by_ep), "cpu_fallback_nodes": p.cpu_fallback_nodes,
            "fallback_op_types": dict(p.fallback_op_types), "time_share_by_ep": dict(p.time_share_by_ep),
            "fully_accelerated": p.fully_accelerated, "source": p.source}


class Learnt:
    """Placements a driver has measured, per (model digest, runtime build,
    EP, options...) key, with the job that measured them: a later session or
    a repeat job skips the pass. Bounded (limits.PLACEMENT_CACHE_ENTRIES,
    least recently used out first); thread-safe."""

    def __init__(self) -> None:
        import collections
        import threading

        self._lock = threading.Lock()
        self._entries: "collections.OrderedDict[tuple, tuple[Placement, str]]" = collections.OrderedDict()

    def get(self, key: tuple) -> Optional[tuple[Placement, str]]:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def remember(self, key: tuple, placement: Optional[Placement], error: object, job_id: str) -> None:
        """Keep what a result measured (nothing from a failed one)."""
        from harness.kernel import limits

        if error is not None or placement is None:
            return
        with self._lock:
            self._entries[key] = (placement, job_id)
            self._entries.move_to_end(key)
            while len(self._entries) > limits.PLACEMENT_CACHE_ENTRIES:
                self._entries.popitem(last=False)
