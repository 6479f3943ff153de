"""Running a plan: one worker per device, each result stored as it arrives.

The scheduler decides; this module moves sessions over gRPC and reports. Each
session of a job is its own agent job; the session book joins a job's
sessions into its one result once the stop rule between sessions says it is
done. When an agent stops answering mid-session, its device is suspended and
the session requeued; the device's worker keeps probing the agent for a
bounded time and, when it answers again, re-uploads what the agent lacks and
takes work again.

A device does not wait a round trip between sessions: once its agent has
answered for the session it runs, the worker sends the next one (a ticket
taken ahead, harness/controller/scheduler.py), which the agent queues behind
it and starts the moment it ends; the worker reads its events after the
first one's result. Not between sessions with a cool-down, behind a long
session, with large probes, or on agents with many devices
(harness/kernel/limits.py, AHEAD_*); an agent whose queue refuses one gets
its device's tickets one at a time from then on.

How an agent can tell a job's later sessions apart (so that it may reuse what
the first one learnt, e.g. placement per model digest): the label `session`
carries the session's number ("1", "2", ...), and a later session's probes
are the timing input alone.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import grpc

from harness._proto.v1 import agent_pb2 as pb
from harness.controller.client import AgentClient, AgentError, RunStream, backoff_delays
from harness.controller.planner import AgentDevice, PlannedJob
from harness.controller.scheduler import Scheduler, Ticket
from harness.controller.sessions import SessionBook
from harness.kernel import limits, wire

log = logging.getLogger("harness.controller")


@dataclass
class Outcome:
    job: PlannedJob
    device: Optional[AgentDevice]
    result: Optional[dict]  # wire.result_from_pb
    error: Optional[dict]  # transport-level error row
    attempts: int


def agent_job_id(run_id: str, job: PlannedJob, attempt: int, session: int = 1) -> str:
    # Stable across controller restarts: a resumed run re-sends the id of an
    # attempt that was in flight, and the agent answers with that attempt's
    # result instead of running it twice.
    s = "" if session == 1 else f".s{session}"
    return f"{run_id}.{job.index:04d}{s}.a{attempt}"


def job_message(run_id: str, ticket: Ticket, device: AgentDevice, attempt: int,
                probes: Sequence[pb.TensorSet]) -> pb.Job:
    job = ticket.job
    policy = job.measure.for_session()
    return pb.Job(
        job_id=agent_job_id(run_id, job, attempt, ticket.session),
        device_id=device.id,
        models=[pb.ModelRef(digest=job.artefact.digest, format=job.artefact.format)],
        target=pb.RuntimeTarget(runtime=job.target.runtime, version=job.target.version, ep=job.target.ep,
                                options=job.target.str_options()),
        measure=wire.policy_to_pb(policy),
        # Parity needs every probe once; later sessions time the first only.
        probes=list(probes) if ticket.session == 1 else list(probes)[:1],
        timeout_s=policy.bound_s() + limits.JOB_OVERHEAD_S,
        labels={"run": run_id, "candidate": job.candidate, "profile": job.profile.id, "job": job.key,
                "session": str(ticket.session)},
    )


@dataclass
class _Flight:
    """A ticket whose job has been sent to its agent."""
    ticket: Ticket
    attempt: int
    msg: pb.Job
    stream: RunStream
    ahead: bool  # sent while another ticket ran on its device


def _small_enough(probes: Mapping[str, Sequence[pb.TensorSet]]) -> Callable[[Ticket], bool]:
    """Whether a ticket's probes (all of them for a first session, the first
    for a later one: job_message) are small enough to wait on an agent."""
    first = {c: sum(p.ByteSize() for p in ps) for c, ps in probes.items()}
    later = {c: ps[0].ByteSize() if ps else 0 for c, ps in probes.items()}
    return lambda t: (first if t.session == 1 else later).get(t.job.candidate, 0) <= limits.AHEAD_MAX_PROBE_BYTES


@dataclass
class Hooks:
    on_outcome: Callable[[Outcome], None]
    on_event: Callable[[PlannedJob, AgentDevice, pb.RunEvent], None] = lambda j, d, e: None
    # (ticket, device, attempt, agent job id, outcome, message)
    on_attempt: Callable[..., None] = lambda *a: None
    # Re-upload whatever the agent lacks (after a restart it may hold nothing).
    ensure_models: Callable[[str], None] = lambda agent: None
    on_device: Callable[[AgentDevice, str], None] = lambda d, state: None
    # A session finished and its job measures another: (job, device, sessions done).
    on_session: Callable[[PlannedJob, AgentDevice, int], None] = lambda j, d, n: None


def execute(
    run_id: str,
    jobs: Sequence[PlannedJob],
    devices: Mapping[str, AgentDevice],
    clients: Mapping[str, AgentClient],
    probes: Mapping[str, Sequence[pb.TensorSet]],
    hooks: Hooks,
    max_attempts: int = limits.MAX_JOB_ATTEMPTS,
    prior_attempts: Optional[Mapping[str, int]] = None,
    stop: Optional[threading.Event] = None,
    return_wait_s: float = limits.AGENT_RETURN_WAIT_S,
    cooldown_s: float = 0.0,
) -> None:
    sched = Scheduler(jobs, max_attempts=max_attempts, prior_attempts=prior_attempts or {})
    book = SessionBook()
    cond = threading.Condition()
    stop = stop or threading.Event()
    errors: list[BaseException] = []
    inflight: dict[str, AgentClient] = {}  # agent job id -> its agent
    small = _small_enough(probes)
    per_agent: dict[str, int] = {}
    for d in devices.values():
        per_agent[d.agent] = per_agent.get(d.agent, 0) + 1

    def report_stuck() -> None:
        with cond:
            stuck = sched.unrunnable()
            cond.notify_all()
        for s in stuck:
            hooks.on_outcome(Outcome(s, None, None, {"stage": "transport", "kind": "no_device_left",
                                                     "message": "every device eligible for this job was lost"},
                                     sched.attempts.get(s.key, 0)))

    def wait_for_return(dev: AgentDevice, client: AgentClient) -> bool:
        """Probe a lost agent until it answers with the device, or give up."""
        end = time.monotonic() + return_wait_s
        for delay in backoff_delays(64, base=0.5, cap=5.0):
            if stop.is_set() or time.monotonic() >= end:
                return False
            with cond:
                if sched.done() or not sched.may_get_work(dev.key):
                    return False
            try:
                client.wait_ready(timeout=min(limits.CONNECT_TIMEOUT_S, max(0.1, end - time.monotonic())))
                present = any(d.id == dev.id for d in client.describe().devices)
                if present:
                    hooks.ensure_models(dev.agent)
                    return True
            except AgentError:
                pass
            stop.wait(delay)
        return False

    def send(dev: AgentDevice, client: AgentClient, ticket: Ticket, attempt: int, ahead: bool) -> _Flight:
        if ticket.session == 1:
            book.reset(ticket.job.key)  # a first session (or a restart): nothing from before counts
        elif cooldown_s > 0:
            # Independent sessions: let the device settle between them.
            stop.wait(cooldown_s)
        msg = job_message(run_id, ticket, dev, attempt, probes[ticket.job.candidate])
        inflight[msg.job_id] = client
        return _Flight(ticket, attempt, msg, client.send_run(msg, msg.timeout_s + limits.QUEUE_WAIT_S), ahead)

    def worker(dev_key: str, first: Optional[_Flight]) -> None:
        dev = devices[dev_key]
        client = clients[dev.agent]
        # A flight sent and not yet followed (the first one, or one sent ahead
        # behind the flight followed): at most one.
        sent: list[_Flight] = [first] if first is not None else []
        may_send_ahead = [cooldown_s <= 0 and per_agent[dev.agent] <= limits.AHEAD_MAX_AGENT_DEVICES]
        lost = False  # the flight followed last lost its agent

        def queue_ahead(behind: Ticket) -> None:
            """Once the agent has answered for the running ticket (so it gets
            them in order), send the device's next ticket behind it."""
            if sent or not may_send_ahead[0] or stop.is_set() \
                    or behind.job.measure.for_session().bound_s() > limits.AHEAD_MAX_BEHIND_S:
                return
            with cond:
                ticket = sched.take_ahead(dev_key, small)
                attempt = sched.attempts[ticket.key] if ticket is not None else 0
            if ticket is not None:
                sent.append(send(dev, client, ticket, attempt, True))

        while not stop.is_set():
            if sent:
                flight = sent.pop()
            else:
                with cond:
                    if dev_key in sched.suspended:
                        ticket = None
                    else:
                        ticket = sched.take(dev_key)
                        if ticket is None:
                            if sched.done() or not sched.may_get_work(dev_key):
                                cond.notify_all()
                                return
                            cond.wait(limits.EVENT_POLL_S)
                            continue
                        attempt = sched.attempts[ticket.key]
                if ticket is None:  # suspended: wait for the agent to come back
                    hooks.on_device(dev, "lost")
                    back = wait_for_return(dev, client)
                    with cond:
                        (sched.revive if back else sched.abandon)(dev_key)
                        cond.notify_all()
                    hooks.on_device(dev, "back" if back else "abandoned")
                    if not back:
                        report_stuck()
                        return
                    continue
                flight = send(dev, client, ticket, attempt, False)
            ticket, attempt, msg, job = flight.ticket, flight.attempt, flight.msg, flight.ticket.job
            # Behind a flight that lost its agent, one that fails too is not
            # re-sent here: the device waits for its agent (wait_for_return).
            retries, lost = 0 if lost and flight.ahead else limits.RETRY_ATTEMPTS, False

            def on_event(ev: pb.RunEvent, job: PlannedJob = job, ticket: Ticket = ticket,
                         opening: bool = flight is first) -> None:
                # Behind the opening round, nothing goes ahead before the job's
                # first progress: every device's first job reaches its agent
                # before any device's second.
                if not opening or ev.HasField("progress"):
                    queue_ahead(ticket)
                hooks.on_event(job, dev, ev)

            try:
                res = flight.stream.follow(on_event, retries)
            except AgentError as err:
                inflight.pop(msg.job_id, None)
                if flight.ahead and err.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # The agent's queue was full: this device takes its tickets one at a time from now on.
                    may_send_ahead[0] = False
                    with cond:
                        sched.untake(dev_key, ticket)
                        cond.notify_all()
                    continue
                lost = err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                hooks.on_attempt(ticket, dev, attempt, msg.job_id, "transport_error", str(err))
                with cond:
                    requeued = sched.transport_failed(dev_key, ticket) if lost \
                        else (sched.finish(dev_key, ticket=ticket) or False)
                    cond.notify_all()
                if not requeued:
                    book.reset(job.key)
                    hooks.on_outcome(Outcome(job, dev, None, {"stage": "transport", "kind": _kind(err),
                                                              "message": str(err)}, attempt))
                report_stuck()
                continue
            except BaseException as exc:  # a controller bug must not hang the run
                if not stop.is_set():
                    errors.append(exc)
                stop.set()
                with cond:
                    cond.notify_all()
                return
            inflight.pop(msg.job_id, None)
            kind = res.error.kind if res.HasField("error") else ""
            hooks.on_attempt(ticket, dev, attempt, msg.job_id, "result" if not kind else "error_result",
                             res.error.message[:500] if kind else "")
            if kind == "model_missing" or (flight.ahead and kind == "queue_timeout"):
                # The agent restarted without its cache (upload again and
                # retry), or a job sent ahead waited past its agent's limit.
                if kind == "model_missing":
                    try:
                        hooks.ensure_models(dev.agent)
                    except AgentError:
                        pass
                else:
                    may_send_ahead[0] = False
                with cond:
                    retried = sched.retry(dev_key, ticket)
                    cond.notify_all()
                if retried:
                    continue
                result, attempts = wire.result_from_pb(res), attempt
            else:
                done = book.add(job, wire.result_from_pb(res), attempt)
                with cond:
                    sched.finish(dev_key, more=done is None, ticket=ticket)
                    cond.notify_all()
                if done is None:
                    hooks.on_session(job, dev, book.count(job.key))
                    continue
                result, attempts = book.result(job.key, done)
            try:
                hooks.on_outcome(Outcome(job, dev, result, None, attempts))
            except BaseException as exc:
                errors.append(exc)
                stop.set()

    keys = sorted({k for j in jobs for k in j.eligible})
    # Every device's first ticket goes out in one pass before the workers
    # start: hundreds of threads starting while others already stream would
    # spread the first round over their start-up.
    threads = []
    try:
        first: dict[str, _Flight] = {}
        for k in keys:
            with cond:
                ticket = sched.take(k)
            if ticket is not None:
                first[k] = send(devices[k], clients[devices[k].agent], ticket, sched.attempts[ticket.key], False)
        threads = [threading.Thread(target=worker, args=(k, first.get(k)), name=f"dev-{k}", daemon=True)
                   for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        # Stop handing out jobs and cancel what runs, so no device is left busy.
        stop.set()
        for job_id, client in list(inflight.items()):
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
    return err.code.name.lower() if err.code else "agent_error"
