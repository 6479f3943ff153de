"""Aggregation: the report of a run with 1,000 results of 1,000 samples each.

A real SQLite store is filled through `put_result` with records made by the
real `build_record` (statistics recomputed from raw samples, as a run does),
for a cohort of 50 device profiles x 5 targets x 4 candidates. What is timed
is what `harness report` does: `build_report` (every row read back with its
samples, the analysis) and `write_reports` (JSON, Markdown, HTML).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.common import Row, median, of

PROFILES = 50
TARGETS = 5
CANDIDATES = 4
SAMPLES = 1000
REPS = 3


def _cohort(n_profiles: int = PROFILES):
    from harness.config.schema import Cohort, DeviceProfile

    rng = np.random.default_rng(0)
    platforms = ["android", "ios", "browser", "linux"]
    runtimes = {"android": ("onnxruntime", ["cpu", "nnapi", "xnnpack", "qnn", "cpu"]),
                "ios": ("onnxruntime", ["cpu", "coreml", "xnnpack", "cpu", "coreml"]),
                "browser": ("onnxruntime-web", ["wasm", "webgpu", "webgl", "wasm", "webgpu"]),
                "linux": ("onnxruntime", ["cpu", "cuda", "tensorrt", "openvino", "cpu"])}
    profiles = []
    for i in range(n_profiles):
        plat = platforms[i % len(platforms)]
        rt, eps = runtimes[plat]
        targets = [{"runtime": rt, "version": f"1.{18 + k // 2}", "ep": eps[k],
                    "options": {"intra_op_threads": 1 + k}} for k in range(TARGETS)]
        profiles.append(DeviceProfile(id=f"dev-{i:03d}", platform=plat, match={"model": f"model {i}"},
                                      tier=("low", "mid", "high")[i % 3], share=float(rng.uniform(0, 0.04)),
                                      memory_budget_mb=float(256 * (1 + i % 4)), targets=targets))
    cohort = Cohort(name="aggregate", devices=profiles, budgets={"latency_p90_ms": 40})
    return cohort, profiles


def fill(store, run_id: str, n_profiles: int = PROFILES, batch: int = 1) -> float:
    """Create the run and put n_profiles x 20 results (1,000 by default), one
    put_result each or `batch` per put_results; returns the seconds it took."""
    from harness.config.schema import Target
    from harness.record.build import build_record

    cohort, profiles = _cohort(n_profiles)
    cands = {f"cand{c}": {"technique": ("baseline", "quantisation", "distillation", "pruning")[c],
                          "from": None if c == 0 else "cand0", "onnx": f"/models/cand{c}.onnx", "coreml": None}
             for c in range(CANDIDATES)}
    config = {"cohort_path": "aggregate.yaml", "cohort": cohort.model_dump(mode="json"),
              "profiles": [p.model_dump(mode="json") for p in profiles], "candidates_file": None,
              "models": [], "reference": "cand0", "candidates": cands, "probes": 8, "lab": None}
    store.create_run(run_id, cohort.name, "bench", config)
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    n = 0
    pending: list = []
    for p in profiles:
        for t in p.targets:
            target = Target.model_validate(t.model_dump())
            for c, name in enumerate(cands):
                base = 5.0 + 10 * rng.random() * (1 + c)
                samples = (base * np.exp(0.05 * rng.standard_normal(SAMPLES))).tolist()
                result = {
                    "runtime": {"name": target.runtime, "version": f"{target.version}.0", "ep": target.ep,
                                "options": target.str_options()},
                    "load_ms": 100 + 50 * rng.random(), "first_run_ms": base * 3, "samples_ms": samples,
                    "memory": {"peak_bytes": int(2e8 * (1 + c)), "delta_bytes": int(1e8 * (1 + c)),
                               "method": "VmHWM"},
                    "placement": {"nodes_total": 120, "nodes_by_ep": {target.ep: 118, "cpu": 2} if target.ep != "cpu"
                                  else {"cpu": 120}, "cpu_fallback_nodes": 2 if target.ep != "cpu" else 0,
                                  "fallback_op_types": {"TopK": 2} if target.ep != "cpu" else {},
                                  "time_share_by_ep": {target.ep: 1.0}, "fully_accelerated": target.ep == "cpu",
                                  "source": "verbose log"},
                    "validity": {"warmup_done": True, "min_runs_met": True, "min_time_met": True,
                                 "stop_reason": "ci_reached", "warnings": []},
                    "error": None, "details": {"runner_wall_s": 12.5}, "outputs": [],
                    "started_unix": 1.7e9 + n, "finished_unix": 1.7e9 + n + 12.5,
                }
                device = {"id": f"sim:{p.id}", "agent": "rack-1", "platform": p.platform,
                          "facts": {"model": f"model {n}", "os_version": "14", "ram_mb": "4096"}}
                rec = build_record(job_key=f"{p.id}/{name}/{target.key()}", candidate=name,
                                   technique=cands[name]["technique"], profile=p, target=target,
                                   model={"sha256": f"{c:064x}", "format": "onnx", "size_bytes": 10_000_000 * (c + 1),
                                          "params": 2_500_000 * (c + 1), "precision": "fp32" if c != 1 else "int8"},
                                   device=device, result=result, attempts=1)
                if batch == 1:
                    store.put_result(run_id, rec["job"], rec)
                else:
                    pending.append((rec["job"], rec, None))
                    if len(pending) >= batch:
                        store.put_results(run_id, pending)
                        pending = []
                n += 1
    if pending:
        store.put_results(run_id, pending)
    return time.perf_counter() - t0


def run(tmp: Path, quick: bool = False) -> list[Row]:
    from harness.report.document import build_report, write_reports
    from harness.store import open_store

    store = open_store(str(tmp / "aggregate.sqlite"))
    try:
        fill_s = fill(store, "bench-aggregate")
        n = len(store.done_keys("bench-aggregate"))
        builds, writes, totals, cpus = [], [], [], []
        for k in range(1 if quick else REPS):
            c0, t0 = time.process_time(), time.perf_counter()
            doc = build_report(store, "bench-aggregate")
            t1 = time.perf_counter()
            write_reports(doc, tmp / f"report{k}")
            t2 = time.perf_counter()
            cpus.append(time.process_time() - c0)
            builds.append(t1 - t0)
            writes.append(t2 - t1)
            totals.append(t2 - t0)
        problems = doc.get("analysis_errors") or []
    finally:
        store.close()
    total = median(totals)
    return _streamed(tmp, quick) + [
        Row(f"aggregation: report of {n} results × {SAMPLES} samples", "≤ 2 s", f"{total:.2f} s", total <= 2.0,
            f"build_report {median(builds):.2f} s + write_reports (json, md, html) {median(writes):.2f} s; "
            f"{of(totals, 's')} wall, {median(cpus):.2f} s CPU; report.json "
            f"{(tmp / 'report0' / 'report.json').stat().st_size / 1e6:.0f} MB" + (f"; analysis errors: {problems}" if problems else ""),
            {"total_s": totals, "build_s": builds, "write_s": writes, "cpu_s": cpus}),
        Row("store fill (put_result, one commit each)", "", f"{n / fill_s:.0f} results/s", None,
            f"{n} records built (statistics from raw samples) and stored in {fill_s:.2f} s", {"fill_s": fill_s}),
    ]


BIG_PROFILES = 500  # x 5 targets x 4 candidates = 10,000 results


def _report_child(store: str, run_id: str, out: Path, mode: str) -> dict:
    import json
    import os
    import subprocess
    import sys

    from bench.common import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "bench._report", store, run_id, str(out), mode], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"report child failed: {p.stderr[-1500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _streamed(tmp: Path, quick: bool) -> list[Row]:
    """`harness run --out`'s report path (harness/report/stream.py) for
    1,000 and 10,000 results of 1,000 samples, each in a fresh process: its
    time, and its memory above that process's level before the report."""
    from harness.store import open_store

    url = str(tmp / "streamed.sqlite")
    big = 50 if quick else BIG_PROFILES
    store = open_store(url)
    try:
        fill_small = fill(store, "small", PROFILES, batch=500)
        fill_big = fill(store, "big", big, batch=500)
    finally:
        store.close()
    n_big = big * TARGETS * CANDIDATES
    small = _report_child(url, "small", tmp / "streamed-small", "stream")
    whole = _report_child(url, "small", tmp / "whole-small", "whole")
    large = [_report_child(url, "big", tmp / f"streamed-big{k}", "stream") for k in range(1 if quick else 2)]
    t = median([x["wall_s"] for x in large])
    growth = median([x["growth_mb"] for x in large])
    doc = median([x["doc_mb"] for x in large])
    bounded = growth <= 2 * doc
    return [
        Row(f"report of {n_big} results × {SAMPLES} samples (streamed)", "≤ 5 s", f"{t:.2f} s", t <= 5.0,
            f"`harness run --out`'s path: the document without samples + report.json streamed from the store "
            f"{limits_batch()} results at a time + Markdown + HTML; {of([x['wall_s'] for x in large], 's')} wall, "
            f"{median([x['cpu_s'] for x in large]):.2f} s CPU; report.json {large[0]['json_mb']:.0f} MB; "
            f"1,000 results: {small['wall_s']:.2f} s (the whole document in memory: {whole['wall_s']:.2f} s)",
            {"big": large, "small": small, "whole_small": whole, "fill_s": {"small": fill_small, "big": fill_big}}),
        Row(f"report memory, {n_big} results", "≤ 2 × the result set held", f"+{growth:.0f} MB ({growth / doc:.2f} ×)",
            bounded,
            f"peak resident set above the process's level before the report, against the result set it renders "
            f"from (the records' statistics, no samples: +{doc:.0f} MB); the samples pass {limits_batch()} results "
            f"at a time. 1,000 results: +{small['growth_mb']:.0f} MB; the whole document in memory (every sample): "
            f"+{whole['growth_mb']:.0f} MB for 1,000 results",
            {}),
    ]


def limits_batch() -> int:
    from harness.kernel import limits

    return limits.REPORT_BATCH
