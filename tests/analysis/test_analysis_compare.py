"""`harness compare` logic on synthetic sessions: verdicts at the session
level, the noise floor, one session a side, interleaved pairs, and the rows
for devices, failures and fallback changes."""

import numpy as np
import pytest

from analysis_kit import gap, profile, rec
from harness.analysis import compare
from harness.analysis.noise import NoiseBook
from harness.kernel.measure.ranks import mann_whitney_greater

A = profile("a")


def sessions(rng, k=5, n=400, between=0.1, within=0.2, scale=1.0, level=0.0):
    return [np.exp(level + rng.normal(0, between) + rng.normal(0, within, n)) * 0.03 * scale for _ in range(k)]


def doc(run_id, results):
    return {"run": {"id": run_id}, "results": results}


def verdict(old, new, **kw):
    out = compare.compare_docs(doc("old", [rec(A, sessions=old)]), doc("new", [rec(A, sessions=new)]), **kw)
    return out, out["rows"][0]


def test_mann_whitney_matches_a_hand_computed_case():
    # x = [3, 4], y = [1, 2]: U = 4 of n1*n2 = 4; mean 2, var 5/3; z = 1.1619, p = 0.1226.
    assert mann_whitney_greater([3, 4], [1, 2]) == pytest.approx(0.12264, abs=1e-4)
    assert mann_whitney_greater([1, 1], [1, 1]) == 1.0


def test_sessions_that_differ_by_chance_are_not_a_regression_where_runs_alone_would_be_one():
    # One process, sessions shifted by 10 % at random, 5 a side: the runs of
    # the two sides differ far beyond what runs-as-independent-draws allow
    # (the rank test on them is "significant"), not beyond what sessions
    # differ by. Seeded: deterministic.
    rng = np.random.default_rng(21)
    old, new = sessions(rng), sessions(rng)
    if np.median(np.concatenate(new)) < np.median(np.concatenate(old)):
        old, new = new, old  # call the slower side new
    assert mann_whitney_greater(np.concatenate(new), np.concatenate(old)) < 1e-6
    out, row = verdict(old, new)
    assert row["bucket"] == "unchanged" and out["regressions"] == []
    lat = row["latency"]
    assert lat["old_sessions"] == lat["new_sessions"] == 5 and lat["p90_ratio"] > 1.05
    lo, hi = lat["p90_ratio_ci"]
    assert lo < 1.0 < hi


def test_a_shift_of_whole_runs_is_judged_against_the_run_to_run_noise_the_store_has_seen():
    # This device target's runs move as a whole by ~10 % (a neighbour's load
    # that lasts minutes): sessions of one run agree, runs do not. The store
    # holds six earlier runs of one unchanged model; their spread is tau.
    rng = np.random.default_rng(22)
    tight = dict(between=0.02, within=0.1)
    history = NoiseBook().learn([{**rec(A, sessions=sessions(rng, level=rng.normal(0, 0.1), **tight), sha256="m"),
                                  "_run_id": f"h{i}"} for i in range(6)])
    old, new = sessions(rng, level=-0.06, **tight), sessions(rng, level=0.06, **tight)
    _, alone = verdict(old, new)
    assert alone["bucket"] == "regression"  # the two runs alone cannot know
    _, row = verdict(old, new, noise=history)
    floor = row["latency"]["noise_floor"]["p90"]
    assert row["bucket"] != "regression" and floor["tau_run"] > 0.05 and floor["models_rerun"] == 1


def test_thirty_percent_more_work_is_a_regression_with_its_evidence():
    rng = np.random.default_rng(12)
    out, row = verdict(sessions(rng, k=10, between=0.05), sessions(rng, k=10, between=0.05, scale=1.3))
    assert row["bucket"] == "regression" and row["regression"]
    lat = row["latency"]
    assert lat["p90_ratio"] == pytest.approx(1.3, rel=0.1) and lat["p90_ratio_ci"][0] > 1.0
    line = out["regressions"][0]
    assert "10 → 10 sessions" in line and "noise floor ±" in line and "σ between sessions" in line


def test_a_change_inside_the_noise_floor_is_never_significant():
    # Tight sessions (the interval alone would call +12 % a regression), but
    # the store knows this device target's sessions vary by 20 %.
    rng = np.random.default_rng(13)
    old, new = sessions(rng, between=0.005, within=0.05), sessions(rng, between=0.005, within=0.05, scale=1.12)
    _, alone = verdict(old, new)
    assert alone["bucket"] == "regression"
    history = NoiseBook().learn([{**rec(A, sessions=sessions(rng, between=0.2, within=0.05)), "_run_id": f"h{i}"}
                                 for i in range(6)])
    _, row = verdict(old, new, noise=history)
    assert row["bucket"] == "unchanged" and row["latency"]["p90_ratio_ci"][0] > 1.0
    assert row["latency"]["noise_floor"]["p90"]["fraction"] > 0.12 and "p90" in row["latency"]["below_floor"]


def test_one_session_on_a_side_cannot_tell_and_says_by_how_much_noise_could_move_it():
    rng = np.random.default_rng(14)
    history = NoiseBook().learn([{**rec(A, sessions=sessions(rng)), "_run_id": f"h{i}"} for i in range(3)])
    out, row = verdict(sessions(rng, k=1), sessions(rng, k=1, scale=1.5), noise=history)
    assert row["bucket"] == "cannot tell" and not row["regression"] and out["regressions"] == []
    lat = row["latency"]
    assert lat["could_move"] == lat["noise_floor"]["p90"]["fraction"] > 0.1
    assert out["undetermined"] and "noise could move this p90 by ±" in out["undetermined"][0]
    assert "1 → 1 session(s)" in lat["reason"]
    _, bare = verdict(sessions(rng, k=1), sessions(rng, k=1))
    assert bare["bucket"] == "cannot tell" and "no between-session history" in bare["latency"]["reason"]
    # Five sessions on one side: their own spread gives a floor, still no verdict.
    _, half = verdict(sessions(rng, k=1), sessions(rng, k=5))
    assert half["bucket"] == "cannot tell" and half["latency"]["could_move"] is not None


def test_interleaved_pairs_cancel_drift_that_hides_a_ten_percent_slowdown():
    # Eight A/B pairs; each pair shares a session-level shift of 15 % (drift,
    # neighbours), B is 10 % slower. Unpaired, the shifts swamp it; paired,
    # it is plain.
    rng = np.random.default_rng(15)
    shifts = rng.normal(0, 0.15, 8)
    a = [np.exp(s + rng.normal(0, 0.05, 400)) * 0.5 for s in shifts]
    b = [np.exp(s + np.log(1.1) + rng.normal(0, 0.05, 400)) * 0.5 for s in shifts]
    run = doc("r1", [rec(A, "old", sessions=a, sha256="o"), rec(A, "new", sessions=b, sha256="n")])
    paired = compare.compare_pairs(run, "old", "new")
    row = paired["rows"][0]
    assert row["bucket"] == "regression" and row["latency"]["design"] == "interleaved pairs"
    assert len(row["latency"]["pairs"]) == 8 and all(p["p90_ratio"] == pytest.approx(1.1, rel=0.05)
                                                     for p in row["latency"]["pairs"])
    assert paired["old"] == "r1:old" and "8 → 8 pairs" in paired["regressions"][0]
    _, unpaired = verdict(a, b)
    assert unpaired["bucket"] != "regression"
    same = compare.compare_pairs(doc("r2", [rec(A, "old", sessions=a), rec(A, "new", sessions=a)]), "old", "new")
    assert same["rows"][0]["bucket"] == "unchanged"


def test_compare_docs_rows_devices_failures_and_fallback():
    rng = np.random.default_rng(4)
    a, b, c = profile("a"), profile("b"), profile("c")
    same = sessions(rng, between=0.01, within=0.05)
    pl = {"cpu_fallback_nodes": 0, "fallback_op_types": {}}
    old = doc("old", [rec(a, "m", sessions=same, placement=pl, peak_mb=100), rec(b, "m", sessions=same),
                      rec(b, "n", sessions=same, placement=pl), gap(c, "m")])
    new = doc("new", [rec(a, "m", sessions=same, placement=pl, peak_mb=130),
                      rec(b, "m", error={"stage": "load", "kind": "crash", "message": "SIGSEGV"}),
                      rec(b, "n", sessions=same, placement={"cpu_fallback_nodes": 2, "fallback_op_types": {"TopK": 2}}),
                      rec(profile("d"), "m", sessions=same)])
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
