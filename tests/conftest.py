import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture
def agent(tmp_path):
    """A real agent (host driver) on 127.0.0.1:0 with its own cache."""
    from agents.server import AgentConfig, start

    running = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp_path / "cache"),
                                driver_config={"host": {"work_dir": str(tmp_path / "work")}}))
    yield running
    running.stop(grace=1.0)


@pytest.fixture
def client(agent):
    from harness.controller.client import AgentClient

    c = AgentClient("test", agent.address)
    c.wait_ready()
    yield c
    c.close()


@pytest.fixture
def quick_cohort(tmp_path):
    """A cohort on the host CPU with a measure policy of a fraction of a second."""
    root = tmp_path / "profiles"
    (root / "cohorts").mkdir(parents=True)
    (root / "devices").mkdir()
    (root / "devices" / "host-cpu.yaml").write_text(
        "id: host-cpu\nplatform: linux\nmatch: {driver: host}\ntier: mid\nshare: 1.0\nmemory_budget_mb: 1024\n"
        "targets:\n  - {runtime: onnxruntime, ep: cpu, options: {intra_op_threads: 1}}\n")
    (root / "cohorts" / "quick.yaml").write_text(
        "name: quick\ndevices: [host-cpu]\nbudgets: {latency_p90_ms: 1000}\n"
        "measure: {warmup_runs: 2, warmup_s: 0, min_runs: 60, min_s: 0, max_s: 3, target_ci: 0}\n")
    return root / "cohorts" / "quick.yaml"


def harness_cli(*args, cwd=None, timeout=120, check=False):
    """Run the real console script; returns CompletedProcess with text output."""
    exe = shutil.which("harness", path=str(Path(sys.executable).parent)) or "harness"
    return subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=check)


@pytest.fixture
def cli():
    return harness_cli


def c_compiler():
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


class AgentProcess:
    """`harness agent serve` in its own process, on 127.0.0.1:0."""

    def __init__(self, tmp_path, name, drivers="host", extra=(), config=None):
        import subprocess
        import time

        self.name = name
        d = tmp_path / f"agent-{name}"
        d.mkdir(parents=True, exist_ok=True)
        port_file = d / "port"
        exe = Path(sys.executable).parent / "harness"
        args = [str(exe), "agent", "serve", "--listen", "127.0.0.1:0", "--drivers", drivers,
                "--port-file", str(port_file), "--cache-dir", str(d / "cache"), *extra]
        if config:
            args += ["--config", str(config)]
        self.log = open(d / "agent.log", "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, cwd=d)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError((d / "agent.log").read_text())
            if time.monotonic() > deadline:
                raise RuntimeError("agent did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        self.address = f"127.0.0.1:{self.port}"
        self.dir = d

    def lab_line(self):
        return f"  - {{name: {self.name}, address: '{self.address}'}}\n"

    def stop(self):
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
        self.log.close()


@pytest.fixture
def spawn_agent(tmp_path):
    started = []

    def spawn(name, **kw):
        a = AgentProcess(tmp_path, name, **kw)
        started.append(a)
        return a

    yield spawn
    for a in started:
        a.stop()


def write_lab(path, agents):
    path.write_text("agents:\n" + "".join(a.lab_line() for a in agents))
    return path
