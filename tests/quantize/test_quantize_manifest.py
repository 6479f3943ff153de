"""harness.manifest, and `quantize(..., candidates=...)` recording variants."""

from __future__ import annotations

import pytest
import yaml

import qkit
from harness import manifest
from harness.config.resolve import load_candidates
from harness.kernel.configfile import ConfigError
from harness.quantize import quantize

HEAD = """\
# Team candidates: keep this comment.
reference: teacher
eval: val.npz   # labelled eval set
candidates:
  # the float model
  teacher: {onnx: m.onnx, technique: baseline}
  student:
    onnx: m.onnx          # block style, with a comment
    technique: distillation
    from: teacher

# trailing comment
"""


def test_add_keeps_comments_and_other_candidates(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    manifest.add_candidate(p, "teacher-int8", onnx="q.onnx", technique="quantisation", from_="teacher")
    text = p.read_text()
    for kept in ("# Team candidates: keep this comment.", "# labelled eval set", "# the float model",
                 "# block style, with a comment", "# trailing comment"):
        assert kept in text
    data = yaml.safe_load(text)
    assert list(data["candidates"]) == ["teacher", "student", "teacher-int8"]
    assert data["candidates"]["teacher-int8"] == {"onnx": "q.onnx", "technique": "quantisation", "from": "teacher"}
    assert data["candidates"]["student"]["from"] == "teacher"
    # the new entry sits inside the candidates block, before the trailing comment
    assert text.index("teacher-int8") < text.index("# trailing comment")


def test_replacing_an_entry_keeps_its_place_and_the_rest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    text, kept = manifest.update_text(p, {"student": {"onnx": "s2.onnx", "technique": "distillation",
                                                     "from": "teacher"}})
    assert kept
    data = yaml.safe_load(text)
    assert list(data["candidates"]) == ["teacher", "student"]
    assert data["candidates"]["student"]["onnx"] == "s2.onnx"
    # the replaced block entry's own comment goes with it; the others stay
    assert "# block style" not in text and "# the float model" in text and "# trailing comment" in text


def test_update_keeps_fields_it_is_not_given_and_none_removes_one(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    manifest.add_candidate(p, "student", coreml="student.mlpackage", description="small")
    got = yaml.safe_load(p.read_text())["candidates"]["student"]
    assert got == {"onnx": "m.onnx", "technique": "distillation", "from": "teacher",
                   "coreml": "student.mlpackage", "description": "small"}
    manifest.add_candidate(p, "student", description=None)
    assert "description" not in yaml.safe_load(p.read_text())["candidates"]["student"]


def test_flow_style_candidates_are_rewritten_and_say_so(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# lost\ncandidates: {a: {onnx: a.onnx}}\n")
    text, kept = manifest.update_text(p, {"b": {"onnx": "b.onnx", "from": "a"}})
    assert not kept
    assert yaml.safe_load(text)["candidates"] == {"a": {"onnx": "a.onnx"}, "b": {"onnx": "b.onnx", "from": "a"}}


def test_new_file_gets_top_keys(tmp_path):
    p = tmp_path / "sub" / "c.yaml"
    manifest.add_candidates(p, {"a": {"onnx": "a.onnx", "technique": "baseline"}},
                            top={"reference": "a", "eval": "v.npz"})
    assert yaml.safe_load(p.read_text()) == {"reference": "a", "eval": "v.npz",
                                            "candidates": {"a": {"onnx": "a.onnx", "technique": "baseline"}}}


def test_top_keys_are_added_to_an_existing_file_only_where_missing(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# ours\ncandidates:\n  a: {onnx: a.onnx}\n")
    text, kept = manifest.update_text(p, {"b": {"onnx": "b.onnx"}}, top={"reference": "a", "eval": "v 1.npz"})
    assert kept and text.startswith("# ours\n")
    assert yaml.safe_load(text) == {"reference": "a", "eval": "v 1.npz",
                                    "candidates": {"a": {"onnx": "a.onnx"}, "b": {"onnx": "b.onnx"}}}
    p.write_text(HEAD)
    text, _ = manifest.update_text(p, {"b": {"onnx": "b.onnx"}}, top={"reference": "b", "eval": "other.npz"})
    assert yaml.safe_load(text)["reference"] == "teacher" and yaml.safe_load(text)["eval"] == "val.npz"


def test_names_and_values_that_need_quoting_survive(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    manifest.add_candidate(p, "odd: name", onnx="dir with space/x #1.onnx", description="a: b, {c}")
    got = yaml.safe_load(p.read_text())["candidates"]["odd: name"]
    assert got == {"onnx": "dir with space/x #1.onnx", "description": "a: b, {c}"}
    # and updating that quoted entry replaces it instead of adding a second one
    manifest.add_candidate(p, "odd: name", onnx="y.onnx")
    text = p.read_text()
    assert text.count("odd: name") == 1
    assert yaml.safe_load(text)["candidates"]["odd: name"] == {"onnx": "y.onnx", "description": "a: b, {c}"}


def test_invalid_result_is_refused_and_the_file_is_untouched(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    with pytest.raises(ConfigError, match=r"c.yaml: .*from 'nobody' is not a candidate"):
        manifest.add_candidate(p, "x", onnx="x.onnx", from_="nobody")
    with pytest.raises(ConfigError, match=r"c.yaml: candidates.y.colour: "):
        manifest.add_candidate(p, "y", onnx="y.onnx", colour="red")
    assert p.read_text() == HEAD
    assert [f.name for f in tmp_path.iterdir()] == ["c.yaml"], "temporary file left behind"


def test_broken_yaml_is_one_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("candidates:\n  a: {onnx: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line \d+, column \d+: invalid YAML"):
        manifest.add_candidate(p, "b", onnx="b.onnx")


def test_quantize_records_variants_and_rerun_updates_in_place(tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    qkit.eval_set(tmp_path / "val.npz")
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    # eval comes from the candidates file; BASE is the candidate whose onnx is this model
    out = quantize(model, candidates=p, name="teacher", out_dir=tmp_path / "q")
    assert [v.candidate for v in out.variants] == ["teacher-int8-dynamic", "teacher-int8-static", "teacher-fp16"]
    assert out.manifest_layout_kept and out.eval == tmp_path / "val.npz"
    first = p.read_text()
    assert "# Team candidates: keep this comment." in first and "# trailing comment" in first

    cs = load_candidates(p)
    for v in out.variants:
        c = cs.get(v.candidate)
        assert c.onnx == v.path.resolve()
        assert c.spec.technique == "quantisation" and c.spec.from_ == "teacher"
    assert cs.get("student").spec.technique == "distillation"

    quantize(model, candidates=p, name="teacher", out_dir=tmp_path / "q")
    assert p.read_text() == first
    assert [c.name for c in load_candidates(p).candidates].count("teacher-fp16") == 1


def test_quantize_creates_a_candidates_file(tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    ev = qkit.eval_set(tmp_path / "val.npz")
    p = tmp_path / "new.yaml"
    quantize(model, eval_path=ev, candidates=p, variants=["static"])
    cs = load_candidates(p)
    assert cs.reference == "m" and cs.eval == ev.resolve()
    assert [c.name for c in cs.candidates] == ["m", "m-int8-static"]
    assert cs.get("m").spec.technique == "baseline" and cs.get("m").onnx == model.resolve()


def test_base_that_is_another_model_is_refused_before_writing(tmp_path):
    model = qkit.cnn(tmp_path / "other.onnx")
    qkit.cnn(tmp_path / "m.onnx")
    p = tmp_path / "c.yaml"
    p.write_text(HEAD)
    with pytest.raises(ConfigError, match=r"candidates.teacher.onnx is .*m.onnx, not the model being quantised"):
        quantize(model, candidates=p, name="teacher", variants=["fp16"], out_dir=tmp_path / "q")
    assert p.read_text() == HEAD and not (tmp_path / "q").exists()


def test_unwritable_manifest_leaves_no_variants(tmp_path):
    model = qkit.cnn(tmp_path / "m.onnx")
    p = tmp_path / "c.yaml"
    p.write_text("candidates:\n  teacher: {onnx: m.onnx, colour: red}\n")  # invalid already
    with pytest.raises(ConfigError, match="colour"):
        quantize(model, candidates=p, name="teacher", variants=["dynamic", "fp16"], out_dir=tmp_path / "q")
    assert not (tmp_path / "q").exists()
