"""The agent's gRPC servicer and server lifecycle.

The servicer only translates between protocol messages and the plain values
of the job table, the model cache and the drivers; every guarantee it keeps
is written beside its RPC in protos/harness/v1/agent.proto. What a request
may carry is checked in agents.inbound (identifiers, numbers, sizes) and
agents.options (target options) before anything is queued; the RPC boundary
(agents.boundary) keeps each method class to its own limits.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agents import contract, heap, inbound, options, registry, uploads
from agents.boundary import Boundary, MethodClass, Watchdog
from agents.cache import ModelCache
from agents.inventory import Inventory
from agents.jobs import Draining, JobRecord, JobTable, QueueFull
import harness
from harness._proto.v1 import agent_pb2 as pb
from harness._proto.v1 import agent_pb2_grpc as pb_grpc
from harness.kernel import limits, wire

log = logging.getLogger("harness.agent")
SERVICE_NAME = "harness.v1.Agent"


@dataclass
class AgentConfig:
    listen: str = "127.0.0.1:50051"
    drivers: Sequence[str] = ("host",)
    driver_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cache_dir: Optional[str] = None
    token: Optional[str] = None
    tls: Optional[Mapping[str, str]] = None  # {cert, key, client_ca}
    # Custom-op libraries a target may name: {name: absolute path}.
    custom_ops: Mapping[str, str] = field(default_factory=dict)
    max_model_bytes: int = limits.MAX_MODEL_BYTES
    cache_quota_bytes: int = limits.CACHE_QUOTA_BYTES
    partial_ttl_s: float = limits.PARTIAL_UPLOAD_TTL_S
    max_queue: int = limits.MAX_QUEUE_PER_DEVICE
    queue_wait_s: float = limits.QUEUE_WAIT_S
    upload_floor_bytes_s: float = limits.UPLOAD_FLOOR_BYTES_S
    upload_window_s: float = limits.UPLOAD_FLOOR_WINDOW_S


def method_classes() -> tuple[dict[str, MethodClass], MethodClass]:
    """Each RPC's class: its own concurrency limit and message limit."""
    control = MethodClass("control", limits.MAX_CONTROL_RPCS, limits.CONTROL_MESSAGE_BYTES)
    agent = f"/{SERVICE_NAME}/"
    health_ = "/grpc.health.v1.Health/"
    classes = {
        agent + "UploadModel": MethodClass("upload", limits.MAX_UPLOAD_STREAMS, limits.UPLOAD_MESSAGE_BYTES),
        agent + "Run": MethodClass("run", limits.MAX_RUN_STREAMS, limits.RUN_MESSAGE_BYTES),
        agent + "Describe": control,
        agent + "FindMissingModels": control,
        agent + "Cancel": MethodClass("cancel", limits.MAX_CANCEL_RPCS, limits.CONTROL_MESSAGE_BYTES),
        health_ + "Check": MethodClass("health", limits.MAX_HEALTH_CHECKS, limits.CONTROL_MESSAGE_BYTES),
        health_ + "Watch": MethodClass("watch", limits.MAX_HEALTH_WATCHES, limits.CONTROL_MESSAGE_BYTES),
    }
    return classes, MethodClass("other", limits.MAX_OTHER_RPCS, limits.CONTROL_MESSAGE_BYTES)


def _abort(context, exc) -> None:
    context.abort(getattr(grpc.StatusCode, exc.code), str(exc))


class AgentServicer(pb_grpc.AgentServicer):
    def __init__(self, drivers: Mapping[str, contract.Driver], cache: ModelCache, jobs: JobTable,
                 config: AgentConfig, watchdog: Watchdog, custom_ops: Mapping[str, Path]):
        self.drivers = dict(drivers)
        self.cache = cache
        self.jobs = jobs
        self.config = config
        self.watchdog = watchdog
        self.custom_ops = dict(custom_ops)
        self.inventory = Inventory(self.drivers)

    # -- inventory --------------------------------------------------------------
    def Describe(self, request, context):
        statuses, found = self.inventory.scan()
        lanes = self.jobs.busy_lanes()
        devices = []
        for dev_id, d in sorted(found.items()):
            state, reason = d.state, d.state_reason
            running = lanes.get(d.exclusive or dev_id)
            if state == "ready" and running:
                state = "busy"
                if running != dev_id:
                    reason = f"shares this machine with {running}, which is running a job"
            devices.append(pb.Device(
                id=dev_id, driver=dev_id.split(":", 1)[0], platform=d.platform,
                facts={str(k): str(v) for k, v in d.facts.items()},
                runtimes=[pb.Runtime(name=r.name, version=r.version, eps=list(r.eps), formats=list(r.formats),
                                     build=r.build)
                          for r in d.runtimes],
                state=wire.DEVICE_STATE_TO_PB.get(state, pb.DEVICE_STATE_UNSPECIFIED),
                state_reason=reason,
            ))
        return pb.DescribeResponse(
            agent_version=harness.__version__, protocol_version=harness.PROTOCOL_VERSION,
            hostname=socket.gethostname(), drivers=statuses, devices=devices,
        )

    # -- models -----------------------------------------------------------------
    def FindMissingModels(self, request, context):
        try:
            digests = inbound.find_missing(request.digests)
        except inbound.Refused as exc:
            _abort(context, exc)
        return pb.FindMissingModelsResponse(
            missing=[pb.MissingModel(digest=d, committed_bytes=c) for d, c in self.cache.missing(digests)])

    def UploadModel(self, request_iterator, context):
        return uploads.receive(self.cache, request_iterator, context, self.config.upload_floor_bytes_s,
                               self.config.upload_window_s)

    # -- jobs -------------------------------------------------------------------
    def Run(self, request, context) -> Iterator[pb.RunEvent]:
        rec, seen, timeout_s = self._admit(request.job, context)
        del request  # a queued job's stream must not keep the request and its probes alive
        if isinstance(rec, pb.RunEvent):
            yield rec
            return
        yield from self._follow(rec, context, seen, timeout_s)

    def _admit(self, job: pb.Job, context) -> tuple:
        """(record, events already seen, timeout_s) for a job, queued or
        attached to; or (a final event, 0, 0) for a device the agent lacks."""
        try:
            admitted = inbound.job(job)
        except inbound.Refused as exc:
            _abort(context, exc)
        rec = self.jobs.get(job.job_id)
        attached = rec is not None
        if rec is None:
            dev = self.inventory.device(job.device_id)
            if dev is None:
                # Answered at once: no queue, nothing kept for an id the agent does not have.
                return pb.RunEvent(job_id=job.job_id, result=wire.error_result(
                    job.device_id, "job", "unknown_device", f"device {job.device_id!r} is not on this agent",
                    time.time())), 0, 0.0
            try:
                checked = self._options(job, dev)
            except options.OptionRefused as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            digests = tuple(m.digest for m in job.models)
            for d in digests:
                self.cache.use(d)
            try:
                rec, attached = self.jobs.submit(
                    job.job_id, job.device_id, self._work(admitted, checked), dev.exclusive or job.device_id,
                    fingerprint=admitted.fingerprint, digests=digests, cost=admitted.probe_bytes)
            except Draining as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except QueueFull as exc:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        if attached and rec.fingerprint != admitted.fingerprint:
            context.abort(grpc.StatusCode.ALREADY_EXISTS,
                          f"job_id {job.job_id!r} is already used by another job on this agent (its device, models, "
                          "target, measure, probes or timeout differ); send a new job id")
        if attached:
            log.info("job %s: attached to existing job (%s)", job.job_id, rec.state)
        # A finished job answers with its stored result only.
        seen = rec.end_cursor() - 1 if attached and rec.done else 0
        return rec, seen, job.timeout_s

    def _follow(self, rec: JobRecord, context, seen: int, timeout_s: float) -> Iterator[pb.RunEvent]:
        """The job's events until its result. The stream has a server-side
        bound: the queue wait, the job's own time limit and a grace; past it
        the agent ends the stream (the job goes on), and the watchdog cancels
        a stream blocked on a client that stopped reading."""
        bound = self.config.queue_wait_s + timeout_s + limits.RUN_STREAM_GRACE_S
        deadline = time.monotonic() + bound
        token = self.watchdog.watch(context, bound + limits.RUN_STREAM_GRACE_S)
        try:
            while True:
                events, seen = rec.wait_events(seen, limits.EVENT_POLL_S)
                for ev in events:
                    yield ev
                    if ev.HasField("result"):
                        return
                if not context.is_active():
                    return  # the job runs on; a re-sent job id re-attaches
                if time.monotonic() > deadline:
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"job {rec.job_id}: this stream reached the agent's bound of {bound:g} s (queue "
                                  "wait + the job's timeout_s + grace); the job goes on, re-send its id to follow it")
        finally:
            self.watchdog.release(token)

    def _options(self, job: pb.Job, dev: contract.DeviceInfo) -> options.Checked:
        t = job.target
        versions = [r.version for r in dev.runtimes if r.name == t.runtime
                    and (not t.version or r.version == t.version or r.version.startswith(t.version + "."))]
        drv = self.drivers.get(job.device_id.split(":", 1)[0])
        return options.check(t.runtime, versions, t.ep, dict(t.options), self.custom_ops,
                             takes_custom_ops=bool(getattr(drv, "takes_custom_ops", False)))

    def Cancel(self, request, context):
        try:
            inbound.job_id(request.job_id)
        except inbound.Refused as exc:
            _abort(context, exc)
        found, state = self.jobs.cancel(request.job_id)
        if found:
            log.info("job %s: cancel requested (%s)", request.job_id, state)
        return pb.CancelResponse(found=found, state=state)

    # -- helpers ----------------------------------------------------------------
    def _work(self, admitted: inbound.Admitted, checked: options.Checked):
        job = admitted.job  # the request without its probes

        def work(progress, cancel) -> pb.Result:
            started = time.time()
            driver_name, _, local_id = job.device_id.partition(":")
            drv = self.drivers.get(driver_name)
            device = self.inventory.device(job.device_id) if drv is not None else None
            if drv is None or device is None:
                return wire.error_result(job.device_id, "job", "unknown_device",
                                         f"device {job.device_id!r} is not on this agent", started)
            if device.state not in ("ready", "busy"):
                return wire.error_result(job.device_id, "job", f"device_{device.state}",
                                         f"device {job.device_id} is {device.state}: {device.state_reason}", started)
            models = []
            for m in job.models:
                path = self.cache.use(m.digest)
                if path is None:
                    return wire.error_result(job.device_id, "job", "model_missing",
                                             f"model {m.digest[:12]} is not in this agent's cache; upload it first",
                                             started)
                models.append(contract.ModelFile(m.digest, m.format, path))
            spec = contract.JobSpec(
                job_id=job.job_id, device_local_id=local_id, models=tuple(models),
                target=contract.RuntimeTarget(job.target.runtime, job.target.version, job.target.ep,
                                              checked.options),
                measure=admitted.measure, probes=admitted.probes, timeout_s=job.timeout_s,
                labels=dict(job.labels), custom_ops=checked.custom_ops,
            )
            log.info("job %s: running on %s (%s/%s)", job.job_id, job.device_id, job.target.runtime, job.target.ep)
            res = drv.run(spec, progress, cancel)
            finished = time.time()
            log.info("job %s: finished%s", job.job_id, f" with error {res.error.kind}" if res.error else "")
            return wire.result_to_pb(res, job.device_id, started, finished)

        return work


@dataclass
class RunningAgent:
    server: grpc.Server
    port: int
    address: str
    servicer: AgentServicer
    health: health.HealthServicer
    drivers: Mapping[str, contract.Driver]
    janitor: "Janitor"

    def drain(self, grace: float = limits.SHUTDOWN_GRACE_S) -> None:
        """Report NOT_SERVING, refuse new jobs (UNAVAILABLE, so controllers
        take them elsewhere), cancel running ones and wait for them."""
        self.health.enter_graceful_shutdown()
        self.servicer.jobs.close(timeout=grace)

    def stop(self, grace: float = limits.SHUTDOWN_GRACE_S) -> None:
        self.drain(grace)
        self.server.stop(grace).wait(grace + 1)
        self.janitor.close()
        self.servicer.watchdog.close()
        for d in self.drivers.values():
            try:
                d.close()
            except Exception:
                log.exception("closing driver %s", getattr(d, "name", "?"))


class Janitor:
    """Ends jobs that waited too long in a queue, removes partial uploads
    nobody resumed and gives back the heap's free memory once idle
    (agents.heap), every JANITOR_INTERVAL_S."""

    def __init__(self, jobs: JobTable, cache: ModelCache, trim: "heap.IdleTrim"):
        self._stop = threading.Event()

        def loop():
            while not self._stop.wait(limits.JANITOR_INTERVAL_S):
                try:
                    jobs.expire_waiting()
                    cache.expire_partials()
                    trim.tick()
                except Exception:
                    log.exception("janitor")

        self._thread = threading.Thread(target=loop, daemon=True, name="janitor")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(limits.JANITOR_INTERVAL_S + 1)


def server_options() -> list:
    return [
        # One receive limit for every method (core refuses a larger message
        # from its length prefix, unread): the largest legitimate message, a
        # job with its probes. Each method's own limit is checked in
        # agents.boundary.
        ("grpc.max_receive_message_length", limits.RUN_MESSAGE_BYTES),
        ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
        # Detect dead controllers on long Run streams.
        ("grpc.keepalive_time_ms", int(limits.KEEPALIVE_S * 1000)),
        ("grpc.keepalive_timeout_ms", int(limits.KEEPALIVE_TIMEOUT_S * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Accept the controllers' keepalive pings, even on idle channels,
        # instead of answering them with GOAWAY (gRPC's default allows one
        # ping per 5 minutes without data).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(limits.MIN_PING_INTERVAL_S * 1000)),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),
    ]


def start(config: AgentConfig) -> RunningAgent:
    custom_ops = options.configured_libraries(config.custom_ops)
    heap.configure()
    drivers = {}
    for name in config.drivers:
        drivers[name] = registry.load_driver(name, config.driver_config.get(name, {}))
    cache_root = Path(config.cache_dir) if config.cache_dir else Path(tempfile.gettempdir()) / "harness-agent-cache"
    jobs = JobTable(max_queue=config.max_queue, queue_wait_s=config.queue_wait_s)
    cache = ModelCache(cache_root, config.max_model_bytes, config.cache_quota_bytes, config.partial_ttl_s,
                       pinned=jobs.live_digests)
    watchdog = Watchdog(limits.WATCHDOG_TICK_S)
    servicer = AgentServicer(drivers, cache, jobs, config, watchdog, custom_ops)
    classes, other = method_classes()
    # Every admitted call has a thread of its own, so nothing waits in the
    # executor's queue; the headroom answers refusals at once.
    workers = sum(c.limit for c in {c.name: c for c in [*classes.values(), other]}.values()) + limits.RPC_HEADROOM
    boundary = Boundary(classes, other, config.token, watchdog, limits.REQUEST_RECEIVE_S)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        interceptors=[boundary],
        options=server_options(),
        maximum_concurrent_rpcs=workers,
    )
    pb_grpc.add_AgentServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.tls:
        creds = _server_credentials(config.tls)
        port = server.add_secure_port(config.listen, creds)
    else:
        port = server.add_insecure_port(config.listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    server.start()
    for svc in ("", SERVICE_NAME):
        health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
    host = config.listen.rsplit(":", 1)[0]
    trim = heap.IdleTrim(lambda: boundary.serving() > 0 or bool(jobs.busy_lanes()))
    return RunningAgent(server, port, f"{host}:{port}", servicer, health_servicer, drivers, Janitor(jobs, cache, trim))


def _server_credentials(tls: Mapping[str, str]) -> grpc.ServerCredentials:
    def read(key: str) -> bytes:
        if key not in tls:
            raise ValueError(f"tls.{key}: missing (expected a PEM file path)")
        return Path(tls[key]).expanduser().read_bytes()

    client_ca = read("client_ca") if "client_ca" in tls else None
    return grpc.ssl_server_credentials(
        [(read("key"), read("cert"))], root_certificates=client_ca, require_client_auth=client_ca is not None,
    )
