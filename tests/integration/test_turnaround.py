"""A run's fixed costs: the local agent is started once per process and lent
to consecutive runs (its warm runners and cached placements with it), never
to two at once, and a run refused for bad input leaves no agent running."""

from __future__ import annotations

import threading

import pytest

import modelkit
from harness import api
from harness.kernel.configfile import ConfigError


def _req(cohort, model, tmp_path):
    return api.RunRequest(cohort=str(cohort), models=[f"m={model}"], drivers=["host"],
                          store=str(tmp_path / "s.sqlite"))


def test_consecutive_runs_share_one_local_agent_and_its_placements(tmp_path, quick_cohort):
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    seen: list = []

    def progress(e):
        if e.get("event") == "plan":
            seen.append(e["agents"]["local"])

    first = api.run_cohort(_req(quick_cohort, model, tmp_path), progress)
    second = api.run_cohort(_req(quick_cohort, model, tmp_path), progress)
    assert seen[0] == seen[1]  # the same agent, at the same address
    a, b = first.report["results"][0], second.report["results"][0]
    assert a["error"] is None and b["error"] is None
    assert a["details"]["runner_start"] == b["details"]["runner_start"] == "fork"
    assert a["details"]["template_pid"] == b["details"]["template_pid"]
    # The second run's job measured the same model, build and options: no placement pass.
    assert "placement_from" in b["details"] and b["placement"] == a["placement"]


def test_two_runs_at_once_get_two_agents(tmp_path, quick_cohort):
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    seen: list = []
    lock = threading.Lock()

    def progress(e):
        if e.get("event") == "plan":
            with lock:
                seen.append(e["agents"]["local"])

    from harness.store import open_store

    open_store(str(tmp_path / "s.sqlite")).close()  # made once (Alembic's upgrade is not for two threads at once)
    outs: list = []
    threads = [threading.Thread(target=lambda: outs.append(api.run_cohort(_req(quick_cohort, model, tmp_path),
                                                                           progress))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(outs) == 2 and all(o.report["results"][0]["error"] is None for o in outs)
    assert len(set(seen)) == 2


def test_bad_input_starts_nothing_that_stays(tmp_path, quick_cohort):
    from harness.agent_start import local_agent
    from harness.controller import run

    started: list = []
    start = local_agent(["host"])

    def counting():
        agent = start()
        started.append(agent)
        return agent

    with pytest.raises(ConfigError, match="m.onnx"):
        run.run(api.RunRequest(cohort=str(quick_cohort), models=[f"m={tmp_path / 'm.onnx'}"], drivers=["host"],
                               store=str(tmp_path / "s.sqlite")), start_local=counting)
    assert not (tmp_path / "s.sqlite").exists()
    # The agent started early was stopped: its server answers no more.
    for agent in started:
        assert agent.server._state.termination_event.is_set()
