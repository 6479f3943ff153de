"""Bounded memory: finished jobs keep only their result, each method has its
own message limit (control messages small, upload chunks at most the chunk
size, probes at most the documented probe limit), and only devices the
agent has get a queue.

Resident-memory thresholds are generous on purpose: the agent's allocator
(glibc malloc, gRPC's own buffers) keeps some freed memory for reuse, and
this machine is shared. Each threshold sits well below what the hole it
guards against costs (named beside it) and well above what one request in
flight needs."""

import threading
import time

import grpc
import numpy as np
import pytest

from hostilekit import CHUNK, MiB, PROBE_LIMIT, onnx_model, refusal, run, sha, tensor, upload
from hostilekit import job as make_job
from harness._proto.v1 import agent_pb2 as pb

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def digest(sim_agent, tmp_path_factory):
    return upload(sim_agent.stub, onnx_model(tmp_path_factory.mktemp("m") / "m.onnx")).digest


def _big_probe(nbytes: int, seed: int) -> list[pb.TensorSet]:
    x = np.random.default_rng(seed).random(nbytes // 4, dtype=np.float32)
    return [pb.TensorSet(tensors=[tensor("x", x)])]


def test_finished_jobs_keep_only_their_result(sim_agent, digest):
    run(sim_agent.stub, make_job("mem.warm", "sim:tablet", digest, probes=_big_probe(8 * MiB, 0)))
    before = sim_agent.settled_rss()
    for i in range(16):
        _, res = run(sim_agent.stub, make_job(f"mem.{i}", "sim:tablet", digest, probes=_big_probe(8 * MiB, i + 1)))
        assert not res.HasField("error"), res.error.message
    grown = sim_agent.settled_rss() - before
    # Keeping each request and its decoded probes costs 16-24 MiB a job
    # (256-384 MiB for these 16); one job in flight needs about 3 x 8 MiB.
    assert grown < 128 * MiB, f"resident memory grew by {grown / MiB:.0f} MiB over 16 finished jobs"
    # The result itself is kept: re-sending a job id answers from it.
    events, res = run(sim_agent.stub, make_job("mem.3", "sim:tablet", digest, probes=_big_probe(8 * MiB, 4)))
    assert events == [] and not res.HasField("error")
    sim_agent.assert_alive()


class Peak:
    """Samples the agent's RSS from a thread while work is under way."""

    def __init__(self, agent):
        self.agent, self.peak, self.stop = agent, agent.rss(), threading.Event()
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.agent.rss())

    def end(self) -> int:
        self.stop.set()
        self.t.join(5)
        return self.peak


def _parallel(n, fn):
    out, threads = [], []
    for i in range(n):
        def go(i=i):
            try:
                out.append(fn(i))
            except grpc.RpcError as err:
                out.append(err)
        threads.append(threading.Thread(target=go))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.mark.parametrize("chunk_mib", [2, 20, 60])
def test_oversized_upload_chunks_are_refused_without_holding_memory(new_agent, chunk_mib):
    agent = new_agent()
    before = agent.settled_rss()
    peak = Peak(agent)

    def send(i):
        data = bytes([i]) * (chunk_mib * MiB)
        return upload(agent.stub, data, parts=[data], timeout=60)

    outcomes = _parallel(8, send)
    top = peak.end() - before
    by_size = 0
    for o in outcomes:
        assert isinstance(o, grpc.RpcError), "an oversized chunk was accepted"
        assert o.code() in (INVALID, EXHAUSTED), o.code()
        d = o.details()
        # Refused for its size, or for the upload class's own concurrency limit.
        assert "chunk" in d or "larger than max" in d or ("upload" in d and "limit" in d), d
        by_size += "chunk" in d or "larger than max" in d
    assert by_size >= 1
    # Eight 60 MiB chunks taken in whole cost 480 MiB and more; what the
    # agent may hold is its few concurrent uploads times its largest message.
    assert top < 256 * MiB, f"resident memory peaked {top / MiB:.0f} MiB above the start"
    assert agent.leftovers() == [], "a refused chunk left a partial file"
    agent.assert_alive()
    # Idle again, the agent gives back what its heaps held free (agents.heap):
    # without that it sat 30-170 MiB above the start here, with it 2-27 MiB.
    assert agent.settled_rss() - before < 64 * MiB


def test_probes_over_the_documented_limit_are_refused(sim_agent, digest):
    probes = _big_probe(PROBE_LIMIT // 2, 1) + _big_probe(PROBE_LIMIT // 2 + 64, 2)
    err = refusal(lambda: run(sim_agent.stub, make_job("probe.big", "sim:tablet", digest, probes=probes)))
    assert err.code() in (INVALID, EXHAUSTED)
    assert "probes" in err.details() and "24 MiB" in err.details(), err.details()
    sim_agent.assert_alive()


@pytest.mark.parametrize("method", ["Describe", "Cancel", "FindMissingModels"])
def test_control_messages_are_small(sim_agent, method):
    # Unknown fields are legal protobuf, so a well-formed message can carry
    # megabytes of junk: the control methods refuse it by size.
    junk = b"\xfa\x3f" + b"\x80\x80\x80\x0a" + b"j" * (20 * MiB)  # field 1023, 20 MiB of bytes
    call = sim_agent.channel.unary_unary(f"/harness.v1.Agent/{method}", request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
    err = refusal(lambda: call(junk, timeout=30))
    assert err.code() in (EXHAUSTED, INVALID), err.code()
    assert method in err.details() and "limit" in err.details(), err.details()
    sim_agent.assert_alive()


def test_unknown_devices_get_no_queue_and_do_not_evict_results(sim_agent, digest):
    _, first = run(sim_agent.stub, make_job("keep.1", "sim:tablet", digest))
    before = sim_agent.settled_rss()
    for i in range(2100):
        events, res = run(sim_agent.stub, make_job(f"ghost.{i}", f"sim:ghost{i}", digest), timeout=10)
        assert res.error.kind == "unknown_device"
        assert not any(ev.HasField("queued") for ev in events), "an unknown device was given a queue"
    assert sim_agent.settled_rss() - before < 64 * MiB
    # The one real result is still held: re-sending its id answers from it.
    events, again = run(sim_agent.stub, make_job("keep.1", "sim:tablet", digest))
    assert events == [] and again.started_unix == first.started_unix
    sim_agent.assert_alive()


def test_chunk_limit_is_the_protocol_chunk(new_agent):
    # Exactly one chunk's worth per message is fine; one byte more is not.
    agent = new_agent()
    data = bytes(range(256)) * (3 * CHUNK // 256)
    assert upload(agent.stub, data).received_bytes == len(data)
    data2 = data[:-1] + b"!"
    err = refusal(lambda: upload(agent.stub, data2, parts=[data2[:CHUNK + 1], data2[CHUNK + 1:]]))
    assert err.code() in (INVALID, EXHAUSTED) and "chunk" in err.details()
    assert agent.leftovers() == []
    time.sleep(0.1)
    agent.assert_alive()
    assert sha(data) in agent.models()
