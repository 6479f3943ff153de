"""From `harness run` to a decision, through the real console script: the
embedded agent with the host driver, a teacher / INT8 / student set built
here with an eval set, then `harness decide`, `harness report --format html`
and cohort changes that move the recommendation as the table says."""

import json

import pytest

from analysis_kit import classifier_set, cohort_file
from labkit import harness_cli


def run(tmp, cohort, cands, name):
    out = tmp / f"out-{name}"
    p = harness_cli("run", "--cohort", cohort, "--candidates", cands, "--dim", "batch=8", "--out", out,
                    "--drivers", "host", "--store", tmp / "store.sqlite", "-q", "--warn-only", cwd=tmp, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    run_id = next(line.split()[-1] for line in p.stdout.splitlines() if line.startswith("run id:"))
    return run_id, json.loads((out / "report.json").read_text()), p.stdout, out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    cands = classifier_set(tmp / "models")
    run_id, doc, stdout, out = run(tmp, cohort_file(tmp / "two.yaml", second_host_target=True), cands, "two")
    return {"tmp": tmp, "cands": cands, "run_id": run_id, "doc": doc, "stdout": stdout, "out": out}


def by(doc, cand):
    return next(r for r in doc["results"] if r["candidate"] == cand and not r.get("error"))


def test_parity_against_the_teacher_and_the_controller(base):
    doc = base["doc"]
    assert "analysis_errors" not in doc
    t, q, s = by(doc, "teacher"), by(doc, "teacher-int8"), by(doc, "student")
    # the teacher on the host is the teacher: labels came from it
    assert t["parity"]["reference"] == "teacher" and t["parity"]["top1_agreement"] == 1.0
    assert t["parity"]["accuracy"] == 1.0 and t["parity"]["samples"] == 128
    # INT8 agrees closely but not exactly; the untrained student does not
    assert 0.8 <= q["parity"]["top1_agreement"] <= 1.0 and q["parity"]["identical"] is False
    assert q["parity"]["snr_db"] > 10 and q["parity"]["tolerance"]["ok"] is True
    assert s["parity"]["top1_agreement"] < 0.6 and s["parity"]["tolerance"]["ok"] is False
    assert q["parity"]["accuracy"] == q["parity"]["top1_agreement"]  # labels are the teacher's classes
    # deployed (host ORT, optimised graph) vs exported (controller ORT, no optimisation): equal to float rounding
    for r in (t, q, s):
        f = r["parity"]["fidelity"]
        assert f["max_abs"] < 1e-3 and f["top1_agreement"] == 1.0 and f["tolerance"]["ok"] is True
    v = doc["validation"]
    assert v["teacher-int8"]["teacher"]["ok"] is True and v["student"]["teacher"]["ok"] is False
    assert v["teacher"]["ground_truth"]["controller"] == 1.0 and v["student"]["runtime"]["ok"] is True


def test_baseline_matrices_and_decision(base):
    doc = base["doc"]
    b = doc["baseline"]["candidates"]["teacher-int8"]
    assert [d["status"] for d in b["devices"]] == ["ok", "not_run"] and len(b["devices"][0]["targets"]) == 2
    assert b["median_device"]["profile"] == "host-cpu" and b["lowest_tier"]["tier"] == "low"
    assert b["budgets"]["latency_median"]["status"] == "pass" and b["budgets"]["memory"]["status"] == "pass"
    cov = doc["coverage"]["teacher"]
    assert cov["cells"]["host-cpu"][next(c for c in cov["columns"] if c.startswith("onnxruntime 1."))]["status"] == "ok"
    assert cov["cells"]["web"]["onnxruntime-web any"]["status"] == "not run"
    ops = doc["operator_support"]["teacher-int8"]
    assert ops["cells"]["MatMulInteger"]["onnxruntime/cpu"] == "cpu"
    # two CPU targets of one (platform, runtime): compared, but not a cross-platform measurement
    div = doc["divergence"]["teacher-int8"]
    assert len(div["pairs"]) == 1 and div["pairs"][0]["cross_target"] is False and div["status"] == "not_measured"
    assert div["pairs"][0]["max_abs"] < 1e-3
    assert len(set(div["entries"])) == 2 and any("graph_optimization_level=disable" in e for e in div["entries"])
    d = doc["decision"]
    assert (d["rule"], d["recommendation"]) == ("two-platforms", "quantisation_per_platform")
    assert d["targets"] == ["browser/onnxruntime-web", "linux/onnxruntime"]
    assert d["suggested"]["candidate"] == "teacher-int8"
    assert d["capacity"]["status"] == "ok" and d["capacity"]["params_fp32"][0] > 0
    assert any("validation pending" in c for c in d["caveats"])
    # the browser target was declared but not measured: the headline says so
    assert d["status"] == "provisional"
    assert "decision (provisional): Quantisation per platform" in base["stdout"]
    md = (base["out"] / "report.md").read_text()
    for section in ("## Decision", "### Student capacity target", "## Validation", "## Parity", "## Cohort baseline",
                    "## Coverage"):
        assert section in md


def test_decide_prints_the_decision_from_the_store_and_from_report_json(base):
    p = harness_cli("decide", base["run_id"], "--store", base["tmp"] / "store.sqlite", cwd=base["tmp"])
    assert p.returncode == 3, p.stderr  # provisional: a declared target was not measured
    assert "**Provisional: Quantisation per platform, with cross-platform validation** — rule `two-platforms`" in p.stdout
    assert "What would change the outcome" in p.stdout and "Student capacity target" in p.stdout
    j = harness_cli("decide", base["out"] / "report.json", "--json", cwd=base["tmp"])
    assert j.returncode == 3 and json.loads(j.stdout)["rule"] == "two-platforms"
    bad = harness_cli("decide", "nope", "--store", base["tmp"] / "store.sqlite", cwd=base["tmp"])
    assert bad.returncode == 2 and "unknown run 'nope'" in bad.stderr


@pytest.mark.parametrize("variant,kwargs,rule,recommendation", [
    ("one-platform", {"browser": False}, "single-platform", "quantisation"),
    ("consistency", {"consistency": True}, "consistency", "distillation"),
    ("tight-memory", {"host_budget_mb": 48}, "memory-tight", "quantisation"),
    ("strict-quality", {"max_rel_l2": 1e-6}, "quality-strict", "distillation"),
])
def test_changing_the_cohort_changes_the_recommendation(base, variant, kwargs, rule, recommendation):
    tmp = base["tmp"]
    _, doc, _, _ = run(tmp, cohort_file(tmp / f"{variant}.yaml", **kwargs), base["cands"], variant)
    d = doc["decision"]
    assert (d["rule"], d["recommendation"]) == (rule, recommendation), d["rules"]
    fired = next(r for r in d["rules"] if r["id"] == rule)
    assert fired["fired"] is True and fired["evidence"] and fired["would_change"]
    if variant == "tight-memory":
        assert d["memory"]["status"] == "tight"
        assert all(not v["fits"] for v in d["memory"]["candidates"].values())
        assert any("peak memory over the budget share" in f for f in d["budget_failures"])
    if variant == "strict-quality":
        assert d["tolerance"]["status"] == "strict" and d["suggested"]["candidate"] == "student"
        assert d["suggested"]["ok"] is False  # the untrained student is no answer yet, and the report says so


def chromium_path():
    import shutil

    return shutil.which("chromium") or ("/usr/bin/chromium" if __import__("os").path.exists("/usr/bin/chromium")
                                        else None)


def test_html_report_renders_in_headless_chromium(base):
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium on this machine (install Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    html_path = base["tmp"] / "report.html"
    p = harness_cli("report", base["run_id"], "--format", "html", "--store", base["tmp"] / "store.sqlite",
                    "-o", html_path, cwd=base["tmp"])
    assert p.returncode == 0, p.stderr
    doc = base["doc"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems, requests = [], []
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_path.as_uri(), wait_until="load")
            assert problems == []
            assert requests == [html_path.as_uri()]  # the document itself, nothing else
            card = page.locator("#decision")
            assert "Quantisation per platform, with cross-platform validation" in card.inner_text()
            assert "Student capacity target" in card.inner_text()
            for pid in ("plot-latency", "plot-p90-budget", "plot-memory"):
                box = page.locator(f"svg#{pid}").bounding_box()
                assert box and box["width"] > 300 and box["height"] > 50, pid
            ok = [r for r in doc["results"] if not r.get("error")]
            assert page.locator("#plot-latency rect.box").count() == len(ok)
            # one bar per measured device row of each candidate, one budget tick per row
            assert page.locator("#plot-p90-budget rect.bar").count() == 3
            assert page.locator("#plot-p90-budget line.limit").count() == 6
            for cls, n in (("fallback", 3), ("coverage", 3), ("divergence", 3)):
                assert page.locator(f"svg.heatmap.{cls}").count() == n, cls
            cells = page.locator("#plot-fallback-teacher-int8 rect.cell").count()
            assert cells == len(doc["operator_support"]["teacher-int8"]["rows"]) * 2  # op types x (cpu, wasm)
            assert page.locator("svg.plot").count() == 3 + 9
        finally:
            browser.close()


def test_compare_same_model_passes_and_a_slower_model_fails(tmp_path):
    from analysis_kit import mlp

    fast = mlp(tmp_path / "fast.onnx", [64, 256, 256, 10], seed=0)
    # the same graph and outputs, plus a chain of 512-wide layers multiplied away by zero weights
    slow = mlp(tmp_path / "slow.onnx", [64, 256, 256, 10], seed=0, extra_layers=6, width_extra=512)
    cohort = cohort_file(tmp_path / "one.yaml", browser=False)
    store = tmp_path / "store.sqlite"

    def go(model, name):
        out = tmp_path / name
        p = harness_cli("run", "--cohort", cohort, "--model", f"m={model}", "--dim", "batch=8", "--drivers", "host",
                        "--store", store, "--out", out, "-q", cwd=tmp_path, timeout=240)
        assert p.returncode == 0, p.stderr[-2000:]
        return next(line.split()[-1] for line in p.stdout.splitlines() if line.startswith("run id:")), out

    a, out_a = go(fast, "a")
    b, _ = go(fast, "b")
    c, _ = go(slow, "c")
    # This box is shared: load differs between runs, so the threshold here is wide. What is asserted is the
    # path (matching rows, significance, exit status); the statistics are unit-tested on synthetic samples.
    same = harness_cli("compare", a, b, "--threshold", "0.5", "--store", store, "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr
    res = json.loads(same.stdout)
    [row] = res["rows"]
    assert row["bucket"] in ("unchanged", "slower", "faster") and row["regression"] is False
    assert res["regressions"] == [] and row["latency"]["old_sessions"] >= 5 <= row["latency"]["new_sessions"]
    worse = harness_cli("compare", out_a / "report.json", c, "--threshold", "0.5", "--store", store, cwd=tmp_path)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "regression ⚠" in worse.stdout and "host-cpu/m/onnxruntime@any/cpu" in worse.stdout
    assert "## Regressions" in worse.stdout and "p90 " in worse.stdout.split("## Regressions")[1]
    bad = harness_cli("compare", a, "missing-run", "--store", store, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown run 'missing-run'" in bad.stderr
