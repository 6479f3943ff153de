"""`harness quantize` through the real console script."""

from __future__ import annotations

import yaml

import qkit


def _one_error_line(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_without_eval_it_makes_dynamic_and_fp16_and_says_what_static_needs(cli, tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    proc = cli("quantize", model, "--out", tmp_path / "q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(f.name for f in (tmp_path / "q").iterdir()) == ["m.fp16.onnx", "m.int8-dynamic.onnx"]
    assert "note: static INT8 needs calibration data: give --eval DATA.npz" in proc.stdout
    short = cli("quantize", model, "-o", tmp_path / "r", "--variants", "fp16")
    assert short.returncode == 0 and [f.name for f in (tmp_path / "r").iterdir()] == ["m.fp16.onnx"]


def test_static_asked_for_without_eval_is_one_line_and_writes_nothing(cli, tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    proc = cli("quantize", model, "--out", tmp_path / "q", "--variants", "static")
    assert proc.returncode != 0
    line = _one_error_line(proc)
    assert "static INT8 needs calibration data" in line and "--eval" in line
    assert not (tmp_path / "q").exists()


def test_not_an_onnx_file_is_one_line(cli, tmp_path):
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("these are notes, not a model\n" * 20)
    proc = cli("quantize", bogus, "--variants", "dynamic")
    assert proc.returncode != 0
    assert str(bogus) in _one_error_line(proc)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["notes.onnx"]


def test_missing_model_is_one_line(cli, tmp_path):
    proc = cli("quantize", tmp_path / "absent.onnx", "--variants", "fp16")
    assert proc.returncode != 0
    assert "absent.onnx: model file not found" in _one_error_line(proc)


def test_bad_variant_name_is_one_line(cli, tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    proc = cli("quantize", model, "--variants", "dynamic,int4")
    assert proc.returncode != 0
    assert "--variants" in _one_error_line(proc)


def test_quantize_with_candidates_prints_and_records(cli, tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    ev = qkit.eval_set(tmp_path / "val.npz")
    cands = tmp_path / "c.yaml"
    cands.write_text("# ours\ncandidates:\n  base: {onnx: m.onnx}\n")
    proc = cli("quantize", model, "--eval", ev, "--candidates", cands, "--name", "base")
    assert proc.returncode == 0, proc.stderr
    assert "pre-processed with quant_pre_process" in proc.stdout
    assert "top-1 agreement" in proc.stdout
    assert "base-int8-dynamic, base-int8-static, base-fp16" in proc.stdout
    data = yaml.safe_load(cands.read_text())
    assert set(data["candidates"]) == {"base", "base-int8-dynamic", "base-int8-static", "base-fp16"}
    assert cands.read_text().startswith("# ours\n")
    assert (tmp_path / "m.int8-static.onnx").is_file()
