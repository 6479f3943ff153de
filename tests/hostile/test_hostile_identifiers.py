"""Exact validation of every identifier on the wire: a whole-string match
(Python's `$` also matches before a final newline, so `^...$` lets
"digest\\n" through to become a file name). Each identifier field is fed a
trailing newline, a NUL, `..`, a 10 KB string and non-ASCII text, and must
be refused with INVALID_ARGUMENT naming the field."""

import grpc
import numpy as np
import pytest

from hostilekit import cancel_quietly, onnx_model, refusal, run, sha, tensor, upload
from hostilekit import job as make_job
from harness._proto.v1 import agent_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GOOD_DIGEST = sha(b"an identifier test")


def hostile_values(good: str) -> dict[str, str]:
    return {
        "newline": good + "\n",
        "nul": good[:2] + "\0" + good[2:],
        "dotdot": "..",
        "10kb": (good * (10240 // max(1, len(good)) + 1))[:10240],
        "non_ascii": good[:-1] + "\u0430",  # Cyrillic a in place of the last character
    }


KINDS = list(hostile_values("x"))


@pytest.fixture(scope="module")
def digest(sim_agent, tmp_path_factory):
    return upload(sim_agent.stub, onnx_model(tmp_path_factory.mktemp("m") / "m.onnx")).digest


def _check(err: grpc.RpcError, field: str) -> None:
    assert err.code() == INVALID, f"{field}: expected INVALID_ARGUMENT, got {err.code().name}: {err.details()}"
    assert field in (err.details() or ""), f"{field} is not named in: {err.details()!r}"
    assert "\0" not in err.details() and len(err.details()) < 2000, "the refusal echoes the whole hostile value"


def _job_with(field: str, value: str, digest: str) -> pb.Job:
    j = make_job("ident.1", "sim:phone", digest)
    if field == "job_id":
        j.job_id = value
    elif field == "device_id":
        j.device_id = value
    elif field == "models[0].digest":
        j.models[0].digest = value
    elif field == "models[0].format":
        j.models[0].format = value
    elif field == "target.runtime":
        j.target.runtime = value
    elif field == "target.version":
        j.target.version = value
    elif field == "target.ep":
        j.target.ep = value
    elif field == "probes[0].tensors[0].name":
        j.probes[0].tensors[0].name = value
    elif field == "labels":
        j.labels[value] = "v"
    else:
        raise AssertionError(field)
    return j


JOB_FIELDS = {
    "job_id": "ident.1", "device_id": "sim:phone", "models[0].digest": GOOD_DIGEST, "models[0].format": "onnx",
    "target.runtime": "onnxruntime", "target.version": "1.20", "target.ep": "cpu",
    "probes[0].tensors[0].name": "x", "labels": "run",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("field", list(JOB_FIELDS))
def test_run_identifiers(sim_agent, digest, field, kind):
    value = hostile_values(JOB_FIELDS[field])[kind]
    j = _job_with(field, value, digest)
    try:
        err = refusal(lambda: run(sim_agent.stub, j, timeout=10))
    finally:
        cancel_quietly(sim_agent.stub, j.job_id if len(j.job_id) < 300 else "x")
    _check(err, field.split("[")[0] if field.startswith(("models", "probes")) else field)
    sim_agent.assert_alive()


@pytest.mark.parametrize("kind", KINDS)
def test_upload_digest(sim_agent, kind):
    value = hostile_values(GOOD_DIGEST)[kind]
    err = refusal(lambda: upload(sim_agent.stub, b"data", digest=value))
    _check(err, "digest")
    assert sim_agent.leftovers() == []


@pytest.mark.parametrize("kind", KINDS)
def test_upload_format(sim_agent, kind):
    err = refusal(lambda: upload(sim_agent.stub, b"data", fmt=hostile_values("onnx")[kind]))
    _check(err, "format")
    assert sim_agent.leftovers() == []


@pytest.mark.parametrize("kind", KINDS)
def test_find_missing_digest(sim_agent, kind):
    value = hostile_values(GOOD_DIGEST)[kind]
    err = refusal(lambda: sim_agent.stub.FindMissingModels(pb.FindMissingModelsRequest(digests=[value]), timeout=5))
    _check(err, "digest")


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_job_id(sim_agent, kind):
    err = refusal(lambda: sim_agent.stub.Cancel(pb.CancelRequest(job_id=hostile_values("ident.1")[kind]), timeout=5))
    _check(err, "job_id")


@pytest.mark.parametrize("job_id", ["a/../b", "run/../../etc", "/abs", "ok..dots", "-leading-dash", "a b"])
def test_job_ids_that_look_like_paths(sim_agent, digest, job_id):
    err = refusal(lambda: run(sim_agent.stub, make_job(job_id, "sim:phone", digest), timeout=10))
    _check(err, "job_id")


@pytest.mark.parametrize("digest_value", [
    "\uff10" * 64,        # fullwidth zeros: int() and str.isdigit() accept them
    "\u0660" * 64,        # Arabic-Indic zeros
    GOOD_DIGEST.upper(),  # the cache's names are lowercase: one model, one name
])
def test_digest_lookalikes(sim_agent, digest_value):
    err = refusal(lambda: upload(sim_agent.stub, b"data", digest=digest_value))
    _check(err, "digest")


def test_device_ids_are_not_normalised_into_another_device(sim_agent, digest):
    # NFKC folds the fullwidth letters to "sim:phone"; the agent must not.
    err = refusal(lambda: run(sim_agent.stub, make_job("norm.1", "sim:\uff50hone", digest), timeout=10))
    _check(err, "device_id")


def test_tensor_names_with_control_characters(sim_agent, digest):
    probes = [pb.TensorSet(tensors=[tensor("x\r\nlog-injection", np.ones((1, 16), np.float32))])]
    err = refusal(lambda: run(sim_agent.stub, make_job("tn.1", "sim:phone", digest, probes=probes), timeout=10))
    _check(err, "probes")
