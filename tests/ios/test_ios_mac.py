"""The ios driver against the real Core ML on a Mac (marked `mac`; skipped
elsewhere with the reason). Phones and simulators are used when a lab has
them ready, and skipped with the reason when it does not."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ioskit

pytestmark = pytest.mark.mac
POLICY = dict(warmup_runs=3, warmup_s=0, min_runs=20, min_s=0, max_s=30, target_ci=0)


@pytest.fixture(scope="module")
def mac(tiny, tmp_path_factory):
    import agents.ios

    drv = agents.ios.create({"work_dir": str(tmp_path_factory.mktemp("work"))})
    ok, why = drv.available()
    assert ok, why  # on a Mac the driver must be usable; the reason says what is missing
    return {"driver": drv, "devices": {d.local_id: d for d in drv.devices()}}


def _job(tiny, device, ep, probes):
    import os

    from agents.contract import JobSpec, ModelFile, RuntimeTarget
    from harness.artefacts import zip_package
    from harness.kernel.measure.policy import MeasurePolicy
    from harness.kernel.modelfile import sha256_file

    os.environ.setdefault("HARNESS_CACHE", str(tiny["folder"] / "cache"))
    packed = zip_package(tiny["mlpackage"])
    return JobSpec(f"mac-{device}-{ep}", device, (ModelFile(sha256_file(packed), "mlpackage.zip", packed),),
                   RuntimeTarget("coreml", "", ep), MeasurePolicy(**POLICY), tuple(probes), 300)


def test_the_mac_itself_is_listed_with_its_facts(mac):
    dev = mac["devices"]["mac"]
    assert dev.platform == "macos" and dev.state == "ready"
    assert dev.facts["model"] and dev.facts["os_version"].startswith("macOS") and int(dev.facts["ram_mb"]) > 0
    assert "all" in next(r for r in dev.runtimes if r.name == "coreml").eps


@pytest.mark.parametrize("ep", ["all", "cpu_only"])
def test_core_ml_on_the_mac_measures_and_places(mac, tiny, ep):
    from agents.ios.inventory import version_tuple

    probes = ioskit.probes(3)
    res = mac["driver"].run(_job(tiny, "mac", ep, probes), lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert res.load_ms > 0 and res.first_run_ms > 0 and len(res.samples_ms) >= 20
    assert res.memory.peak_bytes > 0 and res.memory.delta_bytes > 0
    want = ioskit.torch_outputs(tiny["model"], probes)
    for got, ref in zip(res.outputs, want):
        np.testing.assert_allclose(got["y"], ref["y"], atol=2e-2)  # fp16 compute
    if version_tuple(mac["devices"]["mac"].facts["os_version"]) >= (14, 4):
        p = res.placement
        assert p.source == "plan" and p.nodes_total >= 5
        if ep == "cpu_only":
            assert set(p.nodes_by_ep) == {"cpu"} and p.cpu_fallback_nodes == 0
    else:
        assert any("compute plan needs macOS 14.4" in m for m in res.details["not_measured"])


def test_a_ready_phone_or_simulator_runs_the_model(mac, tiny):
    ready = [d for d in mac["devices"].values() if d.platform == "ios" and d.state == "ready"]
    if not ready:
        states = "; ".join(f"{d.local_id}: {d.state} {d.state_reason}" for d in mac["devices"].values()
                           if d.platform == "ios") or "none listed"
        pytest.skip(f"no ready iPhone, iPad or simulator on this Mac ({states})")
    dev = ready[0]
    probes = ioskit.probes(1)
    res = mac["driver"].run(_job(tiny, dev.local_id, "all", probes), lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert res.samples_ms and len(res.outputs) == 1
    if dev.facts.get("simulator") == "yes":
        assert any(w.startswith("simulator:") for w in res.validity.warnings)
