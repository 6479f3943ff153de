"""Report files written with the samples streamed from the store
(harness/report/stream.py) say what the whole document in memory says."""

from __future__ import annotations

import json

import numpy as np

from storekit import record
from harness.kernel import limits
from harness.report.document import build_report, write_reports
from harness.report.stream import plot_quantiles, write_run_reports
from harness.store import open_store


def _run(tmp_path, n=7):
    store = open_store(str(tmp_path / "s.sqlite"))
    store.create_run("r", "c", "0", {"candidates": {"m": {}}, "profiles": []})
    store.add_jobs("r", [(f"k{i}", i, {}) for i in range(n)])
    items = [(f"k{i}", record(f"k{i}", seed=i), None) for i in range(n - 1)]
    items.append((f"k{n - 1}", record(f"k{n - 1}", error={"stage": "load", "kind": "crash", "message": "x"}), None))
    store.put_results("r", items)
    return store


def test_streamed_report_files_equal_the_whole_document(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "REPORT_BATCH", 2)  # several batches
    store = _run(tmp_path)
    try:
        whole = write_reports(build_report(store, "r"), tmp_path / "whole")
        doc, streamed = write_run_reports(store, "r", tmp_path / "stream")
    finally:
        store.close()
    assert [p.name for p in whole] == [p.name for p in streamed] == ["report.json", "report.md", "report.html"]
    a = json.loads((tmp_path / "whole" / "report.json").read_text())
    b = json.loads((tmp_path / "stream" / "report.json").read_text())
    assert a == b
    assert len(b["results"]) == 7 and all(len(r["timing"]["samples_ms"]) == 50 for r in b["results"][:6])
    for name in ("report.md", "report.html"):
        assert (tmp_path / "whole" / name).read_text() == (tmp_path / "stream" / name).read_text()
    # The document it returns holds the statistics, not the samples.
    assert all(r["timing"]["samples_ms"] == [] for r in doc["results"])
    assert doc["results"][0]["timing"]["p50_ms"] == a["results"][0]["timing"]["p50_ms"]


def test_samples_stream_in_the_order_results_are_read(tmp_path):
    store = _run(tmp_path, n=5)
    try:
        keys = [r["job"] for r in store.results("r")]
        streamed = list(store.iter_samples("r", batch=2))
        assert [k for k, _ in streamed] == keys
        full = {r["job"]: r["timing"]["samples_ms"] for r in store.results("r")}
        assert all(list(a) == full[k] for k, a in streamed)
    finally:
        store.close()


def test_plot_quantiles_are_numpys_linear_percentiles():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 17, 1000):
        a = rng.standard_normal(n)
        assert np.allclose(plot_quantiles(a), np.percentile(a, [1, 5, 25, 50, 75, 90, 95, 99]))


def test_a_long_latency_plot_draws_its_first_rows_and_says_so(tmp_path, monkeypatch):
    from harness.report import html

    monkeypatch.setattr(limits, "REPORT_PLOT_ROWS", 3)
    store = _run(tmp_path)
    try:
        page = html.render(build_report(store, "r"))
    finally:
        store.close()
    assert "The first 3 of 6 rows" in page
    assert page.count('class="box"') == 3
