"""Running a plan: one worker per device, each result stored as it arrives.

The scheduler decides; this module only moves jobs over gRPC and reports.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import grpc

from harness import limits, wire
from harness._proto.v1 import agent_pb2 as pb
from harness.controller.client import AgentClient, AgentError
from harness.controller.plan import AgentDevice, PlannedJob
from harness.controller.scheduler import Scheduler

log = logging.getLogger("harness.controller")


@dataclass
class Outcome:
    job: PlannedJob
    device: Optional[AgentDevice]
    result: Optional[dict]  # wire.result_from_pb
    error: Optional[dict]  # transport-level error row
    attempts: int


def job_message(run_id: str, job: PlannedJob, device: AgentDevice, attempt: int,
                probes: Sequence[pb.TensorSet]) -> pb.Job:
    return pb.Job(
        job_id=f"{run_id}.{job.index:04d}.a{attempt}",
        device_id=device.id,
        models=[pb.ModelRef(digest=job.artefact.digest, format=job.artefact.format)],
        target=pb.RuntimeTarget(runtime=job.target.runtime, version=job.target.version, ep=job.target.ep,
                                options=job.target.str_options()),
        measure=wire.policy_to_pb(job.measure),
        probes=list(probes),
        timeout_s=job.measure.bound_s() + limits.JOB_OVERHEAD_S,
        labels={"run": run_id, "candidate": job.candidate, "profile": job.profile.id, "job": job.key},
    )


def execute(
    run_id: str,
    jobs: Sequence[PlannedJob],
    devices: Mapping[str, AgentDevice],
    clients: Mapping[str, AgentClient],
    probes: Mapping[str, Sequence[pb.TensorSet]],
    on_outcome: Callable[[Outcome], None],
    on_event: Callable[[PlannedJob, AgentDevice, pb.RunEvent], None] = lambda j, d, e: None,
    on_attempt: Callable[[PlannedJob, AgentDevice, int, str, str, str], None] = lambda *a: None,
    max_attempts: int = 3,
    stop: Optional[threading.Event] = None,
) -> None:
    sched = Scheduler(jobs, max_attempts=max_attempts)
    cond = threading.Condition()
    stop = stop or threading.Event()
    errors: list[BaseException] = []
    inflight: dict[str, tuple[AgentClient, str]] = {}

    def worker(dev_key: str) -> None:
        dev = devices[dev_key]
        client = clients[dev.agent]
        while not stop.is_set():
            with cond:
                job = sched.take(dev_key)
                if job is None:
                    if sched.done() or not sched.may_get_work(dev_key):
                        cond.notify_all()
                        return
                    cond.wait(limits.EVENT_POLL_S)
                    continue
                attempt = sched.attempts[job.key]
            msg = job_message(run_id, job, dev, attempt, probes[job.candidate])
            deadline = msg.timeout_s + limits.QUEUE_WAIT_S
            inflight[dev_key] = (client, msg.job_id)
            try:
                res = client.run(msg, lambda ev: on_event(job, dev, ev), deadline)
            except AgentError as err:
                inflight.pop(dev_key, None)
                gone = err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                on_attempt(job, dev, attempt, msg.job_id, "transport_error", str(err))
                with cond:
                    if gone:
                        requeued = sched.transport_failed(dev_key, agent_gone=True)
                    else:
                        sched.finish(dev_key)
                        requeued = False
                    stuck = sched.unrunnable()
                    cond.notify_all()
                if not requeued:
                    on_outcome(Outcome(job, dev, None, {"stage": "transport", "kind": _kind(err), "message": str(err)},
                                       attempt))
                for s in stuck:
                    on_outcome(Outcome(s, None, None, {"stage": "transport", "kind": "no_device_left",
                                                       "message": "every device eligible for this job was lost"},
                                       sched.attempts.get(s.key, 0)))
                if gone:
                    return  # this device's agent is gone; others carry on
                continue
            except BaseException as exc:  # a controller bug must not hang the run
                if not stop.is_set():
                    errors.append(exc)
                stop.set()
                with cond:
                    cond.notify_all()
                return
            inflight.pop(dev_key, None)
            on_attempt(job, dev, attempt, msg.job_id, "result" if not res.HasField("error") else "error_result",
                       res.error.message[:500] if res.HasField("error") else "")
            try:
                on_outcome(Outcome(job, dev, wire.result_from_pb(res), None, attempt))
            except BaseException as exc:
                errors.append(exc)
                stop.set()
            with cond:
                sched.finish(dev_key)
                cond.notify_all()

    keys = sorted({k for j in jobs for k in j.eligible})
    threads = [threading.Thread(target=worker, args=(k,), name=f"dev-{k}", daemon=True) for k in keys]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        # Stop handing out jobs and cancel what runs, so no device is left busy.
        stop.set()
        for client, job_id in list(inflight.values()):
            try:
                client.cancel(job_id)
            except AgentError:
                pass
        raise
    if errors:
        raise errors[0]


def _kind(err: AgentError) -> str:
    if err.code == grpc.StatusCode.UNAVAILABLE:
        return "agent_unavailable"
    if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "deadline_exceeded"
    if err.code == grpc.StatusCode.UNAUTHENTICATED:
        return "unauthenticated"
    return (err.code.name.lower() if err.code else "agent_error")
