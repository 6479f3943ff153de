"""Warm runners: every session forks from a template per runtime environment
(agents/host/warm.py) and still starts clean, a runtime crash or hang costs
that session only, and the template is supervised (restarted when it dies,
given up after a bound, gone with the agent)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import modelkit
from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy
from labkit import c_compiler

QUICK = MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=20, min_s=0, max_s=5, target_ci=0)
PROBES = [{"x": np.ones((1, 16), np.float32)}]

# A custom-op library that keeps state the way a real kernel library can:
# a static counter and a process environment variable, both changed each
# time ONNX Runtime calls its entry point, and both written (with the pid
# and parent pid) to a log before the change. In a process that had run an
# earlier job, the second call would see count=1 and LEAK=1.
STATEFUL_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static int calls = 0;
void *RegisterCustomOps(void *options, const void *api) {
  const char *seen = getenv("HARNESS_TEST_LEAK");
  FILE *f = fopen("%s", "a");
  if (f) { fprintf(f, "count=%%d leak=%%s pid=%%d ppid=%%d\n", calls, seen ? seen : "-", (int)getpid(),
                   (int)getppid()); fclose(f); }
  calls++;
  setenv("HARNESS_TEST_LEAK", "1", 1);
  return 0;
}
"""
CRASH_C = "void *RegisterCustomOps(void *options, const void *api) { volatile int *p = 0; *p = 1; return 0; }\n"


def _build(tmp_path: Path, name: str, source: str) -> Path:
    cc = c_compiler()
    if not cc:
        pytest.skip("no C compiler to build the test's custom-op library (install gcc)")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    lib = tmp_path / f"lib{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


@pytest.fixture
def warm_agent(tmp_path):
    from agents.server import AgentConfig, start
    from harness.controller.client import AgentClient

    log = tmp_path / "calls.log"
    libs = {"stateful": str(_build(tmp_path, "stateful", STATEFUL_C % log)),
            "crash": str(_build(tmp_path, "crash", CRASH_C))}
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "cache"),
                              driver_config={"host": {"work_dir": str(tmp_path / "work")}}, custom_ops=libs))
    client = AgentClient("warm", agent.address)
    client.wait_ready()
    dev = next(d for d in client.describe().devices if d.driver == "host")
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    client.ensure_models([(model, digest, "onnx")])
    yield agent, client, dev, digest, log
    client.close()
    agent.stop(1.0)


def _run(client, dev, digest, job_id, options=None, policy=QUICK, timeout=60):
    job = pb.Job(job_id=job_id, device_id=dev.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                 target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu",
                                         options={"intra_op_threads": "1", **(options or {})}),
                 measure=wire.policy_to_pb(policy), probes=[wire.tensors_to_pb(p) for p in PROBES], timeout_s=timeout)
    return wire.result_from_pb(client.run(job, lambda ev: None, 120))


def _template(agent):
    drv = agent.drivers["host"]
    [t] = [t for t in drv.warm._templates.values()]
    return t


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_each_session_is_a_fresh_process_forked_from_the_template(warm_agent):
    agent, client, dev, digest, log = warm_agent
    results = [_run(client, dev, digest, f"s.{i}", {"custom_ops": "stateful"}) for i in range(3)]
    plain = _run(client, dev, digest, "s.plain")
    results.append(_run(client, dev, digest, "s.3", {"custom_ops": "stateful"}))
    for r in results + [plain]:
        assert r["error"] is None, r["error"]
        d = r["details"]
        assert d["runner_start"] == "fork" and d["threads_at_start"] == 1
    template = _template(agent).info["pid"]
    assert template != os.getpid() and _alive(template)
    calls = [dict(kv.split("=") for kv in line.split()) for line in log.read_text().splitlines()]
    # Every job's library call found a process that had never loaded it:
    # no counter, no environment change left by the job before.
    assert [c["count"] for c in calls] == ["0"] * 4 and [c["leak"] for c in calls] == ["-"] * 4
    assert len({c["pid"] for c in calls}) == 4
    assert {c["ppid"] for c in calls} == {str(template)}


def test_a_crash_in_a_forked_runner_is_a_row_and_the_next_job_runs(warm_agent):
    agent, client, dev, digest, _ = warm_agent
    crashed = _run(client, dev, digest, "c.1", {"custom_ops": "crash"})
    assert crashed["error"]["kind"] == "crash" and "SIGSEGV" in crashed["error"]["message"]
    assert crashed["details"]["runner_start"] == "fork"
    template = _template(agent).info["pid"]
    ok = _run(client, dev, digest, "c.2")
    assert ok["error"] is None and ok["samples_ms"]
    assert ok["details"]["template_pid"] == template  # the template outlived its child's crash


def test_a_hang_is_killed_at_the_deadline_in_a_forked_runner(warm_agent, tmp_path):
    agent, client, dev, _, _ = warm_agent
    hang = modelkit.hang(tmp_path / "hang.onnx")
    digest = hashlib.sha256(hang.read_bytes()).hexdigest()
    client.ensure_models([(hang, digest, "onnx")])
    t0 = time.monotonic()
    job = pb.Job(job_id="h.1", device_id=dev.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                 target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu"), measure=wire.policy_to_pb(QUICK),
                 probes=[wire.tensors_to_pb({"x": np.zeros(1, np.float32)})], timeout_s=3)
    res = wire.result_from_pb(client.run(job, lambda ev: None, 60))
    assert res["error"]["kind"] == "timeout" and res["details"]["runner_start"] == "fork"
    assert time.monotonic() - t0 < 3 + 2 * 2.0 + 5  # the deadline, the kill graces, slack for a busy machine
    time.sleep(0.2)
    assert not subprocess.run(["pgrep", "-P", str(_template(agent).info["pid"])], capture_output=True).stdout


def test_a_dead_template_is_started_again(warm_agent):
    agent, client, dev, digest, _ = warm_agent
    first = _run(client, dev, digest, "t.1")["details"]["template_pid"]
    os.kill(first, signal.SIGKILL)
    res = _run(client, dev, digest, "t.2")
    assert res["error"] is None and res["details"]["runner_start"] == "fork"
    assert res["details"]["template_pid"] != first


def test_a_template_lost_mid_job_ends_that_job_only(warm_agent, tmp_path):
    agent, client, dev, _, _ = warm_agent
    hang = modelkit.hang(tmp_path / "hang.onnx")
    digest = hashlib.sha256(hang.read_bytes()).hexdigest()
    client.ensure_models([(hang, digest, "onnx")])
    job = pb.Job(job_id="l.1", device_id=dev.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                 target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu"), measure=wire.policy_to_pb(QUICK),
                 probes=[wire.tensors_to_pb({"x": np.zeros(1, np.float32)})], timeout_s=60)
    out: dict = {}
    th = threading.Thread(target=lambda: out.update(r=wire.result_from_pb(client.run(job, lambda ev: None, 90))))
    th.start()
    template = _template(agent)
    end = time.monotonic() + 30
    while time.monotonic() < end and not template._pending:
        time.sleep(0.05)
    [pending] = list(template._pending.values())
    assert pending.started.wait(30)
    child = pending.pid
    os.kill(template.info["pid"], signal.SIGKILL)
    th.join(30)
    assert not th.is_alive(), "the job did not end when its template died"
    assert out["r"]["error"]["kind"] == "crash" and "SIGKILL" in out["r"]["error"]["message"]
    time.sleep(0.5)
    assert not _alive(child)  # the runner died with its template (PR_SET_PDEATHSIG)
    ok = _run(client, dev, digest=_upload_mlp(client, tmp_path), job_id="l.2")
    assert ok["error"] is None


def _upload_mlp(client, tmp_path):
    model = modelkit.mlp(tmp_path / "m2.onnx", batch=1)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    client.ensure_models([(model, digest, "onnx")])
    return digest


def test_stopping_the_agent_ends_its_templates(tmp_path):
    from agents.server import AgentConfig, start
    from harness.controller.client import AgentClient

    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "cache"),
                              driver_config={"host": {"work_dir": str(tmp_path / "work")}}))
    client = AgentClient("stop", agent.address)
    client.wait_ready()
    client.describe()  # finds the runtime, which starts its template
    template = _template(agent)
    assert template._socket(60) is not None
    pid = template.info["pid"]
    assert _alive(pid)
    client.close()
    agent.stop(1.0)
    assert not _alive(pid)


def test_a_template_whose_socket_is_above_fd_setsize_still_forks(tmp_path):
    """An agent holding over a thousand descriptors (connections, job files)
    hands its template a socket numbered above select(2)'s FD_SETSIZE (1024);
    the template must still serve it (it polls) rather than die and leave
    every runner spawned."""
    import resource

    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from agents.host.driver import HostDriver

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1100
    if soft < want + 64:
        if hard != resource.RLIM_INFINITY and hard < want + 64:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} leaves no room for descriptors above 1024")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want + 64, hard))
    held = []
    try:
        while not held or held[-1] < want:
            held.append(os.open(os.devnull, os.O_RDONLY))
        model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
        drv = HostDriver({"work_dir": str(tmp_path / "work")})
        try:
            job = JobSpec("fd.1", "x", (ModelFile("0" * 64, "onnx", model),),
                          RuntimeTarget("onnxruntime", options={"intra_op_threads": "1"}), QUICK, tuple(PROBES), 60)
            res = drv.run(job, lambda *a: None, threading.Event())
            assert res.error is None, res.error
            assert res.details["runner_start"] == "fork", res.details.get("runner_start_why")
        finally:
            drv.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_template_that_never_comes_up_is_given_up_and_runners_spawn(tmp_path, monkeypatch):
    from agents.host import warm
    from harness.kernel import limits

    monkeypatch.setattr(limits, "FORK_SERVER_RESTARTS", 2)
    monkeypatch.setattr(limits, "FORK_SERVER_BACKOFF_CAP_S", 0.05)
    broken = warm.Template("broken", "/bin/false", dict(os.environ), tmp_path / "broken.log")
    try:
        ran = broken.run(str(tmp_path), timeout_s=5, cancel=threading.Event(), on_line=lambda line: None,
                         stderr_path=str(tmp_path / "stderr.log"))
        assert ran is None  # nothing started: the driver spawns its runner instead
        assert "ended 3 times" in broken.broken
    finally:
        broken.close()


def test_the_driver_spawns_when_warm_runners_are_off(tmp_path):
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from agents.host.driver import HostDriver

    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    drv = HostDriver({"work_dir": str(tmp_path / "work"), "warm_runners": False})
    try:
        job = JobSpec("off.1", "x", (ModelFile("0" * 64, "onnx", model),),
                      RuntimeTarget("onnxruntime", options={"intra_op_threads": "1"}), QUICK, tuple(PROBES), 60)
        res = drv.run(job, lambda *a: None, threading.Event())
        assert res.error is None and res.details["runner_start"] == "spawn"
        assert "warm_runners: false" in res.details["runner_start_why"]
    finally:
        drv.close()


def test_placement_is_measured_once_per_model_build_and_options(tmp_path):
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from agents.host.driver import HostDriver

    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    drv = HostDriver({"work_dir": str(tmp_path / "work")})
    try:
        def run(job_id, options):
            job = JobSpec(job_id, "x", (ModelFile("1" * 64, "onnx", model),),
                          RuntimeTarget("onnxruntime", options=options), QUICK, tuple(PROBES), 60)
            return drv.run(job, lambda *a: None, threading.Event())

        first = run("p.1", {"intra_op_threads": "1"})
        again = run("p.2", {"intra_op_threads": "1"})
        other = run("p.3", {"intra_op_threads": "1", "graph_optimization_level": "disable"})
        assert "placement_from" not in first.details and "placement_from" not in other.details
        assert again.details["placement_from"].endswith("(p.1)") and again.placement == first.placement
        # A CPU target whose every node the measuring session put on the CPU
        # EP needs no second pass: the runtime's assignment says it all.
        assert first.placement.source == "runtime API" and first.placement.time_share_by_ep == {"cpu": 1.0}
    finally:
        drv.close()


def test_a_forked_runner_reports_the_footprint_a_spawned_one_does(tmp_path):
    """fork(2) leaves the template's file pages unmapped in the child; the
    child maps them in first (forkserver._adopt_resident), so delta_bytes
    (peak over the footprint before session create) does not count library
    code the load touches for the first time."""
    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from agents.host.driver import HostDriver

    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    got = {}
    for mode, warm in (("fork", True), ("spawn", False)):
        drv = HostDriver({"work_dir": str(tmp_path / f"work-{mode}"), "warm_runners": warm})
        try:
            job = JobSpec(f"mem.{mode}", "x", (ModelFile("2" * 64, "onnx", model),),
                          RuntimeTarget("onnxruntime", options={"intra_op_threads": "1"}), QUICK, tuple(PROBES), 60)
            res = drv.run(job, lambda *a: None, threading.Event())
            assert res.error is None and res.details["runner_start"] == mode
            got[mode] = res
        finally:
            drv.close()
    assert got["fork"].details["template_pages_adopted"] > 1000
    fork, spawn = got["fork"].memory, got["spawn"].memory
    assert abs(fork.delta_bytes - spawn.delta_bytes) <= max(4 << 20, spawn.delta_bytes // 4), (fork, spawn)
    assert abs(fork.peak_bytes - spawn.peak_bytes) <= max(8 << 20, spawn.peak_bytes // 8), (fork, spawn)
