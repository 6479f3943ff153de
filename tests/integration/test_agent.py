"""The agent server over real gRPC on loopback, with the real host driver."""

import hashlib
import os
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import modelkit
from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy
from labkit import c_compiler

QUICK = MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=30, min_s=0, max_s=5, target_ci=0)


def upload(client, path, fmt="onnx"):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    client.ensure_models([(path, digest, fmt)])
    return digest


def host_device(client):
    d = client.describe()
    return next(x for x in d.devices if x.driver == "host")


def job(job_id, device, digest, probes, policy=QUICK, timeout=60, options=None):
    return pb.Job(
        job_id=job_id, device_id=device.id, models=[pb.ModelRef(digest=digest, format="onnx")],
        target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu", options=options or {"intra_op_threads": "1"}),
        measure=wire.policy_to_pb(policy), probes=[wire.tensors_to_pb(p) for p in probes], timeout_s=timeout,
    )


def collect(client, j, deadline=120):
    events = []
    result = client.run(j, events.append, deadline)
    return events, wire.result_from_pb(result)


def test_describe_and_health(agent, client):
    d = client.describe()
    assert d.protocol_version == 1
    host = [s for s in d.drivers if s.name == "host"][0]
    assert host.available, host.reason
    dev = host_device(client)
    assert dev.id.startswith("host:")
    assert dev.state == pb.DEVICE_STATE_READY
    assert int(dev.facts["ram_mb"]) > 0 and dev.facts["abi"]
    rt = dev.runtimes[0]
    import onnxruntime as ort
    assert rt.name == "onnxruntime" and rt.version == ort.__version__ and "cpu" in rt.eps
    stub = health_pb2_grpc.HealthStub(client.channel)
    resp = stub.Check(health_pb2.HealthCheckRequest(service="harness.v1.Agent"), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_job_measures_and_returns_reference_outputs(tmp_path, client):
    model = modelkit.mlp(tmp_path / "m.onnx")
    digest = upload(client, model)
    probes = [{"x": np.random.default_rng(i).standard_normal((2, 16)).astype(np.float32)} for i in range(3)]
    events, res = collect(client, job("t.1", host_device(client), digest, probes))
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "queued" and "started" in kinds
    assert res["error"] is None
    assert len(res["samples_ms"]) >= 30 and all(s > 0 for s in res["samples_ms"])
    assert res["load_ms"] > 0 and res["first_run_ms"] > 0
    assert res["memory"]["peak_bytes"] > res["memory"]["delta_bytes"] > 0
    assert "VmHWM" in res["memory"]["method"]
    pl = res["placement"]
    assert pl["nodes_total"] == 3 and pl["nodes_by_ep"] == {"cpu": 3} and pl["cpu_fallback_nodes"] == 0
    assert pl["time_share_by_ep"]["cpu"] == pytest.approx(1.0)
    assert res["validity"]["warmup_done"] and res["validity"]["min_runs_met"]
    assert len(res["outputs"]) == 3
    for probe, out in zip(probes, res["outputs"]):
        ref = modelkit.reference_outputs(model, probe)[0]
        np.testing.assert_allclose(out["y"], ref, rtol=1e-6, atol=1e-6)


def test_finished_job_id_returns_stored_result(tmp_path, client):
    digest = upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
    probes = [{"x": np.ones((1, 16), np.float32)}]
    dev = host_device(client)
    _, first = collect(client, job("same-id", dev, digest, probes))
    t0 = time.monotonic()
    events, again = collect(client, job("same-id", dev, digest, probes))
    assert events == []  # no queued/started: nothing ran again
    assert again["samples_ms"] == first["samples_ms"]
    assert again["started_unix"] == first["started_unix"]


def test_resent_running_job_attaches(tmp_path, client):
    digest = upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
    probes = [{"x": np.ones((1, 16), np.float32)}]
    dev = host_device(client)
    slow = MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=10, min_s=1.5, max_s=5, target_ci=0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(collect(client, job("attach", dev, digest, probes, slow))[1]))
               for _ in range(2)]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert results[0]["samples_ms"] == results[1]["samples_ms"]  # one run, two listeners


def test_one_job_per_device_with_queue_positions(tmp_path, client):
    digest = upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
    probes = [{"x": np.ones((1, 16), np.float32)}]
    dev = host_device(client)
    policy = MeasurePolicy(warmup_runs=1, warmup_s=0, min_runs=10, min_s=0.7, max_s=5, target_ci=0)
    out = {}

    def go(i):
        out[i] = collect(client, job(f"q.{i}", dev, digest, probes, policy))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(60)
    spans = sorted((r["started_unix"], r["finished_unix"]) for _, r in out.values())
    for (s1, e1), (s2, _) in zip(spans, spans[1:]):
        assert s2 >= e1, "two jobs overlapped on one device"
    positions = [e.queued.position for _, (evs, _) in sorted(out.items()) for e in evs if e.HasField("queued")]
    assert max(positions) >= 1  # a later job saw work ahead of it


def test_cancel_kills_the_runner_tree(tmp_path, client, agent):
    digest = upload(client, modelkit.hang(tmp_path / "hang.onnx"))
    dev = host_device(client)
    probes = [{"x": np.zeros(1, np.float32)}]
    box = {}
    t = threading.Thread(target=lambda: box.update(r=collect(client, job("c.1", dev, digest, probes, timeout=300))[1]))
    t.start()
    deadline = time.monotonic() + 30
    runner = None
    while time.monotonic() < deadline and runner is None:
        # The runner is forked from the host driver's warm template (agents/host/warm.py).
        templates = [t.info.get("pid") for t in agent.drivers["host"].warm._templates.values() if t.info.get("pid")]
        out = [p for t in templates for p in
               subprocess.run(["pgrep", "-P", str(t)], capture_output=True, text=True).stdout.split()]
        runner = int(out[0]) if out else None
        time.sleep(0.1)
    assert runner, "runner process never appeared"
    time.sleep(0.5)
    resp = client.cancel("c.1")
    assert resp.found and resp.state == "running"
    t.join(30)
    assert box["r"]["error"]["kind"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(runner, 0)
    assert client.cancel("c.1").found is False


def test_hanging_model_times_out_and_agent_keeps_serving(tmp_path, client):
    dev = host_device(client)
    hang = upload(client, modelkit.hang(tmp_path / "hang.onnx"))
    _, res = collect(client, job("h.1", dev, hang, [{"x": np.zeros(1, np.float32)}], timeout=3))
    assert res["error"]["kind"] == "timeout"
    ok = upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
    _, res2 = collect(client, job("h.2", dev, ok, [{"x": np.ones((1, 16), np.float32)}]))
    assert res2["error"] is None and res2["samples_ms"]


def test_runtime_crash_is_an_error_row_and_agent_keeps_serving(tmp_path):
    from agents.server import AgentConfig, start
    from harness.controller.client import AgentClient

    cc = c_compiler()
    if not cc:
        pytest.skip("no C compiler to build the crashing custom-op library")
    src = tmp_path / "crash.c"
    src.write_text("void *RegisterCustomOps(void *options, const void *api) {\n"
                   "  volatile int *p = (int *)0; *p = 1; return 0;\n}\n")
    lib = tmp_path / "libcrash.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    # Custom-op libraries come from the agent's configuration, by name.
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "cache"),
                              driver_config={"host": {"work_dir": str(tmp_path / "work")}},
                              custom_ops={"crash": str(lib)}))
    client = AgentClient("crash", agent.address)
    try:
        dev = host_device(client)
        digest = upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
        probes = [{"x": np.ones((1, 16), np.float32)}]
        _, res = collect(client, job("x.1", dev, digest, probes, options={"custom_ops": "crash"}))
        assert res["error"]["kind"] == "crash"
        assert "SIGSEGV" in res["error"]["message"]
        _, res2 = collect(client, job("x.2", dev, digest, probes))
        assert res2["error"] is None
    finally:
        client.close()
        agent.stop(1.0)


def test_model_errors_are_results(tmp_path, client):
    dev = host_device(client)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not a model")
    digest = upload(client, junk)
    _, res = collect(client, job("e.1", dev, digest, [{"x": np.ones((1, 16), np.float32)}]))
    assert res["error"]["stage"] == "load" and res["error"]["kind"] in ("model_invalid", "runtime_error")
    ok = upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
    _, res = collect(client, job("e.2", dev, ok, [{"wrong_name": np.ones((1, 16), np.float32)}]))
    assert res["error"]["kind"] == "bad_input" and "'x'" in res["error"]["message"]
    missing = "0" * 64
    _, res = collect(client, job("e.3", dev, missing, [{"x": np.ones((1, 16), np.float32)}]))
    assert res["error"]["kind"] == "model_missing"
    fake = pb.Device(id="host:nope")
    _, res = collect(client, job("e.4", fake, ok, [{"x": np.ones((1, 16), np.float32)}]))
    assert res["error"]["kind"] == "unknown_device"
    _, res = collect(client, pb.Job(**{**_fields(job("e.5", dev, ok, [{"x": np.ones((1, 16), np.float32)}])),
                                       "target": pb.RuntimeTarget(runtime="onnxruntime", ep="tensorrt")}))
    assert res["error"]["kind"] == "unsupported_ep"


def _fields(msg):
    return {f.name: getattr(msg, f.name) for f, _ in msg.ListFields()}


def test_malformed_jobs_are_refused(client):
    dev = host_device(client)
    with pytest.raises(Exception) as err:
        collect(client, pb.Job(job_id="../etc", device_id=dev.id, timeout_s=5))
    assert "INVALID_ARGUMENT" in str(err.value) or "job_id" in str(err.value)
    bad_tensor = pb.TensorSet(tensors=[pb.Tensor(name="x", dtype="float32", shape=[4], data=b"\0" * 3)])
    with pytest.raises(Exception) as err:
        collect(client, pb.Job(job_id="bad.t", device_id=dev.id, timeout_s=5, probes=[bad_tensor],
                               models=[pb.ModelRef(digest="0" * 64, format="onnx")],
                               target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu"),
                               measure=wire.policy_to_pb(QUICK)))
    assert "bytes do not hold" in str(err.value)
