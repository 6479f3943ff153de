"""Input shapes from the user's own data: the eval set fixes every input's
shape, size flags may name one candidate, and candidates with different
input signatures share probes by input name."""

from pathlib import Path

import numpy as np
import pytest

from harness import probes
from harness.analysis.parity import ParityContext
from harness.config import inputs
from harness.kernel.configfile import ConfigError
from harness.kernel.modelfile import ModelInfo, TensorSpec


def info(name, *specs):
    return ModelInfo(path=Path(f"{name}.onnx"), sha256="0" * 64, format="onnx", size_bytes=1,
                     inputs=tuple(TensorSpec(*s) for s in specs))


VAD = info("vad", ("input", "float32", ("batch", "samples")), ("state", "float32", (2, "batch", 16)),
           ("sr", "int64", ()))
VAD16 = info("vad16", ("input", "float16", ("batch", "samples")), ("state", "float16", (2, "batch", 16)))
CNN = info("cnn", ("x", "float32", ("N", 3, "H", "W")))


def test_symbolic_dims_come_from_the_eval_arrays_without_flags(tmp_path):
    arrays = {"input": (40, 512), "state": (40, 2, 1, 16), "sr": ()}
    r = inputs.resolve("vad", VAD, {}, {}, arrays)
    # samples along the batch axis (batch 1, as the stacked state says), a stack of states, one scalar
    assert r.inputs == [("input", "float32", (1, 512)), ("state", "float32", (2, 1, 16)), ("sr", "int64", ())]
    assert r.from_eval == ["input", "state", "sr"] and r.generated == []
    # A stack of whole images fixes N, H and W at once.
    assert inputs.resolve("cnn", CNN, {}, {}, {"x": (8, 2, 3, 96, 128)}).inputs == [("x", "float32", (2, 3, 96, 128))]


def test_eval_arrays_that_disagree_on_a_dimension_or_the_model_are_refused():
    with pytest.raises(ConfigError, match="dimension 'batch' is 4 by the eval set array 'input' but 1 by the eval set array 'state'"):
        inputs.resolve("vad", VAD, {}, {}, {"input": (40, 4, 512), "state": (40, 2, 1, 16), "sr": ()})
    with pytest.raises(ConfigError, match="conflicts with the model's fixed shape"):
        inputs.resolve("vad", VAD, {}, {}, {"input": (40, 512), "state": (40, 3, 1, 16), "sr": ()})
    with pytest.raises(ConfigError, match="expected 3 \\(a stack of inputs\\) or 2 \\(samples along the batch axis\\)"):
        inputs.resolve("vad", VAD, {}, {}, {"input": (512,), "state": (40, 2, 1, 16), "sr": ()})
    with pytest.raises(ConfigError, match="--dim batch=2 but 1 by"):
        inputs.resolve("vad", VAD, {}, {"batch": 2}, {"input": (40, 512), "state": (40, 2, 1, 16), "sr": ()})


def test_an_input_the_eval_set_lacks_is_generated_with_the_sizes_the_others_gave():
    r = inputs.resolve("vad", VAD, {}, {}, {"input": (40, 1, 512), "sr": ()})
    assert ("state", "float32", (2, 1, 16)) in r.inputs and r.generated == ["state"]
    with pytest.raises(ConfigError, match="symbolic dimension 'samples'.*or an array 'input' in the eval set"):
        inputs.resolve("vad", VAD, {}, {}, {"state": (40, 2, 1, 16)})


def test_size_flags_name_a_candidate_or_apply_to_the_candidates_with_that_input():
    infos = {"vad": VAD, "vad16": VAD16, "cnn": CNN}
    flags = inputs.parse_flags(["input=1x256", "cnn:x=1x3x32x32"], ["vad16:batch=1", "batch=1"], infos)
    assert inputs.flags_for("vad", flags) == ({"input": (1, 256)}, {"batch": 1})
    assert inputs.flags_for("cnn", flags) == ({"input": (1, 256), "x": (1, 3, 32, 32)}, {"batch": 1})
    assert inputs.resolve("cnn", CNN, *inputs.flags_for("cnn", flags)).inputs == [("x", "float32", (1, 3, 32, 32))]
    with pytest.raises(ConfigError, match="--shape cnn:input=1x2: candidate cnn has no input 'input' \\(inputs: x\\)"):
        inputs.parse_flags(["cnn:input=1x2"], [], infos)
    with pytest.raises(ConfigError, match="--shape pixels=1x2: no candidate has an input 'pixels'"):
        inputs.parse_flags(["pixels=1x2"], [], infos)
    with pytest.raises(ConfigError, match="--dim T=4: no candidate has a symbolic dimension 'T'"):
        inputs.parse_flags([], ["T=4"], infos)
    # An input name with a colon (TensorFlow exports) is not mistaken for a qualifier.
    tf = {"m": info("m", ("input:0", "float32", ("N", 4)))}
    assert inputs.parse_flags(["input:0=2x4"], [], tf)[0].candidate is None


def test_eval_shapes_are_read_from_the_headers(tmp_path):
    p = tmp_path / "e.npz"
    np.savez(p, input=np.zeros((40, 512), np.float32), sr=np.array(16000, np.int64), labels=np.zeros(40, np.int64))
    assert inputs.eval_shapes(p) == {"input": (40, 512), "sr": (), "labels": (40,)}
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="bad.npz: cannot read the eval set"):
        inputs.eval_shapes(tmp_path / "bad.npz")


def test_probes_share_values_by_input_name_across_precisions(tmp_path):
    p = tmp_path / "e.npz"
    rng = np.random.default_rng(0)
    np.savez(p, input=rng.standard_normal((6, 512)).astype(np.float32), state=np.zeros((6, 2, 1, 16), np.float32),
             sr=np.array(16000, np.int64))
    shapes = inputs.eval_shapes(p)
    got = {}
    for name, inf in (("vad", VAD), ("vad16", VAD16)):
        res = inputs.resolve(name, inf, {}, {}, shapes, p)
        got[name], _ = probes.candidate_probes(res, p, 8, 64)
    assert len(got["vad"]) == len(got["vad16"]) == 6
    assert all(int(x["sr"]) == 16000 for x in got["vad"])  # the one scalar, in every probe
    assert got["vad16"][0]["input"].dtype == np.float16
    ctx = ParityContext(reference="vad", quality={}, probes=got)
    sh = ctx.shared_inputs("vad16", "vad")
    assert sh["comparable"] and sh["shared"] == ["input", "state"] and sh["only_b"] == ["sr"]
    # Generated probes are shared the same way: seeded by input name, not precision.
    g32 = probes.generate([("x", "float32", (2, 3))], 2)
    g16 = probes.generate([("x", "float16", (2, 3))], 2)
    assert np.array_equal(g16[1]["x"], g32[1]["x"].astype(np.float16))
    other = ParityContext(reference="a", quality={}, probes={"a": g32, "b": probes.generate([("x", "float32", (2, 4))], 2)})
    assert not other.shared_inputs("b", "a")["comparable"]


def test_generated_integers_warn_that_the_model_may_branch_on_them():
    w = probes.generated_warning("vad", [("sr", "int64", ())], None)
    assert "sr (int64, scalar)" in w and "may take another path" in w and "--eval" in w
    assert probes.generated_warning("m", [("x", "float32", (1, 4))], None) is None
    w = probes.generated_warning("m", [("x", "float32", (1, 4))], Path("data.npz"))
    assert "data.npz has no array for input(s) x" in w
