"""ONNX Runtime's placement text, every wording parsed: the EPs' capability
summaries, VerifyEachNodeIsAssignedToAnEp's node lists, the profiler's
events. agents/placement.py turns what these return into one Placement; the
release ranges below were checked at every release point from 1.8 to 1.25-dev.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

# What to keep of a device's log (`grep -E`, e.g. over logcat): the placement
# lines and every capability summary. The summaries are logged from the EPs'
# GetCapability (its name is in the line's location), except OpenVINO's and
# TensorRT's, which carry their own tags.
LOG_GREP = "VerifyEachNodeIsAssignedToAnEp|GetCapability|OpenVINO-EP|TensorRT EP|NvTensorRTRTX EP"


def is_fused(provider: str, op_type: str, name: str) -> bool:
    """A node that is an EP's fused subgraph. graph_partitioner.cc PlaceNode
    names it `<provider>_<metadef name>_<n>` and graph.cc
    CreateFusedSubGraphNode gives it the metadef name as op type (1.8-1.25,
    unchanged); DML's transformer names both `DmlFusedNode_<p>_<i>`."""
    if op_type.startswith("DmlFusedNode_"):
        return True
    head = f"{provider}_{op_type}_"
    return bool(op_type) and name.startswith(head) and name[len(head):].isdigit()


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
_OLD_ITEM = re.compile(r"(\S+) \(([^()]*)\), ")
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
        text = fh.read()
    try:
        data = json.loads(text)
    except ValueError:
        # core/common/profiler.cc writes `"name" :"<node name>"` unescaped, one
        # event per line: a quote in a node name breaks the whole file, so
        # each line is read on its own and the broken events are left out.
        return [ev for ev in (_event(line) for line in text.splitlines()) if ev is not None]
    # ORT writes a JSON array; some builds wrap it as {"traceEvents": [...]}.
    return data.get("traceEvents", []) if isinstance(data, dict) else data


def _event(line: str) -> Optional[dict]:
    line = line.strip().rstrip(",")
    if not line.startswith("{"):
        return None
    try:
        ev = json.loads(line)
    except ValueError:
        return None
    return ev if isinstance(ev, dict) else None
