from harness.config.schema import DeviceProfile, Target
from harness.controller.planner import AgentDevice, AgentRuntime, Artefact, device_matches, make_plan
from harness.controller.scheduler import Scheduler
from harness.kernel.measure.policy import MeasurePolicy


def dev(agent, id, platform="android", facts=None, eps=("cpu", "nnapi"), version="1.20.1", state="ready"):
    return AgentDevice(agent, id, id.split(":")[0], platform, facts or {},
                       (AgentRuntime("onnxruntime", version, tuple(eps), ("onnx",)),), state)


def prof(id, platform="android", match=None, targets=None):
    return DeviceProfile.model_validate({"id": id, "platform": platform, "match": match or {},
                                         "targets": targets or [{"runtime": "onnxruntime", "ep": "nnapi"}]})


ART = {"m": {"onnx": Artefact("m", "onnx", "d" * 64, "/m.onnx", 1)}}


def test_match_globs_case_insensitive_and_special_keys():
    p = prof("p7", match={"model": "pixel 7*", "agent": "rack-*"})
    assert device_matches(p, dev("rack-1", "android:1", facts={"model": "Pixel 7 Pro"}))
    assert not device_matches(p, dev("mac", "android:1", facts={"model": "Pixel 7"}))
    assert not device_matches(p, dev("rack-1", "android:1", platform="ios", facts={"model": "Pixel 7"}))
    assert not device_matches(prof("x", match={"soc": "*"}), dev("a", "android:1", facts={}))


def test_plan_jobs_and_every_kind_of_gap():
    profiles = [
        prof("p7", match={"model": "Pixel 7"}),
        prof("ghost", match={"model": "Nokia"}),
        prof("old", match={"model": "Old"}, targets=[{"runtime": "onnxruntime", "version": "1.22", "ep": "nnapi"}]),
        prof("off", match={"model": "Off"}),
        prof("ios", platform="ios", targets=[{"runtime": "coreml", "ep": "all"}]),
    ]
    devices = [
        dev("a", "android:1", facts={"model": "Pixel 7"}), dev("b", "android:2", facts={"model": "Pixel 7"}),
        dev("a", "android:3", facts={"model": "Old"}), dev("a", "android:4", facts={"model": "Off"}, state="offline"),
        AgentDevice("mac", "ios:1", "ios", "ios", {}, (AgentRuntime("coreml", "8", ("all",), ("mlpackage.zip",)),)),
    ]
    plan = make_plan(profiles, ["m"], ART, devices, MeasurePolicy())
    assert [j.key for j in plan.jobs] == ["p7/m/onnxruntime@any/nnapi"]
    assert set(plan.jobs[0].eligible) == {"a/android:1", "b/android:2"}
    kinds = {g.profile.id: g.kind for g in plan.gaps}
    assert kinds == {"ghost": "not_covered", "old": "unsupported_target", "off": "device_unavailable",
                     "ios": "needs_artefact"}
    assert "Core ML" in next(g.message for g in plan.gaps if g.kind == "needs_artefact")


def _jobs(n, eligible):
    from harness.controller.planner import PlannedJob
    p = prof("p")
    return [PlannedJob(f"j{i}", i, p, "m", p.targets[0], ART["m"]["onnx"], MeasurePolicy(), tuple(eligible[i]))
            for i in range(n)]


def test_scheduler_one_job_per_device_and_constrained_first():
    jobs = _jobs(3, [("d1", "d2"), ("d1", "d2"), ("d2",)])
    s = Scheduler(jobs)
    first = s.take("d2")
    assert first.key == "j2"  # the job only d2 can run goes first
    assert s.take("d2") is None  # d2 is busy
    assert s.take("d1").key == "j0"
    s.finish("d2")
    assert s.take("d2").key == "j1"
    s.finish("d1"), s.finish("d2")
    assert s.done()


def test_scheduler_requeues_on_lost_agent_then_gives_up():
    jobs = _jobs(1, [("d1", "d2")])
    s = Scheduler(jobs, max_attempts=2)
    assert s.take("d1").key == "j0"
    assert s.transport_failed("d1") is True
    assert s.take("d1") is None  # a suspended device gets nothing
    assert s.take("d2").key == "j0" and s.attempts["j0"] == 2
    assert s.transport_failed("d2") is False  # attempts used up
    assert s.done()


def test_scheduler_waits_for_a_suspended_device_then_revives_it():
    jobs = _jobs(1, [("d1",)])
    s = Scheduler(jobs, max_attempts=3)
    s.take("d1")
    assert s.transport_failed("d1") is True  # requeued: d1 may come back
    assert s.may_get_work("d1") and s.take("d1") is None
    s.revive("d1")
    assert s.take("d1").key == "j0" and s.attempts["j0"] == 2


def test_scheduler_abandoned_device_leaves_jobs_unrunnable():
    jobs = _jobs(2, [("d1",), ("d1",)])
    s = Scheduler(jobs, max_attempts=3, prior_attempts={"j1": 1})
    s.take("d1")
    s.transport_failed("d1")
    s.abandon("d1")
    assert sorted(j.key for j in s.unrunnable()) == ["j0", "j1"]
    assert s.done() and not s.may_get_work("d1")
    assert s.attempts == {"j0": 1, "j1": 1}  # prior attempts carried over for resume


def test_a_ticket_ahead_waits_behind_the_running_one_and_takes_its_place():
    jobs = _jobs(3, [("d1",), ("d1",), ("d1",)])
    s = Scheduler(jobs)
    assert s.take_ahead("d1") is None  # nothing runs on d1: nothing to queue behind
    running = s.take("d1")
    ahead = s.take_ahead("d1")
    assert (running.key, ahead.key) == ("j0", "j1") and s.attempts["j1"] == 1
    assert s.take_ahead("d1") is None  # one ahead at most
    s.finish("d1", ticket=running)
    assert s.running["d1"] == ahead and "d1" not in s.ahead  # the one ahead now runs
    assert s.take_ahead("d1").key == "j2"
    s.finish("d1", ticket=ahead), s.finish("d1")
    assert s.done()


def test_no_ticket_goes_ahead_where_another_device_would_go_without():
    # Two devices share three tickets: taking one ahead on d1 is fine while
    # another is left for d2; the last one waits for whichever frees first.
    jobs = _jobs(4, [("d1", "d2")] * 4)
    s = Scheduler(jobs)
    s.take("d1"), s.take("d2")
    assert s.take_ahead("d1").key == "j2"  # j3 is still there for d2
    assert s.take_ahead("d2") is None and [t.key for t in s.pending] == ["j3"]
    s.finish("d2")
    assert s.take("d2").key == "j3"


def test_tickets_keep_their_order_when_the_next_may_not_go_ahead():
    jobs = _jobs(2, [("d1",), ("d1",)])
    s = Scheduler(jobs)
    s.take("d1")
    assert s.take_ahead("d1", allowed=lambda t: t.key != "j1") is None
    assert [t.key for t in s.pending] == ["j1"]


def test_a_refused_ticket_ahead_goes_back_without_spending_an_attempt():
    jobs = _jobs(2, [("d1",), ("d1",)])
    s = Scheduler(jobs, max_attempts=1)
    running = s.take("d1")
    ahead = s.take_ahead("d1")
    s.untake("d1", ahead)
    assert s.attempts["j1"] == 0 and s.running["d1"] == running and not s.ahead
    s.finish("d1")
    assert s.take("d1").key == "j1" and s.attempts["j1"] == 1


def test_a_lost_agent_requeues_the_ticket_ahead_too():
    jobs = _jobs(3, [("d1",)] * 3)
    s = Scheduler(jobs, max_attempts=3)
    running = s.take("d1")
    ahead = s.take_ahead("d1")
    assert s.transport_failed("d1", running) is True
    assert s.running["d1"] == ahead and s.take_ahead("d1") is None  # suspended: nothing more goes out
    assert s.transport_failed("d1", ahead) is True
    assert [t.key for t in s.pending] == ["j0", "j1", "j2"] and not s.running
    s.revive("d1")
    assert s.take("d1").key == "j0" and s.attempts == {"j0": 2, "j1": 1}
