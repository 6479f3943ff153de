"""The typed, versioned result record: the generated schema and page are
current, a report written by harness 0.1.0 loads through the one loader and
every command reads it, and a document the models do not describe is
refused in one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness import api
from harness.kernel.configfile import ConfigError
from harness.record import SCHEMA_VERSION, Memory, Report, publish
from harness.record.load import load_document, read_report
from harness.report import html, markdown
from harness.report.analysis_md import render_decision
from harness.report.compare_md import render_compare

OLD = Path(__file__).with_name("data") / "report-0.1.0.json"


@pytest.fixture(scope="module")
def old_doc() -> dict:
    return json.loads(OLD.read_text())


def test_schema_json_and_the_record_page_are_generated_from_the_models():
    assert publish.stale() == [], "run `python -m harness.record` and commit the result"
    schema = json.loads(publish.SCHEMA_PATH.read_text())
    assert {"Result", "Timing", "Memory", "Placement", "Validity"} <= set(schema["$defs"])
    assert schema["$defs"]["Memory"]["additionalProperties"] is False
    page = publish.DOCS_PATH.read_text()
    for name, f in Report.model_fields.items():
        assert f"| `{name}` |" in page


def test_a_report_of_release_0_1_0_loads_and_becomes_the_current_version(old_doc):
    assert "schema_version" not in old_doc and old_doc["run"]["harness_version"] == "0.1.0"
    doc = read_report(OLD)
    assert doc["schema_version"] == SCHEMA_VERSION
    typed = Report.model_validate(doc)
    gaps = [r for r in typed.results if r.error and r.error.kind == "not_covered"]
    measured = [r for r in typed.results if r.timing and r.timing.n]
    assert gaps and measured and all(r.timing.n == len(r.timing.samples_ms) for r in measured)
    assert {r.device.platform for r in measured} == {"linux", "browser"}


def test_every_command_reads_the_old_report(old_doc):
    ref = str(OLD)
    doc = api.report(None, ref)
    assert "# harness report" in markdown.render(doc) and "<html" in html.render(doc).lower()
    decided = api.decide(None, ref)
    assert decided["decision"]["recommendation"] == old_doc["decision"]["recommendation"]
    assert "Decision for run" in render_decision(decided)
    same = api.compare(None, ref, ref)
    assert same["regressions"] == [] and same["refused"] == []
    # One session a side (0.1.0 records): no verdict either way, said so.
    assert same["undetermined"] and "## Cannot tell" in render_compare(same)


def test_a_field_the_record_does_not_declare_is_one_line_naming_it(old_doc):
    doc = copy.deepcopy(old_doc)
    row = next(i for i, r in enumerate(doc["results"]) if r.get("memory"))
    doc["results"][row]["memory"]["gpu_heap_bytes"] = 1024
    with pytest.raises(ConfigError) as err:
        load_document(doc, "r.json")
    expected = ", ".join(Memory.model_fields)
    assert str(err.value) == f"r.json: results[{row}].memory.gpu_heap_bytes: unknown key (expected one of: {expected})"
    assert expected.startswith("peak_bytes, delta_bytes, method")


def test_a_wrong_type_and_a_newer_version_are_refused(old_doc):
    doc = copy.deepcopy(old_doc)
    doc["results"][-1]["timing"]["n"] = "many"
    with pytest.raises(ConfigError, match=r"results\[11\]\.timing\.n: expected an integer, got 'many'"):
        load_document(doc, "r.json")
    with pytest.raises(ConfigError, match="schema_version 99 is newer than this harness reads"):
        load_document({**old_doc, "schema_version": 99}, "r.json")
    with pytest.raises(ConfigError, match="not a harness report"):
        load_document({"results": []}, "r.json")


def test_every_shape_the_builders_write_is_declared(tmp_path):
    """The record's parts that no fixture row above carries: a Core ML model's
    record and a sustained run's windows."""
    import numpy as np

    from harness.kernel.coreml_spec import CoreMLModelInfo
    from harness.kernel.measure import sustained
    from harness.record import ModelFile, Sustained

    info = CoreMLModelInfo(path=tmp_path / "m.mlmodel", sha256="0" * 64, format="mlmodel", size_bytes=10, params=4,
                           precision="fp16", op_types={"conv": 1}, model_type="mlProgram", spec_version=7,
                           deployment_target="iOS16")
    assert ModelFile.model_validate(info.record()).deployment_target == "iOS16"
    samples = list(np.random.default_rng(0).lognormal(0, 0.1, 3000) + 20)
    s = Sustained.model_validate(sustained.analyse(samples))
    assert s.windows and s.windows[0].mean_ms is not None
    # a phone's conditions give each sensor's temperature (agents/android/facts.py: thermal_c)
    from harness.record import Validity
    v = Validity.model_validate({"thermal": {"before": {"battery": 31.0, "skin": 33.5}, "after": None}})
    assert v.thermal.before == {"battery": 31.0, "skin": 33.5}
