"""Every number from the wire is validated: finite, in range, and a refusal
names the field and the limit. A NaN deadline (`NaN <= 0` is false) or an
infinite measurement time would otherwise hold a device lane forever."""

import math

import grpc
import pytest

from hostilekit import assert_refused, cancel_quietly, measure, onnx_model, refusal, run, sha, upload
from hostilekit import job as make_job
from harness._proto.v1 import agent_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def digest(sim_agent, tmp_path_factory):
    return upload(sim_agent.stub, onnx_model(tmp_path_factory.mktemp("m") / "m.onnx")).digest


def _refused_job(agent, j, *words):
    try:
        err = refusal(lambda: run(agent.stub, j, timeout=5))
    finally:
        cancel_quietly(agent.stub, j.job_id)
    assert_refused(err, INVALID, *words)
    desc = agent.assert_alive()
    assert all(d.state == pb.DEVICE_STATE_READY for d in desc.devices), "a refused job holds a device"


@pytest.mark.parametrize("value", [NAN, INF, -INF, -1.0, 0.0, 1e308, 1e7])
def test_timeout_s(sim_agent, digest, value):
    _refused_job(sim_agent, make_job(f"t.{value}", "sim:phone", digest, timeout_s=value), "timeout_s")


@pytest.mark.parametrize("field", ["warmup_s", "min_s", "max_s"])
@pytest.mark.parametrize("value", [NAN, INF, -INF, -1.0, 1e12])
def test_measure_durations(sim_agent, digest, field, value):
    m = measure(**{field: value}) if field != "min_s" else measure(min_s=value, max_s=5.0)
    _refused_job(sim_agent, make_job(f"d.{field}.{value}", "sim:phone", digest, measure=m), f"measure.{field}")


@pytest.mark.parametrize("value", [NAN, INF, -0.5, 1.0, 2.0])
def test_target_ci(sim_agent, digest, value):
    _refused_job(sim_agent, make_job(f"ci.{value}", "sim:phone", digest, measure=measure(target_ci=value)),
                 "measure.target_ci")


@pytest.mark.parametrize("field", ["warmup_runs", "min_runs", "max_runs"])
def test_huge_counts(sim_agent, digest, field):
    # A simulated or real runner would otherwise try to hold 4 billion samples.
    m = measure(**{field: 2**32 - 1})
    _refused_job(sim_agent, make_job(f"n.{field}", "sim:phone", digest, measure=m), f"measure.{field}")


def test_min_s_above_max_s(sim_agent, digest):
    _refused_job(sim_agent, make_job("order.1", "sim:phone", digest, measure=measure(min_s=10.0, max_s=1.0)),
                 "measure.min_s", "measure.max_s")


def test_max_runs_below_min_runs(sim_agent, digest):
    _refused_job(sim_agent, make_job("order.2", "sim:phone", digest, measure=measure(min_runs=50, max_runs=10)),
                 "measure.max_runs", "measure.min_runs")


def _probe(shape, data=b"", dtype="float32", name="x"):
    return [pb.TensorSet(tensors=[pb.Tensor(name=name, dtype=dtype, shape=shape, data=data)])]


@pytest.mark.parametrize("shape,words", [
    ([-1, 16], ["shape"]),
    # The element count overflows int64 to 0, which "matches" empty data.
    ([2**32, 2**32], ["shape"]),
    ([2**31, 2**31, 4], ["shape"]),
    ([2**62], ["shape"]),
    ([1] * 100, ["shape", "dimensions"]),
])
def test_probe_shapes(sim_agent, digest, shape, words):
    _refused_job(sim_agent, make_job(f"s.{len(shape)}.{shape[0]}", "sim:phone", digest, probes=_probe(shape)),
                 *words)


def test_probe_tensor_count(sim_agent, digest):
    many = [pb.TensorSet(tensors=[pb.Tensor(name=f"x{i}", dtype="float32", shape=[1], data=b"\0" * 4)
                                  for i in range(10_000)])]
    _refused_job(sim_agent, make_job("tensors.many", "sim:phone", digest, probes=many), "tensors", "limit")


def test_duplicate_tensor_names(sim_agent, digest):
    twice = [pb.TensorSet(tensors=[pb.Tensor(name="x", dtype="float32", shape=[1], data=b"\0" * 4)] * 2)]
    _refused_job(sim_agent, make_job("tensors.dup", "sim:phone", digest, probes=twice), "'x'")


def test_model_count(sim_agent, digest):
    j = make_job("models.many", "sim:phone", digest)
    j.models.extend([pb.ModelRef(digest=digest, format="onnx")] * 100)
    _refused_job(sim_agent, j, "models", "limit")


def test_label_count_and_size(sim_agent, digest):
    _refused_job(sim_agent, make_job("labels.many", "sim:phone", digest,
                                     labels={f"k{i}": "v" for i in range(1000)}), "labels", "limit")
    _refused_job(sim_agent, make_job("labels.big", "sim:phone", digest, labels={"run": "v" * 100_000}), "labels")


@pytest.mark.parametrize("n", [1500, 100_000])
def test_find_missing_digest_count(sim_agent, n):
    digests = [sha(b"%d" % i) for i in range(n)]
    err = refusal(lambda: sim_agent.stub.FindMissingModels(pb.FindMissingModelsRequest(digests=digests), timeout=10))
    assert err.code() in (INVALID, grpc.StatusCode.RESOURCE_EXHAUSTED)
    details = err.details()
    assert ("digests" in details or "FindMissingModels" in details) and "limit" in details, details
    sim_agent.assert_alive()


@pytest.mark.parametrize("size,offset,code,words", [
    (2**64 - 1, 0, grpc.StatusCode.RESOURCE_EXHAUSTED, ["size_bytes", "limit"]),
    (0, 0, INVALID, ["size_bytes"]),
    (100, 200, grpc.StatusCode.FAILED_PRECONDITION, ["offset"]),
])
def test_upload_header_numbers(sim_agent, size, offset, code, words):
    err = refusal(lambda: upload(sim_agent.stub, b"x" * 10, digest=sha(b"y"), size=size, offset=offset))
    assert_refused(err, code, *words)
    assert sim_agent.leftovers() == []
    sim_agent.assert_alive()
