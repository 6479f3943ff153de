"""Shared helpers for the test suite: the real console script, agent
processes, lab files. (Imported by name; conftest modules are not.)"""

import shutil
import subprocess
import sys
from pathlib import Path


def harness_cli(*args, cwd=None, timeout=120, check=False):
    """Run the real console script; returns CompletedProcess with text output."""
    exe = shutil.which("harness", path=str(Path(sys.executable).parent)) or "harness"
    return subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=check)


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


def write_lab(path, agents):
    path.write_text("agents:\n" + "".join(a.lab_line() for a in agents))
    return path


def host_cohort(tmp_path, name, measure):
    """A cohort of the host CPU alone (one thread), with this measure policy
    (a YAML flow mapping); its profiles live under tmp_path/profiles."""
    root = tmp_path / "profiles"
    (root / "cohorts").mkdir(parents=True, exist_ok=True)
    (root / "devices").mkdir(exist_ok=True)
    (root / "devices" / "host-cpu.yaml").write_text(
        "id: host-cpu\nplatform: linux\nmatch: {driver: host}\n"
        "targets:\n  - {runtime: onnxruntime, ep: cpu, options: {intra_op_threads: 1}}\n")
    path = root / "cohorts" / f"{name}.yaml"
    path.write_text(f"name: {name}\ndevices: [host-cpu]\nmeasure: {measure}\n")
    return path
