"""`harness compare` logic on synthetic samples: the rank test, the bootstrap
interval, the buckets, devices, failures and fallback changes."""

import numpy as np
import pytest

from analysis_kit import gap, profile, rec
from harness.analysis import compare


def test_mann_whitney_matches_a_hand_computed_case():
    # x = [3, 4], y = [1, 2]: every x beats every y, U = 4 of n1*n2 = 4.
    # mean 2, var = 2*2*5/12 = 5/3; z = (4 - 2 - 0.5)/sqrt(5/3) = 1.1619; p = 0.1226
    assert compare.mann_whitney_greater([3, 4], [1, 2]) == pytest.approx(0.12264, abs=1e-4)
    # the other way round: z = (0 - 2 - 0.5)/sqrt(5/3) = -1.9365; p = 0.9736
    assert compare.mann_whitney_greater([1, 2], [3, 4]) == pytest.approx(0.97359, abs=1e-4)
    assert compare.mann_whitney_greater([1, 1], [1, 1]) == 1.0  # all tied: no evidence


def test_mann_whitney_agrees_with_scipy_when_available():
    stats = pytest.importorskip("scipy.stats", reason="scipy is only a cross-check, not a dependency")
    rng = np.random.default_rng(3)
    x, y = np.round(rng.normal(0.3, 1, 80), 1), np.round(rng.normal(0, 1, 70), 1)  # rounding makes ties
    want = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue
    assert compare.mann_whitney_greater(x, y) == pytest.approx(want, rel=1e-9)


def test_bootstrap_interval_brackets_the_true_ratio():
    rng = np.random.default_rng(0)
    old = rng.lognormal(0, 0.2, 3000)
    new = old * 1.3
    [(lo50, hi50), (lo90, hi90)] = compare.bootstrap_ratio_ci(old, rng.permutation(new), (0.5, 0.9), rng, rounds=400)
    assert lo50 < 1.3 < hi50 and lo90 < 1.3 < hi90 and lo90 > 1.15


@pytest.mark.parametrize("factor,bucket", [(1.0, "unchanged"), (1.5, "regression"), (1.02, "slower"),
                                           (0.5, "improvement"), (0.98, "faster")])
def test_buckets(factor, bucket):
    rng = np.random.default_rng(1)
    old = rng.lognormal(1, 0.01, 1500)
    new = rng.lognormal(1, 0.01, 1500) * factor
    d = compare.latency_delta(old, new, threshold=0.05)
    assert d["bucket"] == bucket, d
    assert d["significant"] is (bucket != "unchanged")
    assert d["p90_ratio"] == pytest.approx(factor, rel=0.02)


def test_small_noisy_difference_is_not_significant():
    rng = np.random.default_rng(2)
    d = compare.latency_delta(rng.lognormal(1, 0.5, 30), rng.lognormal(1, 0.5, 30) * 1.1, threshold=0.05)
    assert d["bucket"] == "unchanged" and d["significant"] is False


def _doc(run_id, results):
    return {"run": {"id": run_id}, "results": results}


def test_compare_docs_rows_devices_failures_and_fallback():
    a, b, c = profile("a"), profile("b"), profile("c")
    same = list(np.random.default_rng(4).lognormal(0, 0.05, 500))
    pl = {"cpu_fallback_nodes": 0, "fallback_op_types": {}}
    old = _doc("old", [rec(a, "m", samples=same, placement=pl, peak_mb=100), rec(b, "m", samples=same),
                       rec(b, "n", samples=same, placement=pl), gap(c, "m")])
    new = _doc("new", [rec(a, "m", samples=same, placement=pl, peak_mb=130),
                       rec(b, "m", error={"stage": "load", "kind": "crash", "message": "SIGSEGV"}),
                       rec(b, "n", samples=same, placement={"cpu_fallback_nodes": 2, "fallback_op_types": {"TopK": 2}}),
                       rec(profile("d"), "m", samples=same)])
    out = compare.compare_docs(old, new, threshold=0.05)
    rows = {r["job"]: r for r in out["rows"]}
    assert rows["a/m/onnxruntime@any/cpu"]["bucket"] == "unchanged"
    assert rows["a/m/onnxruntime@any/cpu"]["regression"] is False  # memory is reported, not judged, by default
    assert rows["a/m/onnxruntime@any/cpu"]["memory"]["ratio"] == pytest.approx(1.3)
    assert rows["b/m/onnxruntime@any/cpu"]["bucket"] == "broken"
    fb = rows["b/n/onnxruntime@any/cpu"]
    assert fb["regression"] is True and fb["fallback"]["added_op_types"] == ["TopK"]
    assert rows["c/m/onnxruntime@any/cpu"]["bucket"] == "missing"
    assert rows["d/m/onnxruntime@any/cpu"]["bucket"] == "new"
    assert out["devices"]["new_profiles"] == ["d"] and out["devices"]["missing_profiles"] == []
    assert len(out["regressions"]) == 2
    assert any("CPU fallback grew: 0 → 2" in r for r in out["regressions"])
    with_mem = compare.compare_docs(old, new, threshold=0.05, memory_threshold=0.2)
    assert any("peak memory grew 30.0%" in r for r in with_mem["regressions"])
