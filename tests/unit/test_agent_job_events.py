"""What a job's stream carries (agents/jobs.py): progress at most every
PROGRESS_INTERVAL_S, the latest held back in between and published by a
follower once the interval has passed, never after the result."""

from agents.jobs import JobRecord
from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import wire
from harness.kernel.limits import PROGRESS_INTERVAL_S as EVERY


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def progress(phase, samples=0):
    return pb.RunEvent(job_id="j", progress=pb.Progress(phase=phase, samples=samples))


def phases(events):
    return [e.progress.phase if e.HasField("progress") else e.WhichOneof("kind") for e in events]


def test_progress_within_the_interval_is_held_and_the_latest_published_later():
    clock = Clock()
    rec = JobRecord("j", "sim:d", None, "sim:d", clock=clock)
    rec.last_progress = clock.now  # the job started
    rec.progress(progress("load"))
    rec.progress(progress("measure", 10))
    assert rec.wait_events(0, 0.0) == ([], 0)  # both within the interval: held
    clock.now += EVERY
    events, seen = rec.wait_events(0, 0.0)
    assert phases(events) == ["measure"] and events[0].progress.samples == 10  # the latest of them
    clock.now += EVERY
    rec.progress(progress("probes"))  # due: out at once
    assert phases(rec.wait_events(seen, 0.0)[0]) == ["probes"]


def test_a_held_progress_never_follows_the_result():
    clock = Clock()
    rec = JobRecord("j", "sim:d", None, "sim:d", clock=clock)
    rec.last_progress = clock.now
    rec.progress(progress("placement"))
    rec.publish(pb.RunEvent(job_id="j", result=wire.error_result("sim:d", "job", "x", "y", 0.0)))
    clock.now += 2 * EVERY
    assert phases(rec.wait_events(0, 0.0)[0]) == ["result"]
