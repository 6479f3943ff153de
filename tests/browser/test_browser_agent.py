"""The browser driver behind the real agent server over gRPC: a page that
crashes and a job that overruns its time limit each end in an error row, and
the agent goes on serving the next job on the same browser device."""

from __future__ import annotations

import signal

import numpy as np
import psutil
import pytest

import browserkit as kit
from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy

QUICK = MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=10, min_s=0, max_s=5, target_ci=0)
# Far longer than the test lets the job live.
ENDLESS = MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=10, min_s=120, max_s=120, target_ci=0)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    kit.need_browser()
    from agents.server import AgentConfig, start
    from harness.controller.client import AgentClient

    tmp = tmp_path_factory.mktemp("browser-agent")
    running = start(AgentConfig(listen="127.0.0.1:0", drivers=("browser",), cache_dir=str(tmp / "cache"),
                                driver_config={"browser": {"work_dir": str(tmp / "work")}}))
    client = AgentClient("test", running.address)
    client.wait_ready()
    yield running, client, tmp / "work"
    client.close()
    running.stop(grace=1.0)


def browser_device(client):
    d = client.describe()
    status = next(s for s in d.drivers if s.name == "browser")
    assert status.available, status.reason
    return next(x for x in d.devices if x.driver == "browser")


def make_job(job_id, device, digest, policy, timeout):
    probe = {"x": np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)}
    return pb.Job(job_id=job_id, device_id=device.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                  target=pb.RuntimeTarget(runtime="onnxruntime-web", ep="wasm"),
                  measure=wire.policy_to_pb(policy), probes=[wire.tensors_to_pb(probe)], timeout_s=timeout)


def leftover_browsers(work) -> list:
    """Chromium processes started for this agent's jobs that are still alive."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(work) in a for a in (p.info["cmdline"] or [])):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def upload_model(client, tmp_path):
    model = kit.nonzero_model(tmp_path / "m.onnx")
    digest = kit.digest(model)
    client.ensure_models([(model, digest, "onnx")])
    return digest


def served_next(client, device, digest, job_id):
    res = wire.result_from_pb(client.run(make_job(job_id, device, digest, QUICK, 120), lambda e: None, 180))
    assert res["error"] is None, res["error"]
    assert len(res["samples_ms"]) >= 10 and res["outputs"][0]["nz"].shape[0] == 2


def test_page_crash_is_an_error_row_and_the_agent_keeps_serving(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    killed = []

    def on_event(ev):
        # Once measuring, kill the page's renderer: descendants of this test
        # process only (agent -> runner -> Chromium -> zygote -> renderer).
        if ev.WhichOneof("kind") == "progress" and ev.progress.phase == "measure" and not killed:
            for p in psutil.Process().children(recursive=True):
                try:
                    if "--type=renderer" in p.cmdline():
                        p.send_signal(signal.SIGKILL)
                        killed.append(p.pid)
                except psutil.Error:
                    continue

    res = wire.result_from_pb(client.run(make_job("crash.1", dev, digest, ENDLESS, 100), on_event, 150))
    assert killed, "no renderer process was found to kill"
    err = res["error"]
    assert err is not None and err["kind"] == "crash" and err["stage"] == "measure", err
    assert "crashed" in err["message"]
    # The runs measured before the crash are kept.
    assert res["load_ms"] > 0 and len(res["samples_ms"]) > 0
    served_next(client, dev, digest, "crash.2")
    assert not leftover_browsers(work)


def test_timeout_is_an_error_row_and_the_agent_keeps_serving(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    res = wire.result_from_pb(client.run(make_job("slow.1", dev, digest, ENDLESS, 5), lambda e: None, 100))
    err = res["error"]
    assert err is not None and err["kind"] == "timeout", err
    assert "killed" in err["message"]
    assert not leftover_browsers(work)
    served_next(client, dev, digest, "slow.2")
