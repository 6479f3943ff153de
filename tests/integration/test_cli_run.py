"""`harness run` end to end through the real console script: the embedded
agent, a separate `harness agent serve` named in a lab file, and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelkit
from labkit import harness_cli

RECORD_KEYS = {"device", "candidate", "model", "runtime", "timing", "memory", "placement", "parity", "validity", "error"}


def run_ok(*args, cwd):
    p = harness_cli(*args, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p


def test_run_embedded_agent_writes_complete_report(tmp_path, quick_cohort):
    model = modelkit.mlp(tmp_path / "foreign.onnx")
    out = tmp_path / "out"
    p = run_ok("run", "--cohort", quick_cohort, "--model", f"m={model}", "--dim", "batch=2", "--out", out,
               "--drivers", "host", cwd=tmp_path)
    run_id = next(line.split()[-1] for line in p.stdout.splitlines() if line.startswith("run id:"))
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["id"] == run_id and doc["run"]["cohort"] == "quick"
    assert {"id", "cohort", "started", "finished", "harness_version"} <= set(doc["run"])
    [r] = doc["results"]
    assert RECORD_KEYS <= set(r)
    assert r["error"] is None
    t = r["timing"]
    assert len(t["samples_ms"]) == t["n"] >= 60
    for k in ("load_ms", "first_run_ms", "p50_ms", "p90_ms", "mean_ms", "std_ms", "min_ms", "max_ms"):
        assert t[k] > 0, k
    assert t["p50_ms"] <= t["p90_ms"] <= t["max_ms"]
    assert r["memory"]["peak_bytes"] > 0 and r["memory"]["method"]
    assert r["placement"]["nodes_by_ep"] == {"cpu": 3}
    assert r["model"]["sha256"] and r["model"]["params"] == 16 * 16 + 16 * 4 and r["model"]["precision"] == "fp32"
    assert r["runtime"]["name"] == "onnxruntime" and r["runtime"]["version"]
    assert r["device"]["profile"] == "host-cpu" and r["device"]["facts"]["ram_mb"] > 0
    assert (out / "report.md").read_text().count("host-cpu") >= 1
    # The store has it too, and `report` prints the same document.
    runs = run_ok("runs", cwd=tmp_path).stdout
    assert run_id in runs
    again = json.loads(run_ok("report", run_id[:15], "--format", "json", cwd=tmp_path).stdout)
    assert again["results"][0]["timing"]["samples_ms"] == t["samples_ms"]


def test_python_dash_m_works(tmp_path):
    p = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0 and "run" in p.stdout


def test_separate_agent_named_in_lab_file(tmp_path, quick_cohort):
    port_file = tmp_path / "port"
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    exe = Path(sys.executable).parent / "harness"
    agent = subprocess.Popen([str(exe), "agent", "serve", "--listen", "127.0.0.1:0", "--drivers", "host",
                              "--token-file", str(token), "--port-file", str(port_file),
                              "--cache-dir", str(tmp_path / "agent-cache")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert agent.poll() is None, agent.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        port = port_file.read_text().strip()
        lab = tmp_path / "lab.yaml"
        lab.write_text(f"agents:\n  - {{name: rack-1, address: '127.0.0.1:{port}', token_file: token}}\n")
        model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
        p = run_ok("run", "--cohort", quick_cohort, "--model", f"m={model}", "--lab", lab, "--out", tmp_path / "o",
                   cwd=tmp_path)
        doc = json.loads((tmp_path / "o" / "report.json").read_text())
        assert doc["results"][0]["device"]["agent"] == "rack-1"
        assert doc["results"][0]["error"] is None
        # Without the token the agent refuses, and the CLI says what is missing.
        lab.write_text(f"agents:\n  - {{name: rack-1, address: '127.0.0.1:{port}'}}\n")
        p = harness_cli("devices", "--lab", lab, cwd=tmp_path)
        assert p.returncode == 2
        assert "token" in p.stderr and len(p.stderr.strip().splitlines()) == 1
        p = run_ok("devices", "--lab", lab.with_name("lab2.yaml") if False else _lab_with_token(tmp_path, port),
                   cwd=tmp_path)
        assert "host:" in p.stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0
    assert "s3cret-token" not in err  # tokens are never logged
    assert "draining" in err


def _lab_with_token(tmp_path, port):
    lab = tmp_path / "lab-token.yaml"
    lab.write_text(f"agents:\n  - {{name: rack-1, address: '127.0.0.1:{port}', token_file: token}}\n")
    return lab


def _no_side_effects(tmp_path, out):
    assert not out.exists(), "a report folder was created for bad input"
    assert not (tmp_path / ".harness").exists() or not any(
        harness_cli("runs", cwd=tmp_path).stdout.strip().splitlines()[2:]), "a run was stored for bad input"


def bad(tmp_path, *args, expect):
    out = tmp_path / "out"
    p = harness_cli("run", *args, "--out", out, "--drivers", "host", cwd=tmp_path, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [l for l in p.stderr.strip().splitlines() if l]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ") and expect in lines[0], lines[0]
    _no_side_effects(tmp_path, out)
    return lines[0]


def test_bad_input_missing_model(tmp_path, quick_cohort):
    bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={tmp_path / 'missing.onnx'}", expect="file not found")


def test_bad_input_not_onnx(tmp_path, quick_cohort):
    f = tmp_path / "notes.onnx"
    f.write_text("this is a text file")
    bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={f}", expect="not a readable ONNX model")


def test_bad_input_truncated_onnx(tmp_path, quick_cohort):
    full = modelkit.mlp(tmp_path / "full.onnx", batch=1).read_bytes()
    for cut in (len(full) // 2, len(full) - 7):
        f = tmp_path / f"cut{cut}.onnx"
        f.write_bytes(full[:cut])
        line = bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={f}", expect=str(f.name))
        assert "truncated" in line or "not a readable ONNX model" in line


def test_bad_input_symbolic_dims(tmp_path, quick_cohort):
    m = modelkit.mlp(tmp_path / "m.onnx")
    line = bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={m}", expect="symbolic dimension 'batch'")
    assert "--dim batch=N" in line and "--shape x=" in line


def test_bad_input_unknown_cohort(tmp_path):
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    bad(tmp_path, "--cohort", "no-such-cohort", "--model", f"m={m}", expect="unknown cohort 'no-such-cohort'")


@pytest.mark.parametrize("text,expect", [
    ("name: q\ndevices: [host-cpu]\nbudgets: {latency_p90_ms: 10, colour: red}\n", "budgets.colour"),
    ("name: q\ndevices: [host-cpu]\nbudgets: {latency_p90_ms: fast}\n", "budgets.latency_p90_ms: expected a number"),
    ("name: q\ndevices: [host-cpu\n", "invalid YAML"),
    ("name: q\ndevices: [pixel-99]\n", "unknown device profile 'pixel-99'"),
])
def test_bad_input_yaml(tmp_path, quick_cohort, text, expect):
    f = quick_cohort.parent / "broken.yaml"
    f.write_text(text)
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    line = bad(tmp_path, "--cohort", f, "--model", f"m={m}", expect=expect)
    assert str(f) in line


def test_bad_input_agent_not_answering(tmp_path, quick_cohort):
    lab = tmp_path / "lab.yaml"
    lab.write_text("agents:\n  - {name: ghost, address: '127.0.0.1:9'}\n")
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    line = bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={m}", "--lab", lab, expect="did not answer within")
    assert "ghost" in line


def test_profile_without_device_is_reported_not_a_crash(tmp_path, quick_cohort):
    (quick_cohort.parent.parent / "devices" / "pixel-7.yaml").write_text(
        "id: pixel-7\nplatform: android\nmatch: {model: 'Pixel 7'}\ntargets:\n  - {runtime: onnxruntime, ep: nnapi}\n")
    c = quick_cohort.parent / "two.yaml"
    c.write_text("name: two\ndevices: [host-cpu, pixel-7]\n"
                 "measure: {warmup_runs: 1, warmup_s: 0, min_runs: 10, min_s: 0, max_s: 1, target_ci: 0}\n")
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    run_ok("run", "--cohort", c, "--model", f"m={m}", "--out", tmp_path / "o", "--drivers", "host", cwd=tmp_path)
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    by_profile = {r["device"]["profile"]: r for r in doc["results"]}
    assert by_profile["host-cpu"]["error"] is None
    gap = by_profile["pixel-7"]["error"]
    assert gap["stage"] == "plan" and gap["kind"] == "not_covered" and "pixel-7" in gap["message"]


def test_sustained_and_repeated_sessions(tmp_path, quick_cohort):
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    out = tmp_path / "o"
    run_ok("run", "--cohort", quick_cohort, "--model", f"m={m}", "--sustained", "2s", "--repeat", "2",
           "--cooldown", "0.2", "--out", out, "--drivers", "host", cwd=tmp_path)
    doc = json.loads((out / "report.json").read_text())
    [r] = doc["results"]  # one record: the job's two sessions
    assert r["measure"]["sustained_s"] == 2.0 and r["measure"]["sessions"] == 2
    t = r["timing"]
    assert len(t["sessions"]) == 2 and sum(x["n"] for x in t["sessions"]) == t["n"] == len(t["samples_ms"])
    assert all(x["stop_reason"] == "max_s" for x in t["sessions"])  # each session ran its 2 s
    assert r["validity"]["stop_reason"] == "sessions_done"
    assert t["sessions"][1]["started_unix"] - t["sessions"][0]["finished_unix"] >= 0.2  # cooldown between sessions
    s = r["sustained"]  # load over time: the first session, one continuous process
    assert s["windows"] and s["first_minute"]["n"] > 0 and 1.0 < s["duration_s"] <= 2.0
    assert r["environment"]["runtime"] == "onnxruntime"
    rep = doc["repeats"]["host-cpu/m/onnxruntime@any/cpu[intra_op_threads=1]"]
    assert rep["sessions"] == 2 and rep["pooled"] and 0 <= rep["between_share"] <= 1
    md = (out / "report.md").read_text()
    assert "## Sustained load" in md and "## Repeated sessions" in md
    html = (out / "report.html").read_text()
    assert 'id="plot-sustained-0"' in html


def test_bad_durations(tmp_path, quick_cohort):
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={m}", "--sustained", "ten minutes", expect="--sustained")
    bad(tmp_path, "--cohort", quick_cohort, "--model", f"m={m}", "--repeat", "0", expect="--repeat 0")


def test_failed_budget_exits_nonzero_unless_warn_only(tmp_path, quick_cohort):
    c = quick_cohort.parent / "tight.yaml"
    c.write_text(quick_cohort.read_text().replace("latency_p90_ms: 1000", "latency_p90_ms: 0.00001"))
    m = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    p = harness_cli("run", "--cohort", c, "--model", f"m={m}", "--drivers", "host", "-q", cwd=tmp_path)
    assert p.returncode == 1
    assert "budget failed:" in p.stderr and "p90" in p.stderr
    p = harness_cli("run", "--cohort", c, "--model", f"m={m}", "--drivers", "host", "-q", "--warn-only", cwd=tmp_path)
    assert p.returncode == 0 and "budget failed:" in p.stderr
