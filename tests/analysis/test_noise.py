"""The noise floor (harness.analysis.noise): between-session, run-to-run and
between-pair parts learnt from records with known spreads, the floor of each
design, and the store query it reads through (real SQLite)."""

import math

import numpy as np
import pytest

from analysis_kit import profile, rec
from harness.analysis import noise
from harness.analysis.noise import NoiseBook, size_class

A = profile("a")


def ses(rng, k, level=0.0, between=0.1, n=300):
    return [np.exp(level + rng.normal(0, between) + rng.normal(0, 0.05, n)) * 0.5 for _ in range(k)]


def test_size_classes_are_decades_of_the_median():
    assert [size_class(x) for x in (0.03, 0.1, 0.5, 5, 50, 500)] == [
        "< 0.1 ms", "0.1–1 ms", "0.1–1 ms", "1–10 ms", "10–100 ms", "≥ 100 ms"]
    assert size_class(None) is None and size_class(0) is None


def test_between_session_sigma_is_the_pooled_spread_of_session_figures():
    rng = np.random.default_rng(1)
    book = NoiseBook().learn([{**rec(A, sessions=ses(rng, 6, between=0.12), sha256=f"m{i}"), "_run_id": f"r{i}"}
                              for i in range(20)])
    n = book.get("a", "onnxruntime@any/cpu", 0.5)
    part = n.parts["p90"]
    assert part.records == 20 and part.sessions == 120 and part.df == 100
    assert part.sigma == pytest.approx(0.12, rel=0.2)
    f = n.floor("p90", 5, 5)
    # No model measured twice: tau unknown, said so; floor from sigma alone.
    assert f["tau_run"] is None and "run-to-run part unknown" in f["note"]
    assert f["fraction"] == pytest.approx(math.exp(1.959964 * part.sigma * math.sqrt(0.4)) - 1)
    assert book.get("a", "onnxruntime@any/cpu", 5.0) is None  # another size class: nothing learnt


def test_run_to_run_tau_from_one_model_measured_in_many_runs_without_the_compared_ones():
    rng = np.random.default_rng(2)
    recs = [{**rec(A, sessions=ses(rng, 5, level=rng.normal(0, 0.15), between=0.03), sha256="m"), "_run_id": f"r{i}"}
            for i in range(30)]
    n = NoiseBook().learn(recs).get("a", "onnxruntime@any/cpu", 0.5)
    tau, models = n.parts["p50"].tau()
    assert models == 1 and tau == pytest.approx(0.15, rel=0.3)
    f = n.floor("p50", 5, 5, exclude=["r0", "r1"])
    assert f["tau_run"] == pytest.approx(tau, rel=0.1) and f["fraction"] > math.exp(1.96 * math.sqrt(2) * 0.1) - 1
    # Two runs only, both excluded: nothing left to learn tau from.
    two = NoiseBook().learn(recs[:2]).get("a", "onnxruntime@any/cpu", 0.5)
    assert two.parts["p50"].tau(frozenset({"r0", "r1"})) == (None, 0)


def test_pairs_floor_uses_the_spread_of_pair_ratios_not_of_sessions():
    rng = np.random.default_rng(3)
    book = NoiseBook()
    for i in range(5):
        shifts = rng.normal(0, 0.2, 8)
        a = [np.exp(s + rng.normal(0, 0.02, 300)) for s in shifts]
        b = [np.exp(s + rng.normal(0, 0.02, 300)) for s in shifts]
        run = [{**rec(A, "x", sessions=a), "_run_id": f"r{i}"}, {**rec(A, "y", sessions=b), "_run_id": f"r{i}"}]
        book.learn(run).learn_pairs(run, f"r{i}")
    n = book.get("a", "onnxruntime@any/cpu", 1.0)
    paired, apart = n.floor("p90", 8, 8, paired=True), n.floor("p90", 8, 8)
    assert paired["sigma_pair"] < n.parts["p90"].sigma / 5
    assert paired["fraction"] < apart["fraction"] / 5
    assert "σ between pairs" in noise.floor_line(paired)


def test_records_on_reads_every_candidate_of_a_device_target_newest_first(tmp_path):
    from harness.store import open_store

    rng = np.random.default_rng(4)
    store = open_store(str(tmp_path / "s.sqlite"))
    try:
        for i in range(3):
            store.create_run(f"r{i}", "c", "0", {})
            for cand in ("m", "n"):
                r = rec(A, cand, sessions=ses(rng, 3))
                store.put_result(f"r{i}", r["job"], r)
        store.put_result("r2", "a/e/x", rec(A, "e", error={"stage": "load", "kind": "crash", "message": "x"}))
        got = store.records_on("a", "onnxruntime@any/cpu")
        assert [r["_run_id"] for r in got] == ["r2", "r2", "r1", "r1", "r0", "r0"]
        assert {r["candidate"] for r in got} == {"m", "n"} and "samples_ms" not in got[0]["timing"]
        assert len(got[0]["timing"]["sessions"]) == 3
        assert store.records_on("a", "other") == [] and len(store.records_on("a", "onnxruntime@any/cpu", 2)) == 2
        book = noise.from_store(store, [("a", "onnxruntime@any/cpu")])
        assert book.get("a", "onnxruntime@any/cpu", 0.5).parts["p90"].records == 6
    finally:
        store.close()


def test_with_enough_runs_of_unchanged_models_the_two_run_floor_is_what_they_did():
    # 16 runs of one model whose level steps by exactly ±5 %, once by +40 %
    # (a load burst over a whole run): the floor is the 95th percentile of
    # the 15 steps, outlier included — no spread-based formula would put it there.
    rng = np.random.default_rng(5)
    levels = [0.05 * (i % 2) for i in range(16)]
    levels[9] = 0.4
    recs = []
    for i, lvl in enumerate(levels):
        r = rec(A, sessions=[np.exp(lvl + rng.normal(0, 1e-4, 200)) * 0.5 for _ in range(5)], sha256="m")
        recs.append({**r, "_run_id": f"2026-{i:02d}"})
    n = NoiseBook().learn(recs).get("a", "onnxruntime@any/cpu", 0.5)
    steps = n.parts["p50"].run_steps()
    assert len(steps) == 15 and max(steps) == pytest.approx(0.4 - 0.05 * (8 % 2), abs=1e-3)
    f = n.floor("p50", 5, 5)
    assert f["method"] == "unchanged models' run-to-run changes" and f["run_steps"] == 15
    assert f["fraction"] == pytest.approx(math.exp(np.quantile(steps, 0.95)) - 1)
    assert 0.05 < f["fraction"] < 0.5 and "run-to-run changes of unchanged models" in noise.floor_line(f)
    # The compared runs left out: 16 - 7 = 9 runs, 8 steps, too few: back to the sessions' spread.
    few = n.floor("p50", 5, 5, exclude=[f"2026-{i:02d}" for i in range(7)])
    assert few["method"] == "sessions' spread" and few["run_steps"] == 8
