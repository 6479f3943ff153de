"""Health and control never starve: uploads, runs and control calls each
have their own concurrency limit, stalled streams are ended by the agent
itself, and a flood of jobs meets the queue limit rather than the RPC limit."""

import threading
import time

import grpc
from grpc_health.v1 import health_pb2

from hostilekit import SERVICE, assert_refused, cancel_quietly, measure, onnx_model, refusal, run, sha, stalled_upload
from hostilekit import job as make_job
from hostilekit import upload
from harness._proto.v1 import agent_pb2 as pb

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def control_answers(agent, timeout=5.0) -> None:
    """Health, Describe and Cancel each answer within `timeout`."""
    t0 = time.monotonic()
    st = agent.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout).status
    assert st == health_pb2.HealthCheckResponse.SERVING
    assert agent.stub.Describe(pb.DescribeRequest(), timeout=timeout).devices
    assert agent.stub.Cancel(pb.CancelRequest(job_id="no.such.job"), timeout=timeout).found is False
    assert time.monotonic() - t0 < 3 * timeout


class Streams:
    """Calls made from threads; each outcome (a value or an RpcError) is kept."""

    def __init__(self):
        self.threads, self.outcomes, self.lock = [], [], threading.Lock()

    def start(self, fn) -> None:
        def go():
            try:
                out = fn()
            except grpc.RpcError as err:
                out = err
            with self.lock:
                self.outcomes.append(out)

        t = threading.Thread(target=go, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "some calls never ended"

    def errors(self) -> list[grpc.RpcError]:
        with self.lock:
            return [o for o in self.outcomes if isinstance(o, grpc.RpcError)]

    def count(self) -> int:
        with self.lock:
            return len(self.outcomes)


def test_stalled_uploads_do_not_block_health_describe_or_cancel(new_agent):
    agent = new_agent(upload_window_s=3.0)
    release = threading.Event()
    streams = Streams()
    for i in range(64):
        streams.start(lambda i=i: stalled_upload(agent.stub, sha(b"%d" % i), 10 << 20, release))
    try:
        time.sleep(1.5)
        control_answers(agent)
        refused = [e for e in streams.errors() if e.code() == EXHAUSTED]
        assert refused, "no upload was refused: the upload class has no limit of its own"
        for e in refused:
            assert_refused(e, EXHAUSTED, "upload", "limit")
    finally:
        release.set()
        streams.join(30)
    # The admitted ones were ended by the agent's rate floor, not by the client.
    agent.wait_until(lambda: agent.leftovers() == [], 15, "the stalled uploads' empty partial files to go")
    agent.assert_alive()


def test_a_stalled_upload_is_cut_by_the_rate_floor_and_stays_resumable(new_agent):
    agent = new_agent(upload_floor_bytes_s=64 * 1024, upload_window_s=1.0)
    data = bytes(range(256)) * 4096  # 1 MiB
    release = threading.Event()
    t0 = time.monotonic()
    try:
        err = refusal(lambda: stalled_upload(agent.stub, sha(data), len(data), release, first=data[:100_000],
                                             timeout=20))
    finally:
        release.set()
    assert time.monotonic() - t0 < 10, "the agent did not end the stalled stream itself"
    assert_refused(err, grpc.StatusCode.DEADLINE_EXCEEDED, "bytes", "floor")
    missing = agent.stub.FindMissingModels(pb.FindMissingModelsRequest(digests=[sha(data)]), timeout=5).missing
    assert [(m.digest, m.committed_bytes) for m in missing] == [(sha(data), 100_000)]
    resp = upload(agent.stub, data[100_000:], digest=sha(data), size=len(data), offset=100_000)
    assert resp.received_bytes == len(data) - 100_000
    assert agent.leftovers() == [] and sha(data) in agent.models()


def test_a_trickling_upload_is_cut_too(new_agent):
    agent = new_agent(upload_floor_bytes_s=64 * 1024, upload_window_s=1.0)
    data = b"t" * 200_000

    def trickle():
        yield pb.UploadChunk(header=pb.ModelHeader(digest=sha(data), size_bytes=len(data), format="onnx"))
        for i in range(200):
            time.sleep(0.1)
            yield pb.UploadChunk(data=data[i * 10:(i + 1) * 10])

    t0 = time.monotonic()
    err = refusal(lambda: agent.stub.UploadModel(trickle(), timeout=30))
    assert time.monotonic() - t0 < 12
    assert_refused(err, grpc.StatusCode.DEADLINE_EXCEEDED, "floor")
    agent.assert_alive()


def _long_job(agent, digest, job_id="long.0", device="sim:phone", seconds=60.0):
    return make_job(job_id, device, digest, measure=measure(min_runs=1, min_s=seconds, max_s=seconds + 1),
                    timeout_s=seconds + 30)


def _wait_running(agent, device="sim:phone"):
    agent.wait_until(lambda: any(d.id == device and d.state == pb.DEVICE_STATE_BUSY
                                 for d in agent.stub.Describe(pb.DescribeRequest(), timeout=5).devices),
                     20, f"{device} to be busy")


def test_queued_run_streams_do_not_block_health_describe_or_cancel(new_agent, tmp_path):
    agent = new_agent()
    digest = upload(agent.stub, onnx_model(tmp_path / "m.onnx")).digest
    streams = Streams()
    ids = ["long.0"] + [f"queued.{i}" for i in range(64)]
    streams.start(lambda: run(agent.stub, _long_job(agent, digest), timeout=120))
    try:
        _wait_running(agent)
        for j in ids[1:]:
            streams.start(lambda j=j: run(agent.stub, make_job(j, "sim:phone", digest), timeout=120))
        time.sleep(2.0)
        control_answers(agent)
        assert not streams.errors(), [e.details() for e in streams.errors()][:3]
    finally:
        cancel_quietly(agent.stub, *reversed(ids))
        streams.join(60)
    agent.assert_alive()


def test_a_job_flood_meets_the_queue_limit_not_the_rpc_limit(new_agent, tmp_path):
    agent = new_agent(max_queue=80)
    digest = upload(agent.stub, onnx_model(tmp_path / "m.onnx")).digest
    streams = Streams()
    streams.start(lambda: run(agent.stub, _long_job(agent, digest), timeout=120))
    ids = [f"flood.{i}" for i in range(100)]
    try:
        _wait_running(agent)
        for j in ids:
            streams.start(lambda j=j: run(agent.stub, make_job(j, "sim:phone", digest), timeout=120))
        agent.wait_until(lambda: len(streams.errors()) >= 20, 30, "20 refusals")
        time.sleep(1.0)
        control_answers(agent)
        errors = streams.errors()
        assert len(errors) == 20, [e.details() for e in errors][:3]
        for e in errors:
            assert_refused(e, EXHAUSTED, "queue", "limit 80")
    finally:
        cancel_quietly(agent.stub, *reversed(ids), "long.0")
        streams.join(60)
    agent.assert_alive()


def test_a_run_stream_that_only_waits_is_ended_by_the_agent(new_agent, tmp_path):
    agent = new_agent(queue_wait_s=2.0)
    digest = upload(agent.stub, onnx_model(tmp_path / "m.onnx")).digest
    streams = Streams()
    streams.start(lambda: run(agent.stub, _long_job(agent, digest), timeout=120))
    try:
        _wait_running(agent)
        t0 = time.monotonic()
        events, res = run(agent.stub, make_job("waits.1", "sim:phone", digest), timeout=30)
        assert time.monotonic() - t0 < 15
        assert res.error.kind == "queue_timeout" and "queue" in res.error.message
        assert all(ev.HasField("queued") for ev in events)
    finally:
        cancel_quietly(agent.stub, "waits.1", "long.0")
        streams.join(60)
    agent.assert_alive()


def test_health_watch_streams_are_bounded(new_agent):
    agent = new_agent()
    calls = [agent.health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=30) for _ in range(80)]
    try:
        time.sleep(1.5)
        control_answers(agent)
    finally:
        for c in calls:
            c.cancel()
    agent.assert_alive()


def test_many_describes_at_once_leave_room_for_cancel_and_health(new_agent):
    agent = new_agent()
    streams = Streams()
    for _ in range(100):
        streams.start(lambda: agent.stub.Describe(pb.DescribeRequest(), timeout=30))
    control_answers(agent)
    streams.join(60)
    for e in streams.errors():
        assert_refused(e, EXHAUSTED, "limit")
    agent.assert_alive()
