"""Placement parsing over ONNX Runtime's real log and profile shapes."""

from agents import placement as pl

CUDA_LOG = """\
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1598 VerifyEachNodeIsAssignedToAnEp] Node placements
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1601 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 4
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   Conv (conv1)
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   Relu (relu1)
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   MatMul (fc)
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   MemcpyFromHost (Memcpy)
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1601 VerifyEachNodeIsAssignedToAnEp]  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 3
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   TopK (topk)
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   NonZero (nz)
2026-01-01 10:00:00.1 [V:onnxruntime:, session_state.cc:1603 VerifyEachNodeIsAssignedToAnEp]   TopK (topk2)
2026-01-01 10:00:00.1 [W:onnxruntime:, session_state.cc:1359 VerifyEachNodeIsAssignedToAnEp] Some nodes were not assigned to the preferred execution providers
"""


def test_verbose_log_with_fallback():
    log = pl.parse_verbose_log(CUDA_LOG.splitlines())
    p = pl.combine("cuda", log, None, fully_accelerated=False)
    assert p.nodes_by_ep == {"cpu": 3, "cuda": 3}  # the Memcpy node is not a model node
    assert p.nodes_total == 6
    assert p.cpu_fallback_nodes == 3
    assert p.fallback_op_types == {"NonZero": 1, "TopK": 2}
    assert p.fully_accelerated is False and p.source == "verbose log"


def test_all_nodes_line_takes_op_types_from_profile():
    log = pl.parse_verbose_log(["[V:onnxruntime:, session_state.cc:1 VerifyEachNodeIsAssignedToAnEp]  "
                                "All nodes placed on [CPUExecutionProvider]. Number of nodes: 2"])
    prof = pl.parse_profile([
        {"cat": "Node", "name": "a_kernel_time", "dur": 30, "args": {"provider": "CPUExecutionProvider", "op_name": "Add"}},
        {"cat": "Node", "name": "b_kernel_time", "dur": 10, "args": {"provider": "CPUExecutionProvider", "op_name": "Mul"}},
        {"cat": "Node", "name": "a_fence_before", "dur": 1, "args": {"provider": "CPUExecutionProvider"}},
        {"cat": "Session", "name": "model_run", "dur": 50},
    ])
    p = pl.combine("xnnpack", log, prof, None)
    assert p.nodes_total == 2 and p.cpu_fallback_nodes == 2
    assert p.fallback_op_types == {"Add": 1, "Mul": 1}
    assert p.time_share_by_ep == {"cpu": 1.0}
    assert p.source == "verbose log + profile"


def test_cpu_requested_has_no_fallback_and_browser_console_lines():
    lines = ["Node placements", "  Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 2",
             "    Conv (c)", "    Relu (r)", "  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 1",
             "    TopK (t)"]
    log = pl.parse_verbose_log(lines)
    assert pl.combine("webgpu", log, None, None).fallback_op_types == {"TopK": 1}
    assert pl.combine("wasm", log, None, None).cpu_fallback_nodes == 0
    assert pl.parse_verbose_log(["nothing to see"]) is None
