"""Stop rule, intervals, sustained and repeat analysis, environment checks,
driven by synthetic sample streams."""

import numpy as np
import pytest

from harness.analysis.environment import NotComparable, check_comparable, fingerprint, mismatches
from harness.kernel.measure import intervals, repeats, stats, sustained
from harness.kernel.measure.policy import MeasurePolicy, StopRule

RNG = np.random.default_rng(2024)
STREAMS = {
    "stable": lambda n: RNG.normal(10.0, 0.05, n),
    "noisy": lambda n: RNG.lognormal(np.log(10), 0.35, n),
    "heavy_tailed": lambda n: 10 + RNG.pareto(2.5, n),
    "drifting": lambda n: np.linspace(10, 14, n) + RNG.normal(0, 0.05, n),
}
TRUE_P90 = {"stable": 10.0 + 0.05 * 1.2815515655446004,
            "noisy": 10 * np.exp(0.35 * 1.2815515655446004),
            "heavy_tailed": 10 + (0.1 ** (-1 / 2.5) - 1)}


@pytest.mark.parametrize("name", ["stable", "noisy", "heavy_tailed"])
def test_p90_interval_coverage(name):
    hits = trials = 0
    for _ in range(300):
        ci = intervals.percentile_interval(STREAMS[name](150), 0.9)
        trials += 1
        hits += ci[0] <= TRUE_P90[name] <= ci[1]
    assert 0.92 <= hits / trials <= 0.99  # nominal 95 %


@pytest.mark.parametrize("name", ["noisy", "heavy_tailed"])
def test_upper_bound_holds_at_its_confidence(name):
    held = sum(intervals.upper_bound(STREAMS[name](200), 0.9, 0.99) >= TRUE_P90[name] for _ in range(300))
    assert held / 300 >= 0.97


def test_bounds_refused_when_too_few_samples():
    assert intervals.upper_bound(np.ones(30), 0.9, 0.99) is None  # needs 44
    assert intervals.upper_bound(np.ones(44), 0.9, 0.99) is not None
    assert intervals.min_samples_for_bound(0.99, 0.99) == 459
    assert intervals.percentile_interval(np.ones(50), 0.99) is None


def _stop_point(samples, policy, dt):
    rule, got = StopRule(policy), []
    for i, s in enumerate(samples):
        got.append(s)
        reason = rule.stop_reason(got, (i + 1) * dt)
        if reason:
            return len(got), reason
    return len(got), None


def test_stop_points_follow_the_noise():
    policy = MeasurePolicy(min_runs=50, min_s=0, max_s=1e9, target_ci=0.02)
    n_stable, why_stable = _stop_point(STREAMS["stable"](20000), policy, 0.001)
    n_noisy, why_noisy = _stop_point(STREAMS["noisy"](20000), policy, 0.001)
    assert why_stable == why_noisy == "ci_reached"
    assert n_stable < 100 < n_noisy  # a stable workload stops near min_runs, a noisy one needs more
    # The stop is honest: the interval at the stop point is within the target.
    x = STREAMS["noisy"](n_noisy)
    lo, hi = intervals.percentile_interval(x, 0.9)
    assert (hi - lo) / 2 <= 0.03 * np.percentile(x, 90)


def test_a_step_in_latency_keeps_the_rule_measuring_until_max_s():
    # A CPU hog from sample 300 on: the latency steps from 10 to 13 ms.
    samples = np.concatenate([RNG.normal(10, 0.05, 300), RNG.normal(13, 0.05, 4700)])
    policy = MeasurePolicy(min_runs=400, min_s=0, max_s=2.0, target_ci=0.02)
    n, why = _stop_point(samples, policy, 0.001)
    assert why == "max_s" and n == 2000
    assert any(w.startswith("drift") for w in stats.stability_warnings(samples[:n]))
    # Without the step the same policy stops as soon as its minimums are met.
    n_flat, why_flat = _stop_point(RNG.normal(10, 0.05, 5000), policy, 0.001)
    assert why_flat == "ci_reached" and n_flat == 400


def test_timer_resolution_warning():
    quantised = np.round(RNG.normal(0.02, 0.004, 500) / 0.005) * 0.005 + 0.005  # 5 µs ticks, ~20 µs latency
    assert any(w.startswith("timer too coarse") for w in stats.stability_warnings(quantised))
    assert not any(w.startswith("timer") for w in stats.stability_warnings(STREAMS["stable"](500), 1e-6))


def test_sustained_windows_and_throttling_onset():
    # 30 s at 10 ms, then throttled to 14 ms for 60 s.
    samples = np.concatenate([np.full(3000, 10.0), np.full(4300, 14.0)])
    a = sustained.analyse(samples, window_s=10.0, first_s=30.0)
    assert a["throttling_onset_s"] == pytest.approx(30.0)
    assert a["first_minute"]["p50_ms"] == 10.0 and a["steady_state"]["p50_ms"] == 14.0
    assert a["steady_vs_first"] == pytest.approx(0.4)
    flat = sustained.analyse(np.full(5000, 10.0), window_s=5.0)
    assert flat["throttling_onset_s"] is None and len(flat["windows"]) == 10


def test_repeats_separate_between_and_within_session_variance():
    same = repeats.analyse([RNG.normal(10, 1, 500) for _ in range(4)])
    shifted = repeats.analyse([RNG.normal(10 + 2 * k, 1, 500) for k in range(4)])
    assert same["between_share"] < 0.1 < 0.5 < shifted["between_share"]
    assert repeats.analyse([[1.0, 2.0]]) == {"sessions": 1}


def _rec(**over):
    r = {"device": {"platform": "android", "facts": {"model": "Pixel 7", "soc": "Tensor G2", "abi": "arm64-v8a"}},
         "runtime": {"name": "onnxruntime", "version": "1.20.1", "ep": "nnapi", "options": {}},
         "details": {"conditions": {"before": {"cpu_governor": "schedutil", "loadavg_1m": 0.5}}}}
    r.update(over)
    return r


def test_fingerprint_refuses_must_match_differences():
    a, b = _rec(), _rec(runtime={"name": "onnxruntime", "version": "1.22.0", "ep": "nnapi", "options": {}})
    assert mismatches(fingerprint(a), fingerprint(_rec())) == []
    with pytest.raises(NotComparable, match="runtime_version"):
        check_comparable(a, b, "pixel-7/student")
    assert "forced" in check_comparable(a, b, "pixel-7/student", force=True)
    hot = _rec(details={"conditions": {"before": {"cpu_governor": "schedutil", "loadavg_1m": 3.0}}})
    assert check_comparable(a, hot, "x") is None  # load is shown, not enforced
