"""Fault injection with real processes on loopback: agents killed mid-job,
a controller killed mid-run, two controllers sharing one agent."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelkit
from labkit import harness_cli, host_cohort, write_lab
from harness.controller.client import AgentClient


def cohort(tmp_path, min_s, name="f"):
    return host_cohort(tmp_path, name, f"{{warmup_runs: 1, warmup_s: 0, min_runs: 60, min_s: {min_s}, "
                                       f"max_s: {min_s + 5}, target_ci: 0}}")


def controller(args, cwd):
    exe = Path(sys.executable).parent / "harness"
    return subprocess.Popen([str(exe), "run", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def busy_agent(agents, timeout=60):
    clients = {a.name: AgentClient(a.name, a.address) for a in agents}
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for a in agents:
                try:
                    if any(d.state == 2 for d in clients[a.name].describe().devices):  # DEVICE_STATE_BUSY
                        return a
                except Exception:
                    pass
            time.sleep(0.1)
        raise AssertionError("no agent became busy")
    finally:
        for c in clients.values():
            c.close()


def stored(tmp_path):
    db = sqlite3.connect(tmp_path / ".harness" / "results.sqlite")
    try:
        return db
    except Exception:
        db.close()
        raise


def test_agent_killed_mid_job_job_completes_elsewhere(tmp_path, spawn_agent):
    a, b = spawn_agent("alpha"), spawn_agent("beta")
    lab = write_lab(tmp_path / "lab.yaml", [a, b])
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    ctl = controller(["--cohort", cohort(tmp_path, min_s=3), "--model", f"m={model}", "--lab", lab,
                      "--out", tmp_path / "out"], tmp_path)
    victim = busy_agent([a, b])
    time.sleep(0.5)
    # The agent's children (its runners' warm templates) and theirs (the runners).
    runners = subprocess.run(["pgrep", "-P", str(victim.proc.pid)], capture_output=True, text=True).stdout.split()
    assert runners, "the busy agent has no runner child"
    runners += [pid for parent in list(runners) for pid in
                subprocess.run(["pgrep", "-P", parent], capture_output=True, text=True).stdout.split()]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    out, err = ctl.communicate(timeout=180)
    assert ctl.returncode == 0, err
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    [r] = doc["results"]  # exactly one result row for the one job
    survivor = b if victim is a else a
    assert r["error"] is None and r["device"]["agent"] == survivor.name
    assert r["attempts"] == 2
    db = stored(tmp_path)
    attempts = db.execute("SELECT agent, outcome FROM attempts ORDER BY at").fetchall()
    # Sessions the victim finished before it died, its one lost session, then
    # the job from its first session on the survivor (a record is one device).
    lost = attempts.index((victim.name, "transport_error"))
    assert set(attempts[:lost]) <= {(victim.name, "result")}
    assert attempts[lost + 1:] == [(survivor.name, "result")] * len(r["timing"]["sessions"])
    assert len(r["timing"]["sessions"]) == 5
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    # The killed agent's runner did not outlive it (it dies with its parent).
    for pid in runners:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_controller_killed_then_resume_without_duplicates(tmp_path, spawn_agent):
    agent = spawn_agent("solo")
    lab = write_lab(tmp_path / "lab.yaml", [agent])
    models = [f"m{i}={modelkit.mlp(tmp_path / f'm{i}.onnx', batch=1, seed=i)}" for i in range(4)]
    args = ["--cohort", cohort(tmp_path, min_s=1), "--lab", lab, "--out", tmp_path / "out"]
    for m in models:
        args += ["--model", m]
    ctl = controller(args, tmp_path)
    db_path = tmp_path / ".harness" / "results.sqlite"
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if db_path.exists():
            with sqlite3.connect(db_path) as db:
                try:
                    if db.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= 1:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    ctl.send_signal(signal.SIGKILL)
    ctl.wait(10)
    db = sqlite3.connect(db_path)
    run_id, status = db.execute("SELECT id, status FROM runs").fetchone()
    assert status == "running"
    before = dict(db.execute("SELECT job_key, samples FROM results").fetchall())
    assert 1 <= len(before) < 4
    db.close()
    p = harness_cli("run", "--resume", run_id, "--out", tmp_path / "out", cwd=tmp_path, timeout=180)
    assert p.returncode == 0, p.stderr
    db = sqlite3.connect(db_path)
    rows = db.execute("SELECT job_key, samples FROM results").fetchall()
    assert sorted(k for k, _ in rows) == sorted(set(k for k, _ in rows)) and len(rows) == 4
    after = dict(rows)
    for key, samples in before.items():
        assert after[key] == samples  # finished jobs were not rerun
    # No job ran twice on the agent: one agent job id per job.
    ids = db.execute("SELECT job_key, COUNT(DISTINCT agent_job_id) FROM attempts GROUP BY job_key").fetchall()
    assert all(n == 1 for _, n in ids), ids
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "finished"
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(doc["results"]) == 4 and all(r["error"] is None for r in doc["results"])


def test_two_controllers_never_share_a_device(tmp_path, spawn_agent):
    agent = spawn_agent("shared")
    lab = write_lab(tmp_path / "lab.yaml", [agent])
    c = cohort(tmp_path, min_s=0.5)
    procs = []
    for k in range(2):
        d = tmp_path / f"ctl{k}"
        d.mkdir()
        args = ["--cohort", c, "--lab", lab, "--out", d / "out", "-q"]
        for i in range(2):
            args += ["--model", f"m{i}={modelkit.mlp(d / f'm{i}.onnx', batch=1, seed=10 * k + i)}"]
        procs.append((d, controller(args, d)))
    spans = []
    for d, p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        for r in json.loads((d / "out" / "report.json").read_text())["results"]:
            assert r["error"] is None
            # Each session is its own agent job; the sessions of one record
            # interleave with other jobs', so the device's busy spans are theirs.
            spans += [(x["started_unix"], x["finished_unix"]) for x in r["timing"]["sessions"]]
    spans.sort()
    assert len(spans) == 4 * 5  # four jobs, five sessions each
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s2 >= e1, f"jobs overlapped on the device: {spans}"
