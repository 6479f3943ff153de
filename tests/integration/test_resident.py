"""`harness run` through a resident (harness/resident/): the real console
script, a real resident and its kept agent, real runs. Each test has a
resident folder of its own and stops what it started (the suite's conftest
turns residents off everywhere else). A source file edited while a test runs
changes the key, so its next run meets a new resident: these tests assume a
checkout nobody edits meanwhile, as CI's is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import modelkit
from harness.resident import manage, wire

EXE = Path(sys.executable).parent / "harness"


@pytest.fixture
def resident(tmp_path):
    """(env, folder): a resident folder short enough for a socket path."""
    folder = Path(tempfile.mkdtemp(prefix="hk-", dir="/tmp"))
    env = {**os.environ, "HARNESS_KEEP_AGENT": "1", "HARNESS_KEEP_AGENT_DIR": str(folder / "r"),
           "HARNESS_KEEP_AGENT_IDLE_S": "300"}
    yield env, folder / "r"
    stopped = manage.stop_all(folder / "r")
    for st in stopped:  # nothing it started outlives the test
        for pid in [st["pid"], *(a["pid"] for a in st["agents"])]:
            assert not manage._alive(pid), f"pid {pid} still running"
    shutil.rmtree(folder, ignore_errors=True)


def cli(*args, env, cwd, timeout=180):
    return subprocess.run([str(EXE), *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_ok(*args, env, cwd):
    p = cli(*args, env=env, cwd=cwd)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def address(p) -> str:
    line = next(l for l in p.stderr.splitlines() if l.startswith("run ") and " on local (" in l)
    return line.split(" on local (", 1)[1].rstrip(")")


def live(folder: Path) -> list[dict]:
    return manage.residents(folder)


def wait_for(check, what: str, limit: float = 120.0):
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {limit:g} s"
        time.sleep(0.1)


def test_a_second_run_reuses_the_kept_agent_and_its_placements(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    work = tmp_path / "work"
    work.mkdir()
    # Relative paths: the run works in the caller's folder, not the resident's.
    args = ("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store", "s.sqlite")
    first = run_ok(*args, "--out", "o1", env=env, cwd=work)
    second = run_ok(*args, "--out", "o2", env=env, cwd=work)
    assert address(first) == address(second) and address(first).startswith(f"unix:{folder}/")
    a, b = (json.loads((work / o / "report.json").read_text())["results"][0] for o in ("o1", "o2"))
    assert a["error"] is None and b["error"] is None
    assert a["details"]["template_pid"] == b["details"]["template_pid"]  # the same warm template
    assert "placement_from" in b["details"] and b["placement"] == a["placement"]  # no placement pass again
    assert (work / "s.sqlite").exists() and first.stdout.startswith("run id: ")
    [st] = live(folder)
    assert [x["drivers"] for x in st["agents"]] == [["host"]]
    # The run reported its own exit before it ended; the resident reaps it after.
    wait_for(lambda: live(folder)[0]["runs"] == [], "the resident reaping the runs")


def test_another_environment_gets_another_resident_and_agent(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    args = ("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store",
            tmp_path / "s.sqlite", "-q")
    run_ok(*args, "--out", tmp_path / "o1", env=env, cwd=tmp_path)
    # An environment variable is part of the key: a run must never see a
    # process set up under another environment.
    run_ok(*args, "--out", tmp_path / "o2", env={**env, "HARNESS_TEST_OTHER": "1"}, cwd=tmp_path)
    a, b = (json.loads((tmp_path / o / "report.json").read_text())["results"][0] for o in ("o1", "o2"))
    assert a["details"]["template_pid"] != b["details"]["template_pid"]
    sts = live(folder)
    assert len({s["key"] for s in sts}) == 2 and len({s["agents"][0]["pid"] for s in sts}) == 2


def test_two_first_runs_at_once_start_one_resident(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    from harness.store import open_store

    open_store(str(tmp_path / "s.sqlite")).close()  # made once (Alembic's upgrade is not for two at once)
    procs = [subprocess.Popen([str(EXE), "run", "--cohort", str(quick_cohort), "--model", f"m={model}", "--drivers",
                               "host", "--store", str(tmp_path / "s.sqlite"), "-q"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    [st] = live(folder)  # the second waited for the first's resident, and both ran on its agent
    assert len(st["agents"]) == 1


def test_other_drivers_get_another_kept_agent(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    args = ("run", "--cohort", quick_cohort, "--model", f"m={model}", "--store", tmp_path / "s.sqlite", "-q")
    run_ok(*args, "--drivers", "host", env=env, cwd=tmp_path)
    run_ok(*args, "--drivers", "host,sim", env=env, cwd=tmp_path)
    [st] = live(folder)  # one resident (same caller), an agent per driver set
    assert sorted(a["drivers"] for a in st["agents"]) == [["host"], ["host", "sim"]]
    assert len({a["address"] for a in st["agents"]}) == 2


def test_an_edited_source_changes_the_key(tmp_path, monkeypatch):
    from harness.resident import client

    src = tmp_path / "pkg"
    src.mkdir()
    (src / "mod.py").write_text("x = 1\n")
    monkeypatch.setattr(client, "_code_roots", lambda: [str(src)])
    before = client.key()
    assert client.key() == before
    (src / "mod.py").write_text("x = 22\n")  # another size (and mtime): another resident
    assert client.key() != before
    monkeypatch.setenv("PWD", "/elsewhere")  # what a shell changes between commands is not in the key
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "another test")
    after = client.key()
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "x.sqlite"))
    assert client.key() != after


def test_an_idle_resident_stops_its_agent_and_exits(tmp_path, quick_cohort, resident):
    env, folder = resident
    env = {**env, "HARNESS_KEEP_AGENT_IDLE_S": "1"}
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    run_ok("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store",
           tmp_path / "s.sqlite", "-q", env=env, cwd=tmp_path)
    # Its pid is in its lock file, its agent's in its log: both outlive it.
    [lock] = folder.glob("*.lock")
    log = lock.with_suffix(".log").read_text()
    pids = [int(lock.read_text()), int(log.split("agent host: pid ", 1)[1].split()[0])]
    wait_for(lambda: not any(manage._alive(pid) for pid in pids), "the resident and its agent exiting")
    assert not list(folder.glob("*.sock"))
    assert "idle for 1 s: stopping" in lock.with_suffix(".log").read_text()


def test_only_this_user_reaches_the_resident(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    run_ok("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store",
           tmp_path / "s.sqlite", "-q", env=env, cwd=tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    socks = list(folder.glob("*.sock"))
    assert len(socks) == 2  # the resident's and its agent's
    for s in socks:
        assert stat.S_IMODE(s.stat().st_mode) & 0o077 == 0, s
    if os.getuid() != 0:
        return  # only root can act as another user here
    [own] = [s for s in socks if "-a" not in s.stem]
    assert _as_nobody(own) == "refused"  # the folder keeps another user out
    # Opened up, the resident itself still refuses another uid (SO_PEERCRED).
    for d in (folder.parent, folder):
        d.chmod(0o711)
    own.chmod(0o666)
    try:
        assert _as_nobody(own) == "no answer"
    finally:
        own.chmod(0o600)
        for d in (folder, folder.parent):
            d.chmod(0o700)
    assert live(folder)  # and it still serves its own user


def _as_nobody(path: Path) -> str:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child that becomes another user, then asks the resident for its status
        os.close(r)
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(str(path))
            except PermissionError:
                os.write(w, b"refused")
                os._exit(0)
            try:
                wire.send(s, {"status": True})
                msg, _ = wire.recv(s)
            except (ConnectionResetError, BrokenPipeError):  # closed on us unread
                msg = None
            os.write(w, b"answered" if msg else b"no answer")
        except BaseException as exc:
            os.write(w, f"error {exc!r}".encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read().decode()
    os.waitpid(pid, 0)
    return got


def test_an_unsafe_folder_is_refused_and_the_run_done_here(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    folder.parent.mkdir(exist_ok=True)
    folder.symlink_to(target)  # a symlink is not followed
    p = run_ok("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store",
               tmp_path / "s.sqlite", env=env, cwd=tmp_path)
    assert "on local (127.0.0.1:" in p.stderr  # the embedded agent
    assert not list(target.iterdir())


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, quick_cohort, resident):
    env, folder = resident
    out = tmp_path / "out"
    for _ in range(2):  # the resident's first run and a later one
        p = cli("run", "--cohort", quick_cohort, "--model", f"m={tmp_path / 'missing.onnx'}", "--out", out,
                "--drivers", "host", env=env, cwd=tmp_path)
        assert p.returncode == 2, p.stdout + p.stderr
        lines = [l for l in p.stderr.splitlines() if l]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "file not found" in lines[0], p.stderr
    assert not out.exists() and not (tmp_path / ".harness").exists()
    assert live(folder)  # it was the resident that answered


def test_no_keep_agent_runs_everything_here(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    args = ("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store",
            tmp_path / "s.sqlite")
    p = run_ok(*args, "--no-keep-agent", env=env, cwd=tmp_path)
    assert "on local (127.0.0.1:" in p.stderr
    p = run_ok(*args, env={**env, "HARNESS_KEEP_AGENT": "0"}, cwd=tmp_path)
    assert "on local (127.0.0.1:" in p.stderr
    assert not folder.exists() or not list(folder.glob("*.sock"))


def _long_run(tmp_path, quick_cohort, env):
    c = quick_cohort.parent / "long.yaml"
    c.write_text("name: long\ndevices: [host-cpu]\n"
                 "measure: {warmup_runs: 1, warmup_s: 0, min_runs: 10, min_s: 60, max_s: 60, target_ci: 0}\n")
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    p = subprocess.Popen([str(EXE), "run", "--cohort", str(c), "--model", f"m={model}", "--drivers", "host",
                          "--store", str(tmp_path / "s.sqlite")], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines: list = []
    for line in p.stderr:  # plain progress lines: the job is measuring once a "measure" line comes
        lines.append(line)
        if "measure" in line:
            break
    return p, lines


def test_ctrl_c_reaches_the_run_and_it_is_stored_interrupted(tmp_path, quick_cohort, resident):
    env, folder = resident
    p, lines = _long_run(tmp_path, quick_cohort, env)
    assert p.poll() is None, "".join(lines)
    p.send_signal(signal.SIGINT)  # to the caller only, as a terminal's Ctrl-C would reach it
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, "".join(lines) + err
    runs = cli("runs", "--store", tmp_path / "s.sqlite", env=env, cwd=tmp_path).stdout
    assert "interrupted" in runs, runs
    wait_for(lambda: live(folder)[0]["runs"] == [], "the resident reaping the run")  # it lives on


def test_sigterm_cancels_the_run_and_exits_as_killed(tmp_path, quick_cohort, resident):
    env, folder = resident
    p, lines = _long_run(tmp_path, quick_cohort, env)
    p.send_signal(signal.SIGTERM)  # a CI timeout: the job must not go on holding the kept agent's device
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, "".join(lines) + err
    assert "interrupted" in cli("runs", "--store", tmp_path / "s.sqlite", env=env, cwd=tmp_path).stdout


def test_a_run_killed_by_a_signal_exits_like_one(tmp_path, quick_cohort, resident):
    env, folder = resident
    p, lines = _long_run(tmp_path, quick_cohort, env)
    [st] = live(folder)
    [run_pid] = st["runs"]
    os.kill(run_pid, signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGKILL


def test_a_dead_resident_is_replaced(tmp_path, quick_cohort, resident):
    env, folder = resident
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    args = ("run", "--cohort", quick_cohort, "--model", f"m={model}", "--drivers", "host", "--store",
            tmp_path / "s.sqlite", "-q")
    run_ok(*args, env=env, cwd=tmp_path)
    [st] = live(folder)
    os.kill(st["pid"], signal.SIGKILL)  # its socket stays behind, answering nothing
    wait_for(lambda: not manage._alive(st["pid"]) and not manage._alive(st["agents"][0]["pid"]),
             "the resident and (its parent gone) its agent exiting")
    run_ok(*args, env=env, cwd=tmp_path)
    [again] = live(folder)
    assert again["pid"] != st["pid"]


def test_the_console_script_loads_nothing_heavy_before_the_resident():
    code = ("import sys; sys.argv = ['harness', 'run']; import harness.cli; from harness.resident import client; "
            "print(sorted(m for m in ('typer', 'harness.cli_app', 'numpy', 'sqlalchemy', 'grpc', 'pydantic', "
            "'typing') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_a_refused_caller_gets_its_own_signals_back():
    from harness.resident import client

    before = signal.getsignal(signal.SIGINT)
    mine, theirs = socket.socketpair()
    theirs.close()  # a resident gone before it answered: nothing ran, the caller runs it itself
    with mine:
        assert client._converse(mine, ["harness", "run"], "/") is None
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C reaches the run done here


@pytest.mark.parametrize("argv,env,expect", [
    (["run", "--cohort", "x"], {}, True),
    (["run", "--no-keep-agent"], {}, False),
    (["run", "--no-keep-agent", "--keep-agent"], {}, True),
    (["run"], {"HARNESS_KEEP_AGENT": "off"}, False),
    (["report", "latest"], {}, False),
])
def test_which_commands_go_to_a_resident(monkeypatch, argv, env, expect):
    from harness.resident import client

    monkeypatch.delenv("HARNESS_KEEP_AGENT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert client.wanted(argv) is expect
