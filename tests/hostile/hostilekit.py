"""The hostile-client kit: real agent processes on loopback, raw stubs that
send what a well-behaved controller never would, and the checks every
hostile case ends with: the agent still answers Health and Describe, its
resident memory is back near where it started, and nothing is left in its
cache or work folders.

Agents run `tests/hostile/serve_agent.py` (the real `agents.server.start`)
in their own process, so their memory is their own and a hang or a crash in
the agent cannot take the test process with it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import grpc
import numpy as np
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness._proto.v1 import agent_pb2 as pb
from harness._proto.v1 import agent_pb2_grpc as pb_grpc

MiB = 1 << 20
# The protocol's own numbers (agent.proto: chunks of at most 1 MiB; the
# documented probe limit of 24 MiB per job).
CHUNK = 1 * MiB
PROBE_LIMIT = 24 * MiB
LAUNCHER = Path(__file__).with_name("serve_agent.py")
SERVICE = "harness.v1.Agent"

# Simulated devices: one per runtime family the agent serves, with the
# runtime versions the option allow-list is checked against. `fixed` latency
# keeps jobs short and their length known.
SIM_DEVICES = [
    {"id": "phone", "platform": "android", "runtime_version": "1.20.0", "eps": ["cpu", "nnapi", "xnnpack", "qnn"],
     "latency": {"dist": "fixed", "p50_ms": 1.0}, "load_ms": 1},
    {"id": "tablet", "platform": "android", "runtime_version": "1.20.0", "eps": ["cpu"],
     "latency": {"dist": "fixed", "p50_ms": 1.0}, "load_ms": 1},
    {"id": "web", "platform": "browser", "runtime_version": "1.22.0", "eps": ["wasm", "webgpu", "webnn"],
     "latency": {"dist": "fixed", "p50_ms": 1.0}, "load_ms": 1},
    {"id": "iphone", "platform": "ios", "runtime_version": "8.0",
     "latency": {"dist": "fixed", "p50_ms": 1.0}, "load_ms": 1},
]
IDENT = re.compile(r"[0-9a-f]{64}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    """A job id no other case of this run uses."""
    return f"{prefix}.{next(_ids)}"


class Agent:
    """One agent process on 127.0.0.1:0 with its own cache and work folders."""

    def __init__(self, root: Path, name: str = "hostile", drivers: Iterable[str] = ("sim",),
                 sim_devices: Optional[list] = None, **fields):
        self.dir = Path(root) / f"agent-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir = self.dir / "cache"
        self.work_dir = self.dir / "work"
        drivers = list(drivers)
        driver_config: dict = {}
        if "sim" in drivers:
            driver_config["sim"] = {"seed": 1, "devices": sim_devices if sim_devices is not None else SIM_DEVICES}
        if "host" in drivers:
            driver_config["host"] = {"work_dir": str(self.work_dir)}
        config = {"listen": "127.0.0.1:0", "drivers": drivers, "cache_dir": str(self.cache_dir),
                  "driver_config": driver_config, **fields}
        cfg_path = self.dir / "config.json"
        cfg_path.write_text(json.dumps(config))
        port_file = self.dir / "port"
        port_file.unlink(missing_ok=True)
        self.log_path = self.dir / "agent.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, str(LAUNCHER), str(cfg_path), str(port_file)],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("agent did not start within 60 s")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.address = f"127.0.0.1:{self.port}"
        # A hostile client is not bound by the agent's limits: it may send
        # far more than any agent should take.
        self.channel = self.open_channel()
        self.stub = pb_grpc.AgentStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.ps = psutil.Process(self.proc.pid)

    def open_channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=[
            ("grpc.max_send_message_length", 256 * MiB), ("grpc.max_receive_message_length", 256 * MiB),
            ("grpc.enable_retries", 0)])

    # -- what every case checks at the end ------------------------------------------
    def assert_alive(self, timeout: float = 10.0) -> pb.DescribeResponse:
        """Health says SERVING and Describe lists devices, each within `timeout`."""
        st = self.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout).status
        assert st == health_pb2.HealthCheckResponse.SERVING, f"health is {st}"
        desc = self.stub.Describe(pb.DescribeRequest(), timeout=timeout)
        assert desc.devices, "Describe lists no devices"
        assert self.proc.poll() is None, "the agent process exited"
        return desc

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def settled_rss(self, samples: int = 6, every_s: float = 0.25) -> int:
        """The lowest of a few readings: memory a moment after work ends,
        without the noise of a transient buffer."""
        out = []
        for _ in range(samples):
            out.append(self.rss())
            time.sleep(every_s)
        return min(out)

    def models(self) -> set[str]:
        d = self.cache_dir / "models"
        return {p.name for p in d.iterdir()} if d.is_dir() else set()

    def leftovers(self) -> list[str]:
        """Files in the cache that are not committed models, and anything in
        the work folder: what a refused or abandoned request left behind."""
        out = []
        if self.cache_dir.is_dir():
            for p in sorted(self.cache_dir.rglob("*")):
                if p.is_dir():
                    continue
                rel = p.relative_to(self.cache_dir)
                if rel.parts[0] == "models" and len(rel.parts) == 2 and IDENT.fullmatch(rel.name):
                    continue
                out.append(str(rel))
        if self.work_dir.is_dir():
            for p in sorted(self.work_dir.rglob("*")):
                rel = p.relative_to(self.work_dir)
                # the host driver's folder, and its warm template's own log
                # (agents/host/warm.py Pool): the agent's, not a request's
                if (p.is_dir() and rel.parts == ("harness-host-jobs",)) or (
                        len(rel.parts) == 2 and rel.parts[0] == "harness-host-jobs"
                        and rel.name.startswith("forkserver-") and rel.suffix == ".log"):
                    continue
                out.append(f"work/{rel}")
        return out

    def wait_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < end, f"{what} did not happen within {timeout:g} s"
            time.sleep(0.1)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        try:
            self.channel.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


# -- requests -----------------------------------------------------------------------
def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def upload(stub, data: bytes, fmt: str = "onnx", digest: Optional[str] = None, size: Optional[int] = None,
           offset: int = 0, parts: Optional[list[bytes]] = None, timeout: float = 30.0) -> pb.UploadModelResponse:
    header = pb.ModelHeader(digest=digest or sha(data), size_bytes=len(data) if size is None else size,
                            format=fmt, offset=offset)
    parts = chunks_of(data) if parts is None else parts

    def gen():
        yield pb.UploadChunk(header=header, data=parts[0])
        for c in parts[1:]:
            yield pb.UploadChunk(data=c)

    return stub.UploadModel(gen(), timeout=timeout)


def stalled_upload(stub, digest: str, size: int, release: threading.Event, first: bytes = b"",
                   timeout: float = 60.0):
    """An upload that sends its header (and `first`) then waits for `release`
    before half-closing: a client that stalls mid-stream."""
    def gen():
        yield pb.UploadChunk(header=pb.ModelHeader(digest=digest, size_bytes=size, format="onnx"), data=first)
        release.wait(timeout)

    return stub.UploadModel(gen(), timeout=timeout)


def measure(**kw) -> pb.MeasurePolicy:
    base = dict(warmup_runs=1, warmup_s=0.0, min_runs=5, min_s=0.0, max_s=5.0, target_ci=0.0, max_runs=0)
    base.update(kw)
    return pb.MeasurePolicy(**base)


def tensor(name: str, array: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(array)
    return pb.Tensor(name=name, dtype=a.dtype.name, shape=list(a.shape), data=a.tobytes())


def job(job_id: str, device_id: str, digest: str, fmt: str = "onnx", runtime: str = "onnxruntime",
        ep: str = "cpu", options: Optional[dict] = None, probes: Optional[list] = None,
        timeout_s: float = 30.0, version: str = "", **kw) -> pb.Job:
    if probes is None:
        probes = [pb.TensorSet(tensors=[tensor("x", np.ones((1, 16), np.float32))])]
    fields = dict(job_id=job_id, device_id=device_id, models=[pb.ModelRef(digest=digest, format=fmt)],
                  target=pb.RuntimeTarget(runtime=runtime, version=version, ep=ep, options=options or {}),
                  measure=kw.pop("measure", measure()), probes=probes, timeout_s=timeout_s)
    fields.update(kw)
    return pb.Job(**fields)


def run(stub, j: pb.Job, timeout: float = 30.0) -> tuple[list[pb.RunEvent], pb.Result]:
    """Follow a job to its result; raises grpc.RpcError when refused."""
    events = []
    for ev in stub.Run(pb.RunRequest(job=j), timeout=timeout):
        if ev.HasField("result"):
            return events, ev.result
        events.append(ev)
    raise AssertionError(f"job {j.job_id}: the stream ended without a result after {len(events)} events")


def refusal(call: Callable[[], object]) -> grpc.RpcError:
    """The gRPC error `call` raises; fails the test when it succeeds."""
    try:
        got = call()
    except grpc.RpcError as err:
        return err
    raise AssertionError(f"expected a refusal, got an answer: {str(got)[:300]}")


def assert_refused(err: grpc.RpcError, code: grpc.StatusCode, *words: str) -> None:
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for w in words:
        assert w in details, f"{w!r} is not named in the refusal: {details!r}"


def cancel_quietly(stub, *job_ids: str) -> None:
    for j in job_ids:
        try:
            stub.Cancel(pb.CancelRequest(job_id=j), timeout=5)
        except grpc.RpcError:
            pass


def onnx_model(path: Path) -> bytes:
    import modelkit

    return Path(modelkit.mlp(path, batch=1)).read_bytes()
