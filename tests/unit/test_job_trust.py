"""A job measured in several sessions is unstable only when a session's drift
or disturbance moves its headline (harness.kernel.measure.job_trust); a
finding that does not is kept as a note. Synthetic sessions whose true
regimes are known; the real CPU hog is in tests/integration/test_disturbed.py."""

import numpy as np

from harness.config.schema import DeviceProfile
from harness.kernel.measure import job_trust, ranks, trust
from harness.kernel.measure.policy import MeasurePolicy
from harness.record.build import build_record

N = 6000  # runs per session: two thirds of a second of a 0.03 ms model


def quiet(rng, n, level=1.0, sigma=0.35, stall_share=0.02, median_ms=0.03):
    """A stationary sub-millisecond session (as tests/unit/test_spread_trust.py):
    a wide log-normal body and stalls spread evenly; `level` is the session's
    own offset (which core, its frequency)."""
    a = rng.lognormal(np.log(median_ms * level), sigma, n)
    stalls = rng.random(n) < stall_share
    a[stalls] *= rng.uniform(5, 50, int(stalls.sum()))
    return a


def _record(ses, quantum=None):
    prof = DeviceProfile.model_validate({"id": "host", "platform": "linux",
                                         "targets": [{"runtime": "onnxruntime", "ep": "cpu"}]})
    samples = np.concatenate(ses)
    result = {"samples_ms": samples.tolist(), "sessions": [{"n": len(s)} for s in ses], "load_ms": 1.0,
              "first_run_ms": 0.1, "error": None,
              "validity": {"warmup_done": True, "min_runs_met": True, "min_time_met": True,
                           "stop_reason": "sessions_done", "warnings": []},
              "details": {"timer_resolution_ms": quantum or 1e-6}}
    return build_record(job_key="k", candidate="c", technique="baseline", profile=prof, target=prof.targets[0],
                        model=None, device=None, result=result,
                        policy=MeasurePolicy(target_ci=0, sessions=len(ses)))


def test_a_quiet_sub_ms_job_whose_session_drifts_a_little_is_not_unstable():
    # Sessions a few % apart (as on any shared machine), and the last 40 % of
    # session 2 15 % slower: a real drift inside that session, smaller than
    # what the sessions already differ by.
    rng = np.random.default_rng(181)
    ses = [quiet(rng, N, 1.0), quiet(rng, N, 1.04), quiet(rng, N, 0.97)]
    ses[1][int(0.6 * N):] *= 1.15
    rec = _record(ses)
    own = rec["timing"]["sessions"][1]
    # The session's own check sees the drift, and the record keeps it ...
    assert own["stable"] is False and own["instability"][0].startswith("drift: the last 1200 runs are 1")
    # ... but it does not move the job's p50 or p90 out of their intervals.
    assert rec["validity"]["stable"] is True and rec["validity"]["instability"] == []
    note = [w for w in rec["validity"]["warnings"] if w.startswith("session 2: drift")]
    assert len(note) == 1 and "a note, not unstable" in note[0]
    assert [s["stable"] for s in rec["timing"]["sessions"]] == [True, False, True]


def test_a_hog_in_one_session_moves_the_headline_and_makes_the_job_unstable():
    # The same job, sessions agreeing, but from 30 % into session 2 a hog
    # shares the core: every run twice as long to the end of that session.
    rng = np.random.default_rng(182)
    ses = [quiet(rng, N, 1.0), quiet(rng, N, 1.01), quiet(rng, N, 0.99)]
    ses[1][int(0.3 * N):] *= 2.0
    rec = _record(ses)
    assert rec["validity"]["stable"] is False
    (why,) = rec["validity"]["instability"]
    assert why.startswith("session 2: drift: the last 1200 runs are ")
    # It says what the quiet regime alone would have given, and where the
    # change point is (within the 30 % mark, give or take a few runs).
    assert "it moves the job's headline: had this session measured only its runs 1-" in why
    cut = int(why.split("only its runs 1-")[1].split(",")[0])
    assert abs(cut - int(0.3 * N)) < 60
    assert "the job's p90 would be" in why or "the job's p50 would be" in why
    assert why in rec["validity"]["warnings"]


def test_a_short_burst_that_barely_moves_the_headline_is_a_note_and_a_long_one_is_not():
    rng = np.random.default_rng(183)
    base = [quiet(rng, N, 1.0), quiet(rng, N, 1.03), quiet(rng, N, 0.98)]
    short = [s.copy() for s in base]
    short[0][3000:3600] *= 1.5  # a tenth of one session of three
    j = job_trust.judge(short)
    assert j.findings[0] is not None and j.findings[0].message.startswith("disturbance: part of the run")
    assert j.problems == [] and j.notes[0].startswith("session 1: disturbance")
    long = [s.copy() for s in base]
    long[0][1200:] *= 3.0  # four fifths of it, three times slower
    j = job_trust.judge(long)
    assert j.problems and j.problems[0].startswith("session 1: ") and j.notes == []


def test_on_a_quantised_clock_a_difference_of_a_tick_is_not_a_move():
    # A 5 µs clock (a browser's performance.now()) against a p90 of ~8
    # ticks: session 3's later half one tick slower throughout.
    rng = np.random.default_rng(4)
    q = 0.005
    ses = [np.round(rng.lognormal(np.log(0.03), 0.25, N) / q) * q for _ in range(3)]
    ses[2][N // 2:] += q
    assert trust.finding(ses[2]).message.startswith("drift")  # real to the rank test
    # Blind to the clock, the p90 one tick up would be outside the (one-tick)
    # interval of the quieter regime; a tick is below what the clock resolves.
    assert job_trust.judge(ses, tick=0).problems[0].startswith("session 3: drift")
    assert job_trust.judge(ses, tick=q).problems == []
    # The record takes the tick from the driver (details.timer_resolution_ms).
    assert _record(ses, quantum=q)["validity"]["stable"] is True


def test_the_change_point_is_where_the_level_steps():
    rng = np.random.default_rng(185)
    a = np.concatenate([rng.lognormal(0, 0.3, 700), rng.lognormal(0.3, 0.3, 300)])
    assert abs(ranks.change_point(a) - 700) < 30
    f = trust.finding(a)
    usual, affected = f.regimes(a)
    assert usual[0] == f"runs 1-{ranks.change_point(a)}" and affected[1].size == 1000 - ranks.change_point(a)
