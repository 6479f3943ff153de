import numpy as np
import pytest

from harness.kernel.measure import stats
from harness.kernel.measure.policy import MeasurePolicy, StopRule


def test_summarize_recomputes_from_samples():
    rng = np.random.default_rng(1)
    s = rng.lognormal(0, 0.1, 2000)
    t = stats.summarize(s)
    assert t["n"] == 2000
    assert t["p50_ms"] == pytest.approx(np.percentile(s, 50))
    assert t["p90_ms"] == pytest.approx(np.percentile(s, 90))
    lo, hi = t["p90_ci_ms"]
    assert lo <= t["p90_ms"] <= hi
    assert t["min_ms"] == s.min() and t["max_ms"] == s.max()


def test_tail_percentiles_refused_with_too_few_samples():
    t = stats.summarize(np.linspace(1, 2, 50))
    assert t["p50_ms"] is not None and t["p99_ms"] is None and t["p99_ci_ms"] is None
    assert stats.min_samples_for(0.99) > 50
    big = stats.summarize(np.linspace(1, 2, stats.min_samples_for(0.99)))
    assert big["p99_ms"] is not None


def test_p90_ci_coverage_on_synthetic_streams():
    rng = np.random.default_rng(7)
    true = np.exp(0.3 * 1.2815515655446004)  # p90 of lognormal(0, 0.3)
    hits = 0
    for _ in range(400):
        lo, hi = stats.summarize(rng.lognormal(0, 0.3, 200))["p90_ci_ms"]
        hits += lo <= true <= hi
    assert 0.90 <= hits / 400 <= 0.995


def test_stability_warnings():
    rng = np.random.default_rng(3)
    assert stats.stability_warnings(rng.normal(10, 0.1, 500)) == []
    drift = np.concatenate([rng.normal(10, 0.1, 250), rng.normal(13, 0.1, 250)])
    assert any(w.startswith("drift") for w in stats.stability_warnings(drift))
    # A wide but stationary distribution is spread, not distrust.
    noisy = rng.normal(10, 3, 500)
    assert stats.stability_warnings(noisy) == []


def test_stop_rule_order_of_conditions():
    r = StopRule(MeasurePolicy(warmup_runs=3, warmup_s=0.5, min_runs=50, min_s=1.0, max_s=10, target_ci=0.02))
    assert not r.warmup_complete(3, 0.1) and not r.warmup_complete(2, 0.6) and r.warmup_complete(3, 0.6)
    stable = [10.0] * 49
    assert r.stop_reason(stable, 5.0) is None  # min_runs not met
    assert r.stop_reason(stable + [10.0], 0.5) is None  # min_s not met
    assert r.stop_reason(stable + [10.0], 1.0) == "ci_reached"
    noisy = list(np.random.default_rng(0).lognormal(0, 1.0, 60))
    r2 = StopRule(MeasurePolicy(min_runs=50, min_s=0, max_s=10, target_ci=0.01))
    assert r2.stop_reason(noisy, 1.0) is None
    assert r2.stop_reason(noisy, 10.0) == "max_s"
    r3 = StopRule(MeasurePolicy(min_runs=5, min_s=0, max_s=10, target_ci=0, max_runs=8))
    assert r3.stop_reason([1.0] * 5, 0.1) == "min_reached"
    assert StopRule(MeasurePolicy(min_runs=5, min_s=0, max_runs=8)).stop_reason([1.0, 9.0] * 4, 0.1) == "max_runs"
