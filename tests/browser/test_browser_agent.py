"""The browser driver behind the real agent server over gRPC, with its kept
browser: a page that crashes, a job that overruns its time limit, a browser
or keeper that dies between or during jobs each end at most that job, in an
error row, and the agent goes on serving the next job on the same browser
device (on the same Chromium where only the page died, on a new one where the
browser was killed or hung); stopping the agent leaves no browser behind."""

from __future__ import annotations

import os
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
    """Processes started for this agent's browser (Chromium, its helpers, the
    keeper) that are still alive: anything naming a path below `work`."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(work) in a for a in (p.info["cmdline"] or [])):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def profile_of(res) -> str:
    """The --user-data-dir of the browser that served a result."""
    return next(a.split("=", 1)[1] for a in res["details"]["launch_args"] if a.startswith("--user-data-dir="))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def upload_model(client, tmp_path):
    model = kit.nonzero_model(tmp_path / "m.onnx")
    digest = kit.digest(model)
    client.ensure_models([(model, digest, "onnx")])
    return digest


def served_next(client, device, digest, job_id):
    res = wire.result_from_pb(client.run(make_job(job_id, device, digest, QUICK, 120), lambda e: None, 180))
    assert res["error"] is None, res["error"]
    assert len(res["samples_ms"]) >= 10 and res["outputs"][0]["nz"].shape[0] == 2
    return res


def kill_when_measuring(pick):
    """An on_event that SIGKILLs the processes `pick(process)` selects among
    this test process's descendants once the job reports measuring."""
    killed = []

    def on_event(ev):
        if ev.WhichOneof("kind") == "progress" and ev.progress.phase == "measure" and not killed:
            for p in psutil.Process().children(recursive=True):
                try:
                    if pick(p):
                        p.send_signal(signal.SIGKILL)
                        killed.append(p.pid)
                except psutil.Error:
                    continue

    return on_event, killed


def test_page_crash_is_an_error_row_and_the_same_browser_serves_the_next_job(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    before = served_next(client, dev, digest, "crash.0")
    # Once measuring, kill the page's renderer: descendants of this test
    # process only (agent -> keeper -> Chromium -> zygote -> renderer).
    on_event, killed = kill_when_measuring(lambda p: "--type=renderer" in p.cmdline())
    res = wire.result_from_pb(client.run(make_job("crash.1", dev, digest, ENDLESS, 100), on_event, 150))
    assert killed, "no renderer process was found to kill"
    err = res["error"]
    assert err is not None and err["kind"] == "crash" and err["stage"] == "measure", err
    assert "crashed" in err["message"]
    # The runs measured before the crash are kept.
    assert res["load_ms"] > 0 and len(res["samples_ms"]) > 0
    after = served_next(client, dev, digest, "crash.2")
    # Only the page died: the kept browser served the crash's job and the next.
    pid = before["details"]["browser"]["pid"]
    assert res["details"]["browser"]["pid"] == pid == after["details"]["browser"]["pid"]
    assert after["details"]["browser_start"] == "kept" and after["details"]["browser"]["kept"] is True
    assert not gone(pid)


def test_timeout_kills_the_kept_browser_and_a_new_one_serves_the_next_job(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    before = served_next(client, dev, digest, "slow.0")
    res = wire.result_from_pb(client.run(make_job("slow.1", dev, digest, ENDLESS, 5), lambda e: None, 100))
    err = res["error"]
    assert err is not None and err["kind"] == "timeout", err
    assert "killed" in err["message"]
    # A page spinning past its time: the keeper's whole group went with it.
    assert gone(before["details"]["browser"]["pid"])
    assert not leftover_browsers(profile_of(before))
    after = served_next(client, dev, digest, "slow.2")
    assert after["details"]["browser_start"] == "launched"
    assert after["details"]["browser"]["pid"] != before["details"]["browser"]["pid"]


def test_a_browser_killed_between_jobs_is_relaunched_for_the_next(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    before = served_next(client, dev, digest, "dead.0")
    pid = before["details"]["browser"]["pid"]
    os.kill(pid, signal.SIGKILL)
    after = served_next(client, dev, digest, "dead.1")
    b = after["details"]["browser"]
    assert b["pid"] != pid and b["kept"] is False and b["relaunched_because"]
    assert after["details"]["browser_start"] == "kept"  # the same keeper, a new Chromium


def test_a_browser_killed_mid_job_is_a_crash_row_and_the_next_job_is_served(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    pid = served_next(client, dev, digest, "midkill.0")["details"]["browser"]["pid"]
    on_event, killed = kill_when_measuring(lambda p: p.pid == pid)
    res = wire.result_from_pb(client.run(make_job("midkill.1", dev, digest, ENDLESS, 100), on_event, 150))
    assert killed == [pid]
    err = res["error"]
    assert err is not None and err["kind"] == "crash" and err["stage"] == "measure", err
    after = served_next(client, dev, digest, "midkill.2")
    assert after["details"]["browser"]["pid"] != pid


def test_a_keeper_that_dies_is_replaced_at_the_next_job(agent, tmp_path):
    running, client, work = agent
    dev = browser_device(client)
    digest = upload_model(client, tmp_path)
    before = served_next(client, dev, digest, "keeper.0")
    keeper = psutil.Process(before["details"]["browser"]["pid"]).parent()
    assert "agents.browser.keeper" in " ".join(keeper.cmdline())
    os.killpg(keeper.pid, signal.SIGKILL)  # the keeper's group: it and its browser
    after = served_next(client, dev, digest, "keeper.1")
    assert after["details"]["browser_start"] == "launched"


def test_stopping_the_agent_leaves_no_browser(tmp_path):
    kit.need_browser()
    from agents.server import AgentConfig, start
    from harness.controller.client import AgentClient

    running = start(AgentConfig(listen="127.0.0.1:0", drivers=("browser",), cache_dir=str(tmp_path / "cache"),
                                driver_config={"browser": {"work_dir": str(tmp_path / "work")}}))
    client = AgentClient("test", running.address)
    try:
        client.wait_ready()
        dev = browser_device(client)
        digest = upload_model(client, tmp_path)
        res = served_next(client, dev, digest, "stop.0")
        assert leftover_browsers(tmp_path / "work")  # kept between jobs, by design
    finally:
        client.close()
        running.stop(grace=1.0)
    assert gone(res["details"]["browser"]["pid"])
    assert not leftover_browsers(tmp_path / "work")
