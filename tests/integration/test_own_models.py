"""A user's own models, as public ones look: symbolic dimensions, an int64
scalar the graph branches on, recurrent state in and out, an fp16 sibling
without the scalar and a student with an extra output. From a candidates
file with an eval set and no shape flags, every candidate runs and gets
parity against the reference."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from labkit import harness_cli

F, H, I64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64


def _save(nodes, inputs, outputs, path, inits=()):
    g = helper.make_graph(nodes, path.stem, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _gain_from_rate():
    """gain = 1.0 when sr == 16000 else 0.5: the model takes another branch
    for another sample rate, as voice-activity models do."""
    then = helper.make_graph([helper.make_node("Constant", [], ["g1"], value=helper.make_tensor("v", F, [], [1.0]))],
                             "then", [], [helper.make_tensor_value_info("g1", F, [])])
    other = helper.make_graph([helper.make_node("Constant", [], ["g2"], value=helper.make_tensor("v", F, [], [0.5]))],
                              "else", [], [helper.make_tensor_value_info("g2", F, [])])
    return [helper.make_node("Equal", ["sr", "rate16k"], ["is16k"]),
            helper.make_node("If", ["is16k"], ["gain"], then_branch=then, else_branch=other)]


def _body(extra_output=False):
    """input[batch, samples], state[2, batch, 16] -> output[batch, 1], stateN[2, batch, 16]."""
    nodes = [helper.make_node("ReduceMean", ["x32"], ["mean"], axes=[1], keepdims=1),  # [batch, 1]
             helper.make_node("Add", ["s32", "mean"], ["pre"]),
             helper.make_node("Tanh", ["pre"], ["stateN"]),
             helper.make_node("ReduceMean", ["stateN"], ["m3"], axes=[0, 2], keepdims=1),  # [1, batch, 1]
             helper.make_node("Reshape", ["m3", "col"], ["m2"]),
             helper.make_node("Mul", ["m2", "gain"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["output"])]
    if extra_output:
        nodes.append(helper.make_node("Abs", ["mean"], ["energy"]))
    return nodes


def vad(path, extra_output=False):
    ins = [helper.make_tensor_value_info("input", F, ["batch", "samples"]),
           helper.make_tensor_value_info("state", F, [2, "batch", 16]),
           helper.make_tensor_value_info("sr", I64, [])]
    outs = [helper.make_tensor_value_info("output", F, ["batch", 1]),
            helper.make_tensor_value_info("stateN", F, [2, "batch", 16])]
    if extra_output:
        outs.append(helper.make_tensor_value_info("energy", F, ["batch", 1]))
    nodes = [helper.make_node("Identity", ["input"], ["x32"]), helper.make_node("Identity", ["state"], ["s32"])]
    nodes += _gain_from_rate() + _body(extra_output)
    inits = [helper.make_tensor("rate16k", I64, [], [16000]), helper.make_tensor("col", I64, [2], [-1, 1])]
    return _save(nodes, ins, outs, path, inits)


def vad_fp16(path):
    """The 16 kHz build in half precision: float16 inputs, no `sr` input."""
    ins = [helper.make_tensor_value_info("input", H, ["batch", "samples"]),
           helper.make_tensor_value_info("state", H, [2, "batch", 16])]
    outs = [helper.make_tensor_value_info("output", F, ["batch", 1]),
            helper.make_tensor_value_info("stateN", F, [2, "batch", 16])]
    nodes = [helper.make_node("Cast", ["input"], ["x32"], to=F), helper.make_node("Cast", ["state"], ["s32"], to=F),
             helper.make_node("Constant", [], ["gain"], value=helper.make_tensor("v", F, [], [1.0]))] + _body()
    return _save(nodes, ins, outs, path, [helper.make_tensor("col", I64, [2], [-1, 1])])


def test_own_models_run_from_an_eval_set_without_shape_flags(tmp_path, quick_cohort):
    vad(tmp_path / "vad.onnx")
    vad_fp16(tmp_path / "vad.fp16.onnx")
    vad(tmp_path / "student.onnx", extra_output=True)
    rng = np.random.default_rng(18)
    np.savez(tmp_path / "eval.npz", input=rng.standard_normal((12, 512)).astype(np.float32),
             state=(0.1 * rng.standard_normal((12, 2, 1, 16))).astype(np.float32), sr=np.array(16000, np.int64))
    (tmp_path / "candidates.yaml").write_text(
        "reference: vad\neval: eval.npz\ncandidates:\n"
        "  vad: {onnx: vad.onnx, technique: baseline}\n"
        "  vad-fp16: {onnx: vad.fp16.onnx, technique: quantisation, from: vad}\n"
        "  student: {onnx: student.onnx, technique: distillation, from: vad}\n")
    out = tmp_path / "out"
    p = harness_cli("run", "--cohort", quick_cohort, "--candidates", tmp_path / "candidates.yaml", "--out", out,
                    "--drivers", "host", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "generated at random" not in p.stderr  # every input came from the eval set
    doc = json.loads((out / "report.json").read_text())
    rows = {r["candidate"]: r for r in doc["results"]}
    assert set(rows) == {"vad", "vad-fp16", "student"} and all(r["error"] is None for r in rows.values())
    for name, r in rows.items():
        par = r["parity"]
        assert par["reference"] == "vad" and par["max_abs"] is not None, (name, par["notes"])
    # The fp16 build is compared on the inputs both take; its missing scalar is named.
    fp16 = rows["vad-fp16"]["parity"]
    assert fp16["compared"]["inputs"] == ["input", "state"]
    assert fp16["compared"]["outputs"] == ["output", "stateN"]
    assert any("only vad takes sr" in n for n in fp16["notes"])
    # It agrees with the reference up to half-precision rounding of its inputs: the
    # reference took its 16 kHz branch because sr came from the eval set (a random
    # integer would have halved its logits).
    assert fp16["max_abs"] < 5e-3
    student = rows["student"]["parity"]
    assert student["compared"]["outputs"] == ["output", "stateN"]
    assert student["compared"]["outputs_not_compared"] == ["energy (only this side)"]
    assert student["max_abs"] == 0.0


def test_generated_integer_inputs_warn_that_the_model_may_branch(tmp_path, quick_cohort):
    m = vad(tmp_path / "vad.onnx")
    p = harness_cli("run", "--cohort", quick_cohort, "--model", f"vad={m}", "--dim", "batch=1", "--dim",
                    "samples=256", "--drivers", "host", "--out", tmp_path / "out", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    [line] = [x for x in p.stderr.splitlines() if x.startswith("warning: candidate vad:")]
    assert "sr (int64, scalar)" in line and "may take another path" in line and "--eval" in line
