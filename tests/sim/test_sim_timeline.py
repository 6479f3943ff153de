"""Simulated timelines: the configured distribution, drift, and the stop rule."""

import numpy as np
import pytest

from harness.kernel.latency import LatencyModel, simulate_job
from harness.kernel.measure import stats
from harness.kernel.measure.policy import MeasurePolicy

COUNT = MeasurePolicy(warmup_runs=5, warmup_s=0, min_runs=4000, min_s=0, max_s=1e6, target_ci=0, max_runs=4000)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_lognormal_has_the_configured_median_and_log_spread():
    job = simulate_job(LatencyModel("lognormal", 12.0, spread=0.2), COUNT, rng())
    s = np.asarray(job.samples_ms)
    assert len(s) == 4000
    assert np.median(s) == pytest.approx(12.0, rel=0.03)
    assert np.std(np.log(s)) == pytest.approx(0.2, rel=0.06)
    assert s.min() > 0


def test_normal_has_the_configured_mean_and_std_and_never_goes_below_zero():
    job = simulate_job(LatencyModel("normal", 5.0, spread=0.5), COUNT, rng())
    s = np.asarray(job.samples_ms)
    assert s.mean() == pytest.approx(5.0, rel=0.02)
    assert s.std() == pytest.approx(0.5, rel=0.06)
    wide = simulate_job(LatencyModel("normal", 1.0, spread=2.0), COUNT, rng())
    assert min(wide.samples_ms) > 0


def test_fixed_is_exact_and_first_run_and_load_come_from_the_model():
    job = simulate_job(LatencyModel("fixed", 3.0, load_ms=40, first_run_ms=9), COUNT, rng())
    assert set(job.samples_ms) == {3.0}
    assert (job.load_ms, job.first_run_ms) == (40, 9)
    assert job.warmup_ms == (3.0,) * 4  # the first run is warm-up run 1 of 5
    assert job.total_s == pytest.approx((40 + 9 + 4 * 3 + 4000 * 3) / 1e3)


def test_seeded_draws_repeat_and_different_seeds_differ():
    m = LatencyModel("lognormal", 2.0, spread=0.1)
    a = simulate_job(m, COUNT, rng(7)).samples_ms
    assert simulate_job(m, COUNT, rng(7)).samples_ms == a
    assert simulate_job(m, COUNT, rng(8)).samples_ms != a


def test_drift_slows_the_job_down_and_the_stability_check_sees_it():
    policy = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=200, min_s=2.0, max_s=2.0, target_ci=0)
    steady = simulate_job(LatencyModel("lognormal", 5.0, spread=0.02), policy, rng())
    hot = simulate_job(LatencyModel("lognormal", 5.0, spread=0.02, drift_per_s=0.5), policy, rng())
    assert not any(w.startswith("drift") for w in stats.stability_warnings(steady.samples_ms))
    assert any(w.startswith("drift") and "slower" in w for w in stats.stability_warnings(hot.samples_ms))
    assert np.median(hot.samples_ms[-50:]) > 1.5 * np.median(hot.samples_ms[:50])
    cool = simulate_job(LatencyModel("lognormal", 5.0, spread=0.02, drift_per_s=-0.3), policy, rng())
    assert any("faster" in w for w in stats.stability_warnings(cool.samples_ms))


@pytest.mark.parametrize("policy, reason", [
    (MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=10, min_s=0, max_s=100, target_ci=1e-4, max_runs=25), "max_runs"),
    (MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=10, min_s=0.5, max_s=100, target_ci=0), "min_reached"),
    (MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=10, min_s=0, max_s=0.3, target_ci=0.0001), "max_s"),
    (MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=100, min_s=0, max_s=100, target_ci=0.05), "ci_reached"),
])
def test_the_stop_rule_ends_measurement_for_its_reasons(policy, reason):
    job = simulate_job(LatencyModel("lognormal", 2.0, spread=0.05), policy, rng())
    assert job.stop_reason == reason
    n, measured_s = len(job.samples_ms), job.measure_ms / 1e3
    if reason == "max_runs":
        assert n == 25
    elif reason == "min_reached":
        assert n >= 10 and measured_s >= 0.5 and measured_s - job.samples_ms[-1] / 1e3 < 0.5
    elif reason == "max_s":
        assert measured_s >= 0.3 and measured_s - job.samples_ms[-1] / 1e3 < 0.3
    else:
        assert n >= 100


def test_warmup_waits_for_both_runs_and_time():
    job = simulate_job(LatencyModel("fixed", 10.0, first_run_ms=10),
                       MeasurePolicy(warmup_runs=3, warmup_s=0.1, min_runs=1, min_s=0, max_s=10, target_ci=0), rng())
    # warm-up time counts from after the first run: ten more 10 ms runs reach 0.1 s.
    assert len(job.warmup_ms) == 10 and job.warmup_done
