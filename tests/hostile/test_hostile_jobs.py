"""Job ids, tokens and queued work as an attacker would use them: a job id
reused for a different job, requests without a token that carry large
messages, and a queue filled with large probes."""

import threading
import time

import grpc
import numpy as np
import pytest

from hostilekit import MiB, assert_refused, cancel_quietly, measure, onnx_model, refusal, run, tensor, upload
from hostilekit import job as make_job
from harness._proto.v1 import agent_pb2 as pb
from harness._proto.v1 import agent_pb2_grpc as pb_grpc

from test_hostile_memory import Peak


@pytest.fixture(scope="module")
def digest(sim_agent, tmp_path_factory):
    return upload(sim_agent.stub, onnx_model(tmp_path_factory.mktemp("m") / "m.onnx")).digest


def test_a_job_id_reused_for_a_different_job_is_refused(sim_agent, digest):
    _, first = run(sim_agent.stub, make_job("reuse.1", "sim:tablet", digest))
    for changed in (make_job("reuse.1", "sim:phone", digest),
                    make_job("reuse.1", "sim:tablet", digest, options={"intra_op_threads": "2"}),
                    make_job("reuse.1", "sim:tablet", digest, measure=measure(min_runs=6)),
                    make_job("reuse.1", "sim:tablet", digest,
                             probes=[pb.TensorSet(tensors=[tensor("x", np.zeros((1, 16), np.float32))])])):
        err = refusal(lambda: run(sim_agent.stub, changed))
        assert_refused(err, grpc.StatusCode.ALREADY_EXISTS, "job_id", "reuse.1")
    # The same job re-sent still answers from its stored result; labels are
    # free text and do not make it another job.
    events, again = run(sim_agent.stub, make_job("reuse.1", "sim:tablet", digest, labels={"run": "r2"}))
    assert events == [] and again.started_unix == first.started_unix
    sim_agent.assert_alive()


def test_requests_without_the_token_are_refused_before_their_message_is_read(new_agent, tmp_path):
    agent = new_agent(token="the-lab-token")
    anon = pb_grpc.AgentStub(agent.channel)
    before = agent.settled_rss()
    peak = Peak(agent)
    big = [pb.TensorSet(tensors=[tensor("x", np.ones(5 * MiB, np.float32))])]  # 20 MiB
    errors = []

    def go(i):
        try:
            run(anon, make_job(f"anon.{i}", "sim:phone", "0" * 64, probes=big), timeout=60)
        except grpc.RpcError as err:
            errors.append(err)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    top = peak.end() - before
    assert len(errors) == 8
    for e in errors:
        assert_refused(e, grpc.StatusCode.UNAUTHENTICATED, "token")
    # Reading eight 20 MiB requests before refusing them costs 160 MiB.
    assert top < 64 * MiB, f"resident memory peaked {top / MiB:.0f} MiB above the start"
    md = (("authorization", "Bearer the-lab-token"),)
    assert agent.stub.Describe(pb.DescribeRequest(), timeout=10, metadata=md).devices


def test_queued_probes_are_bounded(new_agent, tmp_path):
    agent = new_agent(max_queue=80)
    digest = upload(agent.stub, onnx_model(tmp_path / "m.onnx")).digest
    before = agent.settled_rss()
    outcomes, threads = [], []

    def go(j):
        try:
            outcomes.append(run(agent.stub, j, timeout=120)[1])
        except grpc.RpcError as err:
            outcomes.append(err)

    long = make_job("big.long", "sim:phone", digest, measure=measure(min_runs=1, min_s=60, max_s=61), timeout_s=90)
    threads.append(threading.Thread(target=go, args=(long,)))
    threads[0].start()
    ids = [f"big.{i}" for i in range(20)]
    try:
        agent.wait_until(lambda: any(d.state == pb.DEVICE_STATE_BUSY for d in
                                     agent.stub.Describe(pb.DescribeRequest(), timeout=5).devices), 20, "busy")
        for i, j in enumerate(ids):
            probes = [pb.TensorSet(tensors=[tensor("x", np.full(5 * MiB, i, np.float32))])]  # 20 MiB each
            t = threading.Thread(target=go, args=(make_job(j, "sim:phone", digest, probes=probes),))
            t.start()
            threads.append(t)
            t.join(0.3)  # one after another, so the order of admission is known
        time.sleep(1.0)
        grown = agent.settled_rss() - before
        refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
        assert refused, "twenty 20 MiB probe sets were all queued"
        for e in refused:
            assert_refused(e, grpc.StatusCode.RESOURCE_EXHAUSTED, "probe", "limit")
        # Every queued job's probes in memory: 400 MiB and more.
        assert grown < 400 * MiB, f"resident memory grew {grown / MiB:.0f} MiB with jobs queued"
        agent.assert_alive()
    finally:
        cancel_quietly(agent.stub, *reversed(ids), "big.long")
        for t in threads:
            t.join(60)
    agent.assert_alive()
