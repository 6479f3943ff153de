"""`harness plan`: per-device and total wall time of a cohort on a lab, from
simulated latencies, a previous run's durations, or the policy's bounds."""

import json

import pytest

import modelkit
import simkit
from harness.config.schema import DeviceProfile
from harness.controller.estimate import (
    Estimator, Previous, measured_estimate, pack, plan_capacity, policy_bounds,
)
from harness.controller.planner import AgentDevice, AgentRuntime, Artefact, make_plan
from harness.kernel.latency import LatencyModel
from harness.kernel.measure.policy import MeasurePolicy

POLICY = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=1, min_s=0.2, max_s=0.2, target_ci=0)
ORT = (AgentRuntime("onnxruntime", "1.20.0", ("cpu",), ("onnx",)),)


def devices(n, facts=None, agent="a"):
    return [AgentDevice(agent, f"sim:d{i}", "sim", "android", dict(facts or {}), ORT) for i in range(n)]


def plan_for(devs, candidates, profiles=None, policy=POLICY):
    profiles = profiles or [DeviceProfile(id="phone", platform="android", match={"driver": "sim"},
                                          targets=[{"runtime": "onnxruntime", "ep": "cpu"}])]
    arts = {c: {"onnx": Artefact(c, "onnx", f"{i:064x}", f"/m/{c}.onnx", 100)} for i, c in enumerate(candidates)}
    return make_plan(profiles, candidates, arts, devs, policy)


def test_pack_plays_the_scheduler_one_job_per_device():
    devs = devices(2)
    plan = plan_for(devs, [f"c{i}" for i in range(5)])
    out = pack(plan.jobs, lambda job, dev: 1.0)
    assert out.makespan_s == 3.0
    assert sorted(d.jobs for d in out.devices.values()) == [2, 3]
    for dev in out.devices:  # no overlap on a device
        spans = sorted((s, e) for _, d, s, e in out.order if d == dev)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_pack_gives_a_job_only_one_device_can_run_its_device_first():
    devs = devices(2)
    profiles = [DeviceProfile(id="any", platform="android", match={"driver": "sim"},
                              targets=[{"runtime": "onnxruntime", "ep": "cpu"}]),
                DeviceProfile(id="only0", platform="android", match={"id": "sim:d0"},
                              targets=[{"runtime": "onnxruntime", "ep": "cpu"}])]
    plan = plan_for(devs, ["a", "b"], profiles)
    out = pack(plan.jobs, lambda job, dev: 2.0 if job.profile.id == "only0" else 1.0)
    first_on_d0 = min((s, k) for k, d, s, _ in out.order if d == "a/sim:d0")
    assert first_on_d0[1].startswith("only0/")
    assert out.makespan_s == 4.0  # d0: two 2 s jobs; d1: both 1 s jobs


def test_estimator_prefers_a_previous_measurement_then_simulated_latency_then_bounds():
    sim_facts = {"sim_latency": LatencyModel("fixed", 10.0, load_ms=50, first_run_ms=10).to_fact()}
    devs = devices(1, sim_facts) + [AgentDevice("a", "host:box", "host", "android", {}, ORT)]
    plan = plan_for(devs, ["m", "n"])
    m_job = next(j for j in plan.jobs if j.candidate == "m")
    prev = {m_job.key: Previous({"timing": {"samples_ms": [5.0] * 10, "load_ms": 1, "first_run_ms": 1},
                                 "ran": {"started_unix": 100.0, "finished_unix": 103.5}}, POLICY, "r1")}
    est = Estimator(prev)
    assert est(m_job, devs[1]).low_s == 3.5 and est(m_job, devs[1]).source == "measured in run r1"
    n_job = next(j for j in plan.jobs if j.candidate == "n")
    sim = est(n_job, devs[0])
    assert sim.source == "simulated latency" and sim.low_s == sim.high_s == pytest.approx(0.05 + 0.01 + 0.2)
    bounds = est(n_job, devs[1])
    assert (bounds.low_s, bounds.high_s, bounds.source) == (0.2, 0.2, "policy bounds")
    wide = policy_bounds(MeasurePolicy(warmup_s=1, min_s=5, max_s=120))
    assert (wide.low_s, wide.high_s) == (6, 121)


def test_a_changed_policy_resamples_the_previous_runs_own_samples():
    record = {"timing": {"samples_ms": [2.0] * 100, "load_ms": 0, "first_run_ms": 2.0},
              "details": {"runner_wall_s": 1.0}}
    old = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=100, min_s=0, max_s=100, target_ci=0)
    new = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=400, min_s=0, max_s=100, target_ci=0)
    same = measured_estimate(record, old, old)
    assert (same.low_s, same.source) == (1.0, "measured")
    est = measured_estimate(record, new, old)
    # 300 more 2 ms runs than the run that took 1.0 s.
    assert est.source == "resampled" and est.low_s == pytest.approx(1.0 + 0.6)


def test_plan_capacity_totals_and_ranges():
    devs = devices(2, {"sim_latency": LatencyModel("fixed", 5.0, first_run_ms=0).to_fact()})
    plan = plan_for(devs, ["a", "b", "c"])
    cap = plan_capacity(plan.jobs, {d.key: d for d in devs}, Estimator())
    assert cap["jobs"] == 3
    assert sorted(r["jobs"] for r in cap["devices"]) == [1, 2]
    assert cap["total"]["low_s"] == cap["total"]["high_s"] == pytest.approx(0.4)
    assert cap["serial"]["high_s"] == pytest.approx(0.6)


# --- through a real agent and the real console script ---------------------------

@pytest.fixture
def sim_lab(tmp_path):
    sim = {"devices": [
        simkit.device("p0", latency={"dist": "fixed", "p50_ms": 10.0}, load_ms=100, first_run_ms=10),
        simkit.device("p1", latency={"dist": "fixed", "p50_ms": 10.0}, load_ms=100, first_run_ms=10),
        simkit.device("web", platform="browser", latency={"dist": "fixed", "p50_ms": 20.0}, load_ms=0,
                      first_run_ms=20),
    ]}
    agent = simkit.start_agent(tmp_path, sim)
    (tmp_path / "lab.yaml").write_text(f"agents:\n  - {{name: rack, address: '{agent.address}'}}\n")
    (tmp_path / "cohort.yaml").write_text(
        "name: simlab\ndevices:\n"
        "  - {id: phone, platform: android, match: {driver: sim}, targets: [{runtime: onnxruntime, ep: cpu}]}\n"
        "  - {id: web, platform: browser, match: {driver: sim}, targets: [{runtime: onnxruntime-web, ep: wasm}]}\n"
        "  - {id: iphone, platform: ios, match: {driver: sim}, targets: [{runtime: coreml, ep: all}]}\n"
        "measure: {warmup_runs: 0, warmup_s: 0, min_runs: 1, min_s: 0.3, max_s: 0.3, target_ci: 0, sessions: 1}\n")
    modelkit.mlp(tmp_path / "m.onnx", batch=1)
    cands = tmp_path / "cands.yaml"
    cands.write_text("candidates:\n" + "".join(f"  c{i}: {{onnx: m.onnx}}\n" for i in range(3)))
    yield tmp_path
    agent.stop(grace=1.0)


def test_harness_plan_prints_per_device_and_total_time(sim_lab, cli):
    out = cli("plan", "--cohort", sim_lab / "cohort.yaml", "--candidates", sim_lab / "cands.yaml",
              "--lab", sim_lab / "lab.yaml", "--json", cwd=sim_lab)
    assert out.returncode == 0, out.stderr
    cap = json.loads(out.stdout)
    rows = {r["id"]: r for r in cap["devices"]}
    phone_job = 0.1 + 0.01 + 0.3  # load + first run + min_s of 10 ms runs
    web_job = 0.02 + 0.3
    assert sorted(rows) == ["sim:p0", "sim:p1", "sim:web"]
    assert sorted((rows["sim:p0"]["jobs"], rows["sim:p1"]["jobs"])) == [1, 2]
    assert rows["sim:web"]["jobs"] == 3 and rows["sim:web"]["high_s"] == pytest.approx(3 * web_job)
    assert cap["total"]["high_s"] == pytest.approx(max(3 * web_job, 2 * phone_job))
    assert [g["key"].split("/")[0] for g in cap["gaps"]] == ["iphone"] * 3
    assert cap["uploads"]["rack"]["models"] == 1
    text = cli("plan", "--cohort", sim_lab / "cohort.yaml", "--candidates", sim_lab / "cands.yaml",
               "--lab", sim_lab / "lab.yaml", cwd=sim_lab)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "cohort simlab: 6 job(s) on 3 device(s) of 1 agent(s), 3 gap(s)"
    assert any(l.startswith("sim:web") and " 3 " in l and "simulated latency" in l for l in lines)
    assert any(l.startswith("total wall time: 1.0 s") for l in lines), text.stdout
    assert any("no device on any agent matches profile iphone" in l for l in lines)


def test_the_plan_matches_what_the_run_then_takes_and_feeds_the_next_plan(sim_lab, cli):
    store = sim_lab / "results.sqlite"
    plan = json.loads(cli("plan", "--cohort", sim_lab / "cohort.yaml", "--candidates", sim_lab / "cands.yaml",
                          "--lab", sim_lab / "lab.yaml", "--json", cwd=sim_lab).stdout)
    ran = cli("run", "--cohort", sim_lab / "cohort.yaml", "--candidates", sim_lab / "cands.yaml",
              "--lab", sim_lab / "lab.yaml", "--store", store, "-q", cwd=sim_lab)
    assert ran.returncode in (0, 1), ran.stderr  # 1: budgets may fail; the results are what matter here
    from harness.store import open_store

    s = open_store(str(store))
    try:
        run_id = s.list_runs(1)[0]["id"]
        recs = [r for r in s.results(run_id) if not r.get("error")]
    finally:
        s.close()
    assert len(recs) == 6
    # Simulated time by construction: the plan's per-job estimate is each job's own simulated duration.
    estimated = {(e["job"], e["device"]): e["high_s"] for e in plan["estimates"]}
    for r in recs:
        assert r["details"]["simulated_s"] == pytest.approx(estimated[(r["job"], f"rack/{r['device']['id']}")])
    again = cli("plan", "--cohort", sim_lab / "cohort.yaml", "--candidates", sim_lab / "cands.yaml",
                "--lab", sim_lab / "lab.yaml", "--from-run", "latest", "--store", store, "--json", cwd=sim_lab)
    assert again.returncode == 0, again.stderr
    cap = json.loads(again.stdout)
    assert {e["source"] for e in cap["estimates"]} == {f"measured in run {run_id}"}
    # The agent's own start and finish of each job, where the record carries them; else the runner's wall time.
    by_job = {r["job"]: (r["ran"]["finished_unix"] - r["ran"]["started_unix"]) if r.get("ran")
              else r["details"]["runner_wall_s"] for r in recs}
    for e in cap["estimates"]:
        assert e["high_s"] == pytest.approx(by_job[e["job"]])
