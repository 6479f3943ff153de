"""The android driver end to end through adbutils, a real adb server and a
test phone: inventory, a complete job, pushes once per digest, outputs,
failures of the runner, heat, cancellation and a phone pulled mid-job."""

import threading
import time

import numpy as np
import pytest

import modelkit
import androidkit
import phone as phone_mod
from agents.android import create
from androidkit import QUICK, driver_config, job, runner_config
from harness.kernel.measure.policy import MeasurePolicy

LONG = MeasurePolicy(warmup_runs=1, warmup_s=0.0, min_runs=10, min_s=30.0, max_s=60.0, target_ci=0.0)


@pytest.fixture
def model(tmp_path):
    return modelkit.mlp(tmp_path / "m.onnx", batch=1)


def driver(lab, adb_port, **extra):
    return create(driver_config(lab, adb_port, **extra))


def wait_for(predicate, within_s=20.0, what="condition"):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within_s} s")


def test_inventory_facts_states_and_runtimes(phones, lab, adb_port):
    pixel = phones.make()
    old = phones.make(props=dict(phone_mod.GALAXY_A14, **{"ro.build.version.sdk": "26",
                                                         "ro.build.version.release": "8.0.0"}))
    locked = phones.make(auth_required=True, connect=False)
    phones.client.connect(locked.serial, timeout=10)
    cfg = driver_config(lab, adb_port)
    cfg["runners"] = runner_config(lab, eps=("cpu", "xnnpack", "nnapi"))
    cfg["runners"].update(runner_config(lab, version="1.17", eps=("cpu",), abi="x86_64"))
    d = create(cfg)
    assert d.available() == (True, "")
    wait_for(lambda: {x.local_id: x.state for x in d.devices()}.get(locked.serial) == "unauthorized",
             what="the locked phone listed as unauthorized")
    devs = {x.local_id: x for x in d.devices()}
    p = devs[pixel.serial]
    assert p.platform == "android" and p.state == "ready"
    assert {k: p.facts[k] for k in ("model", "manufacturer", "soc", "board_platform", "sdk", "abi", "ram_mb")} == {
        "model": "Pixel 7", "manufacturer": "Google", "soc": "GS201", "board_platform": "gs201", "sdk": "34",
        "abi": "arm64-v8a", "ram_mb": str(7833248 // 1024)}
    # The x86_64 runner fits neither phone; NNAPI needs Android 8.1 (API 27).
    assert [(r.version, r.eps) for r in p.runtimes] == [("1.20", ("cpu", "xnnpack", "nnapi"))]
    assert [(r.version, r.eps) for r in devs[old.serial].runtimes] == [("1.20", ("cpu", "xnnpack"))]
    assert devs[old.serial].facts["model"] == "SM-A145F" and devs[old.serial].facts["soc"] == "mt6769"
    assert "Allow" in devs[locked.serial].state_reason and devs[locked.serial].runtimes == ()
    # The same phone on two connections (USB and TCP) is offered once.
    twin = phones.make()  # same props, same hardware serial as `pixel`
    devs = {x.local_id: x for x in d.devices()}
    states = sorted((devs[s].state, devs[s].state_reason) for s in (pixel.serial, twin.serial))
    assert states[0] == ("offline", states[0][1]) and "same phone" in states[0][1] and states[1] == ("ready", "")


def test_complete_job_and_pushes_once_per_digest(phones, lab, adb_port, model):
    p = phones.make()
    d = driver(lab, adb_port, connect=[p.serial], pin="big",
               cooldown={"max_c": 40, "sensor": "skin", "wait_s": 30, "poll_s": 0.1})
    [dev] = [x for x in d.devices() if x.local_id == p.serial]
    seen = []
    res = d.run(job("job-a", dev.local_id, model), lambda *a: seen.append(a), threading.Event())
    assert res.error is None, res.error
    assert res.runtime_version == "1.20" and res.ep == "cpu"
    assert len(res.samples_ms) >= QUICK.min_runs and all(s > 0 for s in res.samples_ms)
    assert res.load_ms > 0 and res.first_run_ms is not None and 0 < res.details["timer_resolution_ms"] < 1e-3
    assert res.validity.warmup_done and res.validity.min_runs_met and res.validity.stop_reason
    assert res.memory.peak_bytes > 0 and "peak working set" in res.memory.method
    assert res.placement.nodes_by_ep == {"cpu": 3} and res.placement.source == "verbose log + profile"
    assert res.placement.time_share_by_ep == {"cpu": 1.0} and res.placement.fully_accelerated is None
    cond = res.details["conditions"]
    assert cond["before"]["thermal_c"]["skin"] == 31.5 and cond["after"]["battery"]["level_pct"] == 87
    assert cond["before"]["cpu_governor"] == "schedutil" and cond["before"]["thermal_status_name"] == "none"
    assert res.details["affinity"] == {"pin": "big", "mask": "2", "cpus": [1]}
    assert res.details["cooldown"]["reached"] is True and res.details["cooldown"]["start_c"] == 31.5
    assert not res.validity.warnings
    assert "not collected" in res.details["outputs"] and res.outputs == ()
    assert {a[0] for a in seen} >= {"push", "measure", "placement"}
    # perf_test ran pinned, with its libraries found, and the job folder is gone.
    runs = p.sessions_matching("onnxruntime_perf_test")
    assert runs and all("exec taskset 2 " in s.command and "LD_LIBRARY_PATH=" in s.command for s in runs)
    harness_dir = p.root / "data/local/tmp/harness"
    assert list((harness_dir / "jobs").iterdir()) == []
    assert res.details["runner"]["pushed_now"] is True
    again = d.run(job("job-b", dev.local_id, model), lambda *a: None, threading.Event())
    assert again.error is None and again.details["runner"]["pushed_now"] is False
    assert len(list((harness_dir / "runners").iterdir())) == 1 and len(list((harness_dir / "models").iterdir())) == 1


def test_outputs_from_a_node_io_build_match_the_reference(phones, lab, adb_port, model):
    debug = androidkit.install_perf_test(lab["folder"], debug_node_io=True, name="onnxruntime_perf_test_nodeio")
    p = phones.make()
    cfg = driver_config(lab, adb_port)
    cfg["runners"]["1.20"].update(outputs_perf_test=str(debug), outputs_libs=[str(lab["lib"])])
    d = create(cfg)
    d.devices()
    spec = job("job-out", p.serial, model, probes=3, seed=5, options={"cpu_affinity": "0"})
    res = d.run(spec, lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert res.details["affinity"] == {"pin": "cpu_affinity", "mask": "1", "cpus": [0]}
    assert res.details["threads"]["intra_op"] == 1  # one thread per pinned core
    assert all("exec taskset 1 " in s.command for s in p.sessions_matching("onnxruntime_perf_test"))
    assert len(res.outputs) == 3
    for probe, got in zip(spec.probes, res.outputs):
        [ref] = modelkit.reference_outputs(model, probe)
        np.testing.assert_allclose(got["y"], ref, rtol=1e-6)
    assert res.outputs[0]["y"].shape == (1, 4) and not np.allclose(res.outputs[0]["y"], res.outputs[1]["y"])


def test_ep_missing_from_the_build_is_an_error_row_with_stderr(phones, lab, adb_port, model):
    p = phones.make()
    d = driver(lab, adb_port)
    d.devices()
    res = d.run(job("job-x", p.serial, model, ep="xnnpack"), lambda *a: None, threading.Event())
    assert res.error.kind == "unsupported_ep" and res.error.stage == "measure"
    assert "Xnnpack is not supported in this build" in res.error.message
    assert "exited with status 255" in res.error.message
    assert res.samples_ms == () and res.validity.stop_reason == "error"
    assert list((p.root / "data/local/tmp/harness/jobs").iterdir()) == []
    # An EP the runner was not configured with never reaches the phone.
    res = d.run(job("job-y", p.serial, model, ep="qnn"), lambda *a: None, threading.Event())
    assert res.error.kind == "unsupported_ep" and "built with cpu, xnnpack" in res.error.message


@pytest.mark.parametrize("script,kind,needle", [
    ("echo 'hello from the wrong binary'\nexit 0\n", "runner_output", "hello from the wrong binary"),
    ("echo 'Fatal signal 11 (SIGSEGV), code 1 (SEGV_MAPERR)' >&2\nexit 139\n", "crash", "SIGSEGV"),
])
def test_runner_that_fails_or_prints_garbage(phones, lab, adb_port, model, script, kind, needle):
    bad = lab["folder"] / "bad_perf_test"
    bad.write_text("#!/bin/sh\n" + script)
    bad.chmod(0o755)
    p = phones.make()
    cfg = driver_config(lab, adb_port)
    cfg["runners"]["1.20"]["perf_test"] = str(bad)
    d = create(cfg)
    d.devices()
    res = d.run(job("job-bad", p.serial, model), lambda *a: None, threading.Event())
    assert res.error.kind == kind and needle in res.error.message, res.error


def test_runner_without_its_library_cannot_link(phones, lab, adb_port, model):
    p = phones.make()
    cfg = driver_config(lab, adb_port)
    cfg["runners"]["1.20"]["libs"] = []
    d = create(cfg)
    d.devices()
    res = d.run(job("job-nolib", p.serial, model), lambda *a: None, threading.Event())
    assert res.error.kind == "runner_broken" and 'library "libonnxruntime.so" not found' in res.error.message


def test_heat_cooldown_gate_and_too_hot_state(phones, lab, adb_port, model):
    p = phones.make(temperature_c=45.0)
    d = driver(lab, adb_port, cooldown={"max_c": 40, "sensor": "skin", "wait_s": 0.3, "poll_s": 0.1})
    d.devices()
    res = d.run(job("job-hot", p.serial, model), lambda *a: None, threading.Event())
    assert res.error is None
    gate = res.details["cooldown"]
    assert gate["reached"] is False and gate["start_c"] == gate["end_c"] == 45.0 and gate["waited_s"] >= 0.3
    assert any("cooldown gate" in w for w in res.validity.warnings)
    p.state.set_temperature(52.0, status=3)
    [dev] = [x for x in d.devices() if x.local_id == p.serial]
    assert dev.state == "too_hot" and "severe" in dev.state_reason


def test_cancel_kills_the_runner_on_the_phone(phones, lab, adb_port, model):
    p = phones.make()
    d = driver(lab, adb_port)
    d.devices()
    cancel = threading.Event()
    box = {}
    t = threading.Thread(target=lambda: box.update(r=d.run(job("job-c", p.serial, model, policy=LONG),
                                                            lambda *a: None, cancel)))
    t.start()
    wait_for(lambda: any(s.end is None for s in p.sessions_matching("-m duration")), what="perf_test running")
    cancel.set()
    t.join(30)
    assert not t.is_alive()
    assert box["r"].error.kind == "cancelled" and box["r"].validity.stop_reason == "cancelled"
    wait_for(lambda: all(s.end is not None for s in p.sessions_matching("-m duration")), what="runner killed")
    assert list((p.root / "data/local/tmp/harness/jobs").iterdir()) == []


def test_phone_pulled_mid_job_is_an_error_and_then_offline(phones, lab, adb_port, model):
    p = phones.make()
    d = driver(lab, adb_port)
    d.devices()
    box = {}
    t = threading.Thread(target=lambda: box.update(r=d.run(job("job-u", p.serial, model, policy=LONG),
                                                            lambda *a: None, threading.Event())))
    t.start()
    wait_for(lambda: any(s.end is None for s in p.sessions_matching("-m duration")), what="perf_test running")
    p.unplug()
    t.join(30)
    assert not t.is_alive()
    err = box["r"].error
    assert err.kind == "device_disconnected" and err.stage == "measure" and "USB cable" in err.message
    wait_for(lambda: {x.local_id: x.state for x in d.devices()}.get(p.serial) == "offline", what="offline")
    [dev] = [x for x in d.devices() if x.local_id == p.serial]
    assert dev.facts["model"] == "Pixel 7" and dev.state_reason  # still known, with a hint
