"""The verdict statistic of `harness compare` (harness.kernel.measure.shift):
the sessions' Hodges–Lehmann shift and its hierarchical interval, on
synthetic sessions shaped like those this machine gives a 0.015 ms model —
most sessions in a fast state, a few in a slow one."""

import numpy as np
import pytest

from harness.analysis.compare import session_delta
from harness.kernel.measure import shift

FAST, SLOW = 0.0145, 0.025


def two_state(rng, slow: set, k: int = 13, n: int = 4000, scale: float = 1.0, between: float = 0.02):
    """k sessions of n runs; those in `slow` in the slow state; each session
    off its state's level by `between` (log sd), runs by 5 %."""
    return [(SLOW if i in slow else FAST) * scale * np.exp(rng.normal(0, between) + rng.normal(0, 0.05, n))
            for i in range(k)]


def test_hodges_lehmann_estimates_match_hand_computed_cases():
    # Differences new - old of [0, 1] vs [1, 3]: 1, 3, 0, 2 -> median 1.5.
    assert shift.hl_two(np.array([0.0, 1.0]), np.array([1.0, 3.0])) == pytest.approx(1.5)
    # Walsh averages of [0, 1, 5]: 0, .5, 2.5, 1, 3, 5 -> median 1.75.
    assert shift.hl_one(np.array([0.0, 1.0, 5.0])) == pytest.approx(1.75)
    # Vectorised over leading axes like the bootstrap uses it.
    a, b = np.zeros((4, 3)), np.ones((4, 5))
    assert shift.hl_two(a, b).shape == (4,) and np.allclose(shift.hl_two(a, b), 1.0)


def test_thirty_percent_slower_sessions_are_a_regression_though_a_few_sessions_sit_in_a_slow_state():
    # The ratio of the mixtures' medians, bootstrapped over sessions, flips
    # between the states and spans ×0.78–×1.39 here (the code before this
    # statistic called it unchanged for every seed); the sessions' shift
    # stays with the state most sessions share.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        old = two_state(rng, {0, 5, 9, 11})
        new = two_state(rng, {2, 7, 12}, scale=1.3)
        d = session_delta(old, new, 0.05, seed=seed)
        assert d["bucket"] == "regression", (seed, d["p50_ratio"], d["p50_ratio_ci"])
        assert d["p50_ratio"] == pytest.approx(1.3, rel=0.03)
        assert d["p50_ratio_ci"][0] > 1.15


def test_the_same_model_with_a_few_more_slow_sessions_is_not_a_regression():
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        old = two_state(rng, {1, 6, 10})
        new = two_state(rng, {0, 3, 7, 9, 12})
        d = session_delta(old, new, 0.05, seed=seed)
        assert d["verdicts"]["p50"] == "unchanged", (seed, d["p50_ratio"], d["p50_ratio_ci"])


def test_a_side_mostly_in_the_slow_state_widens_the_interval_instead_of_deciding():
    # Half the old sessions slow: whether the new model is 30 % slower than
    # the old one's fast state or faster than its slow one is not known.
    rng = np.random.default_rng(7)
    old = two_state(rng, set(range(0, 13, 2)))
    new = two_state(rng, {3}, scale=1.3)
    d = session_delta(old, new, 0.05)
    lo, hi = d["p50_ratio_ci"]
    assert lo < 1.0 < hi


def test_pairs_use_the_one_sample_shift_of_their_differences():
    rng = np.random.default_rng(3)
    drift = np.exp(rng.normal(0, 0.3, 10))  # what a pair's two sessions share
    old = [FAST * d * np.exp(rng.normal(0, 0.05, 2000)) for d in drift]
    new = [FAST * 1.1 * d * np.exp(rng.normal(0, 0.05, 2000)) for d in drift]
    paired = session_delta(old, new, 0.05, paired=True)
    unpaired = session_delta(old, new, 0.05)
    assert paired["bucket"] == "regression" and paired["p50_ratio"] == pytest.approx(1.1, rel=0.01)
    assert unpaired["verdicts"]["p50"] == "unchanged"  # the shared drift hides it without the pairing


def test_replicates_reweight_each_sessions_runs():
    rng = np.random.default_rng(0)
    ses = [np.arange(1.0, 1001.0), np.arange(1.0, 11.0)]
    rep = shift.session_replicates(ses, [0.5], rng, 300)
    assert rep.shape == (300, 2, 1)
    long, short = rep[:, 0, 0], rep[:, 1, 0]
    assert 450 < long.mean() < 550 and short.std() > 0 and long.std() / 500 < short.std() / 5
