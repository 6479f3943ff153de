"""The change-point test: its t distribution against SciPy's, its power on
steps, and its silence on noise."""

import math

import numpy as np
import pytest

from harness.analysis import changepoint as cp


@pytest.mark.parametrize("t,df,p", [(2.228138852, 10, 0.05), (12.7062047, 1, 0.05), (2.5758293, 1e6, 0.01),
                                    (0.0, 5, 1.0)])
def test_t_tail_matches_tables(t, df, p):
    assert cp.t_two_sided_p(t, df) == pytest.approx(p, rel=1e-4, abs=1e-9)


def test_t_tail_and_quantile_match_scipy():
    stats = pytest.importorskip("scipy.stats", reason="SciPy (a dev dependency through scikit-learn) checks the "
                                                     "hand-written t distribution")
    for df in (1, 2, 3, 7, 30, 498):
        for t in (0.05, 0.7, 1.9, 4.0, 11.0, 40.0):
            assert cp.t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-8, abs=1e-300)
        assert cp.t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-6)


def noisy(rng, level, n, cv=0.03):
    return level * np.exp(rng.normal(0, cv, n))


def test_a_step_is_found_at_the_run_it_starts():
    rng = np.random.default_rng(1)
    for k in (3, 6, 10):
        values = np.concatenate([noisy(rng, 10.0, k), noisy(rng, 13.0, 14 - k)])
        [c] = cp.detect(values)
        assert c.index == k and c.direction == "up"
        assert c.ratio_ci[0] < 1.3 < c.ratio_ci[1] and c.p_value < cp.ALPHA


def test_a_single_slow_newest_run_is_a_change():
    rng = np.random.default_rng(2)
    [c] = cp.detect(np.append(noisy(rng, 10.0, 9), 25.0))
    assert c.index == 9 and c.ratio > 2


def test_noise_alone_reports_nothing():
    rng = np.random.default_rng(3)
    hits = sum(bool(cp.detect(noisy(rng, 10.0, 30, cv=0.08))) for _ in range(200))
    assert hits <= 2  # alpha 0.01 per test, and the 5 % effect floor


def test_significant_but_tiny_steps_are_not_changes():
    values = [10.0] * 10 + [10.2] * 10  # perfectly clean, 2 %: below min_effect
    assert cp.detect(values) == []
    assert [c.index for c in cp.detect(values, min_effect=0.01)] == [10]


def test_two_steps_and_their_segments():
    rng = np.random.default_rng(4)
    values = np.concatenate([noisy(rng, 10, 8), noisy(rng, 15, 8), noisy(rng, 9, 8)])
    changes = cp.detect(values)
    assert [(c.index, c.direction) for c in changes] == [(8, "up"), (16, "down")]
    assert cp.segments(24, changes) == [(0, 8), (8, 16), (16, 24)]


def test_too_few_runs_cannot_show_a_change():
    assert cp.detect([10.0, 20.0]) == [] and cp.detect([]) == []
    assert math.isclose(cp.betainc(2, 3, 0.4), 0.5248, rel_tol=1e-4)
