"""The controller's side of the agent protocol: deadlines on every call,
automatic retry of UNAVAILABLE only (jittered exponential backoff), uploads
that skip what the agent holds and resume what it half holds."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import grpc
import grpc.experimental

from harness._proto.v1 import agent_pb2 as pb
from harness._proto.v1 import agent_pb2_grpc as pb_grpc
from harness.kernel import limits


class AgentError(Exception):
    """A failure talking to an agent, phrased for the user."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Credentials:
    token: Optional[str] = None
    ca: Optional[bytes] = None
    cert: Optional[bytes] = None
    key: Optional[bytes] = None


# Interceptors every client channel gets (tests use this to watch every call).
DEFAULT_INTERCEPTORS: list = []


def _channel_options(keepalive_s: float, keepalive_timeout_s: float) -> list:
    return [
        ("grpc.max_receive_message_length", limits.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", limits.MAX_MESSAGE_BYTES),
        # Pings on long Run streams: a frozen or vanished agent is noticed
        # within keepalive + timeout instead of at the job's deadline.
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC otherwise spaces pings on a quiet stream by minutes, which
        # would hide a frozen agent for that long.
        ("grpc.http2.min_time_between_pings_ms", int(keepalive_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive_s * 1000)),
        # Newer gRPC times every ping out on its own clock (a minute by default).
        ("grpc.http2.ping_timeout_ms", int(keepalive_timeout_s * 1000)),
        # Retries are ours (UNAVAILABLE only, with our backoff).
        ("grpc.enable_retries", 0),
        # A Run stream's events are read on the thread that follows it
        # instead of being handed over by the channel's polling thread: gRPC
        # Python's own benchmarks found it markedly cheaper
        # (grpc/_channel.py, _SingleThreadedUnaryStreamMultiCallable), and a
        # controller follows hundreds of streams. A job sent ahead waits on
        # the agent; its events are read once it is followed (RunStream).
        (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    ]


def backoff_delays(attempts: int, base: float = limits.RETRY_BASE_DELAY_S,
                   cap: float = limits.RETRY_MAX_DELAY_S, rng: random.Random | None = None) -> list[float]:
    """Full-jitter exponential backoff: attempt k waits U(0, min(cap, base*2^k))."""
    r = rng or random.Random()
    return [r.uniform(0, min(cap, base * (2 ** k))) for k in range(attempts)]


class AgentClient:
    def __init__(self, name: str, address: str, creds: Credentials = Credentials(),
                 sleep: Callable[[float], None] = time.sleep,
                 keepalive_s: float = limits.KEEPALIVE_S, keepalive_timeout_s: float = limits.KEEPALIVE_TIMEOUT_S,
                 connect_timeout_s: float = limits.CONNECT_TIMEOUT_S):
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self.address = address
        self.creds = creds
        self._sleep = sleep
        options = _channel_options(keepalive_s, keepalive_timeout_s)
        if creds.ca is not None:
            ssl = grpc.ssl_channel_credentials(root_certificates=creds.ca, private_key=creds.key,
                                               certificate_chain=creds.cert)
            self._raw_channel = grpc.secure_channel(address, ssl, options=options)
        else:
            self._raw_channel = grpc.insecure_channel(address, options=options)
        self.channel = grpc.intercept_channel(self._raw_channel, *DEFAULT_INTERCEPTORS) \
            if DEFAULT_INTERCEPTORS else self._raw_channel
        self.stub = pb_grpc.AgentStub(self.channel)
        self._metadata = (("authorization", f"Bearer {creds.token}"),) if creds.token else ()

    def close(self) -> None:
        self._raw_channel.close()

    # -- plumbing ----------------------------------------------------------------
    def _describe_error(self, what: str, err: grpc.RpcError) -> AgentError:
        code = err.code() if hasattr(err, "code") else None
        details = err.details() if hasattr(err, "details") else str(err)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            hint = ("this agent requires a token: set token_file for it in the lab file"
                    if not self.creds.token else "the token in this agent's token_file was refused")
            return AgentError(f"agent {self.name} ({self.address}): {what} refused: {details}; {hint}", code)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return AgentError(f"agent {self.name} ({self.address}): {what} timed out", code)
        if code == grpc.StatusCode.UNAVAILABLE:
            return AgentError(f"agent {self.name} ({self.address}) is unavailable: {details}", code)
        return AgentError(f"agent {self.name} ({self.address}): {what} failed: {code.name if code else ''} {details}", code)

    def _unary(self, what: str, fn, request, timeout: float, attempts: int = limits.RETRY_ATTEMPTS):
        delays = backoff_delays(attempts)
        for k in range(attempts + 1):
            try:
                return fn(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or k == attempts:
                    raise self._describe_error(what, err) from None
                self._sleep(delays[k])
        raise AssertionError("unreachable")

    # -- calls -------------------------------------------------------------------
    def wait_ready(self, timeout: Optional[float] = None) -> None:
        timeout = self.connect_timeout_s if timeout is None else timeout
        try:
            grpc.channel_ready_future(self._raw_channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise AgentError(f"agent {self.name} at {self.address} did not answer within {timeout:g} s "
                             "(is `harness agent serve` running there, and is the address right?)",
                             grpc.StatusCode.UNAVAILABLE) from None

    def describe(self) -> pb.DescribeResponse:
        return self._unary("Describe", self.stub.Describe, pb.DescribeRequest(), limits.DESCRIBE_TIMEOUT_S)

    def find_missing(self, digests: Sequence[str]) -> dict[str, int]:
        resp = self._unary("FindMissingModels", self.stub.FindMissingModels,
                           pb.FindMissingModelsRequest(digests=list(digests)), limits.FIND_MISSING_TIMEOUT_S)
        return {m.digest: m.committed_bytes for m in resp.missing}

    def cancel(self, job_id: str) -> pb.CancelResponse:
        return self._unary("Cancel", self.stub.Cancel, pb.CancelRequest(job_id=job_id), limits.CANCEL_TIMEOUT_S)

    def upload(self, path: Path, digest: str, fmt: str, offset: int = 0,
               chunk_bytes: int = limits.CHUNK_BYTES) -> pb.UploadModelResponse:
        size = Path(path).stat().st_size
        timeout = limits.UPLOAD_BASE_TIMEOUT_S + size / limits.UPLOAD_MIN_RATE_BYTES_S

        def chunks(start: int) -> Iterator[pb.UploadChunk]:
            header = pb.ModelHeader(digest=digest, size_bytes=size, format=fmt, offset=start)
            with open(path, "rb") as fh:
                fh.seek(start)
                data = fh.read(chunk_bytes)
                yield pb.UploadChunk(header=header, data=data)
                while True:
                    data = fh.read(chunk_bytes)
                    if not data:
                        return
                    yield pb.UploadChunk(data=data)

        delays = backoff_delays(limits.RETRY_ATTEMPTS)
        start = offset
        k = 0
        end = time.monotonic() + timeout
        while True:
            try:
                return self.stub.UploadModel(chunks(start), timeout=max(1.0, end - time.monotonic()),
                                             metadata=self._metadata)
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.ABORTED and time.monotonic() < end:
                    # Another controller is uploading the same model: wait for
                    # it to land (or break off), then take over from there.
                    self._sleep(limits.UPLOAD_WAIT_POLL_S)
                    missing = self.find_missing([digest])
                    if digest not in missing:
                        return pb.UploadModelResponse(digest=digest, already_present=True)
                    start = missing[digest]
                    continue
                if code != grpc.StatusCode.UNAVAILABLE or k >= limits.RETRY_ATTEMPTS:
                    raise self._describe_error(f"upload of {Path(path).name}", err) from None
                self._sleep(delays[k])
                k += 1
                # Resume from what the agent committed before the break.
                start = self.find_missing([digest]).get(digest, 0)

    def ensure_models(self, models: Sequence[tuple[Path, str, str]]) -> tuple[int, int]:
        """Upload the (path, digest, format) the agent lacks; returns
        (models uploaded, bytes sent)."""
        if not models:
            return 0, 0
        missing = self.find_missing([d for _, d, _ in models])
        sent = uploaded = 0
        for path, digest, fmt in models:
            if digest not in missing:
                continue
            resp = self.upload(path, digest, fmt, missing[digest])
            if not resp.already_present:  # it may have landed from another controller meanwhile
                uploaded += 1
                sent += resp.received_bytes
        return uploaded, sent

    def run(self, job: pb.Job, on_event: Callable[[pb.RunEvent], None], deadline_s: float) -> pb.Result:
        """Run a job to its result (send_run, then follow its stream)."""
        return self.send_run(job, deadline_s).follow(on_event)

    def send_run(self, job: pb.Job, deadline_s: float) -> "RunStream":
        """Send a job now; its events are read when the stream is followed.
        The agent queues the job on arrival, so a job sent while another runs
        on its device starts the moment that one ends (gRPC's flow control
        holds the few events it sends meanwhile)."""
        return RunStream(self, job, deadline_s)

    def _open_run(self, job: pb.Job, timeout: float):
        return self.stub.Run(pb.RunRequest(job=job), timeout=timeout, metadata=self._metadata)


class RunStream:
    """One job's Run stream. A broken stream (UNAVAILABLE) re-sends the same
    job id, which re-attaches to the running job on the agent."""

    def __init__(self, client: AgentClient, job: pb.Job, deadline_s: float):
        self.client, self.job, self.deadline_s = client, job, deadline_s
        self._end = time.monotonic() + deadline_s
        self._call = client._open_run(job, deadline_s)  # the request goes out now

    def follow(self, on_event: Callable[[pb.RunEvent], None], retries: int = limits.RETRY_ATTEMPTS) -> pb.Result:
        """The job's result; `retries` re-sends after a broken stream."""
        c, job = self.client, self.job
        delays: list[float] = []  # drawn at the first retry (a fresh Random reads the OS's entropy)
        attempt = 0
        while True:
            remaining = self._end - time.monotonic()
            if remaining <= 0:
                raise AgentError(f"agent {c.name}: job {job.job_id} produced no result within "
                                 f"{self.deadline_s:.0f} s", grpc.StatusCode.DEADLINE_EXCEEDED)
            try:
                if attempt:
                    # A re-sent stream would wait out the whole job deadline on
                    # an agent that accepts TCP but never answers (frozen).
                    c.wait_ready(min(c.connect_timeout_s, remaining))
                    self._call = c._open_run(job, remaining)
                for ev in self._call:
                    if ev.HasField("result"):
                        return ev.result
                    on_event(ev)
                raise AgentError(f"agent {c.name}: job {job.job_id}: the stream ended without a result",
                                 grpc.StatusCode.UNAVAILABLE)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt >= retries:
                    raise c._describe_error(f"job {job.job_id}", err) from None
            except AgentError as err:
                if attempt >= retries:
                    raise err
            delays = delays or backoff_delays(retries)
            c._sleep(delays[attempt])
            attempt += 1


def load_credentials(token_file: Optional[str], tls: Optional[dict], base: Path) -> Credentials:
    def read(p: str) -> bytes:
        path = (base / Path(p).expanduser()).resolve() if not Path(p).expanduser().is_absolute() else Path(p).expanduser()
        try:
            return path.read_bytes()
        except OSError as exc:
            raise AgentError(f"cannot read {path}: {exc.strerror}") from None

    token = None
    if token_file:
        token = read(token_file).decode("utf-8", "replace").strip()
        if not token:
            raise AgentError(f"token file {token_file} is empty")
    if tls:
        return Credentials(token=token, ca=read(tls["ca"]),
                           cert=read(tls["cert"]) if tls.get("cert") else None,
                           key=read(tls["key"]) if tls.get("key") else None)
    return Credentials(token=token)
