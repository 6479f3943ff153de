"""Cohort baseline: device rows, the weighted median device, the lowest tier,
per platform, budget checks and `budget_failures`."""

import pytest

from analysis_kit import config, gap, lat, profile, rec
from harness.analysis import baseline, budget_failures


def test_weighted_median_follows_shares():
    a, b, c = profile("a", share=0.1), profile("b", share=0.2), profile("c", share=0.7)
    res = [rec(a, samples=lat(10)), rec(b, samples=lat(20)), rec(c, samples=lat(30))]
    base = baseline.cohort_baseline(res, config([a, b, c]))["candidates"]["m"]
    med = base["median_device"]
    # cumulative share by p90: a 0.1, b 0.3, c 1.0 -> c is where half the population is reached
    assert med["profile"] == "c" and med["weighting"] == "profile share"
    assert med["cumulative_weight"] == pytest.approx(1.0)


def test_weighted_median_with_all_shares_zero_is_the_plain_lower_median():
    ps = [profile(x) for x in "abcd"]
    res = [rec(p, samples=lat(v)) for p, v in zip(ps, (40, 10, 30, 20))]
    med = baseline.cohort_baseline(res, config(ps))["candidates"]["m"]["median_device"]
    # sorted b 10, d 20, c 30, a 40: half of four equal weights is reached at d
    assert med["profile"] == "d" and med["p90_ms"] == 20.0 and med["weighting"].startswith("equal")


def test_zero_share_profiles_carry_no_weight_when_others_have_share():
    a, b = profile("a", share=0.0), profile("b", share=0.5)
    res = [rec(a, samples=lat(1)), rec(b, samples=lat(99))]
    assert baseline.cohort_baseline(res, config([a, b]))["candidates"]["m"]["median_device"]["profile"] == "b"


def test_failed_device_counts_as_slowest_and_gaps_are_left_out():
    a, b, c = profile("a", share=0.3), profile("b", share=0.6), profile("c", share=0.9)
    res = [rec(a, samples=lat(10)), rec(b, error={"stage": "load", "kind": "unsupported_op", "message": "TopK"}),
           gap(c)]
    base = baseline.cohort_baseline(res, config([a, b, c]))["candidates"]["m"]
    assert [d["status"] for d in base["devices"]] == ["ok", "failed", "not_run"]
    assert base["median_device"]["profile"] == "b" and base["median_device"]["population"] == 2
    chk = base["budgets"]["latency_median"]
    assert chk["status"] == "fail" and "failed" in chk["reason"]
    assert base["not_run"] == ["c"]


def test_device_row_takes_the_fastest_successful_target():
    p = profile("phone", platform="android", targets=(("onnxruntime", "nnapi"), ("onnxruntime", "xnnpack")))
    res = [rec(p, samples=lat(30), ep="nnapi"), rec(p, samples=lat(12), ep="xnnpack"),
           rec(p, ep="cpu", error={"stage": "load", "kind": "crash", "message": "x"})]
    row = baseline.cohort_baseline(res, config([p]))["candidates"]["m"]["devices"][0]
    assert row["p90_ms"] == 12 and "xnnpack" in row["runtime"] and len(row["targets"]) == 3


def test_lowest_tier_and_budget_checks():
    low = profile("low", tier="low", share=0.2, budget=200)
    mid = profile("mid", tier="mid", share=0.8, budget=1000)
    res = [rec(low, samples=lat(60), peak_mb=150), rec(mid, samples=lat(20), peak_mb=100)]
    base = baseline.cohort_baseline(res, config([low, mid], budgets={"latency_p90_ms": 50, "memory_fraction": 0.65}))
    b = base["candidates"]["m"]
    assert b["lowest_tier"]["tier"] == "low" and b["lowest_tier"]["memory_budget_mb"] == 200
    assert b["budgets"]["latency_median"] == {"status": "pass", "what": "p90 on the median device", "profile": "mid",
                                              "runtime": "onnxruntime 1.20.0 cpu", "p90_ms": 20.0, "limit_ms": 50}
    assert b["budgets"]["latency_lowest_tier"]["status"] == "fail"
    mem = b["budgets"]["memory"]
    assert mem["status"] == "fail" and mem["failures"][0]["profile"] == "low"  # 150 MB > 0.65 * 200 = 130 MB
    assert mem["failures"][0]["limit_mb"] == pytest.approx(130)
    assert b["budgets"]["memory_lowest_tier"]["status"] == "fail"
    assert b["passes"] is False
    per = b["per_platform"]["linux"]
    assert per["ok"] == 2 and per["p90_min_ms"] == 20 and per["p90_max_ms"] == 60


def test_unmeasured_and_missing_budgets_are_not_failures():
    low = profile("low", tier="low", budget=None)
    mid = profile("mid", tier="mid", budget=512)
    res = [gap(low), rec(mid, samples=lat(20))]  # no memory figure on mid
    b = baseline.cohort_baseline(res, config([low, mid], budgets={"memory_fraction": 0.65}))["candidates"]["m"]
    assert b["budgets"]["latency_median"]["status"] == "no_budget"
    assert b["budgets"]["memory"]["status"] == "unmeasured"
    assert b["budgets"]["memory_lowest_tier"]["status"] == "no_budget"
    assert b["passes"] is None
    assert budget_failures({"baseline": {"candidates": {"m": b}}, "decision": {"reference": "m"}}) == []


def test_budget_failures_skip_the_reference_and_name_the_numbers():
    p = profile("p", tier="low", budget=100)
    res = [rec(p, "teacher", samples=lat(80), peak_mb=90), rec(p, "student", samples=lat(70), peak_mb=20)]
    base = baseline.cohort_baseline(res, config([p], budgets={"latency_p90_ms": 50, "memory_fraction": 0.65}))
    lines = budget_failures({"baseline": base, "decision": {"reference": "teacher"}})
    assert lines and all(line.startswith("student: ") for line in lines)
    assert any("70.00 ms on p" in line and "50 ms budget" in line for line in lines)
    # the reference is checked when it is the only candidate
    only = baseline.cohort_baseline(res[:1], config([p], budgets={"latency_p90_ms": 50, "memory_fraction": 0.65}))
    lines = budget_failures({"baseline": only, "decision": {"reference": "teacher"}})
    assert any("peak memory over the budget share on p (90.0 MB > 65.0 MB)" in line for line in lines)


def test_results_that_do_not_stand_for_real_hardware_are_shown_not_judged():
    cpu, sw = profile("cpu", tier="mid", share=0.5), profile("sw-webgpu", tier="low", share=0.5, budget=100)
    slow = rec(sw, "student", samples=lat(400), peak_mb=99)
    slow["validity"] = {"representative": False}
    slow["details"] = {"not_representative": "WebGPU on a software adapter (CPU emulation), not a GPU"}
    broken = rec(sw, "student-fp16", error={"stage": "load", "kind": "runtime_error", "message": "needs f16"})
    broken["validity"] = {"representative": False}
    broken["details"] = dict(slow["details"])
    res = [rec(cpu, "student", samples=lat(10)), slow, rec(cpu, "student-fp16", samples=lat(10)), broken]
    base = baseline.cohort_baseline(res, config([cpu, sw], budgets={"latency_p90_ms": 50, "memory_fraction": 0.65}))
    for cand in ("student", "student-fp16"):
        rows = {r["profile"]: r for r in base["candidates"][cand]["devices"]}
        assert rows["sw-webgpu"]["status"] == "not_representative"
        assert "software adapter" in rows["sw-webgpu"]["reason"]
        assert base["candidates"][cand]["median_device"]["profile"] == "cpu"
    assert budget_failures({"baseline": base, "decision": {"reference": "teacher"}}) == []
    # The same slow row, representative, fails the lowest-tier budget.
    slow["validity"] = {"representative": True}
    base = baseline.cohort_baseline(res[:2], config([cpu, sw], budgets={"latency_p90_ms": 50, "memory_fraction": 0.65}))
    assert any("400.00 ms on sw-webgpu" in line for line in budget_failures({"baseline": base, "decision": {}}))
