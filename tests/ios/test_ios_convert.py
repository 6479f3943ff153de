"""`harness convert coreml` and Core ML spec inspection, for real on Linux:
coremltools converts PyTorch models built here and reads their specs."""

from __future__ import annotations


import pytest
import yaml

import ioskit


@pytest.fixture(scope="module")
def net():
    return ioskit.tiny_net(seed=3)


@pytest.fixture(scope="module")
def run_cli():
    """The convert command in this process (coremltools is imported once);
    one test below goes through the installed console script instead."""
    import typer
    from typer.testing import CliRunner

    from harness.commands import convert

    app = typer.Typer()
    convert.register(app)

    @app.callback()
    def _root():
        pass

    def run(*args, cwd=None):
        import os

        old = os.getcwd()
        os.chdir(cwd or old)
        try:
            r = CliRunner().invoke(app, [str(a) for a in args])
        finally:
            os.chdir(old)
        r.returncode = r.exit_code
        return r
    return run


def test_converted_package_spec_lists_ops_precision_inputs_and_params(tiny):
    from harness.kernel.coreml_spec import inspect_coreml

    spec = inspect_coreml(tiny["mlpackage"])
    assert spec.model_type == "mlProgram"
    assert spec.deployment_target == "iOS16"  # asked for at conversion
    # TinyNet: conv -> relu -> mean -> linear -> softmax, with casts around
    # the fp16 body because inputs and outputs were asked for as fp32.
    for op in ("conv", "relu", "reduce_mean", "linear", "softmax", "cast"):
        assert spec.op_types.get(op, 0) >= 1, (op, spec.op_types)
    assert "const" not in spec.op_types and spec.const_ops > 0
    assert spec.params == ioskit.param_count(tiny["model"])  # 8*3*3*3 + 8 + 4*8 + 4
    assert spec.precision == "fp16" and set(spec.weight_elements) == {"float16"}
    assert [(t.name, t.dtype, t.dims) for t in spec.inputs] == [("x", "float32", ioskit.INPUT_SHAPE)]
    assert [(t.name, t.dtype, t.dims) for t in spec.outputs] == [("y", "float32", (1, 4))]


def test_cli_converts_torchscript_and_sets_coreml_on_candidate_keeping_the_file(tmp_path, cli, net):
    ts = ioskit.save_torchscript(net, tmp_path / "student.pt")
    manifest = tmp_path / "candidates.yaml"
    original = ("# what we compare\nreference: teacher\ncandidates:\n"
                "  teacher: {onnx: teacher.onnx, technique: baseline}   # the big one\n"
                "  student:\n    onnx: student.onnx\n    technique: distillation\n    from: teacher\n"
                "  # more to come\n")
    for name in ("teacher.onnx", "student.onnx"):
        (tmp_path / name).write_bytes(b"x")
    manifest.write_text(original)
    r = cli("convert", "coreml", ts, "--out", tmp_path / "out" / "student.mlpackage", "--input", "x=1x3x16x16",
            "--output", "y", "--precision", "fp32", "--minimum-deployment-target", "iOS17",
            "--candidates", manifest, "--name", "student", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "parameters: 260, precision fp32" in r.stdout
    assert "inputs: x float32[1x3x16x16]" in r.stdout and "outputs: y float32[1x4]" in r.stdout
    assert "needs iOS17+" in r.stdout and "conv 1" in r.stdout
    text = manifest.read_text()
    # The student keeps its keys and gains coreml:; the rest of the file stays.
    assert text.startswith("# what we compare\nreference: teacher\ncandidates:\n"
                           "  teacher: {onnx: teacher.onnx, technique: baseline}   # the big one\n")
    assert "  # more to come\n" in text
    data = yaml.safe_load(text)
    assert data["candidates"]["student"] == {"onnx": "student.onnx", "technique": "distillation",
                                             "from": "teacher", "coreml": "out/student.mlpackage"}
    assert data["candidates"]["student"]["coreml"] == "out/student.mlpackage"
    # The edited file loads as a candidate set, artefact path resolved.
    from harness.config.resolve import load_candidates

    student = load_candidates(manifest).get("student")
    assert student.coreml == (tmp_path / "out" / "student.mlpackage").resolve()
    if "has not been tested with coremltools" in r.stderr:  # coremltools' note on newer torch releases
        assert "note: Torch version" in r.stderr


def test_cli_converts_exported_program_into_new_and_flow_style_candidates(tmp_path, run_cli, net):
    cli = run_cli
    pt2 = ioskit.save_exported(net, tmp_path / "student.pt2")
    manifest = tmp_path / "c.yaml"
    manifest.write_text("candidates:\n  teacher: {onnx: t.onnx}\n")
    (tmp_path / "t.onnx").write_bytes(b"x")
    r = cli("convert", "coreml", pt2, "--out", tmp_path / "s.mlpackage", "--candidates", manifest,
            "--name", "teacher")
    assert r.returncode == 0, r.stderr
    assert manifest.read_text() == "candidates:\n  teacher: {onnx: t.onnx, coreml: s.mlpackage}\n"
    r = cli("convert", "coreml", pt2, "--out", tmp_path / "s2.mlpackage", "--io-dtype", "fp16",
            "--candidates", manifest, "--name", "student-ml")
    assert r.returncode == 2 and "float16 dtype for inputs is only supported for deployment target >= iOS16" \
        in r.stderr  # coremltools' own reason, in one line
    r = cli("convert", "coreml", pt2, "--out", tmp_path / "s2.mlpackage", "--io-dtype", "fp16",
            "--minimum-deployment-target", "iOS16", "--candidates", manifest, "--name", "student-ml")
    assert r.returncode == 0, r.stderr
    assert "x float16[1x3x16x16]" in r.stdout  # exported programs carry their shapes
    assert yaml.safe_load(manifest.read_text())["candidates"] == {
        "teacher": {"onnx": "t.onnx", "coreml": "s.mlpackage"}, "student-ml": {"coreml": "s2.mlpackage"}}
    # Converting again replaces the value in place.
    r = cli("convert", "coreml", pt2, "--out", tmp_path / "s3.mlmodel", "--candidates", manifest,
            "--name", "teacher")
    assert r.returncode == 0, r.stderr
    assert "type neuralNetwork" in r.stdout and "innerProduct 1" in r.stdout
    assert "teacher: {onnx: t.onnx, coreml: s3.mlmodel}" in manifest.read_text()


@pytest.mark.parametrize("args, message", [
    (["--out", "m.onnx"], "--out m.onnx: expected a name ending in .mlpackage"),
    (["--out", "m.mlpackage", "--precision", "fp8"], "--precision 'fp8': expected fp16 or fp32"),
    (["--out", "m.mlmodel", "--precision", "fp16"], "--precision fp16 needs an .mlpackage"),
    (["--out", "m.mlpackage", "--input", "x=1xAx3"], "--input 'x=1xAx3': dimensions must be integers"),
    (["--out", "m.mlpackage", "--candidates", "c.yaml"], "--candidates and --name go together"),
    (["--out", "m.mlpackage"], "a TorchScript model carries no input shapes; give --input NAME=DIMS for each of "
                               "its inputs (x)"),
    (["--out", "m.mlpackage", "--input", "x=1x3x16x16", "--minimum-deployment-target", "iOS99"],
     "--minimum-deployment-target 'iOS99': expected one of iOS13"),
])
def test_cli_bad_options_give_one_line(tmp_path, run_cli, net, args, message):
    cli = run_cli
    ts = ioskit.save_torchscript(net, tmp_path / "m.pt")
    r = cli("convert", "coreml", ts, *args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0 or all(
        line.startswith(("error:", "note:")) for line in r.stderr.strip().splitlines())
    assert not (tmp_path / "m.mlpackage").exists()


def test_not_a_torch_file_is_refused(tmp_path, run_cli):
    cli = run_cli
    bogus = tmp_path / "model.pt"
    bogus.write_text("not a model")
    r = cli("convert", "coreml", bogus, "--out", tmp_path / "m.mlpackage", "--input", "x=1x4")
    assert r.returncode == 2
    assert "not a TorchScript file (torch.jit.save) or an exported program" in r.stderr


def test_unreadable_package_is_a_model_error(tmp_path):
    from harness.kernel.coreml_spec import inspect_coreml
    from harness.kernel.modelfile import ModelError

    bad = tmp_path / "bad.mlpackage"
    bad.mkdir()
    with pytest.raises(ModelError, match="not an .mlpackage"):
        inspect_coreml(bad)
    (bad / "Manifest.json").write_text("{}")
    with pytest.raises(ModelError, match="not a readable Core ML model"):
        inspect_coreml(bad)


def test_compressed_weights_report_their_storage_precision(tmp_path, net):
    import coremltools.optimize.coreml as cto

    from harness.kernel.coreml_spec import inspect_spec, quiet_coremltools

    with quiet_coremltools():
        import coremltools as ct
    path = ioskit.to_mlpackage(net, tmp_path / "n.mlpackage", target="iOS18")
    model = ct.models.MLModel(str(path), skip_model_load=True)
    every = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(weight_threshold=0))
    q = inspect_spec(cto.linear_quantize_weights(model, every).get_spec())
    assert q.precision == "int8" and q.params == ioskit.param_count(net)
    assert q.op_types.get("constexpr_blockwise_shift_scale", 0) >= 2  # iOS18 quantisation op, one per weight
    lut = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(nbits=4, weight_threshold=0))
    p = inspect_spec(cto.palettize_weights(model, lut).get_spec())
    assert p.precision == "palettized" and p.params == ioskit.param_count(net)
