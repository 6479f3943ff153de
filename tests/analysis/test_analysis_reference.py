"""Reference outputs on the controller: real ONNX Runtime in a child process,
a real SQLite store; a model ORT refuses and a model that hangs are recorded
as failures without raising."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import modelkit
from analysis_kit import classifier_set, cohort_file
from harness import api
from harness.analysis import reference
from harness.controller.prepare import prepare
from harness.store import open_store


def foreign_op(path):
    g = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "r.sqlite"))
    s.create_run("r1", "t", "0", {})
    yield s
    s.close()


def test_reference_outputs_inventory_and_failures(tmp_path, store):
    cands = classifier_set(tmp_path / "m")
    prep = prepare(api.RunRequest(cohort=str(cohort_file(tmp_path / "c.yaml")), candidates_file=cands,
                                      dims=["batch=8"]))
    metas = reference.store_references(store, "r1", prep)
    assert {m["status"] for m in metas.values()} == {"ok"}
    outs, meta = reference.load_reference(store, "r1", "teacher")
    assert meta["runtime"]["ep"] == "cpu" and meta["runtime"]["options"]["graph_optimization_level"] == "disable"
    assert len(outs) == len(prep.probes["teacher"]) == 16  # 128 eval samples in batches of 8
    want = modelkit.reference_outputs(tmp_path / "m" / "teacher.onnx", prep.probes["teacher"][3])[0]
    np.testing.assert_allclose(outs[3]["logits"], want, rtol=1e-5, atol=1e-5)
    inv = reference.load_inventory(store, "r1", "teacher-int8")["onnx"]
    assert inv["precision"] == "int8" and "MatMulInteger" in inv["op_types"]
    assert 0 < inv["weight_bytes"] < reference.load_inventory(store, "r1", "teacher")["onnx"]["weight_bytes"]


def test_a_model_onnx_runtime_refuses_and_a_hanging_model_are_recorded(tmp_path, store):
    bad = foreign_op(tmp_path / "bad.onnx")
    slow = modelkit.hang(tmp_path / "hang.onnx")
    prep = prepare(api.RunRequest(cohort=str(cohort_file(tmp_path / "c.yaml")),
                                      models=[f"bad={bad}", f"hang={slow}"]))
    events = []
    metas = reference.store_references(store, "r1", prep, events.append, timeout_s=3)
    assert metas["bad"]["status"] == "failed" and "Frobnicate" in metas["bad"]["reason"]
    assert metas["hang"]["status"] == "failed" and "within 3 s" in metas["hang"]["reason"]
    assert [e["candidate"] for e in events] == ["bad", "hang"]
    outs, meta = reference.load_reference(store, "r1", "bad")
    assert outs == [] and json.loads(store.get_blob("r1", "reference-meta/bad"))["status"] == "failed"
    assert reference.load_reference(store, "r1", "never")[1]["status"] == "missing"
