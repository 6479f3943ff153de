"""agent.yaml: drivers as a mapping of sections or as a list with top-level
sections; each section checked by its driver's Config, in one line."""

from __future__ import annotations

import pytest

from agents.agentfile import load_agent_file
from agents.browser.config import BrowserConfig
from agents.sim.config import SimConfig
from harness.kernel.configfile import ConfigError

SIM = "{seed: 3, devices: [{id: p7, platform: android, latency: {p50_ms: 4}}]}"


def load(tmp_path, text):
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p, load_agent_file(p)


def test_drivers_as_a_mapping_carry_their_sections(tmp_path):
    _, s = load(tmp_path, f"drivers:\n  sim: {SIM}\n  browser: {{onnxruntime_web: [1.22, '1.30.0']}}\n")
    assert s.drivers == ("sim", "browser")
    assert isinstance(s.sections["sim"], SimConfig) and s.sections["sim"].devices[0].id == "p7"
    # a version stays as written (YAML reads 1.22 as a float)
    assert isinstance(s.sections["browser"], BrowserConfig) and s.sections["browser"].onnxruntime_web == ["1.22", "1.30.0"]


def test_a_driver_with_no_section_gets_its_defaults(tmp_path):
    _, s = load(tmp_path, "drivers: {host: , sim: {}}\n")
    assert s.drivers == ("host", "sim") and s.sections["host"].device_id is None and s.sections["sim"].devices == []


def test_the_list_form_with_top_level_sections_still_reads(tmp_path):
    _, s = load(tmp_path, f"listen: '127.0.0.1:0'\ndrivers: [sim]\nsim: {SIM}\n")
    assert s.drivers == ("sim",) and s.sections["sim"].seed == 3 and s.file.listen == "127.0.0.1:0"


def test_no_drivers_key_is_the_serve_default(tmp_path):
    _, s = load(tmp_path, "listen: '127.0.0.1:0'\n")
    assert s.drivers == ("host",)


@pytest.mark.parametrize("text,said", [
    (f"drivers: {{sim: {{seed: x}}}}\n", "agent.yaml: drivers.sim: seed: expected an integer, got 'x'"),
    (f"drivers: [sim]\nsim: {{devices: {{id: x}}}}\n", "agent.yaml: sim: devices: expected a list"),
    (f"drivers: {{sim: {SIM}}}\nsim: {SIM}\n", "agent.yaml: sim: given both under drivers: and at the top level"),
    ("drivers: [host, warp]\n", "agent.yaml: drivers: unknown driver 'warp' (known: android, browser, host, ios, sim)"),
    ("drivers: host\n", "agent.yaml: drivers: expected a list of driver names or a mapping"),
    ("drivers: [host]\nport: 3\n", "agent.yaml: port: unknown key"),
    ("drivers: {host: {devcie_id: x}}\n", "agent.yaml: drivers.host: devcie_id: unknown key"),
])
def test_each_problem_is_one_line_naming_file_and_key(tmp_path, text, said):
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_agent_file(p)
    msg = str(err.value).replace(str(p), "agent.yaml")
    assert "\n" not in msg and msg.startswith(said), msg
