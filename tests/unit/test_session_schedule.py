"""Sessions through the scheduler and the session book: ABBA order on a
device, later sessions pinned to the first session's device, restarts when a
device is lost, the stop rule between sessions, and what one joined result
keeps."""

from dataclasses import replace

import numpy as np
import pytest

from harness.config.schema import DeviceProfile
from harness.controller.execute import agent_job_id, job_message
from harness.controller.planner import AgentDevice, Artefact, PlannedJob
from harness.controller.scheduler import Scheduler, job_key_of
from harness.controller.sessions import SessionBook, join
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy

PROFILE = DeviceProfile.model_validate({"id": "p", "platform": "linux",
                                        "targets": [{"runtime": "onnxruntime", "ep": "cpu"}]})
ART = Artefact("m", "onnx", "d" * 64, "/m.onnx", 1)


def job(i, eligible=("d1",), sessions=3, fixed=False, target_ci=0.0):
    return PlannedJob(f"j{i}", i, PROFILE, f"c{i}", PROFILE.targets[0], ART,
                      MeasurePolicy(min_runs=30, min_s=0, max_s=60, target_ci=target_ci, sessions=sessions),
                      tuple(eligible), fixed_sessions=fixed)


def drain(s, device, more_until):
    """Run the device's queue to the end; `more_until[key]` sessions each."""
    order = []
    while True:
        t = s.take(device)
        if t is None:
            return order
        order.append((t.job.key, t.session))
        s.finish(device, more=t.session < more_until[t.job.key])


def test_sessions_go_round_by_round_in_abba_order():
    s = Scheduler([job(0), job(1)])
    assert drain(s, "d1", {"j0": 4, "j1": 4}) == [
        ("j0", 1), ("j1", 1), ("j1", 2), ("j0", 2), ("j0", 3), ("j1", 3), ("j1", 4), ("j0", 4)]
    assert s.done()


def test_later_sessions_stay_on_the_first_sessions_device():
    s = Scheduler([job(0, ("d1", "d2"))])
    t = s.take("d2")
    assert t.session == 1 and t.key == "j0"
    s.finish("d2", more=True)
    assert s.take("d1") is None  # session 2 is pinned to d2
    t2 = s.take("d2")
    assert (t2.session, t2.key, t2.eligible) == (2, "j0#s2", ("d2",)) and s.attempts["j0#s2"] == 1
    assert job_key_of(t2.key) == "j0" and job_key_of("a#b/c") == "a#b/c"


def test_a_lost_later_session_restarts_its_job_anywhere():
    s = Scheduler([job(0, ("d1", "d2"))], max_attempts=3)
    s.take("d1")
    s.finish("d1", more=True)
    s.take("d1")  # session 2 on d1
    assert s.transport_failed("d1") is True
    t = s.take("d2")
    assert (t.session, t.eligible) == (1, ("d1", "d2")) and s.attempts["j0"] == 2


def test_an_abandoned_device_turns_its_pinned_sessions_into_restarts():
    s = Scheduler([job(0, ("d1", "d2")), job(1, ("d1", "d2"))])
    s.take("d1")
    s.finish("d1", more=True)  # j0 session 2 pinned to d1
    s.take("d2")  # j1 session 1 on d2
    s.abandon("d1")
    assert s.unrunnable() == []
    s.finish("d2")
    t = s.take("d2")
    assert (t.job.key, t.session) == ("j0", 1)


def result(samples, **kw):
    return {"samples_ms": list(samples), "load_ms": 5.0, "first_run_ms": 1.0, "runtime": {"name": "onnxruntime"},
            "validity": {"warmup_done": True, "min_runs_met": True, "min_time_met": True, "stop_reason": "min_reached",
                         "warnings": kw.pop("warnings", [])},
            "memory": {"peak_bytes": kw.pop("peak", 100), "delta_bytes": 1, "method": "VmHWM"},
            "details": {"conditions": {"before": {"loadavg_1m": kw.pop("load", 0.1)}, "after": {"thermal_c": 40}}},
            "started_unix": kw.pop("start", 1.0), "finished_unix": kw.pop("end", 2.0), "outputs": ["first"],
            "error": kw.pop("error", None), **kw}


def test_the_book_runs_the_planned_sessions_then_the_stop_rule():
    rng = np.random.default_rng(0)
    book = SessionBook()
    j = job(0, sessions=2, target_ci=0.02)
    assert book.add(j, result(rng.lognormal(0, 0.01, 500)), 1) is None  # planned: 2
    # Two tight sessions: the hierarchical interval is within ±2 %.
    assert book.add(j, result(rng.lognormal(0, 0.01, 500)), 1) == "ci_reached"
    wide = job(1, sessions=2, target_ci=0.02)
    book.add(wide, result(rng.lognormal(0, 0.01, 500)), 1)
    assert book.add(wide, result(rng.lognormal(1, 0.01, 500)), 2) is None  # far apart: measure another
    fixed = job(2, sessions=2, target_ci=0.02, fixed=True)
    book.add(fixed, result(rng.lognormal(0, 0.01, 500)), 1)
    assert book.add(fixed, result(rng.lognormal(1, 0.01, 500)), 1) == "sessions_done"  # --repeat: exactly N
    assert book.add(job(3, sessions=3), result([1.0], error={"stage": "load", "kind": "crash", "message": "x"}),
                    1) == "error"


def test_joined_result_keeps_every_session():
    a = result([1.0, 2.0], peak=100, start=10, end=11, load=0.5)
    b = result([3.0], peak=300, start=20, end=21, warnings=["timer too coarse"])
    b["outputs"] = ["second"]
    out = join([a, b], "sessions_done")
    assert out["samples_ms"] == [1.0, 2.0, 3.0]
    assert [s["n"] for s in out["sessions"]] == [2, 1] and out["sessions"][1]["peak_bytes"] == 300
    assert out["memory"]["peak_bytes"] == 300 and out["outputs"] == ["first"]  # parity: the first session's probes
    assert (out["started_unix"], out["finished_unix"]) == (10, 21)
    assert out["validity"]["stop_reason"] == "sessions_done" and out["validity"]["warnings"] == [
        "session 2: timer too coarse"]
    assert out["details"]["conditions"] == {"before": {"loadavg_1m": 0.5}, "after": {"thermal_c": 40}}
    book = SessionBook()
    j = job(0, sessions=3)
    book.add(j, a, 1)
    book.add(j, result([1.0], error={"stage": "measure", "kind": "crash", "message": "SIGSEGV"}), 2)
    err, attempts = book.result("j0", "error")
    assert err["error"]["kind"] == "crash" and err["details"]["sessions_before_error"] == 1 and attempts == 2


def test_a_later_sessions_job_message_says_so_and_carries_only_the_timing_input():
    dev = AgentDevice("a", "host:1", "host", "linux", {}, ())
    j = job(7, sessions=5)
    probes = [wire.tensors_to_pb({"x": np.zeros(2, np.float32)}), wire.tensors_to_pb({"x": np.ones(2, np.float32)})]
    from harness.controller.scheduler import Ticket

    first = job_message("r1", Ticket(j, 1, ("a/host:1",)), dev, 1, probes)
    later = job_message("r1", Ticket(j, 3, ("a/host:1",)), dev, 2, probes)
    assert first.job_id == "r1.0007.a1" and later.job_id == "r1.0007.s3.a2" == agent_job_id("r1", j, 2, 3)
    assert len(first.probes) == 2 and len(later.probes) == 1
    assert first.labels["session"] == "1" and later.labels["session"] == "3"
    assert later.measure.min_runs == 6 and later.measure.max_s == pytest.approx(12)  # the policy split by 5
    assert later.timeout_s < replace(j.measure, sessions=1).bound_s() + 200
