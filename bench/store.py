"""The shared store: bulk writes into PostgreSQL, a history query, and the
dashboard's run page.

A real PostgreSQL server (the OS package, started by tests/pgkit.py in a
temporary folder on a loopback port) with its durable defaults (fsync on,
synchronous commit), and records made by the real `build_record` from raw
samples, as bench/aggregate.py makes them (50 profiles x 5 targets x 4
candidates, 1,000 samples each).

* write: 1,000 results x 1,000 samples in one `put_results` (COPY), into a
  fresh run each repetition; beside it, for context, the same results one
  `put_result` (one transaction) at a time, as a controller writes them.
* history: `harness history` of one candidate x device over 500 runs
  (query, per-run statistics from the raw samples, change points).
* dashboard: the run page of a 100-result run through a real uvicorn
  server, after one warm-up page of another run; the figure is the
  server's own time (its Server-Timing header). Nothing is cached between
  requests: each one reads the store and builds the report again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, Row, median, of

WRITE_REPS = 3
HISTORY_RUNS = 500
HISTORY_REPS = 5
PAGE_RESULTS = 100
PAGE_REPS = 5


class _Capture:
    """Stands in for a store while bench.aggregate builds its records."""

    def __init__(self):
        self.run: tuple = ()
        self.items: list = []

    def create_run(self, run_id, cohort, version, config, **_):
        self.run = (cohort, version, config)

    def put_result(self, run_id, key, rec, outputs=None):
        self.items.append((key, rec, outputs))
        return True


def _records():
    from bench import aggregate

    cap = _Capture()
    aggregate.fill(cap, "capture")
    return cap


def _server():
    sys.path.insert(0, str(ROOT / "tests"))
    import pgkit

    reason = pgkit.unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    return pgkit.PostgresServer(pgkit.find_bindir(), fsync=True).start()


def _write(store, cap) -> tuple[list[float], float]:
    cohort, version, config = cap.run
    bulk = []
    for k in range(WRITE_REPS):
        rid = f"bulk-{k}"
        store.create_run(rid, cohort, version, config)
        t0 = time.perf_counter()
        n = len(store.put_results(rid, cap.items))
        bulk.append(time.perf_counter() - t0)
        assert n == len(cap.items)
    store.create_run("one-by-one", cohort, version, config)
    t0 = time.perf_counter()
    for key, rec, outs in cap.items:
        store.put_result("one-by-one", key, rec, outs)
    return bulk, time.perf_counter() - t0


def _history(store, cap) -> list[float]:
    from harness.analysis.history import from_store

    cohort, version, config = cap.run
    key, rec, _ = cap.items[0]
    rng = np.random.default_rng(5)
    items = []
    for i in range(HISTORY_RUNS):
        # After the write benchmark's runs, which hold the same series: these are the newest 500.
        store.create_run(f"h-{i:04d}", cohort, version, config, started=time.time() + 3600 * (i + 1))
        r = dict(rec, timing=dict(rec["timing"]))
        level = (1.0 if i < 400 else 1.25) * np.exp(rng.normal(0, 0.02))
        r["timing"]["samples_ms"] = (np.asarray(rec["timing"]["samples_ms"]) * level).tolist()
        items.append((f"h-{i:04d}", r))
    for rid, r in items:
        store.put_results(rid, [(key, r, None)])
    times, cpus = [], []
    for _ in range(HISTORY_REPS):
        c0, t0 = time.process_time(), time.perf_counter()
        doc = from_store(store, rec["candidate"], profile=rec["device"]["profile"], target=rec["target"],
                         last=HISTORY_RUNS)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    [series] = doc["series"]
    assert len(series["points"]) == HISTORY_RUNS
    assert [c["run_id"] for c in series["changes"] if c["kind"] == "latency"] == ["h-0400"], series["changes"]
    return times, cpus


def _page(url: str, store, cap) -> list[float]:
    import httpx

    sys.path.insert(0, str(ROOT / "tests" / "dashboard"))
    from dashkit import Dashboard

    cohort, version, config = cap.run
    items = cap.items[:PAGE_RESULTS]
    keep = {rec["device"]["profile"] for _, rec, _ in items}
    cfg = dict(config, profiles=[p for p in config["profiles"] if p["id"] in keep])
    cfg["cohort"] = dict(config["cohort"], devices=[d for d in config["cohort"]["devices"] if d["id"] in keep])
    store.create_run("page", cohort, version, cfg)
    store.put_results("page", items)
    store.create_run("warm-up", cohort, version, cfg)
    store.put_results("warm-up", items[:10])
    d = Dashboard(url)
    try:
        # Warm the process (lazy imports, template compilation) on another run's page first.
        assert httpx.get(f"{d.base}/runs/warm-up", timeout=300).status_code == 200
        times, cpus = [], []
        for _ in range(PAGE_REPS):
            c0 = time.process_time()  # the server runs in this process: its CPU time, and the client's
            r = httpx.get(f"{d.base}/runs/page", timeout=120)
            cpus.append(time.process_time() - c0)
            assert r.status_code == 200 and 'id="plot-latency"' in r.text
            times.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)
    finally:
        d.stop()
    return times, cpus


def run(tmp: Path, quick: bool = False) -> list[Row]:
    from harness.store.opening import open_store

    global WRITE_REPS, HISTORY_REPS, PAGE_REPS
    if quick:
        WRITE_REPS, HISTORY_REPS, PAGE_REPS = 1, 2, 2
    cap = _records()
    server = _server()
    try:
        url = server.create_database("bench")
        store = open_store(url)
        try:
            bulk, single = _write(store, cap)
            hist, hist_cpu = _history(store, cap)
            page, page_cpu = _page(url, store, cap)
        finally:
            store.close()
    finally:
        server.stop()
    n = len(cap.items)
    return [
        Row(f"store: {n} results × 1,000 samples into PostgreSQL (COPY)", "≤ 2 s", f"{median(bulk):.2f} s",
            median(bulk) <= 2.0, f"{of(bulk, 's')}; one put_results per run, fsync on; one transaction per "
                                 f"result instead: {single:.1f} s ({n / single:.0f} results/s)",
            {"bulk_s": bulk, "one_by_one_s": single}),
        Row(f"store: history of one candidate × device over {HISTORY_RUNS} runs", "≤ 0.3 s",
            f"{median(hist):.3f} s", median(hist) <= 0.3,
            f"{of(hist, 's')} wall, {median(hist_cpu):.3f} s CPU; query + p50/p90 and intervals from 1,000 raw "
            "samples a run + change points (finds the step at run 400)", {"history_s": hist, "cpu_s": hist_cpu}),
        Row(f"dashboard: run page of {PAGE_RESULTS} results, server time", "≤ 0.3 s", f"{median(page):.3f} s",
            median(page) <= 0.3, f"{of(page, 's')}, {median(page_cpu):.3f} s CPU; nothing cached between requests "
                                 "(Server-Timing, uvicorn on loopback, PostgreSQL store)",
            {"page_s": page, "cpu_s": page_cpu}),
    ]
