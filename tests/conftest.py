import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
# `harness run` in the tests runs in its own process, as before: a resident
# (harness/resident/) would outlive the suite. tests/integration/test_resident.py
# turns it on with a folder of its own and stops what it started.
os.environ.setdefault("HARNESS_KEEP_AGENT", "0")

from labkit import AgentProcess, harness_cli  # noqa: E402
from pgkit import pg_url, postgres_server, store_url  # noqa: E402,F401 - PostgreSQL fixtures for the store tests


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


@pytest.fixture
def cli():
    return harness_cli


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
