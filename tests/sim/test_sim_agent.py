"""Simulated devices behind a real agent on loopback: the record they
produce, the faults they inject on purpose, cancellation and timeouts."""

import threading
import time

import numpy as np
import pytest

import modelkit
import simkit
from agents.sim.driver import _crc
from harness.config.schema import DeviceProfile, Target
from harness.controller.client import AgentClient
from harness.kernel.latency import LatencyModel, simulate_job
from harness.kernel.measure.policy import MeasurePolicy
from harness.record.build import build_record
from simkit import QUICK, device, job, run, upload

SIM = {"seed": 3, "devices": [
    device("steady", latency={"dist": "lognormal", "p50_ms": 1.5, "sigma": 0.1}, memory_mb=30, memory_factor=2),
    device("web", platform="browser", eps=["wasm", "webgpu"], fallback_ops=["Relu"], outputs="onnx",
           output_noise=0.01),
    device("crashy", fail={"every_n": 2, "kind": "crash"}),
    device("broken", fail={"probability": 1.0, "kind": "error", "stage": "load", "error_kind": "unsupported_op",
                           "message": "Could not find an implementation for TopK"}),
    device("hangs", fail={"every_n": 1, "kind": "hang", "stage": "warmup"}),
    device("hot", latency={"dist": "lognormal", "p50_ms": 2.0, "sigma": 0.02}, drift_per_s=0.6),
    device("offline", state="offline", state_reason="unplugged"),
]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    agent = simkit.start_agent(tmp, SIM)
    client = AgentClient("sim", agent.address)
    client.wait_ready()
    digest = upload(client, modelkit.mlp(tmp / "mlp.onnx", width=16, batch=1))
    yield client, digest, tmp / "mlp.onnx"
    client.close()
    agent.stop(grace=1.0)


def test_describe_lists_every_simulated_device_with_its_state(lab):
    client, _, _ = lab
    devs = {d.id: d for d in client.describe().devices}
    assert {"sim:steady", "sim:web", "sim:crashy", "sim:offline"} <= set(devs)
    assert devs["sim:web"].platform == "browser" and list(devs["sim:web"].runtimes[0].eps) == ["wasm", "webgpu"]
    assert devs["sim:offline"].state_reason == "unplugged"


def test_a_job_follows_the_seeded_timeline_and_yields_a_full_record(lab):
    client, digest, model = lab
    events = []
    r = run(client, job("t-steady-1", "sim:steady", digest), events)
    assert r["error"] is None
    # The same seed (driver seed, device, job id) gives the same samples on the wire.
    expected = simulate_job(LatencyModel("lognormal", 1.5, spread=0.1, load_ms=5), QUICK,
                            np.random.default_rng([3, _crc("steady"), _crc("t-steady-1")]))
    assert r["samples_ms"] == pytest.approx(list(expected.samples_ms))
    assert r["validity"]["stop_reason"] == "min_reached" and r["validity"]["warmup_done"]
    assert r["load_ms"] == 5 and r["first_run_ms"] == pytest.approx(3.0)
    size = model.stat().st_size
    assert r["memory"]["delta_bytes"] == 2 * size and r["memory"]["peak_bytes"] == 30 * 2**20 + 2 * size
    assert r["placement"]["nodes_total"] == 3 and r["placement"]["nodes_by_ep"] == {"cpu": 3}
    assert r["details"]["runner_wall_s"] >= expected.total_s
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "queued" and "started" in kinds
    rec = build_record(job_key="k", candidate="c", technique="baseline",
                       profile=DeviceProfile(id="p", platform="android", targets=[{"runtime": "onnxruntime", "ep": "cpu"}]),
                       target=Target(runtime="onnxruntime", ep="cpu"), model=None,
                       device={"id": "sim:steady", "agent": "a", "platform": "android", "facts": {}}, result=r)
    assert rec["timing"]["n"] == 40 and rec["timing"]["p50_ms"] == pytest.approx(np.median(expected.samples_ms))


def test_a_stand_in_browser_reports_cpu_fallback_and_noisy_real_outputs(lab):
    client, digest, model = lab
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    r = run(client, job("t-web-1", "sim:web", digest, runtime="onnxruntime-web", ep="webgpu", probes=[{"x": x}]))
    p = r["placement"]
    assert p["nodes_by_ep"] == {"webgpu": 2, "cpu": 1} and p["cpu_fallback_nodes"] == 1
    assert p["fallback_op_types"] == {"Relu": 1} and p["fully_accelerated"] is False
    (ref,) = modelkit.reference_outputs(model, {"x": x})
    got = r["outputs"][0]["y"]
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert 0 < rel < 0.05


def test_refusals_are_results_like_a_real_driver_gives(lab):
    client, digest, _ = lab
    r = run(client, job("t-web-ep", "sim:web", digest, runtime="onnxruntime-web", ep="webnn"))
    assert r["error"]["kind"] == "unsupported_ep" and "webnn" in r["error"]["message"]
    r = run(client, job("t-web-rt", "sim:web", digest, runtime="onnxruntime", ep="cpu"))
    assert r["error"]["kind"] == "unsupported_target"
    r = run(client, job("t-offline", "sim:offline", digest))
    assert r["error"]["kind"] == "device_offline" and "unplugged" in r["error"]["message"]


def test_every_nth_job_crashes_and_loses_its_measurements(lab):
    client, digest, _ = lab
    first = run(client, job("t-crashy-1", "sim:crashy", digest))
    second = run(client, job("t-crashy-2", "sim:crashy", digest))
    third = run(client, job("t-crashy-3", "sim:crashy", digest))
    assert first["error"] is None and third["error"] is None
    assert second["error"]["kind"] == "crash" and second["error"]["stage"] == "measure"
    assert "SIGSEGV" in second["error"]["message"]
    assert second["samples_ms"] == [] and second["load_ms"] is None


def test_an_injected_error_is_a_result_of_its_stage(lab):
    client, digest, _ = lab
    r = run(client, job("t-broken", "sim:broken", digest))
    assert r["error"] == {"stage": "load", "kind": "unsupported_op",
                          "message": "Could not find an implementation for TopK"}
    # The session never loaded: nothing was measured.
    assert r["load_ms"] is None and r["first_run_ms"] is None and r["samples_ms"] == []


def test_a_hang_ends_at_the_job_timeout(lab):
    client, digest, _ = lab
    r = run(client, job("t-hang", "sim:hangs", digest, timeout=0.5))
    assert r["error"]["kind"] == "timeout" and r["error"]["stage"] == "warmup"
    assert r["details"]["runner_wall_s"] >= 0.5


def test_cancel_stops_a_running_job(lab):
    client, digest, _ = lab
    long = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=1, min_s=60, max_s=60, target_ci=0)
    started = threading.Event()
    out = {}

    def go():
        out["r"] = run_with_events(client, job("t-cancel", "sim:steady", digest, policy=long, timeout=120), started)

    t = threading.Thread(target=go)
    t.start()
    assert started.wait(10)
    assert client.cancel("t-cancel").found
    t.join(30)
    assert not t.is_alive()
    r = out["r"]
    assert r["error"]["kind"] == "cancelled" and r["validity"]["stop_reason"] == "cancelled"
    assert r["details"]["runner_wall_s"] < 60


def run_with_events(client, msg, started):
    from harness.kernel import wire

    def on(ev):
        if ev.WhichOneof("kind") == "started":
            started.set()

    return wire.result_from_pb(client.run(msg, on, 120))


def test_drift_is_flagged_unstable_in_the_record(lab):
    client, digest, _ = lab
    policy = MeasurePolicy(warmup_runs=0, warmup_s=0, min_runs=100, min_s=0.6, max_s=0.6, target_ci=0)
    r = run(client, job("t-hot", "sim:hot", digest, policy=policy))
    rec = build_record(job_key="k", candidate="c", technique="baseline",
                       profile=DeviceProfile(id="p", platform="android", targets=[{"runtime": "onnxruntime", "ep": "cpu"}]),
                       target=Target(runtime="onnxruntime", ep="cpu"), model=None, device=None, result=r)
    assert rec["validity"]["stable"] is False
    assert any(w.startswith("drift") for w in rec["validity"]["warnings"])


def test_sixteen_jobs_on_four_devices_run_in_parallel_one_per_device(lab, tmp_path):
    agent = simkit.start_agent(tmp_path, {"devices": [device(f"d{i}") for i in range(4)]}, name="par")
    client = AgentClient("par", agent.address)
    try:
        digest = upload(client, lab[2])
        results = {}

        def go(k):
            results[k] = run(client, job(f"par-{k}", f"sim:d{k % 4}", digest))

        threads = [threading.Thread(target=go, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(r["error"] is None for r in results.values()) and len(results) == 16
        spans = {}
        for k, r in results.items():
            spans.setdefault(k % 4, []).append((r["started_unix"], r["finished_unix"]))
        for dev_spans in spans.values():  # never two jobs at once on one device
            dev_spans.sort()
            assert all(a[1] <= b[0] + 1e-3 for a, b in zip(dev_spans, dev_spans[1:]))
        firsts = sorted(min(s)[0] for s in spans.values())
        assert firsts[-1] < min(min(s)[1] for s in spans.values())  # all four devices busy at once
    finally:
        client.close()
        agent.stop(grace=1.0)


def test_devices_that_share_hardware_take_turns(tmp_path):
    import threading

    from harness.controller.client import AgentClient

    sim = {"devices": [simkit.device("a", exclusive="one-board"), simkit.device("b", exclusive="one-board"),
                       simkit.device("c")]}
    agent = simkit.start_agent(tmp_path, sim)
    client = AgentClient("t", agent.address)
    try:
        digest = simkit.upload(client, modelkit.mlp(tmp_path / "m.onnx", batch=1))
        out = {}

        def go(dev):
            out[dev] = simkit.run(client, simkit.job(f"x-{dev}", f"sim:{dev}", digest))

        threads = [threading.Thread(target=go, args=(d,)) for d in ("a", "b", "c")]
        for t in threads:
            t.start()
        seen_busy = None
        for _ in range(100):  # while a or b runs, the other is reported busy
            states = {d.id: (d.state, d.state_reason) for d in client.describe().devices}
            if states["sim:a"][0] == 2 and states["sim:b"][0] == 2:
                seen_busy = states
                break
            time.sleep(0.02)
        for t in threads:
            t.join(60)
        span = {d: (r["started_unix"], r["finished_unix"]) for d, r in out.items()}
        (s1, e1), (s2, e2) = sorted([span["a"], span["b"]])
        assert s2 >= e1, "two devices sharing hardware ran at the same time"
        sc, ec = span["c"]
        assert sc < max(e1, e2) and ec > min(s1, s2), "an independent device should run alongside"
        assert seen_busy and "shares this machine" in (seen_busy["sim:a"][1] + seen_busy["sim:b"][1])
    finally:
        client.close()
        agent.stop(1)
