"""Core ML's compute plan as a Placement, with the fields and meaning ONNX
Runtime's placement has. Plans are built from coremltools' own structure
classes (what MLComputePlan returns); ONNX Runtime's placement comes from a
real session on this machine."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import ioskit


def _plan(data):
    from agents.ios.recorded import RecordedComputePlan

    return RecordedComputePlan(data)


def test_plan_walk_reads_coremltools_structures_including_nested_blocks():
    from coremltools.models import compute_plan as cp

    from agents.ios.computeplan import plan_ops

    plan = _plan(ioskit.program_plan([
        ioskit.op("const", None, None),
        ioskit.op("ios17.cond", "cpu", 0.1, blocks=[[ioskit.op("ios17.conv", "neural_engine", 0.5)],
                                                     [ioskit.op("ios17.matmul", "gpu", 0.4)]]),
    ]))
    # What a real plan hands out: coremltools' dataclasses and device classes.
    assert isinstance(plan.model_structure, cp.MLModelStructure)
    first = plan.model_structure.program.functions["main"].block.operations[1]
    assert isinstance(first, cp.MLModelStructureProgramOperation)
    usage = plan.get_compute_device_usage_for_mlprogram_operation(first)
    assert type(usage.preferred_compute_device).__name__ == "MLCPUComputeDevice"
    ops = plan_ops(plan)
    assert [(o.op_type, o.preferred, o.cost) for o in ops] == [
        ("const", None, None), ("cond", "cpu", 0.1), ("conv", "neural_engine", 0.5), ("matmul", "gpu", 0.4)]
    assert ops[2].supported == ("cpu", "gpu", "neural_engine")


def test_neural_network_layers_have_devices_but_no_cost():
    from agents.ios.computeplan import placement_from_plan, plan_ops

    plan = _plan({"neuralnetwork": {"layers": [
        {"name": "conv1", "type": "convolution", "device_usage": {"preferred": "neural_engine",
                                                                   "supported": ["cpu", "neural_engine"]}},
        {"name": "sm", "type": "softmaxND", "device_usage": {"preferred": "cpu", "supported": ["cpu"]}},
    ]}})
    p = placement_from_plan(plan_ops(plan), "cpu_and_ne")
    assert p.nodes_by_ep == {"cpu": 1, "neural_engine": 1}
    assert p.fallback_op_types == {"softmaxND": 1} and p.time_share_by_ep == {}


def test_plan_placement_counts_cpu_fallback_like_onnx_runtime():
    from agents.ios.computeplan import placement_from_plan, plan_details, plan_ops

    ops = plan_ops(_plan(ioskit.TINY_PLAN_ALL))
    p = placement_from_plan(ops, "all")
    assert p.source == "plan"
    assert p.nodes_total == 7  # constants have no device usage and are not nodes
    assert p.nodes_by_ep == {"cpu": 2, "gpu": 1, "neural_engine": 4}
    assert p.cpu_fallback_nodes == 2 and p.fallback_op_types == {"cast": 1, "softmax": 1}
    assert p.time_share_by_ep == {"cpu": 0.2, "gpu": 0.1, "neural_engine": 0.7}
    assert p.fully_accelerated is False
    details = plan_details(ops, "all")
    assert details["without_device_usage"] == {"const": 2}
    assert details["on_gpu_not_neural_engine"] == {"reduce_mean": 1}
    assert details["cpu_though_neural_engine_supported"] == {"cast": 1}
    # Asking for the CPU only: nothing is a fallback, nothing to accelerate.
    cpu = placement_from_plan(plan_ops(_plan(ioskit.TINY_PLAN_CPU)), "cpu_only")
    assert (cpu.cpu_fallback_nodes, cpu.fallback_op_types, cpu.fully_accelerated) == (0, {}, None)
    assert cpu.nodes_by_ep == {"cpu": 7} and cpu.time_share_by_ep == {"cpu": 1.0}
    # Asking for the GPU while the plan puts everything there: fully accelerated.
    gpu = placement_from_plan(plan_ops(_plan(ioskit.program_plan([ioskit.op("ios16.conv", "gpu", 1.0)]))),
                              "cpu_and_gpu")
    assert gpu.fully_accelerated is True and gpu.cpu_fallback_nodes == 0


def test_a_plan_with_no_device_usage_is_no_placement():
    from agents.ios.computeplan import placement_from_plan, plan_ops

    assert placement_from_plan(plan_ops(_plan(ioskit.program_plan([ioskit.op("const", None, None)]))), "all") is None


@pytest.fixture(scope="module")
def ort_placement(tmp_path_factory):
    """A real ONNX Runtime placement: the host driver on an ONNX model built here."""
    import modelkit
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from agents.host.driver import HostDriver
    from harness.kernel.measure.policy import MeasurePolicy
    from harness.kernel.modelfile import sha256_file

    d = tmp_path_factory.mktemp("ort")
    path = modelkit.mlp(d / "m.onnx", batch=1)
    import numpy as np

    job = JobSpec("ort-1", "h", (ModelFile(sha256_file(path), "onnx", path),), RuntimeTarget("onnxruntime", "", "cpu"),
                  MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=3, min_s=0, max_s=5, target_ci=0),
                  ({"x": np.ones((1, 16), np.float32)},), 60)
    res = HostDriver({"work_dir": str(d)}).run(job, lambda *a: None, threading.Event())
    assert res.error is None, res.error
    return res.placement


def test_plan_placement_has_onnx_runtimes_fields_and_meaning(ort_placement):
    from agents.contract import Placement
    from harness.kernel.eps import CPU_EPS
    from agents.ios.computeplan import placement_from_plan, plan_ops
    from harness.kernel import wire

    plan = placement_from_plan(plan_ops(_plan(ioskit.TINY_PLAN_ALL)), "all")
    assert type(plan) is type(ort_placement) is Placement
    assert dataclasses.asdict(plan).keys() == dataclasses.asdict(ort_placement).keys()
    for p in (plan, ort_placement):
        # Same types per field, same invariants.
        assert isinstance(p.nodes_total, int) and p.nodes_total == sum(p.nodes_by_ep.values())
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in p.nodes_by_ep.items())
        assert p.cpu_fallback_nodes == sum(p.fallback_op_types.values())
        assert p.cpu_fallback_nodes == sum(v for k, v in p.nodes_by_ep.items() if k in CPU_EPS) or \
            p.cpu_fallback_nodes == 0
        assert abs(sum(p.time_share_by_ep.values()) - 1.0) < 1e-6
        assert list(p.nodes_by_ep) == sorted(p.nodes_by_ep)
    # Both travel the same wire message and come back the same.
    for p in (plan, ort_placement):
        from agents.contract import DriverResult

        back = wire.result_from_pb(wire.result_to_pb(DriverResult(placement=p), "d", 0, 0))["placement"]
        assert back == dataclasses.asdict(p)
    assert ort_placement.source != "plan" and plan.source == "plan"


def _ort_log(placed: dict) -> list[str]:
    """ONNX Runtime's verbose placement lines (VerifyEachNodeIsAssignedToAnEp)."""
    head = "2025-05-12 09:41:00.000000 [V:onnxruntime:, utils.cc:{} VerifyEachNodeIsAssignedToAnEp] "
    lines = [head.format(120) + "Node placements"]
    for ep, nodes in placed.items():
        lines.append(head.format(123) + f"Node(s) placed on [{ep}]. Number of nodes: {len(nodes)}")
        lines += [head.format(126) + f" {op} ({name})" for op, name in nodes]
    return lines


def test_same_graph_same_fallback_from_coreml_ep_log_and_from_compute_plan():
    """TinyNet with its softmax left on the CPU, once as ONNX Runtime's
    CoreML EP reports it and once as Core ML's plan does: the same counts."""
    from agents.ios.computeplan import placement_from_plan, plan_ops
    from agents.placement import combine, parse_verbose_log

    log = parse_verbose_log(_ort_log({
        "CoreMLExecutionProvider": [("Conv", "/conv/Conv"), ("Relu", "/Relu"), ("ReduceMean", "/ReduceMean"),
                                    ("Gemm", "/fc/Gemm")],
        "CPUExecutionProvider": [("Softmax", "/Softmax")],
    }))
    ort = combine("coreml", log, None, False)
    plan = placement_from_plan(plan_ops(_plan(ioskit.program_plan([
        ioskit.op("const", None, None), ioskit.op("ios16.conv", "neural_engine", 0.5),
        ioskit.op("ios16.relu", "neural_engine", 0.1), ioskit.op("ios16.reduce_mean", "neural_engine", 0.1),
        ioskit.op("ios16.linear", "neural_engine", 0.1), ioskit.op("ios16.softmax", "cpu", 0.2)]))), "cpu_and_ne")
    for p in (ort, plan):
        assert p.nodes_total == 5 and p.cpu_fallback_nodes == 1 and p.nodes_by_ep["cpu"] == 1
        assert p.fully_accelerated is False
    assert ort.fallback_op_types == {"Softmax": 1} and plan.fallback_op_types == {"softmax": 1}
    assert ort.nodes_by_ep == {"coreml": 4, "cpu": 1} and plan.nodes_by_ep == {"cpu": 1, "neural_engine": 4}
