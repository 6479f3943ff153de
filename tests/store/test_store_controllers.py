"""Real controllers (`harness run`) against one PostgreSQL store and a real
agent: two at once, and a resume while the run is still being worked on,
then after its controller died."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import modelkit
from labkit import host_cohort, write_lab
from harness.store import open_store

HARNESS = Path(sys.executable).parent / "harness"


def cohort(tmp_path, min_s=0.0):
    # One session a job, so results arrive job by job: the tests stop a run
    # with some jobs stored and others not (sessions of several jobs on one
    # device interleave, and all of them finish in the last round).
    return host_cohort(tmp_path, "shared", f"{{warmup_runs: 1, warmup_s: 0, min_runs: 60, min_s: {min_s}, "
                                           f"max_s: {min_s + 5}, target_ci: 0, sessions: 1}}")


def controller(args, cwd, who, extra_env=None):
    env = {**os.environ, "HARNESS_USER": who, "HARNESS_CI_JOB_URL": f"https://ci.example/{who}",
           **(extra_env or {})}
    return subprocess.Popen([str(HARNESS), *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def models(tmp_path, n, tag):
    return [a for i in range(n) for a in ("--model", f"{tag}{i}={modelkit.mlp(tmp_path / f'{tag}{i}.onnx', batch=1, seed=i)}")]


def test_two_controllers_at_once_complete_both_runs(tmp_path, pg_url, spawn_agent):
    agent = spawn_agent("rack-1")
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"store: {pg_url}\nagents:\n" + agent.lab_line())  # the lab file names the shared store
    c = cohort(tmp_path)
    procs = [controller(["run", "--cohort", c, "--lab", lab, "-q", *models(tmp_path, 3, who)], tmp_path, who)
             for who in ("alice", "ci-bot")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    ids = [next(x.split()[-1] for x in out.splitlines() if x.startswith("run id:")) for out, _ in outs]
    assert ids[0] != ids[1]
    s = open_store(pg_url, readonly=True)
    try:
        for rid, who, tag in zip(ids, ("alice", "ci-bot"), ("alice", "ci-bot")):
            rows = s.results(rid)
            assert sorted(r["candidate"] for r in rows) == [f"{tag}{i}" for i in range(3)]  # none missing, none twice
            assert all(r["error"] is None and len(r["timing"]["samples_ms"]) >= 60 for r in rows)
            run = s.get_run(rid)
            assert run["status"] == "finished" and run["user_name"] == who
            assert run["ci_job_url"] == f"https://ci.example/{who}" and run["host_name"]
    finally:
        s.close()
    # A third machine, with only the store's URL: both runs, and who ran them.
    third = tmp_path / "elsewhere"
    third.mkdir()
    p = subprocess.run([str(HARNESS), "runs", "--store", pg_url], cwd=third, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    for rid, who in zip(ids, ("alice", "ci-bot")):
        line = next(x for x in p.stdout.splitlines() if x.startswith(rid))
        assert f"{who}@" in line and "3/3" in line


def test_resume_waits_for_a_live_controller_and_takes_over_a_dead_one(tmp_path, pg_url, spawn_agent):
    agent = spawn_agent("rack-1")
    lab = write_lab(tmp_path / "lab.yaml", [agent])
    c = cohort(tmp_path, min_s=1.0)
    open_store(pg_url).close()  # the lab's store exists before anyone runs (harness store migrate)
    first = controller(["run", "--cohort", c, "--lab", lab, "--store", pg_url, "-q", *models(tmp_path, 4, "m")],
                       tmp_path, "alice")
    s = open_store(pg_url, readonly=True)
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline:
            runs = s.list_runs()
            if runs and runs[0]["results"] >= 1:
                run_id = runs[0]["id"]
                break
            time.sleep(0.1)
        assert run_id, "the first controller stored nothing"
        # Frozen (alive, holding its lease, storing nothing more), so what
        # follows does not race its remaining jobs on a busy machine.
        first.send_signal(signal.SIGSTOP)
        # While it lives, a resume from elsewhere is refused, saying who holds the run.
        p = subprocess.run([str(HARNESS), "run", "--resume", run_id, "--store", pg_url, "--lab", lab],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "HARNESS_USER": "bob"})
        assert p.returncode == 2 and f"run {run_id} is being worked on by alice on " in p.stderr, p.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        before = {r["job"]: r["timing"]["samples_ms"] for r in s.results(run_id)}
        assert 1 <= len(before) < 4 and s.get_run(run_id)["status"] == "running"
        # Its process is gone: a resume takes over at once, and runs only what is missing.
        p = subprocess.run([str(HARNESS), "run", "--resume", run_id, "--store", pg_url, "--lab", lab, "-q"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HARNESS_USER": "bob"})
        assert p.returncode == 0, p.stderr
        rows = s.results(run_id)
        assert sorted(r["candidate"] for r in rows) == [f"m{i}" for i in range(4)]
        for r in rows:
            if r["job"] in before:
                assert r["timing"]["samples_ms"] == before[r["job"]]  # finished jobs were not rerun
        run = s.get_run(run_id)
        assert run["status"] == "finished" and run["user_name"] == "alice"
        assert [(x["action"], x["user_name"]) for x in run["sessions"]] == [("create", "alice"), ("resume", "bob")]
        assert run["sessions"][1]["finished"] is not None
    finally:
        s.close()
