"""The controller's dispatch (harness.controller.execute) against a real
agent with simulated devices, over real gRPC: a device's next job is on its
agent before the one it runs ends, the agent still runs one at a time, and a
job the agent refuses to queue is sent again instead of lost."""

import threading

import numpy as np
import pytest

import modelkit
import simkit
from harness.config.schema import DeviceProfile
from harness.controller.client import AgentClient
from harness.controller.connect import devices_from_describe
from harness.controller.execute import Hooks, execute
from harness.controller.planner import Artefact, make_plan
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy

# About a second a job, so the next one has long enough to arrive.
SECOND = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=1, min_s=1.0, max_s=1.0, target_ci=0)
PROBE = {"x": np.zeros((1, 16), np.float32)}  # 64 bytes as the agent counts them


@pytest.fixture()
def lab(tmp_path):
    sim = {"seed": 1, "devices": [simkit.device(f"d{i}", latency={"dist": "fixed", "p50_ms": 5.0}, load_ms=0)
                                  for i in range(2)]}
    agent = simkit.start_agent(tmp_path, sim)
    client = AgentClient("lab", agent.address)
    client.wait_ready()
    model = modelkit.mlp(tmp_path / "mlp.onnx", width=16, batch=1)
    digest = simkit.upload(client, model)
    yield agent, client, Artefact("c", "onnx", digest, str(model), model.stat().st_size)
    client.close()
    agent.stop(grace=1.0)


def dispatch(client, artefact, candidates, n_devices):
    """Every candidate on each of the first n_devices devices, through execute;
    (outcomes, the queue positions each job's stream reported, attempts)."""
    devices = sorted(devices_from_describe("lab", client.describe()), key=lambda d: d.id)[:n_devices]
    profiles = [DeviceProfile(id=f"p{d.id[-1]}", platform="android", match={"id": d.id},
                              targets=[{"runtime": "onnxruntime", "ep": "cpu"}]) for d in devices]
    plan = make_plan(profiles, candidates, {c: {"onnx": artefact} for c in candidates}, devices, SECOND)
    outcomes, positions, attempts = [], {}, []
    lock = threading.Lock()

    def on_event(job, dev, ev):
        if ev.HasField("queued"):
            with lock:
                positions.setdefault(job.key, []).append(ev.queued.position)

    hooks = Hooks(on_outcome=outcomes.append, on_event=on_event,
                  on_attempt=lambda ticket, dev, n, job_id, outcome, message: attempts.append(outcome))
    probes = {c: [wire.tensors_to_pb(PROBE)] for c in candidates}
    execute("run1", plan.jobs, {d.key: d for d in devices}, {"lab": client}, probes, hooks)
    return plan, outcomes, positions, attempts


def test_a_devices_next_job_waits_on_its_agent_while_the_last_one_runs(lab):
    agent, client, artefact = lab
    plan, outcomes, positions, attempts = dispatch(client, artefact, ["a", "b", "c"], 2)
    assert len(outcomes) == 6 and all(o.result and o.result["error"] is None for o in outcomes)
    # Jobs that reached the agent while their device ran another were queued
    # behind it (position 1); sent only once the device was free, every job
    # would have found it idle (position 0).
    for dev in ("p0", "p1"):
        behind = [k for k, ps in positions.items() if k.startswith(dev + "/") and max(ps) >= 1]
        assert behind, f"no job of {dev} was on the agent before the one ahead of it ended: {positions}"
    # The agent still ran one job at a time on each device.
    for dev in ("sim:d0", "sim:d1"):
        spans = sorted((o.result["started_unix"], o.result["finished_unix"]) for o in outcomes
                       if o.device.id == dev)
        assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert attempts == ["result"] * 6


def test_a_job_the_agent_refuses_to_queue_is_sent_again_not_lost(lab):
    agent, client, artefact = lab
    # Room for one job's probes on this agent: the one sent ahead is refused
    # (RESOURCE_EXHAUSTED), and the device takes its jobs one at a time.
    agent.servicer.jobs.max_live_bytes = 96
    sent = []
    open_run = client._open_run
    client._open_run = lambda job, timeout: sent.append(job.job_id) or open_run(job, timeout)
    plan, outcomes, positions, attempts = dispatch(client, artefact, ["a", "b", "c"], 1)
    assert sorted(o.job.key for o in outcomes) == sorted(j.key for j in plan.jobs)
    assert all(o.result and o.result["error"] is None and o.attempts == 1 for o in outcomes)
    assert attempts == ["result"] * 3  # the refusal is no attempt of the job's
    assert len(sent) > len(set(sent)) == 3  # a refused job went out again under its own id
