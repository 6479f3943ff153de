"""Placement from each wording ONNX Runtime prints, as its own source writes it.

Every line below is built from the message text in the file named beside it
(the ONNX Runtime repository, at the release range named), with the C++
logger's prefix `[<sev>:onnxruntime:<logger>, <file>:<line> <function>] `.
Counts are model nodes; a compiling EP's fused subgraphs are partitions.
"""

from agents import placement as pl


def _line(sev: str, where: str, msg: str, logger: str = "") -> str:
    return f"2026-01-01 10:00:00.000000 [{sev}:onnxruntime:{logger}, {where}] {msg}"


def _verify(ep_nodes: dict) -> list:
    """VerifyEachNodeIsAssignedToAnEp as session_state.cc prints it from 1.13."""
    where = "session_state.cc:1313 VerifyEachNodeIsAssignedToAnEp"
    out = [_line("V", where, "Node placements")]
    if len(ep_nodes) == 1:
        (ep, nodes), = ep_nodes.items()
        return out + [_line("V", where, f" All nodes placed on [{ep}]. Number of nodes: {len(nodes)}")]
    for ep, nodes in ep_nodes.items():
        out.append(_line("V", where, f" Node(s) placed on [{ep}]. Number of nodes: {len(nodes)}"))
        out += [_line("V", "session_state.cc:1315 VerifyEachNodeIsAssignedToAnEp", f"  {op} ({name})")
                for op, name in nodes]
    return out


def test_coreml_summary_counts_model_nodes_and_partitions():
    # onnxruntime/core/providers/coreml/coreml_execution_provider.cc, GetCapability (1.7-1.25):
    # "CoreMLExecutionProvider::GetCapability," " number of partitions supported by CoreML: " ...
    # at WARNING when there is more than one partition. The fused nodes are named
    # <provider>_<metadef>_<n> with metadef <key>_COREML_<hash>_<id> (graph_partitioner.cc PlaceNode).
    lines = [_line("W", "coreml_execution_provider.cc:113 GetCapability",
                   "CoreMLExecutionProvider::GetCapability, number of partitions supported by CoreML: 2 "
                   "number of nodes in the graph: 9 number of nodes supported by CoreML: 7")]
    lines += _verify({
        "CoreMLExecutionProvider": [("123_COREML_123_0", "CoreMLExecutionProvider_123_COREML_123_0_0"),
                                    ("123_COREML_123_1", "CoreMLExecutionProvider_123_COREML_123_1_1")],
        "CPUExecutionProvider": [("ArgMax", "argmax"), ("TopK", "topk")],
    })
    p = pl.from_log_text("\n".join(lines), "coreml")
    assert p.nodes_by_ep == {"coreml": 7, "cpu": 2} and p.nodes_total == 9
    assert p.partitions_by_ep == {"coreml": 2}
    assert p.cpu_fallback_nodes == 2 and p.fallback_op_types == {"ArgMax": 1, "TopK": 1}
    assert p.source == "capability summary + verbose log"


def test_nnapi_and_webnn_summaries():
    # nnapi/nnapi_builtin/nnapi_execution_provider.cc (every release read, 1.8-1.25) and
    # webnn/webnn_execution_provider.cc (1.16-1.25): the same three fields.
    nnapi = _line("I", "nnapi_execution_provider.cc:232 GetCapability",
                  "NnapiExecutionProvider::GetCapability, number of partitions supported by NNAPI: 1 "
                  "number of nodes in the graph: 4 number of nodes supported by NNAPI: 4")
    p = pl.from_log_text(nnapi, "nnapi")
    assert (p.nodes_by_ep, p.partitions_by_ep, p.cpu_fallback_nodes, p.source) == \
        ({"nnapi": 4}, {"nnapi": 1}, 0, "capability summary")
    webnn = _line("W", "webnn_execution_provider.cc:160 GetCapability",
                  "WebNNExecutionProvider::GetCapability, number of partitions supported by WebNN: 3 "
                  "number of nodes in the graph: 20 number of nodes supported by WebNN: 17")
    p = pl.from_log_text(webnn, "webnn")
    assert p.nodes_by_ep == {"cpu": 3, "webnn": 17} and p.partitions_by_ep == {"webnn": 3}
    assert p.nodes_total == 20 and p.cpu_fallback_nodes == 3


def test_qnn_summary_and_its_nothing_supported_form():
    # qnn/qnn_execution_provider.cc (1.15-1.25): "Number of partitions supported by QNN EP: P,
    # number of nodes in the graph: N, number of nodes supported by QNN: K"; with no supported
    # node it logs "Number of partitions supported by QNN EP: 0" and returns.
    where = "qnn_execution_provider.cc:1120 GetCapability"
    p = pl.from_log_text(_line("I", where, "Number of partitions supported by QNN EP: 2, number of nodes in "
                                           "the graph: 30, number of nodes supported by QNN: 27"), "qnn")
    assert p.nodes_by_ep == {"cpu": 3, "qnn": 27} and p.partitions_by_ep == {"qnn": 2}
    lines = [_line("I", where, "Number of partitions supported by QNN EP: 0")]
    lines += _verify({"CPUExecutionProvider": [("Conv", "c"), ("Relu", "r")]})
    p = pl.from_log_text("\n".join(lines), "qnn")
    assert p.nodes_by_ep == {"cpu": 2} and p.partitions_by_ep == {} and p.cpu_fallback_nodes == 2


def test_the_last_summary_is_the_main_graphs():
    # NHWC EPs (NNAPI, QNN) are asked again after the layout transform and nested graphs come
    # first (graph_partitioner.cc GetCapabilityForEP, PartitionOnnxFormatModelImpl): the last
    # line of the requested EP is the assignment of the main graph.
    where = "nnapi_execution_provider.cc:232 GetCapability"
    lines = [_line("I", where, "NnapiExecutionProvider::GetCapability, number of partitions supported by NNAPI: "
                               f"1 number of nodes in the graph: {n} number of nodes supported by NNAPI: {k}")
             for n, k in ((6, 6), (8, 5))]
    p = pl.from_log_text("\n".join(lines), "nnapi")
    assert p.nodes_by_ep == {"cpu": 3, "nnapi": 5}


def test_vsinpu_and_dnnl_wordings():
    # vsinpu/vsinpu_execution_provider.cc (1.19-1.25) separates fields with "; ";
    # dnnl/dnnl_execution_provider.cc (1.10-1.25, debug option) appends the percentage.
    v = _line("I", "vsinpu_execution_provider.cc:158 GetCapability",
              "VSINPUExecutionProvider::GetCapability, number of partitions supported by VSINPU: 1; number of "
              "nodes in the graph: 5; number of nodes supported by VSINPU: 4")
    assert pl.from_log_text(v, "vsinpu").nodes_by_ep == {"cpu": 1, "vsinpu": 4}
    d = _line("E", "dnnl_execution_provider.cc:256 GetCapability",
              "DnnlExecutionProvider::GetCapability, number of partitions supported by DNNL: 2 number of nodes "
              "in the graph: 10 number of nodes supported by DNNL: 8 (80.00%)", "Default")
    assert pl.from_log_text(d, "dnnl").partitions_by_ep == {"dnnl": 2}


def test_openvino_partitions_only_summary_leaves_its_nodes_unknown():
    # openvino/ov_versions/capability.cc (1.8-1.25) prints no node count: "[OpenVINO-EP] Supported
    # subgraphs on OpenVINO: P". The log below is what onnxruntime-openvino 1.24.1 printed for
    # x->Add->Relu->Hardmax->Mul->Sigmoid: two fused nodes and the CPU's Hardmax.
    lines = [_line("I", "capability.cc:252 Execute", "[OpenVINO-EP] Supported subgraphs on OpenVINO: 2", "Default")]
    lines += _verify({
        "OpenVINOExecutionProvider": [("OpenVINO-EP-subgraph_1", "OpenVINOExecutionProvider_OpenVINO-EP-subgraph_1_0"),
                                      ("OpenVINO-EP-subgraph_2", "OpenVINOExecutionProvider_OpenVINO-EP-subgraph_2_1")],
        "CPUExecutionProvider": [("Hardmax", "hardmax_2")],
    })
    p = pl.from_log_text("\n".join(lines), "openvino")
    # The model nodes OpenVINO took are not in any of these lines: unknown, not 2.
    assert p.nodes_by_ep == {"cpu": 1} and p.nodes_total is None
    assert p.partitions_by_ep == {"openvino": 2} and p.cpu_fallback_nodes == 1
    assert p.fallback_op_types == {"Hardmax": 1}


def test_openvino_and_tensorrt_whole_graph_wordings():
    ov = [_line("I", "capability.cc:146 Execute", "[OpenVINO-EP] Model is fully supported by OpenVINO", "Default")]
    ov += _verify({"OpenVINOExecutionProvider": [("OpenVINO-EP-subgraph_1",
                                                  "OpenVINOExecutionProvider_OpenVINO-EP-subgraph_1_0")]})
    p = pl.from_log_text("\n".join(ov), "openvino")
    assert p.partitions_by_ep == {"openvino": 1} and p.cpu_fallback_nodes == 0 and p.nodes_total is None
    # tensorrt/tensorrt_execution_provider.cc: "exeuction" up to 1.9, "execution" from 1.10.
    for word in ("exeuction", "execution"):
        trt = _line("I", "tensorrt_execution_provider.cc:2850 GetCapability",
                    "[TensorRT EP] Graph is partitioned and number of subgraphs running on TensorRT "
                    f"{word} provider is 3", "Default")
        assert pl.from_log_text(trt, "tensorrt").partitions_by_ep == {"tensorrt": 3}
    whole = _line("I", "tensorrt_execution_provider.cc:2848 GetCapability",
                  "[TensorRT EP] Whole graph will run on TensorRT execution provider", "Default")
    assert pl.from_log_text(whole, "tensorrt").partitions_by_ep == {"tensorrt": 1}
    none = _line("W", "tensorrt_execution_provider.cc:2846 GetCapability",
                 "[TensorRT EP] No graph will run on TensorRT execution provider", "Default")
    assert pl.from_log_text(none, "tensorrt").nodes_by_ep == {}
    # nv_tensorrt_rtx/nv_execution_provider.cc (1.23-1.25) spells "executio".
    rtx = _line("I", "nv_execution_provider.cc:2240 GetCapability",
                "[NvTensorRTRTX EP] Graph is partitioned and number of subgraphs running on Nv executio provider "
                "is 2", "Default")
    assert pl.parse_summary(rtx).provider == "NvTensorRTRTXExecutionProvider"


def test_fused_nodes_in_the_log_are_partitions_never_nodes():
    # Without a summary (a build whose EP logs none at this level), the log's fused node is
    # one line: it is counted as a partition and the EP's node count stays unknown.
    lines = _verify({"OpenVINOExecutionProvider": [("OpenVINO-EP-subgraph_1",
                                                     "OpenVINOExecutionProvider_OpenVINO-EP-subgraph_1_0")],
                     "CPUExecutionProvider": [("Hardmax", "h"), ("MemcpyToHost", "Memcpy_token_0")]})
    p = pl.from_log_text("\n".join(lines), "openvino")
    assert p.partitions_by_ep == {"openvino": 1} and p.nodes_by_ep == {"cpu": 1} and p.nodes_total is None
    assert p.source == "verbose log"
    # DML fuses in a transformer: DmlFusedNode_<p>_<i> is name and op type
    # (dml/DmlExecutionProvider/src/DmlGraphFusionTransformer.h, DmlGraphFusionHelper.cpp).
    assert pl.is_fused("DmlExecutionProvider", "DmlFusedNode_0_0", "DmlFusedNode_0_0")
    assert not pl.is_fused("CPUExecutionProvider", "Conv", "CPUExecutionProvider_Conv_x")


def test_pre_1_13_verify_wordings():
    # session_state.cc 1.11-1.12 (inference_session.cc up to 1.10): "All nodes have been placed on
    # [EP]." with no count, or " Provider: [EP]: [Op (name), Op (name), ]".
    where = "session_state.cc:1193 VerifyEachNodeIsAssignedToAnEp"
    lines = [_line("V", where, "Node placements"),
             _line("V", where, " Provider: [CUDAExecutionProvider]: [Conv (conv1), Relu (relu1), ]"),
             _line("V", where, " Provider: [CPUExecutionProvider]: [TopK (topk), ]")]
    p = pl.from_log_text("\n".join(lines), "cuda")
    assert p.nodes_by_ep == {"cpu": 1, "cuda": 2} and p.fallback_op_types == {"TopK": 1}
    only = pl.from_log_text(_line("V", where, "All nodes have been placed on [CPUExecutionProvider]."), "cpu")
    assert only.nodes_total is None and only.nodes_by_ep == {}
    # The profile fills in what that wording leaves out.
    prof = [{"cat": "Node", "name": "a_kernel_time", "dur": 5, "args": {"provider": "CPUExecutionProvider",
                                                                          "op_name": "Add"}}]
    p = pl.from_log_text(_line("V", where, "All nodes have been placed on [CPUExecutionProvider]."), "cpu", prof)
    assert p.nodes_by_ep == {"cpu": 1} and p.source == "verbose log + profile"


def test_api_entries_are_model_nodes_and_compiling_partitions():
    # What onnxruntime-openvino 1.24.1's get_provider_graph_assignment_info() returned for the
    # Hardmax model (inference_session.cc CreateEpAssignedSubgraph: one entry per assigned
    # capability; the CPU EP's capabilities are single nodes).
    api = [("OpenVINOExecutionProvider", [("Add", "add_0"), ("Relu", "relu_1")]),
           ("OpenVINOExecutionProvider", [("Mul", "mul_3"), ("Sigmoid", "sigmoid_4")]),
           ("CPUExecutionProvider", [("Hardmax", "hardmax_2")])]
    prof = pl.parse_profile([
        {"cat": "Node", "name": "OpenVINOExecutionProvider_OpenVINO-EP-subgraph_1_0_kernel_time", "dur": 30,
         "args": {"provider": "OpenVINOExecutionProvider", "op_name": "OpenVINO-EP-subgraph_1"}},
        {"cat": "Node", "name": "hardmax_2_kernel_time", "dur": 10,
         "args": {"provider": "CPUExecutionProvider", "op_name": "Hardmax"}},
    ])
    p = pl.combine("openvino", None, prof, False, api=api)
    assert p.nodes_by_ep == {"cpu": 1, "openvino": 4} and p.nodes_total == 5
    assert p.partitions_by_ep == {"openvino": 2} and p.cpu_fallback_nodes == 1
    assert p.fallback_op_types == {"Hardmax": 1} and p.fully_accelerated is False
    assert p.time_share_by_ep == {"cpu": 0.25, "openvino": 0.75} and p.source == "runtime API + profile"
    cpu = pl.combine("cpu", None, None, None, api=[("CPUExecutionProvider", [("Add", "a")]),
                                                    ("CPUExecutionProvider", [("Mul", "m")])])
    assert cpu.nodes_by_ep == {"cpu": 2} and cpu.partitions_by_ep == {} and cpu.cpu_fallback_nodes == 0


def test_api_gate_by_release():
    # d8f0318694 "Add API to get ep graph partitioning info (#26781)", cherry-picked into 1.24.0.
    assert pl.has_assignment_api("1.24.1") and pl.has_assignment_api("1.32.0")
    assert not pl.has_assignment_api("1.23.2") and not pl.has_assignment_api("1.20.1")
    assert not pl.has_assignment_api("")
