"""The committed digits example: artefacts load, the candidates file is valid
and usable without flags, and the student earns its place."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

from harness.config.resolve import load_candidates
from harness.kernel.modelfile import inspect_onnx
from harness.probes import load_eval, resolve_shapes

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
# The student may trail the teacher on val.npz by at most this much accuracy
# (also stated in examples/digits/README.md).
ACCURACY_MARGIN = 0.05


@pytest.fixture(scope="module")
def cands():
    return load_candidates(DIGITS / "candidates.yaml")


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


def test_candidates_file_is_valid_and_complete(cands):
    assert cands.reference == "teacher"
    assert cands.eval == (DIGITS / "val.npz").resolve()
    spec = {c.name: (c.spec.technique, c.spec.from_) for c in cands.candidates}
    assert spec["teacher"] == ("baseline", None)
    assert spec["student"] == ("distillation", "teacher")
    assert spec["teacher-int8-static"] == ("quantisation", "teacher")
    assert spec["teacher-int8-dynamic"] == ("quantisation", "teacher")
    assert len(spec) <= 6, "the demo measures every candidate on every device"


def test_every_model_loads_with_the_eval_set_and_no_flags(cands):
    """What `harness run --candidates examples/digits/candidates.yaml` does
    before measuring: fixed shapes, so the eval set becomes probes without --dim."""
    for c in cands.candidates:
        info = inspect_onnx(c.onnx)
        assert info.opset >= 17, c.name
        assert [(i.name, i.dtype, i.dims) for i in info.inputs] == [("x", "float32", (1, 1, 8, 8))], c.name
        probes, labels = load_eval(cands.eval, resolve_shapes(info, {}, {}), 64)
        assert len(probes) == 64 and len(labels) == 64
        logits = _logits(c.onnx, np.concatenate([p["x"] for p in probes]))
        assert logits.shape == (64, 10)
    precisions = {c.name: inspect_onnx(c.onnx).precision for c in cands.candidates}
    assert precisions["teacher-int8-static"] == "int8" and precisions["teacher-int8-dynamic"] == "int8"
    assert precisions.get("teacher-fp16", "fp16") == "fp16"


def test_student_is_much_smaller_and_close_to_the_teacher(cands):
    teacher, student = inspect_onnx(cands.get("teacher").onnx), inspect_onnx(cands.get("student").onnx)
    assert student.params < teacher.params / 10
    assert student.size_bytes < teacher.size_bytes / 10
    with np.load(cands.eval) as d:
        x, y = d["x"], d["labels"]
    acc_t = float(np.mean(_logits(cands.get("teacher").onnx, x).argmax(1) == y))
    acc_s = float(np.mean(_logits(cands.get("student").onnx, x).argmax(1) == y))
    assert acc_t >= 0.9
    assert acc_s >= acc_t - ACCURACY_MARGIN, (acc_t, acc_s)


def test_quantised_teachers_agree_with_the_teacher(cands):
    with np.load(cands.eval) as d:
        x = d["x"]
    ref = _logits(cands.get("teacher").onnx, x).argmax(1)
    for c in cands.candidates:
        if c.spec.technique == "quantisation":
            assert np.mean(_logits(c.onnx, x).argmax(1) == ref) >= 0.95, c.name


def test_dynamic_variant_uses_convinteger_weights_older_runtimes_accept():
    """ConvInteger with int8 weights fails to load in ONNX Runtime Web 1.22's
    wasm build; uint8 weights load there and in current runtimes."""
    m = onnx.load(str(DIGITS / "teacher.int8-dynamic.onnx"))
    inits = {i.name: i.data_type for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "ConvInteger"]
    assert convs and all(inits[n.input[1]] == onnx.TensorProto.UINT8 for n in convs)


def test_val_npz_is_the_held_out_split_train_py_makes():
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed (the `examples` extra): cannot rebuild the split")
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    (x_tr, _), (x_te, _), (x_val, y_val) = train.data()
    with np.load(DIGITS / "val.npz") as d:
        assert np.array_equal(d["x"], x_val) and np.array_equal(d["labels"], y_val)
        assert d["x"].dtype == np.float32 and d["x"].shape == (64, 1, 8, 8)
    # held out: no validation image appears in the training split
    train_rows = {r.tobytes() for r in x_tr.reshape(len(x_tr), -1)}
    assert not any(r.tobytes() in train_rows for r in x_val.reshape(len(x_val), -1))
