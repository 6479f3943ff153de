"""`harness.quantize`: the three variants, calibration, eval-set shapes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import qkit
from harness.kernel.configfile import ConfigError
from harness.quantize import Settings, parse_variants, quantize


@pytest.fixture
def model(tmp_path):
    return qkit.cnn(tmp_path / "m.onnx")


@pytest.fixture
def data(tmp_path):
    return qkit.eval_set(tmp_path / "val.npz")


def test_all_three_variants_load_and_stay_close(tmp_path, model, data):
    out = quantize(model, eval_path=data, out_dir=tmp_path / "q")
    by = {v.kind: v for v in out.variants}
    assert set(by) == {"dynamic", "static", "fp16"}
    assert out.preprocessed
    for kind, name in (("dynamic", "m.int8-dynamic.onnx"), ("static", "m.int8-static.onnx"), ("fp16", "m.fp16.onnx")):
        assert by[kind].path == tmp_path / "q" / name and by[kind].path.is_file()

    dyn, sta, f16 = qkit.ops(by["dynamic"].path), qkit.ops(by["static"].path), qkit.ops(by["fp16"].path)
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= set(dyn)
    assert "Conv" not in dyn
    assert sta.get("QuantizeLinear", 0) >= 2 and sta.get("DequantizeLinear", 0) >= 3
    assert not ({"QuantizeLinear", "DequantizeLinear", "ConvInteger"} & set(f16))

    # fp16 halves the weights while its inputs and outputs stay float32.
    ratio = qkit.initializer_bytes(by["fp16"].path) / qkit.initializer_bytes(model)
    assert 0.45 <= ratio <= 0.55
    m16 = onnx.load(str(by["fp16"].path))
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m16.graph.initializer)
    # INT8 weights are a quarter of float32 (plus scales and zero points).
    for kind in ("dynamic", "static"):
        assert by[kind].size_bytes < 0.5 * model.stat().st_size

    x = np.load(data)["x"]
    ref = qkit.outputs(model, x)
    for kind, tol in (("dynamic", 0.05), ("static", 0.05), ("fp16", 1e-3)):
        got = qkit.outputs(by[kind].path, x)
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        chk = by[kind].check
        assert chk is not None and chk.samples == len(x)
        # The outcome reports the comparison as deployed (default options).
        assert chk.rel_l2 == pytest.approx(rel, rel=1e-3, abs=1e-9)
        if kind != "static":
            assert chk.rel_l2_unfused is None
            assert rel < tol, (kind, rel)
            assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9, kind
            continue
        # The QDQ graph run as written is the quantisation's own error. Some
        # ONNX Runtime releases' fused integer kernels (level-2 QDQ fusion)
        # move it further (1.32.0 on this model: 0.11 against 0.009); then
        # the outcome must say so rather than pass it off as the quantiser's.
        unfused = qkit.outputs(by[kind].path, x, optimize=False)
        rel_unfused = np.linalg.norm(unfused - ref) / np.linalg.norm(ref)
        assert rel_unfused < tol, rel_unfused
        assert np.mean(unfused.argmax(1) == ref.argmax(1)) >= 0.9
        assert chk.rel_l2_unfused == pytest.approx(rel_unfused, rel=1e-3, abs=1e-9)
        fused_note = [n for n in out.notes if "fused integer kernels" in n]
        if rel >= tol:
            assert fused_note, out.notes
        if not fused_note:
            assert rel < tol, rel
    assert not list((tmp_path / "q").glob(".quantize-*")), "work folder left behind"


def test_static_ranges_come_from_the_eval_set(tmp_path, model):
    """Calibration reads the eval data: inputs four times larger give an input
    scale about four times larger."""
    def input_scale(eval_scale, sub):
        ev = qkit.eval_set(tmp_path / f"{sub}.npz", scale=eval_scale)
        out = quantize(model, variants=["static"], eval_path=ev, out_dir=tmp_path / sub)
        m = onnx.load(str(out.variants[0].path))
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
        return float(inits[q.input[1]])

    assert input_scale(4.0, "big") / input_scale(1.0, "small") == pytest.approx(4.0, rel=0.05)


def test_dynamic_weights_are_uint8_for_convolutions_and_int8_otherwise(tmp_path, model):
    import modelkit

    conv = quantize(model, variants=["dynamic"], out_dir=tmp_path / "c").variants[0].path
    dense = quantize(modelkit.mlp(tmp_path / "mlp.onnx", batch=1), variants=["dynamic"],
                     out_dir=tmp_path / "d").variants[0].path

    def weight_type(path, op):
        m = onnx.load(str(path))
        inits = {i.name: i.data_type for i in m.graph.initializer}
        node = next(n for n in m.graph.node if n.op_type == op)
        return inits[node.input[1]]

    assert weight_type(conv, "ConvInteger") == onnx.TensorProto.UINT8
    assert weight_type(dense, "MatMulInteger") == onnx.TensorProto.INT8


@pytest.mark.parametrize("batch,stacked", [("batch", False), ("batch", True), (1, True)])
def test_eval_shapes_symbolic_batch_and_stacked_batches(tmp_path, batch, stacked):
    model = qkit.cnn(tmp_path / "m.onnx", batch=batch)
    ev = qkit.eval_set(tmp_path / "v.npz", n=12, stacked=stacked)
    out = quantize(model, variants=["static"], eval_path=ev, out_dir=tmp_path / "q")
    assert out.variants[0].check.samples == 12
    # Calibrated on every sample whatever the layout: the quantisation's own
    # error (the QDQ graph as written) stays small.
    assert out.variants[0].check.rel_l2_unfused < 0.05


def test_per_tensor_int8_activations_and_options_are_honoured(tmp_path, model, data):
    out = quantize(model, variants=["static"], eval_path=data, out_dir=tmp_path / "q",
                   settings=Settings(per_channel=False, activation_type="int8", preprocess=False))
    assert not out.preprocessed
    m = onnx.load(str(out.variants[0].path))
    inits = {i.name: i for i in m.graph.initializer}
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    assert inits[q.input[2]].data_type == onnx.TensorProto.INT8
    # per-tensor: every weight scale is a scalar
    deq_w = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("w")]
    assert deq_w and all(numpy_helper.to_array(inits[n.input[1]]).size == 1 for n in deq_w)


def test_static_without_eval_is_refused_before_anything_is_written(tmp_path, model):
    with pytest.raises(ConfigError, match="static INT8 needs calibration data: give --eval"):
        quantize(model, variants=["static", "fp16"], out_dir=tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_by_default_without_eval_the_variants_that_need_no_data_are_made(tmp_path, model):
    out = quantize(model, out_dir=tmp_path / "q")
    assert [v.kind for v in out.variants] == ["dynamic", "fp16"]
    assert any(n.startswith("static INT8 needs calibration data: give --eval") for n in out.notes)


def test_eval_set_without_the_model_input_names_it(tmp_path, model):
    np.savez(tmp_path / "bad.npz", image=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(ConfigError, match=r"bad.npz: no array named 'x'"):
        quantize(model, eval_path=tmp_path / "bad.npz", out_dir=tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_already_quantised_model_is_refused(tmp_path, model, data):
    q = quantize(model, variants=["dynamic"], out_dir=tmp_path / "q").variants[0].path
    with pytest.raises(ConfigError, match="its weights are int8; harness quantize expects a float32 model"):
        quantize(q, variants=["fp16"], out_dir=tmp_path / "again")


def test_failed_variant_leaves_no_files(tmp_path, model, monkeypatch):
    """A tool failing half-way: the finished variants are not kept either."""
    import harness.quantize as hq

    def boom(*a, **k):
        raise RuntimeError("converter exploded\nsecond line")

    monkeypatch.setattr(hq, "_fp16", boom)
    out_dir = tmp_path / "q"
    out_dir.mkdir()
    with pytest.raises(ConfigError, match=r"fp16 quantisation failed \(RuntimeError: converter exploded\)$"):
        quantize(model, variants=["dynamic", "fp16"], out_dir=out_dir)
    assert list(out_dir.iterdir()) == []


def test_parse_variants():
    assert parse_variants(None) == ("dynamic", "static", "fp16")
    assert parse_variants(" fp16 , dynamic,fp16") == ("fp16", "dynamic")
    with pytest.raises(ConfigError, match="--variants 'int4'"):
        parse_variants("int4")
