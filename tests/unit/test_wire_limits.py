"""Jobs and results stay within one gRPC message whatever the model."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agents.contract import DriverResult
from harness import probes
from harness.kernel import wire
from harness.kernel.modelfile import ModelError, inspect_onnx


def test_outputs_beyond_the_limit_are_dropped_whole_and_said():
    big = [{"y": np.zeros((1024, 1024), np.float32)} for _ in range(5)]  # 4 MiB each
    notes: dict = {}
    sets = wire.bounded_outputs(big, notes, limit=10 * 1024 * 1024)
    assert len(sets) == 2 and "2 of 5 probes" in notes["outputs_truncated"]
    msg = wire.result_to_pb(DriverResult(outputs=tuple(big)), "host:x", 0.0, 1.0)
    assert len(msg.outputs) == 5 and "outputs_truncated" not in msg.details_json  # 20 MiB: under the default


def test_outputs_the_wire_cannot_carry_are_left_out_not_fatal():
    res = DriverResult(outputs=({"label": np.array(["cat"], dtype=object), "score": np.ones(3, np.float32)},))
    msg = wire.result_to_pb(res, "host:x", 0.0, 1.0)
    back = wire.result_from_pb(msg)
    assert list(back["outputs"][0]) == ["score"]
    assert back["details"]["outputs_not_returned"] == ["label (object)"]


def test_probe_count_fits_the_message():
    ps = [{"x": np.zeros((3, 1024, 1024), np.float32)} for _ in range(8)]  # 12 MiB each
    assert probes.fitting(ps, 24 * 1024 * 1024) == 2
    assert probes.fitting(ps[:1], 1024) == 1  # never zero
    assert probes.fitting([{"x": np.zeros(4, np.float32)}] * 3, 1024) == 3


def test_external_data_models_are_refused_with_the_fix(tmp_path):
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ext.onnx"
    onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.bin",
              size_threshold=0)
    with pytest.raises(ModelError, match="external data file"):
        inspect_onnx(path)
