"""The decision rules: each fires and does not fire, the precedence, and the
facts gathered from synthetic records (target counting, memory, tolerance)."""

import pytest

from analysis_kit import config, lat, profile, rec
from harness.analysis import baseline, decision, divergence
from harness.analysis.facts import Facts, gather

MEM_TIGHT = {"status": "tight", "candidates": {"teacher": {"fits": False, "profile": "low", "peak_mb": 300.0,
                                                          "limit_mb": 130.0}}}
MEM_OK = {"status": "adequate", "candidates": {"teacher": {"fits": True, "profile": "low", "peak_mb": 100.0,
                                                          "limit_mb": 130.0}}}
CHECK = [{"check": "top1_disagreement", "value": 0.02, "limit": 0.01, "ok": False}]
TOL_STRICT = {"status": "strict", "candidates": {"q": {"ok": False, "results": 2, "checks": CHECK}}}
TOL_LOOSE = {"status": "loose", "candidates": {"q": {"ok": True, "results": 2,
                                                     "checks": [{**CHECK[0], "value": 0.002, "ok": True}]}}}
UNKNOWN = {"status": "unknown", "candidates": {}}


def facts(n_targets=1, **kw):
    targets = tuple(["linux/onnxruntime", "browser/onnxruntime-web", "ios/coreml", "android/onnxruntime"][:n_targets])
    kw.setdefault("memory", UNKNOWN)
    kw.setdefault("tolerance", UNKNOWN)
    return Facts(targets=targets, **kw)


def rule(f, rid):
    return next(r for r in decision.decide(f)["rules"] if r["id"] == rid)


# -- each rule, firing and not firing -----------------------------------------

def test_consistency_fires_only_when_required():
    r = rule(facts(1, consistency_required=True), "consistency")
    assert r["fired"] is True and r["recommendation"] == "distillation"
    assert "consistency_required: false" in r["would_change"][0]
    r = rule(facts(1), "consistency")
    assert r["fired"] is False and r["recommendation"] is None
    assert "consistency_required: true → distillation" in r["would_change"][0]


@pytest.mark.parametrize("n,fired", [(1, False), (2, False), (3, True), (4, True)])
def test_three_or_more_platforms(n, fired):
    r = rule(facts(n), "platforms>=3")
    assert r["fired"] is fired
    assert f"declares {n} target(s)" in r["evidence"][0]


@pytest.mark.parametrize("mem,tol,fired", [
    (MEM_TIGHT, TOL_LOOSE, True), (MEM_TIGHT, TOL_STRICT, False), (MEM_OK, TOL_LOOSE, False),
    (MEM_OK, TOL_STRICT, False), (UNKNOWN, TOL_LOOSE, None), (MEM_TIGHT, UNKNOWN, None)])
def test_memory_tight(mem, tol, fired):
    r = rule(facts(2, memory=mem, tolerance=tol), "memory-tight")
    assert r["fired"] is fired
    assert r["recommendation"] == ("quantisation" if fired else None)
    assert any(e.startswith("memory: ") for e in r["evidence"])


@pytest.mark.parametrize("mem,tol,fired", [
    (MEM_OK, TOL_STRICT, True), (MEM_OK, TOL_LOOSE, False), (MEM_TIGHT, TOL_STRICT, False),
    (MEM_TIGHT, TOL_LOOSE, False), (UNKNOWN, TOL_STRICT, None), (MEM_OK, UNKNOWN, None)])
def test_quality_strict(mem, tol, fired):
    r = rule(facts(1, memory=mem, tolerance=tol), "quality-strict")
    assert r["fired"] is fired
    assert r["recommendation"] == ("distillation" if fired else None)


def _div(status):
    worst = {"a": "lin · onnxruntime cpu", "b": "web · onnxruntime-web wasm",
             "tolerance": {"ok": status == "within", "checks": CHECK}} if status != "not_measured" else None
    return {"q": {"status": status, "worst_cross_target": worst, "targets": ["linux/onnxruntime"]}}


@pytest.mark.parametrize("status,rec_,validation", [
    ("within", "quantisation_per_platform", "passed"), ("outside", "distillation", "failed"),
    ("not_measured", "quantisation_per_platform", "pending")])
def test_two_platforms_outcome_follows_measured_divergence(status, rec_, validation):
    d = decision.decide(facts(2, divergence=_div(status)))
    r = next(r for r in d["rules"] if r["id"] == "two-platforms")
    assert r["fired"] is True and r["recommendation"] == rec_ and r["validation"] == validation
    assert d["rule"] == "two-platforms" and d["recommendation"] == rec_
    assert ("validation pending" in " ".join(d["caveats"])) is (validation == "pending")


@pytest.mark.parametrize("n", [1, 3])
def test_two_platforms_does_not_fire_otherwise(n):
    assert rule(facts(n, divergence=_div("within")), "two-platforms")["fired"] is False


@pytest.mark.parametrize("n,fired", [(1, True), (2, False), (3, False)])
def test_single_platform(n, fired):
    r = rule(facts(n), "single-platform")
    assert r["fired"] is fired and r["recommendation"] == ("quantisation" if fired else None)


# -- precedence ------------------------------------------------------------------

def test_precedence_of_the_rules():
    # consistency beats everything, even one platform with tight memory and loose tolerance
    d = decision.decide(facts(1, consistency_required=True, memory=MEM_TIGHT, tolerance=TOL_LOOSE))
    assert (d["rule"], d["recommendation"]) == ("consistency", "distillation")
    # three platforms beat the memory evidence
    d = decision.decide(facts(3, memory=MEM_TIGHT, tolerance=TOL_LOOSE))
    assert (d["rule"], d["recommendation"]) == ("platforms>=3", "distillation")
    # measured memory/quality evidence overrules the single-platform default
    d = decision.decide(facts(1, memory=MEM_OK, tolerance=TOL_STRICT))
    assert (d["rule"], d["recommendation"]) == ("quality-strict", "distillation")
    d = decision.decide(facts(2, memory=MEM_TIGHT, tolerance=TOL_LOOSE, divergence=_div("outside")))
    assert (d["rule"], d["recommendation"]) == ("memory-tight", "quantisation")
    # undetermined rules before the winner are caveats, not silence
    d = decision.decide(facts(1, memory=UNKNOWN, tolerance=TOL_LOOSE))
    assert d["rule"] == "single-platform" and any("memory-tight could not be judged" in c for c in d["caveats"])
    assert d["would_change"][0].startswith("quality.consistency_required: true")


def test_no_target_no_recommendation():
    d = decision.decide(facts(0))
    assert d["recommendation"] is None and d["rule"] is None and d["caveats"]


# -- facts from records -------------------------------------------------------------

def test_targets_are_distinct_platform_runtime_pairs():
    phone = profile("phone", platform="android", targets=(("onnxruntime", "nnapi"), ("onnxruntime", "xnnpack")))
    phone2 = profile("phone2", platform="android", targets=(("onnxruntime", "cpu"),))
    iphone = profile("iphone", platform="ios", targets=(("coreml", "ane"), ("onnxruntime", "coreml")))
    f = gather(config([phone, phone2, iphone]), [], {"candidates": {}}, {})
    assert f.targets == ("android/onnxruntime", "ios/coreml", "ios/onnxruntime")


def _tolerance(ok):
    return {"tolerance": {"ok": ok, "checks": [{"check": "top1_disagreement", "value": 0.0 if ok else 0.2,
                                                "limit": 0.01, "ok": ok}]}}


def test_memory_and_tolerance_facts_from_records():
    low = profile("low", tier="low", budget=200)
    cfg = config([low], budgets={"latency_p90_ms": 100, "memory_fraction": 0.5})
    res = [rec(low, "teacher", samples=lat(5), peak_mb=150),                       # 150 > 100: does not fit
           rec(low, "student", technique="distillation", samples=lat(2), peak_mb=90),  # fits
           rec(low, "teacher-int8", technique="quantisation", precision="int8", samples=lat(3), peak_mb=60,
               parity=_tolerance(True)),
           rec(low, "teacher-fp16", precision="fp16", samples=lat(3), peak_mb=80, parity=_tolerance(False))]
    base = baseline.cohort_baseline(res, cfg)
    f = gather(cfg, res, base, divergence.matrices(res, {}, {}))
    assert f.full_precision == ("teacher", "student") and f.quantised == ("teacher-int8", "teacher-fp16")
    assert f.distilled == ("student",)
    assert f.memory["status"] == "adequate" and f.memory["candidates"]["teacher"]["fits"] is False
    assert f.tolerance["status"] == "loose"
    assert f.tolerance["candidates"]["teacher-fp16"]["ok"] is False
    # without the student, nothing full-precision fits: memory is tight
    res2 = [r for r in res if r["candidate"] != "student"]
    f2 = gather(cfg, res2, baseline.cohort_baseline(res2, cfg), {})
    assert f2.memory["status"] == "tight"
    assert decision.decide(f2)["rule"] == "memory-tight"
    # a quantised candidate that breaks the policy everywhere makes the tolerance strict
    res3 = [r for r in res if r["candidate"] != "teacher-int8"]
    f3 = gather(cfg, res3, baseline.cohort_baseline(res3, cfg), {})
    assert f3.tolerance["status"] == "strict"
    d3 = decision.decide(f3)
    assert (d3["rule"], d3["recommendation"]) == ("quality-strict", "distillation")
    ev = next(r for r in d3["rules"] if r["id"] == "quality-strict")["evidence"]
    assert any("student: peak 90.0 MB on low vs budget share 100.0 MB" in e for e in ev)
    assert any("teacher-fp16: outside the quality policy" in e for e in ev)
