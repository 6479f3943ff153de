"""Statistics across sessions (harness.kernel.measure.sessions): the mixture's
percentiles, the hierarchical bootstrap and its small-sample widening, the
stop rule between sessions, and the record's timing block — on synthetic
mixtures whose true percentiles are known."""

import math

import numpy as np
import pytest

from harness.kernel import limits
from harness.kernel.measure import job_trust
from harness.kernel.measure import sessions as S
from harness.kernel.measure import stats
from harness.kernel.measure.policy import MeasurePolicy

Z90 = 1.2815515655446004


def mixture(rng, k, n, between, within, level=0.0):
    """k sessions of n runs: log latency = level + session shift + run noise."""
    return [np.exp(level + rng.normal(0, between) + rng.normal(0, within, n)) for _ in range(k)]


def test_t_quantiles_match_the_table_and_scipy():
    assert S.t_quantile(0.975, 1) == 12.706 and S.t_quantile(0.975, 4) == 2.776
    assert S.t_quantile(0.99, 10) == 2.764
    assert S.t_quantile(0.975, 10_000) == pytest.approx(1.96, abs=1e-3)
    st = pytest.importorskip("scipy.stats", reason="scipy is only a cross-check, not a dependency")
    for df in (1, 2, 3, 4.5, 7, 12.3, 29.5, 30, 45, 200):
        for p in (0.975, 0.99):
            assert S.t_quantile(p, df) == pytest.approx(st.t.ppf(p, df), rel=0.01), (p, df)


def test_widening_is_infinite_for_one_session_and_shrinks_towards_one():
    assert S.widening(1) == math.inf
    w = [S.widening(k) for k in (2, 3, 5, 10, 20, 200)]
    assert w == sorted(w, reverse=True) and w[0] > 9 and 1.0 < w[-1] < 1.01
    # S = 5: t(0.975, 4) / z * sqrt(5/4)
    assert S.widening(5) == pytest.approx(2.776 / 1.959964 * math.sqrt(1.25))


def test_split_keeps_sessions_in_order_and_refuses_counts_that_do_not_add_up():
    parts = S.split([1, 2, 3, 4, 5], [2, 0, 3])
    assert [p.tolist() for p in parts] == [[1, 2], [], [3, 4, 5]]
    assert [p.tolist() for p in S.split([1, 2], [])] == [[1, 2]]
    with pytest.raises(ValueError, match="sessions hold 4 runs but there are 5 samples"):
        S.split([1, 2, 3, 4, 5], [2, 2])
    timing = {"samples_ms": [1, 2, 3], "sessions": [{"n": 1}, {"n": 2}]}
    assert [p.tolist() for p in S.of_timing(timing)] == [[1], [2, 3]]
    assert [p.tolist() for p in S.of_timing({"samples_ms": [4.0]})] == [[4.0]]


def test_mixture_quantiles_weigh_every_session_the_same():
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(300) + 1
    # Equal sessions: exactly numpy's default percentile of all runs.
    assert S.mixture_quantiles([a, b], [0.5, 0.9]) == pytest.approx(np.percentile(np.concatenate([a, b]), [50, 90]))
    # A long fast session and a short slow one weigh the same: the p75 is the
    # slow session's, where the pooled runs' p75 would be the fast one's.
    fast, slow = np.full(1000, 1.0), np.full(10, 2.0)
    p25, p75 = S.mixture_quantiles([fast, slow], [0.25, 0.75])
    assert (p25, p75) == (1.0, 2.0) and np.percentile(np.concatenate([fast, slow]), 75) == 1.0


def test_the_interval_covers_a_known_mixture_and_grows_with_between_session_variance():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(40):
        ses = mixture(rng, 8, 400, 0.02, 0.2)
        est, lo, hi = S.percentile_ci(ses, 0.9, rng, rounds=300)
        hits += lo <= math.exp(math.hypot(0.02, 0.2) * Z90) <= hi
    # True p90 of log-normal(0, sqrt(b^2 + w^2)); 95 % intervals: 40 trials
    # miss more than 8 with probability < 1e-3 even at 90 % real coverage.
    assert hits >= 32
    quiet = S.percentile_ci(mixture(rng, 5, 1000, 0.0, 0.1), 0.9, rng)
    noisy = S.percentile_ci(mixture(rng, 5, 1000, 0.2, 0.1), 0.9, rng)
    half = lambda c: (c[2] - c[1]) / 2 / c[0]  # noqa: E731
    assert half(noisy) > 4 * half(quiet)
    # The runs-as-independent interval of the pooled runs misses the spread
    # of sessions: it is several times narrower than the hierarchical one.
    pooled = np.concatenate(mixture(np.random.default_rng(2), 5, 1000, 0.2, 0.1))
    from harness.kernel.measure.intervals import percentile_interval
    lo, hi = percentile_interval(pooled, 0.9)
    assert (hi - lo) / 2 / np.percentile(pooled, 90) < half(noisy) / 3


def test_one_session_gives_no_interval():
    assert S.percentile_ci([np.arange(1.0, 100.0)], 0.9, np.random.default_rng(0)) is None


def test_shared_draws_pair_sessions_so_shared_shifts_cancel():
    rng = np.random.default_rng(3)
    shifts = rng.normal(0, 0.2, 8)
    a = [np.exp(s + rng.normal(0, 0.05, 500)) for s in shifts]
    b = [np.exp(s + np.log(1.1) + rng.normal(0, 0.05, 500)) for s in shifts]
    top = rng.integers(0, 8, (400, 8))
    ra, rb = S.bootstrap(a, [0.9], rng, 400, top=top)[:, 0], S.bootstrap(b, [0.9], rng, 400, top=top)[:, 0]
    paired = np.std(np.log(rb / ra))
    unpaired = np.std(np.log(S.bootstrap(b, [0.9], rng, 400)[:, 0] / ra))
    assert paired < unpaired / 4
    assert np.median(rb / ra) == pytest.approx(1.1, rel=0.02)


def test_summarize_over_sessions_has_the_record_keys_and_the_method():
    rng = np.random.default_rng(4)
    ses = mixture(rng, 5, 500, 0.1, 0.2)
    out = S.summarize(ses)
    assert set(stats.summarize(np.concatenate(ses))) <= set(out)
    assert out["ci_method"] == "hierarchical bootstrap" and out["n"] == 2500
    lo, hi = out["p90_ci_ms"]
    assert lo < out["p90_ms"] < hi < out["p90_bound_ms"]
    assert S.summarize([np.arange(1.0, 60.0)])["ci_method"] == "order statistics"
    # p99 needs 368 runs in all, as for one session.
    assert S.summarize([np.ones(100) + i for i in range(3)])["p99_ms"] is None


def test_describe_judges_one_session_as_before_and_several_one_by_one():
    rng = np.random.default_rng(5)
    one = rng.lognormal(0, 0.1, 400).tolist()
    timing, problems, _ = job_trust.describe(one, [{"n": 400}], target_ci=0.02, stop_reason="min_reached")
    assert timing["p90_ms"] == stats.summarize(one)["p90_ms"] and timing["ci_method"] == "order statistics"
    assert problems == [] and timing["sessions"][0]["n"] == 400
    steady = [rng.lognormal(0, 0.05, 400) for _ in range(3)]
    drifting = np.concatenate([rng.lognormal(0, 0.05, 200), rng.lognormal(0.4, 0.05, 200)])
    samples = np.concatenate(steady + [drifting]).tolist()
    timing, problems, _ = job_trust.describe(samples, [{"n": 400}] * 4, target_ci=0.0001, stop_reason="max_sessions")
    assert [s["stable"] for s in timing["sessions"]] == [True, True, True, False]
    assert problems[0].startswith("session 4: drift")
    assert problems[-1].startswith("target interval not reached: stopped at max_sessions after 4 sessions")
    assert timing["between_sessions"]["p90_cv"] > 0.1


def test_stop_rule_between_sessions():
    rng = np.random.default_rng(6)
    tight = mixture(rng, 5, 2000, 0.001, 0.05)
    assert S.stop_reason(tight[:4], 5, 0.02, 100, 1, 0.2) is None  # planned sessions always run
    assert S.stop_reason(tight, 5, 0.02, 100, 1, 0.2) == "ci_reached"
    assert S.stop_reason(tight, 5, 0.0, 100, 1, 0.2) == "sessions_done"
    wide = mixture(rng, 5, 200, 0.3, 0.05)
    assert S.stop_reason(wide, 5, 0.02, 100, 1, 0.2) is None  # another session
    assert S.stop_reason(wide, 5, 0.02, 1.1, 1.0, 0.2) == "max_s"  # the next one would pass max_s
    many = mixture(rng, limits.MAX_SESSIONS, 200, 0.3, 0.05)
    assert S.stop_reason(many, 5, 0.02, 1e9, 1, 0.2) == "max_sessions"


def test_policy_split_between_sessions():
    p = MeasurePolicy(warmup_runs=10, warmup_s=1, min_runs=200, min_s=1, max_s=3, target_ci=0.02, max_runs=1000,
                      sessions=5)
    one = p.for_session()
    assert (one.sessions, one.min_runs, one.min_s, one.max_s, one.max_runs) == (1, 40, 0.2, 0.6, 200)
    assert (one.warmup_runs, one.warmup_s, one.target_ci) == (10, 1, 0.02)  # every session warms up in full
    assert MeasurePolicy().for_session() == MeasurePolicy()
    sustained = MeasurePolicy().sustained(60)
    assert sustained.sessions == 1 and sustained.for_session() == sustained
