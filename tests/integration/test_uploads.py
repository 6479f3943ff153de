"""UploadModel / FindMissingModels over real gRPC: verification, limits,
resumption and hostile input. Nothing unverified may ever be servable."""

import hashlib
import threading
import time

import grpc
import pytest

from agents.server import AgentConfig, start
from harness._proto.v1 import agent_pb2 as pb
from harness.controller.client import AgentClient
from harness.kernel import limits


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send(client, header, chunks):
    def gen():
        yield pb.UploadChunk(header=header, data=chunks[0] if chunks else b"")
        for c in chunks[1:]:
            yield pb.UploadChunk(data=c)

    return client.stub.UploadModel(gen(), timeout=10)


def cache_files(agent):
    root = agent.servicer.cache
    return sorted(p.name for p in root.models.iterdir()), sorted(p.name for p in root.partial.iterdir())


def test_upload_then_skip_then_noop(tmp_path, client, agent):
    data = b"x" * (3 * limits.CHUNK_BYTES + 17)
    path = tmp_path / "m.bin"
    path.write_bytes(data)
    d = sha(data)
    assert client.find_missing([d]) == {d: 0}
    assert client.ensure_models([(path, d, "onnx")]) == (1, len(data))
    assert client.find_missing([d]) == {}
    assert client.ensure_models([(path, d, "onnx")]) == (0, 0)
    resp = send(client, pb.ModelHeader(digest=d, size_bytes=len(data), format="onnx"), [b"ignored"])
    assert resp.already_present
    assert (agent.servicer.cache.models / d).read_bytes() == data


def test_digest_mismatch_leaves_nothing(client, agent):
    data = b"hello model"
    wrong = sha(b"something else")
    with pytest.raises(grpc.RpcError) as err:
        send(client, pb.ModelHeader(digest=wrong, size_bytes=len(data), format="onnx"), [data])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "digest mismatch" in err.value.details()
    assert cache_files(agent) == ([], [])


def test_more_bytes_than_declared_is_refused(client, agent):
    data = b"abcdef"
    with pytest.raises(grpc.RpcError) as err:
        send(client, pb.ModelHeader(digest=sha(data), size_bytes=3, format="onnx"), [data])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cache_files(agent) == ([], [])


def test_truncated_upload_is_refused_and_resumable(client, agent):
    data = bytes(range(256)) * 100
    d = sha(data)
    with pytest.raises(grpc.RpcError) as err:
        send(client, pb.ModelHeader(digest=d, size_bytes=len(data), format="onnx"), [data[:1000]])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "incomplete" in err.value.details()
    assert cache_files(agent) == ([], [d])  # kept as partial, not servable
    assert agent.servicer.cache.path(d) is None
    assert client.find_missing([d]) == {d: 1000}
    with pytest.raises(grpc.RpcError) as err:  # resuming from the wrong offset
        send(client, pb.ModelHeader(digest=d, size_bytes=len(data), format="onnx", offset=0), [data])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    resp = send(client, pb.ModelHeader(digest=d, size_bytes=len(data), format="onnx", offset=1000), [data[1000:]])
    assert resp.received_bytes == len(data) - 1000
    assert cache_files(agent) == ([d], [])


@pytest.mark.parametrize("digest", ["../../etc/passwd", "/abs/path", "a" * 63 + "\0", "A" * 64, ""])
def test_hostile_digests_are_refused(client, agent, digest):
    with pytest.raises(grpc.RpcError) as err:
        send(client, pb.ModelHeader(digest=digest, size_bytes=4, format="onnx"), [b"data"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError):
        client.stub.FindMissingModels(pb.FindMissingModelsRequest(digests=[digest]), timeout=5)
    assert cache_files(agent) == ([], [])


def test_bad_format_and_oversize_chunk(client, agent):
    data = b"z" * (limits.CHUNK_BYTES + 1)
    with pytest.raises(grpc.RpcError) as err:
        send(client, pb.ModelHeader(digest=sha(data), size_bytes=len(data), format="../exe"), [data])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        send(client, pb.ModelHeader(digest=sha(data), size_bytes=len(data), format="onnx"), [data])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceeds" in err.value.details()


def test_declared_size_beyond_limit(tmp_path):
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "c"),
                              max_model_bytes=1000))
    try:
        c = AgentClient("t", agent.address)
        with pytest.raises(grpc.RpcError) as err:
            send(c, pb.ModelHeader(digest=sha(b"x"), size_bytes=10**12, format="onnx"), [b"x"])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert not any((tmp_path / "c" / "partial").iterdir())
        c.close()
    finally:
        agent.stop(1.0)


def test_empty_stream(client):
    with pytest.raises(grpc.RpcError) as err:
        client.stub.UploadModel(iter([]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_two_controllers_upload_the_same_model_at_once(tmp_path, agent, client):

    data = bytes(range(256)) * (8 * 1024)  # 2 MiB: two chunks
    path = tmp_path / "shared.bin"
    path.write_bytes(data)
    d = sha(data)
    half = limits.CHUNK_BYTES
    release = threading.Event()

    def slow_first():  # the first controller stalls mid-upload until released
        yield pb.UploadChunk(header=pb.ModelHeader(digest=d, size_bytes=len(data), format="onnx"), data=data[:half])
        release.wait(30)
        yield pb.UploadChunk(data=data[half:])

    first = {}
    t = threading.Thread(target=lambda: first.update(r=client.stub.UploadModel(slow_first(), timeout=60)))
    t.start()
    deadline = time.monotonic() + 10
    while agent.servicer.cache.committed(d) < half:
        assert time.monotonic() < deadline, "the first upload never started"
        time.sleep(0.02)
    second = AgentClient("second", agent.address)
    box = {}
    t2 = threading.Thread(target=lambda: box.update(r=second.ensure_models([(path, d, "onnx")])))
    t2.start()
    time.sleep(0.5)
    assert t2.is_alive(), "the second controller did not wait for the upload in progress"
    release.set()
    t.join(30)
    t2.join(30)
    second.close()
    assert first["r"].received_bytes == len(data)
    assert box["r"] == (0, 0)  # it waited and found the model landed: nothing sent twice
    assert (agent.servicer.cache.models / d).read_bytes() == data
    assert cache_files(agent) == ([d], [])
