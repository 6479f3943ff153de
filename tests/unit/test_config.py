from pathlib import Path

import pytest

from harness.config.resolve import candidates_from_models, load_candidates, load_cohort
from harness.kernel.configfile import ConfigError


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def tree(tmp_path):
    write(tmp_path / "devices" / "a.yaml",
          "id: a\nplatform: android\nmatch: {model: 'Pixel *'}\ntier: low\nshare: 0.3\nmemory_budget_mb: 512\n"
          "targets:\n  - {runtime: onnxruntime, version: 1.20, ep: nnapi}\n")
    return tmp_path


def test_cohort_resolves_profiles_and_inline(tree):
    c = write(tree / "cohorts" / "c.yaml",
              "name: c\ndevices:\n  - a\n  - {id: b, platform: browser, targets: [{runtime: onnxruntime-web, ep: wasm}]}\n")
    r = load_cohort(str(c))
    assert [p.id for p in r.profiles] == ["a", "b"]
    assert r.profiles[0].targets[0].version == "1.20"  # written unquoted, kept as text
    assert r.cohort.budgets.memory_fraction == 0.65  # the 60-70 % headroom default


def test_yaml_float_version_keeps_text(tree):
    # `version: "1.20"` must stay 1.20; unquoted 1.20 is a YAML float (1.2) — quoting is documented.
    c = write(tree / "devices" / "q.yaml",
              "id: q\nplatform: linux\ntargets: [{runtime: onnxruntime, version: '1.20', ep: cpu}]\n")
    write(tree / "cohorts" / "q.yaml", "name: q\ndevices: [q]\n")
    assert load_cohort(str(tree / "cohorts" / "q.yaml")).profiles[0].targets[0].version == "1.20"


@pytest.mark.parametrize("body,expect", [
    ("name: c\ndevices: [a]\nmeasure: {min_runs: many}\n", "measure.min_runs: expected an integer, got 'many'"),
    ("name: c\ndevices: [a]\nmeasure: {min_s: 10, max_s: 5}\n", "max_s (5.0) must not be below min_s"),
    ("name: c\ndevices: []\n", "devices"),
    ("devices: [a]\n", "name: expected a value"),
    ("name: c\ndevices: [a]\nquality: {consistency_required: maybe}\n", "quality.consistency_required: expected true or false"),
    ("- a\n- b\n", "expected a mapping at the top level"),
    ("", "the file is empty"),
])
def test_cohort_errors_name_file_and_key(tree, body, expect):
    c = write(tree / "cohorts" / "bad.yaml", body)
    with pytest.raises(ConfigError) as err:
        load_cohort(str(c))
    assert str(c) in str(err.value)
    assert expect in str(err.value)
    assert "\n" not in str(err.value)


def test_profile_file_id_must_match_name(tree):
    write(tree / "devices" / "x.yaml", "id: y\nplatform: linux\ntargets: [{runtime: onnxruntime, ep: cpu}]\n")
    c = write(tree / "cohorts" / "c.yaml", "name: c\ndevices: [x]\n")
    with pytest.raises(ConfigError, match="expected 'x'"):
        load_cohort(str(c))


def test_candidates_paths_relative_to_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "t.onnx").write_bytes(b"x")
    f = write(tmp_path / "cands.yaml", "reference: t\ncandidates:\n  t: {onnx: m/t.onnx}\n"
                                       "  s: {onnx: m/t.onnx, technique: distillation, from: t}\n")
    cs = load_candidates(f)
    assert cs.get("s").onnx == (tmp_path / "m" / "t.onnx").resolve()
    assert cs.get("s").spec.from_ == "t"


@pytest.mark.parametrize("body,expect", [
    ("candidates:\n  t: {onnx: nope.onnx}\n", "candidates.t.onnx: file not found"),
    ("candidates:\n  t: {technique: baseline}\n", "needs at least one artefact"),
    ("reference: z\ncandidates:\n  t: {onnx: a.onnx}\n", "reference 'z' is not a candidate"),
    ("candidates:\n  t: {onnx: a.onnx, technique: magic}\n", "candidates.t.technique"),
])
def test_candidate_errors(tmp_path, body, expect):
    (tmp_path / "a.onnx").write_bytes(b"x")
    f = write(tmp_path / "c.yaml", body)
    with pytest.raises(ConfigError) as err:
        load_candidates(f)
    assert expect in str(err.value) and str(f) in str(err.value)


def test_model_options(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"x")
    cs = candidates_from_models([f"first={tmp_path / 'a.onnx'}", f"second={tmp_path / 'a.onnx'}"])
    assert cs.reference == "first" and [c.name for c in cs.candidates] == ["first", "second"]
    for bad, expect in (("noequals", "expected NAME=PATH"), ("a=/no/such.onnx", "file not found")):
        with pytest.raises(ConfigError, match=expect):
            candidates_from_models([bad])
