"""The agent's gRPC servicer and server lifecycle.

The servicer only translates between protocol messages and the plain values
of the job table, the model cache and the drivers; every guarantee it keeps
is written beside its RPC in protos/harness/v1/agent.proto.
"""

from __future__ import annotations

import hmac
import logging
import re
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

from agents import contract, registry
from agents.cache import ModelCache, UploadError, valid_digest
from agents.jobs import Draining, JobTable, QueueFull
import harness
from harness._proto.v1 import agent_pb2 as pb
from harness._proto.v1 import agent_pb2_grpc as pb_grpc
from harness.kernel import limits, wire

log = logging.getLogger("harness.agent")
SERVICE_NAME = "harness.v1.Agent"
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,199}$")


@dataclass
class AgentConfig:
    listen: str = "127.0.0.1:50051"
    drivers: Sequence[str] = registry.SERVE_DEFAULT
    driver_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cache_dir: Optional[str] = None
    token: Optional[str] = None
    tls: Optional[Mapping[str, str]] = None  # {cert, key, client_ca}
    max_model_bytes: int = limits.MAX_MODEL_BYTES
    max_queue: int = limits.MAX_QUEUE_PER_DEVICE
    max_concurrent_rpcs: int = limits.MAX_CONCURRENT_RPCS


class AgentServicer(pb_grpc.AgentServicer):
    def __init__(self, drivers: Mapping[str, contract.Driver], cache: ModelCache, jobs: JobTable):
        self.drivers = dict(drivers)
        self.cache = cache
        self.jobs = jobs
        self._inventory: dict[str, contract.DeviceInfo] = {}
        self._inv_lock = threading.Lock()

    # -- inventory --------------------------------------------------------------
    def _scan(self) -> tuple[list[pb.DriverStatus], dict[str, contract.DeviceInfo]]:
        statuses, found = [], {}
        for name, drv in self.drivers.items():
            try:
                ok, why = drv.available()
                devices = drv.devices() if ok else []
            except Exception as exc:  # a broken driver is reported, not fatal
                ok, why, devices = False, f"{type(exc).__name__}: {exc}", []
            statuses.append(pb.DriverStatus(name=name, available=ok, reason=why))
            for d in devices:
                found[f"{name}:{d.local_id}"] = d
        with self._inv_lock:
            self._inventory = found
        return statuses, found

    def _device(self, device_id: str) -> Optional[contract.DeviceInfo]:
        with self._inv_lock:
            d = self._inventory.get(device_id)
        if d is None:
            _, found = self._scan()
            d = found.get(device_id)
        return d

    def Describe(self, request, context):
        statuses, found = self._scan()
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
                runtimes=[pb.Runtime(name=r.name, version=r.version, eps=list(r.eps), formats=list(r.formats), build=r.build)
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
            missing = self.cache.missing(list(request.digests))
        except UploadError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return pb.FindMissingModelsResponse(
            missing=[pb.MissingModel(digest=d, committed_bytes=c) for d, c in missing])

    def UploadModel(self, request_iterator, context):
        try:
            first = next(request_iterator)
        except StopIteration:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty upload: the first message must carry the header")
        if not first.HasField("header"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first upload message must carry the header")
        h = first.header
        if self.cache.path(h.digest) is not None:
            return pb.UploadModelResponse(digest=h.digest, already_present=True, received_bytes=0)
        try:
            up = self.cache.begin(h.digest, h.size_bytes, h.format, h.offset)
        except UploadError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        received = 0
        try:
            chunk = first
            while True:
                if len(chunk.data) > limits.CHUNK_BYTES:
                    up.abort(discard=False)
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"chunk of {len(chunk.data)} bytes exceeds the {limits.CHUNK_BYTES}-byte limit")
                if chunk is not first and chunk.HasField("header"):
                    up.abort(discard=False)
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "only the first upload message may carry a header")
                up.write(chunk.data)
                received += len(chunk.data)
                chunk = next(request_iterator, None)
                if chunk is None:
                    break
        except UploadError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except grpc.RpcError:
            # The client went away: keep the committed bytes for a resume.
            up.abort(discard=False)
            raise
        try:
            up.finish()
        except UploadError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        log.info("model %s committed (%d bytes)", h.digest[:12], h.size_bytes)
        return pb.UploadModelResponse(digest=h.digest, already_present=False, received_bytes=received)

    # -- jobs -------------------------------------------------------------------
    def Run(self, request, context) -> Iterator[pb.RunEvent]:
        job = request.job
        if not _JOB_ID.match(job.job_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "job_id: expected 1-200 characters of letters, digits and ._:/+-")
        existing = self.jobs.get(job.job_id)
        if existing is None:
            try:
                spec_parts = self._decode(job)
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            try:
                dev = self._device(job.device_id)
                lane = (dev.exclusive if dev is not None and dev.exclusive else job.device_id)
                rec, attached = self.jobs.submit(job.job_id, job.device_id, self._work(job, spec_parts), lane)
            except Draining as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except QueueFull as exc:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        else:
            rec, attached = existing, True
        if attached:
            log.info("job %s: attached to existing job (%s)", job.job_id, rec.state)
        seen = 0
        if attached and rec.done:
            seen = len(rec.events) - 1  # a finished job answers with its stored result only
        while True:
            for ev in rec.wait_events(seen, limits.EVENT_POLL_S):
                seen += 1
                yield ev
                if ev.HasField("result"):
                    return
            if not context.is_active():
                return  # the job runs on; a re-sent job id re-attaches

    def Cancel(self, request, context):
        found, state = self.jobs.cancel(request.job_id)
        if found:
            log.info("job %s: cancel requested (%s)", request.job_id, state)
        return pb.CancelResponse(found=found, state=state)

    # -- helpers ----------------------------------------------------------------
    def _decode(self, job: pb.Job) -> dict:
        if job.timeout_s <= 0:
            raise ValueError("timeout_s: expected a positive number of seconds")
        if len(job.probes) > limits.MAX_PROBES:
            raise ValueError(f"probes: {len(job.probes)} given, at most {limits.MAX_PROBES} allowed")
        for m in job.models:
            if not valid_digest(m.digest):
                raise ValueError(f"model digest {m.digest[:80]!r}: expected 64 lowercase hex characters")
        probes = tuple(wire.tensors_from_pb(p) for p in job.probes)
        return {"probes": probes, "measure": wire.policy_from_pb(job.measure)}

    def _work(self, job: pb.Job, parts: dict):
        def work(progress, cancel) -> pb.Result:
            started = time.time()
            driver_name, _, local_id = job.device_id.partition(":")
            drv = self.drivers.get(driver_name)
            device = self._device(job.device_id) if drv is not None else None
            if drv is None or device is None:
                return wire.error_result(job.device_id, "job", "unknown_device",
                                         f"device {job.device_id!r} is not on this agent", started)
            if device.state not in ("ready", "busy"):
                return wire.error_result(job.device_id, "job", f"device_{device.state}",
                                         f"device {job.device_id} is {device.state}: {device.state_reason}", started)
            models = []
            for m in job.models:
                path = self.cache.path(m.digest)
                if path is None:
                    return wire.error_result(job.device_id, "job", "model_missing",
                                             f"model {m.digest[:12]} is not in this agent's cache; upload it first",
                                             started)
                models.append(contract.ModelFile(m.digest, m.format, path))
            spec = contract.JobSpec(
                job_id=job.job_id, device_local_id=local_id, models=tuple(models),
                target=contract.RuntimeTarget(job.target.runtime, job.target.version, job.target.ep,
                                          dict(job.target.options)),
                measure=parts["measure"], probes=parts["probes"], timeout_s=job.timeout_s,
                labels=dict(job.labels),
            )
            log.info("job %s: running on %s (%s/%s)", job.job_id, job.device_id, job.target.runtime, job.target.ep)
            res = drv.run(spec, progress, cancel)
            finished = time.time()
            log.info("job %s: finished%s", job.job_id, f" with error {res.error.kind}" if res.error else "")
            return wire.result_to_pb(res, job.device_id, started, finished)

        return work


class TokenAuth(grpc.ServerInterceptor):
    """Bearer-token check on every call but health checks; constant-time
    comparison; the token is never logged."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or details.method.startswith("/grpc.health.v1.Health/"):
            return handler
        given = ""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value
        if hmac.compare_digest(given.encode(), self._expected):
            return handler
        why = "missing authorization metadata" if not given else "invalid token"

        def deny(request_or_iterator, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{why}: this agent requires a token (--token-file)")

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


@dataclass
class RunningAgent:
    server: grpc.Server
    port: int
    address: str
    servicer: AgentServicer
    health: health.HealthServicer
    drivers: Mapping[str, contract.Driver]

    def drain(self, grace: float = limits.SHUTDOWN_GRACE_S) -> None:
        """Report NOT_SERVING, refuse new jobs (UNAVAILABLE, so controllers
        take them elsewhere), cancel running ones and wait for them."""
        self.health.enter_graceful_shutdown()
        self.servicer.jobs.close(timeout=grace)

    def stop(self, grace: float = limits.SHUTDOWN_GRACE_S) -> None:
        self.drain(grace)
        self.server.stop(grace).wait(grace + 1)
        for d in self.drivers.values():
            try:
                d.close()
            except Exception:
                log.exception("closing driver %s", getattr(d, "name", "?"))


def server_options() -> list:
    return [
        ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
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
    drivers = {}
    for name in config.drivers:
        drivers[name] = registry.load_driver(name, config.driver_config.get(name, {}))
    cache_root = Path(config.cache_dir) if config.cache_dir else Path(tempfile.gettempdir()) / "harness-agent-cache"
    cache = ModelCache(cache_root, config.max_model_bytes)
    jobs = JobTable(max_queue=config.max_queue)
    servicer = AgentServicer(drivers, cache, jobs)
    interceptors = [TokenAuth(config.token)] if config.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_concurrent_rpcs, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=server_options(),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
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
    return RunningAgent(server, port, f"{host}:{port}", servicer, health_servicer, drivers)


def _server_credentials(tls: Mapping[str, str]) -> grpc.ServerCredentials:
    def read(key: str) -> bytes:
        if key not in tls:
            raise ValueError(f"tls.{key}: missing (expected a PEM file path)")
        return Path(tls[key]).expanduser().read_bytes()

    client_ca = read("client_ca") if "client_ca" in tls else None
    return grpc.ssl_server_credentials(
        [(read("key"), read("cert"))], root_certificates=client_ca, require_client_auth=client_ca is not None,
    )
