"""The boundary's rules as plain functions (no agent process): the option
allow-list's version gate and custom-op resolution, the agent configuration
of custom-op libraries, and the numbers and shapes the wire may carry."""

import math

import pytest

from agents import inbound, options
from harness._proto.v1 import agent_pb2 as pb


def test_the_oldest_runtime_a_job_may_run_on_decides_the_version_gate():
    # A browser with ORT Web 1.30.0 and 1.16.0, a target without a version:
    # the job may land on 1.16.0, where preferredLayout (1.17) does not exist.
    with pytest.raises(options.OptionRefused) as err:
        options.check("onnxruntime-web", ["1.30.0", "1.16.0"], "webgpu", {"ep.preferredLayout": "NHWC"}, {}, False)
    assert "1.17" in str(err.value) and "1.16.0" in str(err.value)
    ok = options.check("onnxruntime-web", ["1.30.0"], "webgpu", {"ep.preferredLayout": "NHWC"}, {}, False)
    assert ok.options == {"ep.preferredLayout": "NHWC"}


def test_ep_options_belong_to_their_ep():
    with pytest.raises(options.OptionRefused) as err:
        options.check("onnxruntime", ["1.20.0"], "cpu", {"ep.htp_performance_mode": "burst"}, {}, False)
    assert "'cpu' execution provider" in str(err.value)
    options.check("onnxruntime", ["1.20.0"], "qnn", {"ep.htp_performance_mode": "burst"}, {}, False)


def test_custom_ops_resolve_to_configured_paths_in_order(tmp_path):
    a, b = tmp_path / "liba.so", tmp_path / "libb.so"
    a.write_bytes(b"")
    b.write_bytes(b"")
    configured = options.configured_libraries({"alpha": str(a), "beta": str(b)})
    got = options.check("onnxruntime", ["1.20.0"], "cpu", {"custom_ops": "beta,alpha"}, configured, True)
    assert got.custom_ops == (b, a) and got.options == {"custom_ops": "beta,alpha"}
    with pytest.raises(options.OptionRefused) as err:
        options.check("onnxruntime", ["1.20.0"], "cpu", {"custom_ops": "alpha"}, configured, False)
    assert "does not load custom-op libraries" in str(err.value)


@pytest.mark.parametrize("section,words", [
    ({"rel": "lib.so"}, ["custom_ops.rel", "absolute"]),
    ({"gone": "/no/such/lib.so"}, ["custom_ops.gone", "not a file"]),
    ({"Bad Name": "/bin/sh"}, ["custom_ops.Bad Name"]),
])
def test_the_agent_configuration_of_custom_ops_is_checked(section, words):
    with pytest.raises(ValueError) as err:
        options.configured_libraries(section)
    for w in words:
        assert w in str(err.value)


def test_every_allow_listed_key_names_a_release_it_exists_in():
    for table in [options.SESSION, *options.EP_OPTIONS.values(), *options.WEB_EP_OPTIONS.values()]:
        for key, rule in table.items():
            assert rule.since == "" or options.version_tuple(rule.since) >= (1, 10), key
            assert rule.check("") is not None or key in ("custom_ops",), f"{key} accepts an empty value"


def test_shape_products_are_computed_without_overflow():
    t = pb.Tensor(name="x", dtype="float32", shape=[2**32, 2**32], data=b"")
    with pytest.raises(inbound.Refused) as err:
        inbound.tensor_bytes("probes[0].tensors", t)
    assert "shape" in str(err.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0])
def test_timeouts(value):
    with pytest.raises(inbound.Refused) as err:
        inbound.seconds("timeout_s", value, 100.0, positive=True)
    assert "timeout_s" in str(err.value)
    assert inbound.seconds("timeout_s", 5.0, 100.0, positive=True) == 5.0


def test_a_refusal_never_echoes_a_whole_hostile_value():
    with pytest.raises(inbound.Refused) as err:
        inbound.job_id("a" * 10_000 + "\n")
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)
