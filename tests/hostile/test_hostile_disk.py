"""Bounded disk: partial uploads expire, the cache has a quota with
least-recently-used eviction of models no queued or running job needs, and
a refused upload leaves no partial file."""

import threading
import time

import grpc

from hostilekit import MiB, assert_refused, cancel_quietly, measure, refusal, run, sha, upload
from hostilekit import job as make_job
from harness._proto.v1 import agent_pb2 as pb

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def blob(tag: int, size: int = MiB) -> bytes:
    return bytes([tag]) * (size - 8) + tag.to_bytes(8, "little")


def committed(agent, digest) -> int:
    missing = agent.stub.FindMissingModels(pb.FindMissingModelsRequest(digests=[digest]), timeout=5).missing
    return {m.digest: m.committed_bytes for m in missing}.get(digest, -1)


def test_partial_uploads_expire(new_agent):
    agent = new_agent(partial_ttl_s=2.0)
    data = blob(1, 2 * MiB)
    err = refusal(lambda: upload(agent.stub, data[:MiB], digest=sha(data), size=len(data)))
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "incomplete")
    assert committed(agent, sha(data)) == MiB
    agent.wait_until(lambda: agent.leftovers() == [], 15, "the abandoned partial upload to expire")
    assert committed(agent, sha(data)) == 0
    agent.assert_alive()


def test_the_cache_quota_evicts_the_least_recently_used_model(new_agent):
    agent = new_agent(cache_quota_bytes=int(2.5 * MiB))
    a, b, c = blob(1), blob(2), blob(3)
    upload(agent.stub, a)
    time.sleep(0.05)
    upload(agent.stub, b)
    # A job uses `a`: it becomes the more recently used of the two.
    _, res = run(agent.stub, make_job("use.a", "sim:tablet", sha(a)))
    assert not res.HasField("error"), res.error.message
    upload(agent.stub, c)
    assert agent.models() == {sha(a), sha(c)}
    assert committed(agent, sha(b)) == 0  # evicted, and said so: it is missing again
    agent.assert_alive()


def test_the_quota_never_evicts_a_model_a_queued_or_running_job_needs(new_agent):
    agent = new_agent(cache_quota_bytes=int(2.5 * MiB))
    a, b, c = blob(1), blob(2), blob(3)
    upload(agent.stub, a)
    upload(agent.stub, b)
    done = []
    long = make_job("q.long", "sim:phone", sha(a), measure=measure(min_runs=1, min_s=60, max_s=61), timeout_s=90)
    queued = make_job("q.next", "sim:phone", sha(b))
    threads = [threading.Thread(target=lambda j=j: done.append(refusal_or_result(agent, j))) for j in (long, queued)]
    try:
        threads[0].start()
        agent.wait_until(lambda: any(d.state == pb.DEVICE_STATE_BUSY for d in
                                     agent.stub.Describe(pb.DescribeRequest(), timeout=5).devices), 20, "busy")
        threads[1].start()
        time.sleep(0.5)
        err = refusal(lambda: upload(agent.stub, c))
        assert_refused(err, EXHAUSTED, "quota")
        assert agent.models() == {sha(a), sha(b)}
        assert agent.leftovers() == []
    finally:
        cancel_quietly(agent.stub, "q.next", "q.long")
        for t in threads:
            t.join(30)
    agent.assert_alive()


def refusal_or_result(agent, j):
    try:
        return run(agent.stub, j, timeout=120)[1]
    except grpc.RpcError as err:
        return err


def test_a_model_larger_than_the_quota_is_refused_before_a_byte(new_agent):
    agent = new_agent(cache_quota_bytes=2 * MiB)
    data = blob(9, 3 * MiB)
    err = refusal(lambda: upload(agent.stub, data))
    assert_refused(err, EXHAUSTED, "quota")
    assert agent.leftovers() == [] and agent.models() == set()
    agent.assert_alive()


def test_a_refused_chunk_leaves_no_partial_file(new_agent):
    agent = new_agent()
    data = blob(5, 3 * MiB)
    err = refusal(lambda: upload(agent.stub, data, parts=[data[:MiB], data[MiB:]]))
    assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, EXHAUSTED) and "chunk" in err.details()
    assert agent.leftovers() == [], "the refused chunk left its partial file"
    assert committed(agent, sha(data)) == 0
    agent.assert_alive()


def test_a_header_in_a_later_chunk_leaves_no_partial_file(new_agent):
    agent = new_agent()
    data = blob(6, 2 * MiB)

    def gen():
        h = pb.ModelHeader(digest=sha(data), size_bytes=len(data), format="onnx")
        yield pb.UploadChunk(header=h, data=data[:MiB])
        yield pb.UploadChunk(header=h, data=data[MiB:])

    err = refusal(lambda: agent.stub.UploadModel(gen(), timeout=10))
    assert_refused(err, grpc.StatusCode.INVALID_ARGUMENT, "header")
    assert agent.leftovers() == []
    agent.assert_alive()


def test_many_abandoned_uploads_do_not_fill_the_disk(new_agent):
    # Each abandoned upload keeps its bytes for a resume, but all of them
    # together count against the quota like committed models do (the agent
    # may refuse a new upload or drop the oldest abandoned one).
    agent = new_agent(cache_quota_bytes=4 * MiB)
    for i in range(10):
        data = blob(20 + i, 2 * MiB)
        err = refusal(lambda: upload(agent.stub, data[:MiB], digest=sha(data), size=len(data)))
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, EXHAUSTED)
        assert "incomplete" in err.details() or "quota" in err.details(), err.details()
        held = sum(p.stat().st_size for p in agent.cache_dir.rglob("*") if p.is_file())
        assert held <= 4 * MiB, f"{held / MiB:.1f} MiB on disk after {i + 1} abandoned uploads"
    agent.assert_alive()
