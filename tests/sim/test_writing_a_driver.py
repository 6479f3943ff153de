"""docs/writing-a-driver.md is true: its sim package entry is the file itself,
its agent.yaml blocks load, and its complete `constant` driver, built from
the page's code block and registered with one line, serves jobs through a
real agent over gRPC."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import agents
import modelkit
import simkit
from agents import registry
from agents.agentfile import load_agent_file
from agents.server import AgentConfig, start
from harness.controller.client import AgentClient
from harness.kernel.configfile import ConfigError
from harness.kernel.measure.policy import MeasurePolicy

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "writing-a-driver.md"
QUICK = MeasurePolicy(warmup_runs=2, warmup_s=0, min_runs=20, min_s=0, max_s=5, target_ci=0)


def blocks() -> list[tuple[str, str, str]]:
    """(language, file name, text) of every fenced block that names a file."""
    return re.findall(r"^```(\w+) (\S+)\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.M | re.S)


def block(name: str, nth: int = 0) -> str:
    found = [text for _, n, text in blocks() if n == name]
    assert len(found) > nth, f"{PAGE.name} has no block #{nth} for {name}"
    return found[nth]


def serve(settings, tmp_path: Path):
    return start(AgentConfig(listen="127.0.0.1:0", drivers=settings.drivers, driver_config=settings.sections,
                             cache_dir=str(tmp_path / "cache")))


def test_the_sim_package_entry_on_the_page_is_the_file_itself():
    assert block("agents/sim/__init__.py") == (ROOT / "agents" / "sim" / "__init__.py").read_text()


def test_the_pages_sim_agent_file_serves_its_device(tmp_path):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(block("agent.yaml", 0))
    settings = load_agent_file(cfg)
    assert settings.drivers == ("sim",)
    agent = serve(settings, tmp_path)
    try:
        client = AgentClient("doc", agent.address)
        client.wait_ready()
        devices = {d.id: d for d in client.describe().devices}
        assert devices["sim:pixel-7"].facts["model"] == "Pixel 7"
        client.close()
    finally:
        agent.stop()


@pytest.fixture
def constant_driver(tmp_path, monkeypatch):
    """The page's driver as its own package, registered with its one line."""
    pkg = tmp_path / "drivers" / "agents" / "constant"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(block("agents/constant/__init__.py"))
    monkeypatch.setattr(agents, "__path__", [*agents.__path__, str(pkg.parent)])
    monkeypatch.setitem(registry.DRIVERS, "constant", "agents.constant")
    yield
    sys.modules.pop("agents.constant", None)


def test_the_pages_constant_driver_serves_jobs_through_a_real_agent(constant_driver, tmp_path):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(block("agent.yaml", 1))
    agent = serve(load_agent_file(cfg), tmp_path)
    try:
        client = AgentClient("doc", agent.address)
        client.wait_ready()
        resp = client.describe()
        assert [(d.name, d.available) for d in resp.drivers] == [("constant", True)]
        assert [d.id for d in resp.devices] == ["constant:box-1"]
        digest = simkit.upload(client, modelkit.mlp(tmp_path / "m.onnx", width=8, batch=1))
        res = simkit.run(client, simkit.job("doc-1", "constant:box-1", digest, policy=QUICK))
        assert res["error"] is None
        # target_ci 0: the stop rule ends at min_runs, after two warm-up runs
        assert res["samples_ms"] == [2.0] * 20 and res["validity"]["stop_reason"] == "min_reached"
        assert res["first_run_ms"] == 2.0 and res["validity"]["warmup_done"]
        refused = simkit.run(client, simkit.job("doc-2", "constant:box-1", digest, policy=QUICK, ep="nnapi"))
        assert refused["error"]["kind"] == "unsupported_ep" and refused["samples_ms"] == []
        client.close()
    finally:
        agent.stop()


def test_a_bad_section_is_the_one_line_the_page_shows(constant_driver, tmp_path):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(block("agent.yaml", 1).replace("latency_ms: 2", "latency_ms: 0"))
    with pytest.raises(ConfigError) as err:
        load_agent_file(cfg)
    said = str(err.value).replace(str(cfg), "agent.yaml")
    assert f"`{said}`" in PAGE.read_text().replace("\n", " ")
