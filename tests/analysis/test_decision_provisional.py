"""A decision is provisional until its evidence exists, and every gap says
why and what fixes it: the planner names the driver status behind a profile
no device matches, the facts carry it to the decision, the headline says
"provisional" with what is missing and the command that measures it."""

import json

import pytest

from analysis_kit import config, profile, rec
from harness.analysis import decision
from harness.analysis.facts import gather, measure_command
from harness.config.schema import DeviceProfile
from harness.controller.planner import Artefact, make_plan
from harness.kernel.measure.policy import MeasurePolicy
from harness.report.analysis_md import decision_line
from harness.report.cells import not_measured, status
from labkit import harness_cli

HOST = profile("host-cpu", "linux")
WEB = profile("chromium-wasm", "browser", targets=(("onnxruntime-web", "wasm"),))
NO_CHROMIUM = "no Chromium found (looked in ...); install one with `apt-get install chromium`"
GAP = {"stage": "plan", "kind": "not_covered", "cause": "driver browser unavailable",
       "message": f"no device on any agent matches profile chromium-wasm (platform browser, match driver=browser): "
                  f"driver browser on agent local is unavailable: {NO_CHROMIUM}"}


def _decide(results, cfg):
    return decision.decide(gather(cfg, results, {"candidates": {}}, {}))


def test_a_declared_platform_without_a_result_makes_the_decision_provisional():
    cfg = {**config([HOST, WEB]), "cohort_path": "cohorts/local.yaml", "candidates_file": "cands.yaml"}
    results = [rec(HOST, "teacher"), rec(HOST, "teacher-int8", technique="quantisation", precision="int8"),
               rec(WEB, "teacher", error=GAP), rec(WEB, "teacher-int8", error=GAP)]
    d = _decide(results, cfg)
    assert d["rule"] == "two-platforms" and d["status"] == "provisional"
    assert d["measured_targets"] == ["linux/onnxruntime"]
    [miss, pending] = d["missing"]
    assert miss["what"] == "browser/onnxruntime-web not measured" and miss["cause"] == "driver browser unavailable"
    assert NO_CHROMIUM in miss["why"] and miss["command"] == "harness run --cohort cohorts/local.yaml --candidates cands.yaml"
    assert pending["what"] == "cross-platform validation pending"
    line = decision_line({"decision": {**d, "suggested": {}, "budget_failures": []}, "baseline": {}})
    assert line.startswith("decision (provisional): Quantisation per platform, with cross-platform validation "
                           "(rule two-platforms) — missing: browser/onnxruntime-web not measured (driver browser "
                           "unavailable)")
    assert "measure with: harness run --cohort cohorts/local.yaml --candidates cands.yaml" in line


def test_every_declared_target_measured_and_nothing_pending_is_final():
    d = _decide([rec(HOST, "teacher")], config([HOST]))
    assert d["rule"] == "single-platform" and d["status"] == "final" and d["missing"] == []
    assert decision_line({"decision": {**d, "suggested": {}, "budget_failures": []}, "baseline": {}}).startswith(
        "decision: Quantisation (rule single-platform)")


def test_the_measure_command_is_the_runs_own():
    cfg = {"cohort_path": "my cohort.yaml", "models": ["m=a.onnx"], "shapes": ["m:x=1x3"], "dims": ["T=4"],
           "eval_flag": "e.npz", "lab": "lab.yaml"}
    assert measure_command(cfg) == ("harness run --cohort 'my cohort.yaml' --model m=a.onnx --shape m:x=1x3 "
                                    "--dim T=4 --eval e.npz --lab lab.yaml")


ART = {"m": {"onnx": Artefact("m", "onnx", "d" * 64, "/m.onnx", 1)}}


@pytest.mark.parametrize("drivers,cause,detail", [
    ({"local": [("host", True, ""), ("browser", False, NO_CHROMIUM)]}, "driver browser unavailable",
     f"driver browser on agent local is unavailable: {NO_CHROMIUM}"),
    ({"local": [("host", True, "")]}, "no agent runs driver browser",
     "no agent loads the browser driver (drivers per agent: local: host)"),
])
def test_a_profile_no_device_matches_names_the_driver_status_and_its_fix(drivers, cause, detail):
    prof = DeviceProfile.model_validate({"id": "chromium-wasm", "platform": "browser", "match": {"driver": "browser"},
                                         "targets": [{"runtime": "onnxruntime-web", "ep": "wasm"}]})
    plan = make_plan([prof], ["m"], ART, [], MeasurePolicy(), drivers=drivers)
    [g] = plan.gaps
    assert g.kind == "not_covered" and g.cause == cause and detail in g.message
    row = rec(WEB, "m", error={"stage": "plan", "kind": g.kind, "message": g.message, "cause": g.cause})
    assert status(row) == f"not run: {cause}"
    assert not_measured([row]) == [f"chromium-wasm (m): {g.message}"]


def test_harness_decide_exits_3_on_a_provisional_and_0_on_a_final_decision(tmp_path):
    base = {"run": {"id": "r1", "cohort": "local", "harness_version": "0.2.0"}, "results": []}
    for status_, code in (("provisional", 3), ("final", 0)):
        d = {"recommendation": "quantisation", "label": "Quantisation", "rule": "single-platform", "status": status_,
             "missing": [{"what": "browser/onnxruntime-web not measured", "cause": "driver browser unavailable",
                          "why": "x", "command": "harness run --cohort local"}] if status_ == "provisional" else [],
             "rules": [{"id": "single-platform", "condition": "one target", "fired": True, "evidence": [],
                        "would_change": []}], "caveats": [], "would_change": []}
        f = tmp_path / f"{status_}.json"
        f.write_text(json.dumps({**base, "decision": d}))
        p = harness_cli("decide", f, cwd=tmp_path)
        assert p.returncode == code, p.stdout + p.stderr
        assert ("**Provisional: Quantisation**" in p.stdout) is (status_ == "provisional")
        if status_ == "provisional":
            assert "Measure it (after fixing the cause) with `harness run --cohort local`" in p.stdout
