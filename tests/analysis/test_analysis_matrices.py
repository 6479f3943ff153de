"""Coverage and operator-support matrices, the divergence matrix, and the
student capacity arithmetic, on synthetic records."""

import numpy as np
import pytest

from analysis_kit import MiB, config, gap, profile, rec
from harness.analysis import baseline, student, coverage, divergence


def placement(fallback=None, fully=None):
    fb = dict(fallback or {})
    return {"nodes_total": 10, "nodes_by_ep": {}, "cpu_fallback_nodes": sum(fb.values()), "fallback_op_types": fb,
            "time_share_by_ep": {}, "fully_accelerated": fully, "source": "test"}


def test_coverage_cells_take_the_worst_status_per_runtime_version():
    a = profile("a", platform="android", targets=(("onnxruntime", "nnapi"),))
    b = profile("b", platform="browser", targets=(("onnxruntime-web", "wasm"),))
    rows = [rec(a, ep="nnapi", placement=placement({"TopK": 1})),
            rec(a, ep="xnnpack", placement=placement()),
            rec(a, ep="cpu", version="1.18.0", error={"stage": "load", "kind": "model_invalid", "message": "opset"}),
            gap(b)]
    m = coverage.coverage_matrix(rows, ["a", "b"])
    assert m["columns"] == ["onnxruntime 1.18.0", "onnxruntime 1.20.0", "onnxruntime-web any"]
    cell = m["cells"]["a"]["onnxruntime 1.20.0"]
    assert cell["status"] == "fallback" and cell["by_ep"] == {"nnapi": "fallback", "xnnpack": "ok"}
    assert m["cells"]["a"]["onnxruntime 1.18.0"]["status"] == "failed"
    assert m["cells"]["b"]["onnxruntime-web any"]["status"] == "not run"
    assert "onnxruntime 1.20.0" not in m["cells"]["b"]  # absent cells read as not run
    # a strict probe that refused the graph is a fallback even without a node count
    assert coverage.cell_status(rec(a, ep="nnapi", placement=placement(fully=False))) == "fallback"


def test_operator_matrix_statuses():
    a = profile("a", platform="browser", targets=(("onnxruntime-web", "webgpu"),))
    inv = {"Conv": 2, "TopK": 1, "Relu": 2}
    rows = [rec(a, ep="webgpu", runtime="onnxruntime-web", placement=placement({"TopK": 1})),
            rec(a, ep="wasm", runtime="onnxruntime-web", placement=placement()),
            rec(a, ep="webnn", runtime="onnxruntime-web",
                error={"stage": "load", "kind": "unsupported_op", "message": "WebNN: Relu is not supported"}),
            rec(a, ep="nnapi", runtime="onnxruntime",
                error={"stage": "load", "kind": "unsupported_op", "message": "something odd"})]
    m = coverage.operator_matrix(rows, inv)
    assert m["rows"] == ["Conv", "Relu", "TopK"]
    assert m["cells"]["TopK"]["onnxruntime-web/webgpu"] == "cpu_fallback"
    assert m["cells"]["Conv"]["onnxruntime-web/webgpu"] == "accelerated"
    assert m["cells"]["Conv"]["onnxruntime-web/wasm"] == "cpu"
    assert m["cells"]["Relu"]["onnxruntime-web/webnn"] == "unsupported"
    assert m["cells"]["Conv"]["onnxruntime-web/webnn"] == "unknown"
    assert m["cells"]["Conv"]["onnxruntime/nnapi"] == "unknown"
    assert len(m["notes"]) == 1 and "without an op type named" in m["notes"][0]
    # fallback op types the inventory lacks (a Core ML op name) still get a row
    m2 = coverage.operator_matrix([rec(a, ep="webgpu", runtime="onnxruntime", placement=placement({"gather_nd": 1}))],
                                  {"Conv": 1})
    assert m2["rows"] == ["Conv", "gather_nd"] and m2["cells"]["gather_nd"]["onnxruntime/webgpu"] == "cpu_fallback"


def _outs(values):
    return [{"logits": np.asarray(v, np.float32)} for v in values]


def test_divergence_matrix_pairs_and_cross_target_tolerance():
    lin = profile("lin", platform="linux")
    web = profile("web", platform="browser", targets=(("onnxruntime-web", "wasm"),))
    r1, r2, r3 = rec(lin, "q", ep="cpu"), rec(lin, "q", ep="xnnpack"), rec(web, "q", runtime="onnxruntime-web", ep="wasm")
    base = [[[0.1, 0.9], [0.8, 0.2]], [[0.4, 0.6], [0.7, 0.3]]]
    flipped = [[[0.1, 0.9], [0.8, 0.2]], [[0.6, 0.4], [0.7, 0.3]]]  # one of four rows changes class
    outs = {r1["job"]: _outs(base), r2["job"]: _outs(base), r3["job"]: _outs(flipped)}
    m = divergence.candidate_matrix([r1, r2, r3], outs, {"max_top1_disagreement": 0.1})
    assert len(m["pairs"]) == 3 and m["cross_target_pairs"] == 2
    same = next(p for p in m["pairs"] if not p["cross_target"])
    assert same["identical"] is True
    assert m["worst_cross_target"]["top1_agreement"] == 0.75 and m["status"] == "outside"
    assert divergence.candidate_matrix([r1, r2, r3], outs, {"max_top1_disagreement": 0.3})["status"] == "within"
    alone = divergence.candidate_matrix([r1, r2], outs, {"max_top1_disagreement": 0.1})
    assert alone["status"] == "not_measured" and alone["targets"] == ["linux/onnxruntime"]


def _inventories(weights):
    return {c: {"onnx": {"weight_bytes": w}} for c, w in weights.items()}


def test_capacity_arithmetic_from_measured_overhead():
    low = profile("low", tier="low", budget=512)
    mid = profile("mid", tier="mid", budget=4096)
    res = [rec(low, "teacher", peak_mb=300), rec(low, "student", peak_mb=90), rec(mid, "teacher", peak_mb=10)]
    inv = _inventories({"teacher": 200 * MiB, "student": 20 * MiB})
    base = baseline.cohort_baseline(res, config([low, mid]))
    cap = student.student_capacity(res, base, inv, 0.65)
    # overheads on the lowest tier: teacher 300-200 = 100 MB, student 90-20 = 70 MB -> the larger, 100 MB
    assert cap["overhead_bytes"] == 100 * MiB and cap["overhead_from"]["candidate"] == "teacher"
    assert [t["fraction"] for t in cap["targets"]] == [0.6, 0.65, 0.7]
    room60 = 0.6 * 512 * MiB - 100 * MiB
    room70 = 0.7 * 512 * MiB - 100 * MiB
    assert cap["params_fp32"] == [int(room60 // 4), int(room70 // 4)]
    assert cap["params_fp16"] == [int(room60 // 2), int(room70 // 2)]
    assert any("= peak 300.0 MB − weights 200.00 MB of teacher on low" in e for e in cap["explanation"])
    assert student.fits(int(room70 // 4), cap) is True and student.fits(int(room70 // 4) + 1, cap) is False


def test_capacity_without_room_without_budget_and_without_measurement():
    low = profile("low", tier="low", budget=100)
    res = [rec(low, "teacher", peak_mb=120)]
    inv = _inventories({"teacher": 1 * MiB})
    cap = student.student_capacity(res, baseline.cohort_baseline(res, config([low])), inv, 0.65)
    assert cap["status"] == "no_room" and cap["params_fp32"] == [0, 0]
    assert "overhead alone exceeds" in cap["explanation"][-1]
    nob = profile("nob", tier="low")
    res2 = [rec(nob, "teacher", peak_mb=50)]
    assert student.student_capacity(res2, baseline.cohort_baseline(res2, config([nob])), inv, 0.65)["status"] == "no_budget"
    res3 = [gap(low, "teacher")]
    cap3 = student.student_capacity(res3, baseline.cohort_baseline(res3, config([low])), inv, 0.65)
    assert cap3["status"] == "unmeasured"


def test_capacity_falls_back_to_other_devices_and_says_so():
    low = profile("low", tier="low", budget=1024)
    mid = profile("mid", tier="mid", budget=4096)
    res = [gap(low, "teacher"), rec(mid, "teacher", peak_mb=64)]
    cap = student.student_capacity(res, baseline.cohort_baseline(res, config([low, mid])),
                                    _inventories({"teacher": 4 * MiB}), 0.65)
    assert cap["status"] == "ok" and cap["overhead_bytes"] == 60 * MiB
    assert any("not the lowest tier" in e for e in cap["explanation"])
    assert cap["params_fp32"][0] == pytest.approx((0.6 * 1024 - 60) * MiB / 4, abs=1)
