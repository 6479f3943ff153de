"""The Core ML measurement loop over a session: load, first prediction,
warm-up and samples under the job's StopRule, probe outputs by name."""

from __future__ import annotations

import numpy as np
import pytest

import ioskit


def _session(tiny, tmp_path, **rec):
    from agents.ios.recorded import RecordedSession, feed_key

    probes = ioskit.probes(3)
    outs = ioskit.torch_outputs(tiny["model"], probes)
    arrays = {f"{feed_key(p)}/{k}": v for p, o in zip(probes, outs) for k, v in o.items()}
    np.savez(tmp_path / "outputs.npz", **arrays)
    data = {"load": {"load_ms": 12.5}, "predict_ms": [3.0, 2.0, 1.0, 1.5, 1.25], "outputs": "outputs.npz", **rec}
    return RecordedSession(data, tiny["mlpackage"], True, tmp_path), probes, outs


def test_stop_rule_decides_how_many_samples_and_which(tiny, tmp_path):
    from agents.ios.measure import measure
    from harness.kernel.measure.policy import MeasurePolicy

    session, probes, outs = _session(tiny, tmp_path)
    events = []
    res = measure(session, probes, MeasurePolicy(warmup_runs=3, warmup_s=0, min_runs=4, min_s=0, max_s=30,
                                                  target_ci=0), events.append)
    assert res["load_ms"] == 12.5
    assert res["first_run_ms"] == 3.0  # the first prediction's own duration
    # Three warm-up runs (the first one included), then four samples.
    assert res["details"]["warmup_runs"] == 3 and res["validity"]["warmup_done"]
    assert res["samples_ms"] == [1.5, 1.25, 3.0, 2.0]
    assert res["validity"]["stop_reason"] == "min_reached" and res["validity"]["min_runs_met"]
    assert "Core ML's prediction duration" in res["details"]["sample_clock"]
    # One output set per probe, by the model's output names, equal to what was predicted.
    assert len(res["outputs"]) == 3
    for got, want in zip(res["outputs"], outs):
        assert set(got) == {"y"} and np.array_equal(got["y"], want["y"])
    assert events[0]["phase"] == "load" and events[-1]["phase"] == "probes"

    session, probes, _ = _session(tiny, tmp_path)
    capped = measure(session, probes, MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=1, min_s=0, max_s=30,
                                                     target_ci=0.01, max_runs=7))
    assert capped["validity"]["stop_reason"] == "max_runs" and len(capped["samples_ms"]) == 7


def test_wall_clock_when_the_session_reports_no_durations(tiny, tmp_path):
    from agents.ios.measure import measure
    from harness.kernel.measure.policy import MeasurePolicy

    session, probes, _ = _session(tiny, tmp_path, predict_ms=[])
    ticks = iter(range(0, 10_000))
    res = measure(session, probes, MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=3, min_s=0, max_s=1e6,
                                                  target_ci=0), clock=lambda: next(ticks) * 1e-3)
    assert res["details"]["sample_clock"] == "wall clock around MLModel.predict"
    assert res["samples_ms"] == [pytest.approx(1.0)] * 3  # one clock tick of 1 ms around each predict


def test_device_errors_are_job_failures_with_their_stage(tiny, tmp_path):
    from agents.ios.measure import JobFailed, measure
    from harness.kernel.measure.policy import MeasurePolicy

    policy = MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=2, min_s=0, max_s=5, target_ci=0)
    session, _, _ = _session(tiny, tmp_path)
    other = [{"x": np.full(ioskit.INPUT_SHAPE, 7, np.float32)}]  # never predicted on the recorded device
    with pytest.raises(JobFailed) as e:
        measure(session, other, policy)
    assert (e.value.stage, e.value.kind) == ("warmup", "runtime_error")
    assert "no recorded prediction" in e.value.message
    session, probes, _ = _session(tiny, tmp_path, load_error="Failed to compile the model: unsupported op")
    with pytest.raises(JobFailed) as e:
        measure(session, probes, policy)
    assert (e.value.stage, e.value.kind) == ("load", "model_invalid")
    session, probes, _ = _session(tiny, tmp_path)
    with pytest.raises(JobFailed) as e:
        measure(session, [{"image": np.zeros(ioskit.INPUT_SHAPE, np.float32), "extra": np.zeros(1)}], policy)
    assert e.value.kind == "bad_input" and "lack model input(s) ['x']" in e.value.message


def test_probe_tensors_are_matched_by_name_and_cast_to_declared_dtype():
    from agents.ios.measure import JobFailed, build_feed
    from harness.kernel.modelfile import TensorSpec

    notes: list[str] = []
    feed = build_feed([TensorSpec("x", "float16", (1, 4)), TensorSpec("ids", "int32", (1, 2))],
                      {"ids": np.array([[1, 2]], np.int64), "x": np.ones((1, 4), np.float32)}, notes)
    assert feed["x"].dtype == np.float16 and feed["ids"].dtype == np.int32
    assert notes == ["input 'x' cast from float32 to float16, as the model declares",
                     "input 'ids' cast from int64 to int32, as the model declares"]
    one = build_feed([TensorSpec("input_1", "float32", (1, 4))], {"x": np.ones((1, 4), np.float32)}, notes)
    assert list(one) == ["input_1"] and "fed to the model's only input 'input_1'" in notes[-1]
    with pytest.raises(JobFailed, match=r"probe shape \(1, 5\), the model declares \(1, 4\)"):
        build_feed([TensorSpec("x", "float32", (1, 4))], {"x": np.ones((1, 5), np.float32)}, [])
