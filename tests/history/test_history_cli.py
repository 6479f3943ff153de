"""`harness history` on real runs: a candidate measured by `harness run` on
the host CPU, whose model is replaced by a much slower one at run k."""

import json

import pytest

import modelkit
from labkit import harness_cli, host_cohort, write_lab

FAST_RUNS, SLOW_RUNS = 5, 3


@pytest.mark.slow
def test_history_names_the_run_where_a_slower_model_arrived(tmp_path, spawn_agent):
    agent = spawn_agent("host")
    lab = write_lab(tmp_path / "lab.yaml", [agent])
    cohort = host_cohort(tmp_path, "h", "{warmup_runs: 5, warmup_s: 0, min_runs: 100, min_s: 0, max_s: 10, "
                                         "target_ci: 0}")
    fast = modelkit.heavy_mlp(tmp_path / "fast.onnx", width=256, depth=2)
    slow = modelkit.heavy_mlp(tmp_path / "slow.onnx", width=512, depth=16)  # ~30x the work: far beyond run-to-run noise
    store = tmp_path / "lab.sqlite"
    ids = []

    def run(model):
        p = harness_cli("run", "--cohort", cohort, "--model", f"m={model}", "--lab", lab, "--store", store, "-q",
                        cwd=tmp_path, timeout=180)
        assert p.returncode == 0, p.stderr
        ids.append(next(x.split()[-1] for x in p.stdout.splitlines() if x.startswith("run id:")))

    for _ in range(FAST_RUNS):
        run(fast)
    # Only noise so far: no change point, and the check passes.
    p = harness_cli("history", "--candidate", "m", "--store", store, "--format", "json", "--check", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [c for c in doc["series"][0]["changes"] if c["kind"] == "latency"] == []

    for _ in range(SLOW_RUNS):
        run(slow)
    p = harness_cli("history", "--candidate", "m", "--device", "host-cpu", "--store", store, "--check", cwd=tmp_path)
    assert p.returncode == 1
    first_slow = ids[FAST_RUNS]
    assert f"regression: host-cpu · onnxruntime@any/cpu[intra_op_threads=1]: regressed at run {ids[-1]}" in p.stderr
    assert f"since run {first_slow}" in p.stderr
    assert "▲ latency" in next(x for x in p.stdout.splitlines() if x.startswith(first_slow)), p.stdout

    doc = json.loads(harness_cli("history", "--candidate", "m", "--store", store, "--format", "json",
                                 cwd=tmp_path).stdout)
    [s] = doc["series"]
    assert [p["run_id"] for p in s["points"]] == ids
    [c] = [c for c in s["changes"] if c["kind"] == "latency"]
    assert c["run_id"] == first_slow and c["ratio"] > 3 and c["p_value"] < 0.01
    # The p90 of each point is the one `harness report` gives for that run.
    rep = json.loads(harness_cli("report", ids[2], "--format", "json", "--store", store, cwd=tmp_path).stdout)
    assert s["points"][2]["p90_ms"] == pytest.approx(rep["results"][0]["timing"]["p90_ms"], rel=1e-12)

    out = tmp_path / "h.html"
    assert harness_cli("history", "--candidate", "m", "--store", store, "--format", "html", "--out", out,
                       cwd=tmp_path).returncode == 0
    html = out.read_text()
    assert 'class="plot history"' in html and f"change at run {first_slow}" in html
