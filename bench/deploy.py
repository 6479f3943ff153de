"""Deploy: a 200 MB model to a `harness agent serve` child over loopback gRPC.

Throughput is the model's size over the wall time of the controller's real
`AgentClient.ensure_models` (FindMissingModels, the chunked upload, the
agent's size and SHA-256 check and its atomic rename). The agent's memory is
its resident set, sampled every few milliseconds during the upload, above
what it held just before: it should stay within a few chunks whatever the
model's size (a 20 MB and a 200 MB upload are compared). A re-deploy of a digest the agent holds must send nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import model_files
from bench.common import ROOT, Row, median, of

MB = 1000 * 1000
MiB = 1024 * 1024
SIZE = 200 * MB
SMALL = 20 * MB
REPS = 5
# What the agent may hold while a model streams in: the chunk being written,
# the few messages gRPC has received and decoded ahead of it, and its HTTP/2
# receive window, which gRPC's bandwidth-delay probing sizes to the link (a
# few MiB). 16 chunks bounds that with room; what matters as much is that it
# does not grow with the model (the 20 MB and 200 MB uploads are compared).
MEMORY_BOUND = 16 * MiB
REDEPLOYS = 10


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Peak resident set of a process while `with` is open, sampled often."""

    def __init__(self, pid: int, every_s: float = 0.002):
        self.pid, self.every_s = pid, every_s
        self.peak_kib = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.before_kib = _rss_kib(self.pid)
        self.peak_kib = self.before_kib
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak_kib = max(self.peak_kib, _rss_kib(self.pid))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak_kib = max(self.peak_kib, _rss_kib(self.pid))

    @property
    def growth_bytes(self) -> int:
        return (self.peak_kib - self.before_kib) * 1024


def start_agent(tmp: Path, name: str = "agent") -> tuple[subprocess.Popen, str]:
    """`harness agent serve` on 127.0.0.1:0 in a child process; (process, address)."""
    port_file = tmp / f"{name}.port"
    exe = Path(sys.executable).parent / "harness"
    proc = subprocess.Popen([str(exe), "agent", "serve", "--listen", "127.0.0.1:0", "--drivers", "host",
                             "--cache-dir", str(tmp / f"{name}-cache"), "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "wb"), cwd=ROOT)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"agent did not start: {(tmp / f'{name}.log').read_text()[-500:]}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


def run(tmp: Path, quick: bool = False) -> list[Row]:
    from harness.kernel import limits
    from harness.controller.client import AgentClient

    size = 50 * MB if quick else SIZE
    model = model_files.big_model(tmp / "big.onnx", size)
    small = model_files.big_model(tmp / "small.onnx", SMALL, seed=1)
    nbytes = model.stat().st_size
    digest, small_digest = model_files.sha256(model), model_files.sha256(small)
    proc, address = start_agent(tmp)
    client = AgentClient("bench", address)
    cache = tmp / "agent-cache" / "models"
    rates, growth, small_growth, secs = [], [], [], []

    def deploy(path: Path, d: str) -> tuple[float, int]:
        (cache / d).unlink(missing_ok=True)
        with RssSampler(proc.pid) as mem:
            t = time.perf_counter()
            uploaded, sent = client.ensure_models([(path, d, "onnx")])
            t = time.perf_counter() - t
        if uploaded != 1 or sent != path.stat().st_size or not (cache / d).is_file():
            raise RuntimeError(f"upload did not land: uploaded={uploaded} sent={sent}")
        return t, mem.growth_bytes

    try:
        client.wait_ready()
        # The first uploads pay for thread pools and allocator arenas.
        deploy(small, small_digest)
        deploy(model, digest)
        for _ in range(1 if quick else REPS):
            small_growth.append(deploy(small, small_digest)[1])
            dt, grown = deploy(model, digest)
            secs.append(dt)
            rates.append(nbytes / dt / MB)
            growth.append(grown)
        again, held_ms, held_sent = [], [], []
        for _ in range(REDEPLOYS):
            t = time.perf_counter()
            n, sent = client.ensure_models([(model, digest, "onnx")])
            held_ms.append((time.perf_counter() - t) * 1e3)
            held_sent.append(sent)
            again.append(n)
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp / "agent-cache", ignore_errors=True)
    rate = median(rates)
    grow, small_grow = median(growth), median(small_growth)
    red = median(held_ms)
    return [
        Row(f"deploy throughput ({nbytes / MB:.0f} MB)", "≥ 300 MB/s", f"{rate:.0f} MB/s", rate >= 300,
            f"{of(rates, 'MB/s')}; {median(secs):.2f} s each; chunk "
            f"{limits.CHUNK_BYTES // 1024} KiB", {"mb_per_s": rates, "seconds": secs, "bytes": nbytes}),
        Row("deploy: agent memory growth", f"≤ {MEMORY_BOUND // limits.CHUNK_BYTES} chunks, flat in model size",
            f"{grow / MiB:.1f} MiB ({grow / limits.CHUNK_BYTES:.1f} chunks)",
            grow <= MEMORY_BOUND and grow <= small_grow + MEMORY_BOUND // 2,
            f"median over uploads of the peak VmRSS of `harness agent serve` above its level just before, "
            f"sampled every 2 ms: {SMALL / MB:.0f} MB model {small_grow / MiB:.1f} MiB; per upload "
            f"{nbytes / MB:.0f} MB model {', '.join(f'{g / MiB:.1f}' for g in growth)} MiB; "
            f"{SMALL / MB:.0f} MB model {', '.join(f'{g / MiB:.1f}' for g in small_growth)} MiB",
            {"growth_bytes": growth, "small_growth_bytes": small_growth}),
        Row("re-deploy of a held digest", "0 bytes, ≤ 50 ms", f"{sum(held_sent)} bytes, {red:.1f} ms",
            sum(held_sent) == 0 and sum(again) == 0 and red <= 50,
            f"{of(held_ms, 'ms')} ({REDEPLOYS} ensure_models calls)",
            {"ms": held_ms, "bytes": held_sent}),
    ]
