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
   count of original nodes (wordings and files in `_SUMMARIES` below).
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

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

from agents.contract import Placement
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


def is_fused(provider: str, op_type: str, name: str) -> bool:
    """A node that is an EP's fused subgraph. graph_partitioner.cc PlaceNode
    names it `<provider>_<metadef name>_<n>` and graph.cc
    CreateFusedSubGraphNode gives it the metadef name as op type (1.8-1.25,
    unchanged); DML's transformer names both `DmlFusedNode_<p>_<i>`."""
    if op_type.startswith("DmlFusedNode_"):
        return True
    head = f"{provider}_{op_type}_"
    return bool(op_type) and name.startswith(head) and name[len(head):].isdigit()


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


# -- capability summaries ---------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    provider: str
    partitions: Optional[int]
    graph_nodes: Optional[int] = None  # "number of nodes in the graph"
    supported: Optional[int] = None  # nodes the EP took
    whole: bool = False  # "whole graph" wordings: every node, one partition


def _nkp(m) -> Summary:
    return Summary(m.group(1) + "ExecutionProvider", int(m.group(2)), int(m.group(3)), int(m.group(4)))


# (pattern, builder). Each wording as the EP's source writes it; release
# ranges checked at every release point from 1.8 to 1.25-dev.
_SUMMARIES = (
    # coreml/coreml_execution_provider.cc (1.7-), nnapi/nnapi_builtin/nnapi_execution_provider.cc
    # (all), webnn/webnn_execution_provider.cc (1.16-), vsinpu/vsinpu_execution_provider.cc (1.19-,
    # with "; "), dnnl/dnnl_execution_provider.cc (1.9-, debug option only, " (xx.xx%)" appended).
    (re.compile(r"(CoreML|Nnapi|WebNN|VSINPU|Dnnl)ExecutionProvider::GetCapability, number of partitions "
                r"supported by \w+: (\d+);? number of nodes in the graph: (\d+);? number of nodes supported "
                r"by \w+: (\d+)"), _nkp),
    # qnn/qnn_execution_provider.cc (1.15-); "...: 0" alone when nothing is supported.
    (re.compile(r"Number of partitions supported by QNN EP: (\d+)(?:, number of nodes in the graph: (\d+), "
                r"number of nodes supported by QNN: (\d+))?"),
     lambda m: Summary("QNNExecutionProvider", int(m.group(1)), *(int(g) if g else None for g in m.group(2, 3)))),
    # openvino/ov_versions/capability.cc (1.8-): no node count in either wording.
    (re.compile(r"\[OpenVINO-EP\] Model is fully supported by OpenVINO"),
     lambda m: Summary("OpenVINOExecutionProvider", 1, whole=True)),
    (re.compile(r"\[OpenVINO-EP\] Supported subgraphs on OpenVINO: (\d+)"),
     lambda m: Summary("OpenVINOExecutionProvider", int(m.group(1)))),
    (re.compile(r"\[OpenVINO-EP\] Model is not fully supported by OpenVINO, so making the full model fall back"),
     lambda m: Summary("OpenVINOExecutionProvider", 0, supported=0)),
    # tensorrt/tensorrt_execution_provider.cc ("exeuction" up to 1.9) and
    # nv_tensorrt_rtx/nv_execution_provider.cc (1.23-, "executio" sic).
    (re.compile(r"\[(TensorRT|NvTensorRTRTX) EP\] Whole graph will run on"),
     lambda m: Summary(_TRT[m.group(1)], 1, whole=True)),
    (re.compile(r"\[(TensorRT|NvTensorRTRTX) EP\] Graph is partitioned and number of subgraphs running on "
                r"\w+ \w+ provider is (\d+)"),
     lambda m: Summary(_TRT[m.group(1)], int(m.group(2)))),
    (re.compile(r"\[(TensorRT|NvTensorRTRTX) EP\] No graph will run on"),
     lambda m: Summary(_TRT[m.group(1)], 0, supported=0)),
)
_TRT = {"TensorRT": "TensorrtExecutionProvider", "NvTensorRTRTX": "NvTensorRTRTXExecutionProvider"}


def parse_summary(line: str) -> Optional[Summary]:
    for pattern, build in _SUMMARIES:
        m = pattern.search(line)
        if m:
            return build(m)
    return None


# -- VerifyEachNodeIsAssignedToAnEp -----------------------------------------------
# 1.13-: " All nodes placed on [EP]. Number of nodes: n" / " Node(s) placed on [EP]. Number of nodes: n"
# then "  OpType (name)" per node. 1.8-1.12: "All nodes have been placed on [EP]." (no count) /
# " Provider: [EP]: [Op (name), Op (name), ]" (inference_session.cc to 1.10, session_state.cc from 1.11).
_PLACED = re.compile(r"(All nodes|Node\(s\)) placed on \[(\w+)\]\.\s*Number of nodes:\s*(\d+)")
_PLACED_OLD_ALL = re.compile(r"All nodes have been placed on \[(\w+)\]\.")
_PLACED_OLD = re.compile(r" Provider: \[(\w+)\]: \[(.*)\]\s*$")
_OLD_ITEM = re.compile(r"([A-Za-z_][\w.]*) \(([^()]*)\), ")
# A node line: "<prefix>]   OpType (node name)" from the C++ logger, or the
# bare "  OpType (name)" form ORT Web prints to the console.
_NODE = re.compile(r"(?:VerifyEachNodeIsAssignedToAnEp\]|^)\s{2,}(\S+) \((.*)\)\s*$")


@dataclass
class LogPlacement:
    counted: dict[str, Optional[int]] = field(default_factory=dict)  # provider -> count the log printed
    listed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # provider -> (op, name) lines
    summaries: list[Summary] = field(default_factory=list)


def parse_verbose_log(lines: Iterable[str]) -> Optional[LogPlacement]:
    """Placement lines and capability summaries from ORT's log; None if it has neither."""
    out = LogPlacement()
    current = None
    for raw in lines:
        line = raw.rstrip("\n")
        s = parse_summary(line)
        if s is not None:
            out.summaries.append(s)
            continue
        m = _PLACED.search(line)
        if m:
            ep = m.group(2)
            out.counted[ep] = (out.counted.get(ep) or 0) + int(m.group(3))
            out.listed.setdefault(ep, [])
            current = ep if m.group(1) == "Node(s)" else None
            continue
        m = _PLACED_OLD_ALL.search(line)
        if m:
            out.counted.setdefault(m.group(1), None)
            out.listed.setdefault(m.group(1), [])
            current = None
            continue
        m = _PLACED_OLD.search(line)
        if m:
            items = _OLD_ITEM.findall(m.group(2) if m.group(2).endswith(", ") else m.group(2) + ", ")
            out.counted[m.group(1)] = (out.counted.get(m.group(1)) or 0) + len(items)
            out.listed.setdefault(m.group(1), []).extend(items)
            current = None
            continue
        if current is not None:
            n = _NODE.search(line)
            if n:
                out.listed[current].append((n.group(1), n.group(2)))
                continue
            if "VerifyEachNodeIsAssignedToAnEp" not in line:
                current = None
    return out if out.counted or out.summaries else None


# -- profile ------------------------------------------------------------------------
@dataclass
class ProfilePlacement:
    provider_by_node: dict[str, str] = field(default_factory=dict)  # long EP names
    op_by_node: dict[str, str] = field(default_factory=dict)
    time_us_by_ep: Counter = field(default_factory=Counter)

    def listed(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for node, provider in self.provider_by_node.items():
            out.setdefault(provider, []).append((self.op_by_node.get(node, ""), node))
        return out


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
