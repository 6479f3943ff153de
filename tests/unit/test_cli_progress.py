"""Progress people can follow: jobs done / total, each running job's samples
and time, an ETA from the plan; a live panel on a terminal, plain lines in
CI and pipes."""

import io

from harness.cli_progress import LiveView, PlainView, Tracker, progress_view


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


PLAN = {"event": "plan", "run_id": "r1", "jobs": 3, "gaps": 1, "agents": {"local": "127.0.0.1:1"},
        "drivers": {"local": [("host", True, ""), ("browser", False, "no Chromium found; install one")]},
        "matched": {"host-cpu": ["local/host:vm"], "chromium-wasm": []},
        "causes": {"chromium-wasm": "driver browser unavailable"},
        "estimates": {"a": {"s": 10.0, "devices": ["d1"]}, "b": {"s": 10.0, "devices": ["d1"]},
                      "c": {"s": 4.0, "devices": ["d2"]}}}


def ok(key):
    return {"event": "result", "key": key, "record": {"timing": {"p50_ms": 1.0, "p90_ms": 2.0, "n": 100},
                                                       "memory": {"peak_bytes": 1 << 20}, "error": None,
                                                       "validity": {"stable": True}}}


def test_eta_is_the_longest_device_lane_scaled_by_how_long_jobs_really_took():
    clock = Clock()
    t = Tracker(clock)
    t.feed(PLAN)
    assert t.eta_s() == 20.0  # a then b on d1; c on d2 alongside
    t.feed({"event": "started", "key": "a", "device": "d1"})
    t.feed({"event": "started", "key": "c", "device": "d2"})
    clock.t += 6
    assert t.eta_s() == 14.0  # 4 s left of a, then b
    t.feed({"event": "progress", "key": "a", "device": "d1", "phase": "measure", "samples": 1234, "elapsed_s": 5})
    clock.t += 14  # a took 20 s: twice its estimate
    t.feed(ok("a"))
    assert t.scale() == 2.0 and t.eta_s() == 20.0  # b, at twice its estimate
    assert t.headline().startswith("jobs 1/4 done · 1 running · elapsed 20 s · ETA ~20 s")
    assert t.running_lines() == ["  → c on d2 · started 0 samples · 20 s"]


def test_plain_lines_for_ci_carry_the_gap_reason_once_per_profile_and_the_eta():
    out = io.StringIO()
    clock = Clock()
    v = PlainView(out, clock=clock)
    v(PLAN)
    gap = {"event": "gap", "key": "chromium-wasm/m/w", "profile": "chromium-wasm", "kind": "not_covered",
           "cause": "driver browser unavailable", "message": "no device matches: driver browser on agent local is "
                                                              "unavailable: no Chromium found; install one"}
    v(gap)
    v({**gap, "key": "chromium-wasm/n/w"})
    v({"event": "started", "key": "a", "device": "d1"})
    clock.t += 10
    v(ok("a"))
    lines = out.getvalue().splitlines()
    assert "  driver browser on local unavailable: no Chromium found; install one" in lines
    assert "  chromium-wasm: no matching device (driver browser unavailable)" in lines
    assert "[1/4] chromium-wasm/m/w: not run — no device matches: driver browser on agent local is unavailable: " \
           "no Chromium found; install one" in lines
    assert "[2/4] chromium-wasm/n/w: not run — driver browser unavailable (as above)" in lines
    assert lines[-1] == "[3/4] a: p50 1.00 ms, p90 2.00 ms, n=100, peak 1.0 MB · ETA ~10 s"
    quiet = io.StringIO()
    q = PlainView(quiet, quiet=True)
    q(PLAN)
    assert quiet.getvalue() == ""


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_the_live_panel_and_a_pipe_or_ci_the_plain_lines(monkeypatch):
    monkeypatch.delenv("HARNESS_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert isinstance(progress_view(stream=Tty()), LiveView)
    assert isinstance(progress_view(stream=io.StringIO()), PlainView)
    assert isinstance(progress_view(quiet=True, stream=Tty()), PlainView)
    monkeypatch.setenv("HARNESS_PROGRESS", "plain")
    assert isinstance(progress_view(stream=Tty()), PlainView)


def test_the_live_panel_shows_done_total_running_samples_and_eta():
    out = Tty()
    clock = Clock()
    with LiveView(out, clock=clock) as v:
        v(PLAN)
        v({"event": "started", "key": "a", "device": "d1"})
        v({"event": "progress", "key": "a", "device": "d1", "phase": "measure", "samples": 4321, "elapsed_s": 2})
        clock.t += 3
        panel = v._render().plain
    assert panel.splitlines()[0] == "jobs 0/4 done · 1 running · elapsed 3.0 s · ETA ~17 s (from the plan)"
    assert panel.splitlines()[1] == "  → a on d1 · measure 4,321 samples · 3.0 s"
    assert "run r1: 3 job(s), 1 gap(s)" in out.getvalue()  # milestones scroll above the panel


def test_a_job_between_its_sessions_waits_while_another_runs_on_its_device():
    clock = Clock()
    t = Tracker(clock)
    t.feed(PLAN)
    assert t.headline().startswith("jobs 0/4 done")
    t.feed({"event": "started", "key": "a", "device": "d1"})
    clock.t += 2
    t.feed({"event": "started", "key": "b", "device": "d1"})  # a's first session is over
    assert [ln.split(" · ")[1] for ln in t.running_lines()] == ["waiting", "started 0 samples"]
    assert " · 1 running · " in t.headline()
    t.feed({"event": "started", "key": "a", "device": "d1"})  # a's next session: its clock keeps running
    assert t.running_lines()[0].endswith("2.0 s") and t.running_lines()[0].split(" · ")[1] == "started 0 samples"


def test_before_the_plan_the_panel_says_what_it_waits_for():
    assert Tracker(Clock()).headline() == "preparing: loading the models, reaching the agents"
