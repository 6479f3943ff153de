"""The sim driver's configuration: what it accepts, and one clear line for what it does not."""

import pytest

from agents.registry import load_driver
from agents.sim.config import parse
from harness.kernel.configfile import ConfigError
from harness.kernel.latency import LatencyModel

DEV = {"id": "p7", "platform": "android", "latency": {"p50_ms": 4}}


@pytest.mark.parametrize("change, expected", [
    ({"latency": {"dist": "gamma", "p50_ms": 1}}, "sim: devices[0].latency.dist: input should be 'lognormal', 'normal' or 'fixed', got 'gamma'"),
    ({"latency": {"p50_ms": "fast"}}, "sim: devices[0].latency.p50_ms: expected a number, got 'fast'"),
    ({"latency": {"p50_ms": 0}}, "sim: devices[0].latency.p50_ms: input should be greater than 0, got 0"),
    ({"latency": {"dist": "lognormal", "p50_ms": 1, "std": 2}}, "sim: devices[0].latency: std is for dist: normal"),
    ({"latency": {"dist": "normal", "p50_ms": 1, "sigma": 0.1}}, "sim: devices[0].latency: sigma is for dist: lognormal"),
    ({"fail": {"kind": "crash"}}, "sim: devices[0].fail: give exactly one of every_n or probability"),
    ({"fail": {"kind": "crash", "every_n": 2, "probability": 0.5}}, "sim: devices[0].fail: give exactly one of every_n or probability"),
    ({"fail": {"kind": "boom", "every_n": 2}}, "sim: devices[0].fail.kind: input should be 'crash', 'hang' or 'error', got 'boom'"),
    ({"fail": {"kind": "error", "probability": 1.5}}, "sim: devices[0].fail.probability: input should be less than or equal to 1, got 1.5"),
    ({"platform": "pc"}, "sim: devices[0].platform: input should be 'linux', 'macos', 'windows', 'android', 'ios' or 'browser', got 'pc'"),
    ({"latency_by_ep": {"nnapi": {"p50_ms": 1}}}, "sim: devices[0]: latency_by_ep: 'nnapi' is not one of this device's eps (cpu)"),
    ({"lat": 3}, "sim: devices[0].lat: unknown key (expected one of: id, platform, facts,"),
    ({"id": "bad id!"}, "sim: devices[0].id: string should match pattern"),
])
def test_bad_device_is_one_line_naming_the_key(change, expected):
    with pytest.raises(ConfigError) as err:
        parse({"devices": [dict(DEV, **change)]})
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(expected), text


def test_duplicate_ids_and_unknown_top_level_keys():
    with pytest.raises(ConfigError, match=r"^sim: devices: device id 'p7' appears twice$"):
        parse({"devices": [DEV, DEV]})
    with pytest.raises(ConfigError, match=r"^sim: device: unknown key \(expected one of: seed, devices\)$"):
        parse({"device": [DEV]})


def test_a_config_error_is_a_value_error_so_the_agent_reports_it_as_configuration():
    # `harness agent serve` turns a driver's ValueError into one ConfigError line.
    with pytest.raises(ValueError, match="sim: devices"):
        load_driver("sim", {"devices": {"id": "x"}})


def test_defaults_follow_the_platform_a_device_stands_in_for():
    drv = load_driver("sim", {"devices": [
        dict(DEV, id="phone"), dict(DEV, id="web", platform="browser"), dict(DEV, id="mac", platform="ios"),
        dict(DEV, id="edge", runtime_version=1.2, eps=["cpu", "xnnpack"]),
    ]})
    devs = {d.local_id: d for d in drv.devices()}
    rt = {k: d.runtimes[0] for k, d in devs.items()}
    assert (rt["phone"].name, rt["phone"].eps, rt["phone"].formats) == ("onnxruntime", ("cpu",), ("onnx",))
    assert (rt["web"].name, rt["web"].eps) == ("onnxruntime-web", ("wasm",))
    assert rt["mac"].name == "coreml" and rt["mac"].formats == ("mlpackage.zip", "mlmodel")
    assert (rt["edge"].version, rt["edge"].eps) == ("1.2", ("cpu", "xnnpack"))
    assert devs["web"].platform == "browser"


def test_facts_carry_the_latency_model_for_planning():
    drv = load_driver("sim", {"devices": [dict(
        DEV, facts={"model": "Pixel 7", "ram_mb": 8192}, eps=["cpu", "nnapi"], drift_per_s=0.02, load_ms=120,
        latency={"dist": "lognormal", "p50_ms": 9, "sigma": 0.2}, latency_by_ep={"nnapi": {"dist": "fixed", "p50_ms": 3}},
    )]})
    (dev,) = drv.devices()
    assert dev.facts["model"] == "Pixel 7" and dev.facts["ram_mb"] == "8192" and dev.facts["simulated"] == "true"
    cpu = LatencyModel.from_fact(dev.facts["sim_latency"])
    nnapi = LatencyModel.from_fact(dev.facts["sim_latency_nnapi"])
    assert (cpu.dist, cpu.p50_ms, cpu.spread, cpu.drift_per_s, cpu.load_ms) == ("lognormal", 9, 0.2, 0.02, 120)
    assert (nnapi.dist, nnapi.p50_ms, nnapi.drift_per_s) == ("fixed", 3, 0.02)


def test_no_devices_means_unavailable_with_the_fix():
    ok, why = load_driver("sim", {}).available()
    assert not ok and "sim: {devices:" in why
