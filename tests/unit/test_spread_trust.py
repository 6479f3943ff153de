"""Spread is reported, trust is flagged: a wide but stationary run of a fast
model is `stable`; drift, a disturbed stretch, a target interval not reached
and too few samples are not."""

import numpy as np
import pytest

from harness.kernel.measure import trust

RNG = np.random.default_rng(18)


def quiet(n, sigma=0.35, stall_share=0.02, median_ms=0.03):
    """A stationary sub-millisecond run: log-normal body (std ~35 % of the
    mean, as a 30 µs model shows on a desktop CPU) and stalls of 5-50x the
    median spread evenly over the run."""
    a = RNG.lognormal(np.log(median_ms), sigma, n)
    stalls = RNG.random(n) < stall_share
    a[stalls] *= RNG.uniform(5, 50, int(stalls.sum()))
    return a


@pytest.mark.parametrize("n", [200, 1000, 20000])
def test_a_quiet_wide_run_of_a_fast_model_is_trusted(n):
    flagged = [p for p in (trust.problems(quiet(n)) for _ in range(50)) if p]
    assert not flagged, flagged[0]
    s = trust.spread(quiet(n))
    # The spread is there and reported: the old rule (std >= 10 % of the mean) fired on exactly this.
    assert s["cv"] > 0.10 and s["iqr_over_median"] > 0.3 and s["stall_share"] > 0.005


def test_spread_ratios():
    a = np.concatenate([np.full(500, 1.0), np.full(500, 2.0)])
    s = trust.spread(a)
    assert s["iqr_over_median"] == pytest.approx(1.0 / 1.5)
    assert s["p90_over_p50"] == pytest.approx(2.0 / 1.5)
    assert trust.spread(np.ones(100))["p99_over_p50"] is None  # p99 needs 368 samples
    assert trust.spread([1.0])["cv"] is None


def test_a_step_mid_run_is_drift():
    a = np.concatenate([RNG.normal(10, 0.3, 300), RNG.normal(14, 0.3, 300)])
    p = trust.problems(a)
    assert len(p) == 1 and p[0].startswith("drift: the last 120 runs are ") and "% slower than the first 120" in p[0]


def test_a_burst_mid_run_is_a_disturbance_that_names_its_effect_on_the_p90():
    a = np.concatenate([quiet(4000), quiet(1000) * 1.5, quiet(5000)])
    p = trust.problems(a)
    assert len(p) == 1 and p[0].startswith("disturbance: part of the run behaved differently (runs 4001-5000: median +")
    assert "without it the p90 would be" in p[0]


def test_stalls_crowded_into_one_stretch_are_a_disturbance_spread_evenly_they_are_not():
    crowded = np.concatenate([quiet(4000, 0.2, 0), quiet(1000, 0.2, 0.2), quiet(5000, 0.2, 0)])
    p = trust.problems(crowded)
    assert p and "stalls" in p[0] and "runs 4001-5000" in p[0]
    even = quiet(10000, 0.2, 0.02)  # the same number of stalls, anywhere
    assert trust.problems(even) == []


def test_a_small_change_that_does_not_move_the_p90_is_not_flagged():
    # One tenth of the run 12 % slower in its median, but inside the body of
    # a wide distribution: the p90 moves far less than its own interval.
    a = np.concatenate([quiet(36000, 0.6, 0), quiet(4000, 0.6, 0) * 1.12])
    assert trust.disturbance(a) is None
    # The same stretch 60 % slower moves it, and is flagged.
    b = np.concatenate([quiet(36000, 0.6, 0), quiet(4000, 0.6, 0) * 1.6])
    assert trust.disturbance(b).startswith("disturbance: part of the run behaved differently (runs 36001-40000")


def test_target_interval_not_reached_and_too_few_samples():
    wide = RNG.lognormal(0, 1.0, 200)
    p = trust.problems(wide, stop_reason="max_s", target_ci=0.02)
    assert any(x.startswith("target interval not reached: stopped at max_s") for x in p)
    # Reaching the time limit is not a problem when the interval is within target.
    tight = RNG.normal(10, 0.01, 5000)
    assert trust.problems(tight, stop_reason="max_s", target_ci=0.02) == []
    # Nor when the policy asks for no interval (sustained runs, fixed counts).
    assert not any("target" in x for x in trust.problems(wide, stop_reason="max_s", target_ci=0))
    assert trust.problems(np.ones(20)) == ["too few samples: 20 runs, the p90's 95% interval needs at least 36"]


def _record(samples, stop_reason="ci_reached", target_ci=0.02):
    from harness.config.schema import DeviceProfile
    from harness.kernel.measure.policy import MeasurePolicy
    from harness.record.build import build_record

    prof = DeviceProfile.model_validate({"id": "host", "platform": "linux",
                                         "targets": [{"runtime": "onnxruntime", "ep": "cpu"}]})
    result = {"samples_ms": list(samples), "load_ms": 1.0, "first_run_ms": 0.1, "error": None,
              "validity": {"warmup_done": True, "min_runs_met": True, "min_time_met": True,
                           "stop_reason": stop_reason, "warnings": []}, "details": {}}
    return build_record(job_key="k", candidate="c", technique="baseline", profile=prof, target=prof.targets[0],
                        model=None, device=None, result=result, policy=MeasurePolicy(target_ci=target_ci))


def test_the_record_of_a_quiet_fast_model_is_stable_and_carries_its_spread():
    rec = _record(quiet(20000))
    assert rec["validity"]["stable"] is True and rec["validity"]["instability"] == []
    assert not any(w.startswith(("unstable", "outliers", "stalls")) for w in rec["validity"]["warnings"])
    sp = rec["timing"]["spread"]
    assert sp["p99_over_p50"] > 2 and 0.3 < sp["iqr_over_median"] < 0.7


def test_the_record_of_a_disturbed_run_is_unstable_and_says_why():
    rec = _record(np.concatenate([quiet(4000), quiet(1000) * 1.5, quiet(5000)]))
    assert rec["validity"]["stable"] is False
    assert rec["validity"]["instability"][0].startswith("disturbance:")
    assert rec["validity"]["instability"][0] in rec["validity"]["warnings"]
    slow = _record(RNG.lognormal(0, 1.0, 200), stop_reason="max_s")
    assert slow["validity"]["stable"] is False
    assert slow["validity"]["instability"][0].startswith("target interval not reached")
