"""Acceptance: `harness run` on a cohort with Android device profiles, through
a lab file, against `harness agent serve --config agent.yaml` with the android
driver, a real adb server and test phones."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import modelkit
import phone as phone_mod


@pytest.fixture
def agent(tmp_path, lab, adb_port):
    """Starts `harness agent serve` for the given phones; yields a lab file."""
    procs = []

    def start(*phones, measure_note=""):
        cfg = {
            "listen": "127.0.0.1:0", "drivers": ["android"], "cache_dir": str(tmp_path / "agent-cache"),
            "android": {
                "runners": {"1.20": {"perf_test": str(lab["perf_test"]), "libs": [str(lab["lib"])],
                                     "eps": ["cpu", "xnnpack"]}},
                "connect": [p.serial for p in phones], "adb_port": adb_port,
            },
        }
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(cfg))
        port_file = tmp_path / "agent.port"
        exe = Path(sys.executable).parent / "harness"
        proc = subprocess.Popen([str(exe), "agent", "serve", "--config", str(tmp_path / "agent.yaml"),
                                 "--port-file", str(port_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=tmp_path)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.1)
        lab_file = tmp_path / "lab.yaml"
        lab_file.write_text(f"agents:\n  - {{name: rack-1, address: '127.0.0.1:{port_file.read_text().strip()}'}}\n")
        return lab_file

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def profiles(tmp_path, measure: str) -> Path:
    root = tmp_path / "profiles"
    (root / "devices").mkdir(parents=True)
    (root / "cohorts").mkdir()
    (root / "devices" / "pixel-7.yaml").write_text(
        "id: pixel-7\nplatform: android\nmatch: {model: 'Pixel 7'}\ntier: mid\nshare: 0.6\nmemory_budget_mb: 4096\n"
        "targets:\n  - {runtime: onnxruntime, version: '1.20', ep: cpu}\n"
        "  - {runtime: onnxruntime, version: '1.20', ep: xnnpack}\n")
    (root / "devices" / "galaxy-a14.yaml").write_text(
        "id: galaxy-a14\nplatform: android\nmatch: {model: 'SM-A14*'}\ntier: low\nshare: 0.4\n"
        "memory_budget_mb: 4096\ntargets:\n  - {runtime: onnxruntime, version: '1.20', ep: cpu}\n")
    for name, devices in (("phones", "[pixel-7]"), ("budget", "[galaxy-a14]")):
        (root / "cohorts" / f"{name}.yaml").write_text(
            f"name: {name}\ndevices: {devices}\nbudgets: {{latency_p90_ms: 1000}}\nmeasure: {measure}\n")
    return root / "cohorts"


QUICK = "{warmup_runs: 2, warmup_s: 0, min_runs: 20, min_s: 0, max_s: 3, target_ci: 0}"
LONG = "{warmup_runs: 1, warmup_s: 0, min_runs: 10, min_s: 30, max_s: 60, target_ci: 0}"


def wait_for(predicate, within_s=60.0, what="condition"):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {within_s} s")


def finished(proc, stderr):
    """The run completed and wrote its report: 0, or 1 when a budget failed
    (an error row fails the budget); 2 would be bad input or no agent."""
    assert proc.returncode in (0, 1) and "Traceback" not in stderr, stderr


def job_spans(phone):
    """(start, end) of every job on the phone, from its shell sessions."""
    spans = {}
    for s in phone.sessions:
        m = re.search(r"/jobs/([A-Za-z0-9-]+)", s.command)
        if m:
            lo, hi = spans.get(m.group(1), (s.start, s.end))
            spans[m.group(1)] = (min(lo, s.start), max(hi, s.end))
    return spans


def test_two_controllers_get_complete_results_and_never_overlap(tmp_path, phones, agent):
    pixel = phones.make()
    lab_file = agent(pixel)
    cohorts = profiles(tmp_path, QUICK)
    # One model each: two controllers uploading one digest at once is a
    # separate matter (the agent's cache refuses the second upload).
    models = [modelkit.mlp(tmp_path / f"m{i}.onnx", batch=1, seed=i) for i in range(2)]
    exe = Path(sys.executable).parent / "harness"
    runs = [subprocess.Popen([str(exe), "run", "--cohort", str(cohorts / "phones.yaml"), "--lab", str(lab_file),
                              "--model", f"m={models[i]}", "--probes", "2", "--out", str(tmp_path / f"out{i}"),
                              "--store", str(tmp_path / f"store{i}.sqlite"), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            for i in range(2)]
    for r in runs:
        _, err = r.communicate(timeout=240)
        finished(r, err)
    for i in range(2):
        doc = json.loads((tmp_path / f"out{i}" / "report.json").read_text())
        by_ep = {r["runtime"]["ep"]: r for r in doc["results"]}
        ok = by_ep["cpu"]
        assert ok["error"] is None
        assert ok["device"]["profile"] == "pixel-7" and ok["device"]["platform"] == "android"
        assert ok["device"]["facts"]["model"] == "Pixel 7" and ok["device"]["facts"]["soc"] == "GS201"
        assert ok["device"]["facts"]["ram_mb"] == 7833248 // 1024 and ok["device"]["facts"]["sdk"] == 34
        t = ok["timing"]
        assert t["n"] == len(t["samples_ms"]) >= 20 and t["load_ms"] > 0
        assert 0 < t["min_ms"] <= t["p50_ms"] <= t["p90_ms"] <= t["p95_ms"] <= t["max_ms"]
        assert ok["memory"]["peak_bytes"] > 0 and "perf_test" in ok["memory"]["method"]
        assert ok["placement"]["nodes_by_ep"] == {"cpu": 3} and ok["placement"]["cpu_fallback_nodes"] == 0
        thermal = ok["validity"]["thermal"]
        assert thermal["before"]["skin"] == 31.5 and thermal["after"]["skin"] == 31.5
        assert ok["details"]["conditions"]["before"]["battery"]["level_pct"] == 87
        assert ok["runtime"] == {"name": "onnxruntime", "version": "1.20", "ep": "cpu", "options": {}}
        # The EP this runner lacks is a row with the runner's own words.
        bad = by_ep["xnnpack"]
        assert bad["error"]["kind"] == "unsupported_ep"
        assert "Xnnpack is not supported in this build" in bad["error"]["message"]
    spans = sorted(job_spans(pixel).values())
    # 2 controllers x (the cpu target's five sessions + the xnnpack target's
    # one: its first session's error ends that job) perf_test job folders
    assert len(spans) == 2 * (5 + 1)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"jobs overlapped on the phone: {spans}"


def test_phone_pulled_mid_job_is_an_error_row_and_the_agent_keeps_serving(tmp_path, phones, agent, cli):
    pixel = phones.make()
    galaxy = phones.make(props=phone_mod.GALAXY_A14)
    lab_file = agent(pixel, galaxy)
    cohorts = profiles(tmp_path, LONG)
    (cohorts / "budget.yaml").write_text(
        f"name: budget\ndevices: [galaxy-a14]\nbudgets: {{latency_p90_ms: 1000}}\nmeasure: {QUICK}\n")
    model = modelkit.mlp(tmp_path / "m.onnx", batch=1)
    exe = Path(sys.executable).parent / "harness"
    run = subprocess.Popen([str(exe), "run", "--cohort", str(cohorts / "phones.yaml"), "--lab", str(lab_file),
                            "--model", f"m={model}", "--probes", "1", "--out", str(tmp_path / "out"), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    wait_for(lambda: any(s.end is None and "-m duration" in s.command for s in pixel.sessions),
             what="perf_test measuring on the pixel")
    pixel.unplug()
    _, err = run.communicate(timeout=120)
    finished(run, err)
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    cpu = next(r for r in doc["results"] if r["runtime"]["ep"] == "cpu")
    assert cpu["error"]["kind"] == "device_disconnected" and cpu["error"]["stage"] == "measure"
    # The agent still answers: the phone is listed offline with a hint, the other one is ready...
    devs = json.loads(cli("devices", "--lab", lab_file, "--json", cwd=tmp_path, check=True).stdout)["devices"]
    state = {d["facts"].get("model"): (d["state"], d["state_reason"]) for d in devs}
    assert state["Pixel 7"][0] == "offline" and state["Pixel 7"][1]
    assert state["SM-A145F"] == ("ready", "")
    # ...and it still runs jobs.
    p = cli("run", "--cohort", cohorts / "budget.yaml", "--lab", lab_file, "--model", f"m={model}", "--probes",
            "1", "--out", tmp_path / "out2", "--quiet", cwd=tmp_path, timeout=180)
    finished(p, p.stderr)
    [row] = json.loads((tmp_path / "out2" / "report.json").read_text())["results"]
    assert row["error"] is None and row["device"]["profile"] == "galaxy-a14" and row["timing"]["n"] >= 20
