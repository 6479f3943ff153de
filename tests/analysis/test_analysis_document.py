"""`analyse` through the real report builder and SQLite store, on stored
records and outputs: a run without reference outputs (made before they
existed, or whose reference failed) still gets parity notes, divergence,
baseline and a decision; the Markdown and decision line render."""

import numpy as np

from analysis_kit import config, gap, lat, profile, rec
from harness.kernel import arrays
from harness.report.analysis_md import decision_line, render_analysis, render_decision
from harness.report.document import build_report
from harness.store import open_store


def test_analysis_of_a_stored_run_without_reference_outputs(tmp_path):
    lin = profile("lin", platform="linux", tier="low", share=0.5, budget=512)
    web = profile("web", platform="browser", tier="mid", share=0.5, budget=1024,
                  targets=(("onnxruntime-web", "wasm"),))
    cfg = config([lin, web], candidates={"teacher": {"technique": "baseline"},
                                         "q": {"technique": "quantisation", "from": "teacher"}})
    store = open_store(str(tmp_path / "s.sqlite"))
    store.create_run("r", "t", "0", cfg)
    logits = [{"logits": np.array([[0.1, 0.9], [0.7, 0.3]], np.float32)}]
    flipped = [{"logits": np.array([[0.1, 0.9], [0.3, 0.7]], np.float32)}]
    rows = [(rec(lin, "teacher", samples=lat(10), peak_mb=100), logits),
            (rec(lin, "q", technique="quantisation", precision="int8", samples=lat(5), peak_mb=80), logits),
            (rec(web, "q", technique="quantisation", precision="int8", runtime="onnxruntime-web", ep="wasm",
                 samples=lat(7), peak_mb=60), flipped),
            (gap(web, "teacher"), None)]
    for r, outs in rows:
        store.put_result("r", r["job"], r, outs)
    store.put_blob("r", "probes/q", arrays.pack([{"x": np.zeros((2, 4), np.float32)}]))
    store.finish_run("r", "finished")
    doc = build_report(store, "r")
    store.close()

    assert "analysis_errors" not in doc
    q_lin = next(r for r in doc["results"] if r["candidate"] == "q" and r["device"]["profile"] == "lin")
    assert q_lin["parity"]["max_abs"] is None and q_lin["parity"]["fidelity"] is None
    assert any("no reference was computed" in n for n in q_lin["parity"]["notes"])
    div = doc["divergence"]["q"]
    assert div["status"] == "outside" and div["worst_cross_target"]["top1_agreement"] == 0.5
    d = doc["decision"]
    # two targets, and the quantised candidate diverges between them beyond the policy: distillation
    assert (d["rule"], d["recommendation"]) == ("two-platforms", "distillation")
    assert d["tolerance"]["status"] == "unknown" and any("could not be judged" in c for c in d["caveats"])
    assert d["memory"]["candidates"]["teacher"]["fits"] is True
    assert d["capacity"]["status"] == "ok" and d["capacity"]["profile"] == "lin"
    assert doc["baseline"]["candidates"]["teacher"]["median_device"]["profile"] == "lin"
    md = render_analysis(doc)
    assert "**Distillation to a shared portable model** — rule `two-platforms`" in md
    assert "### q — outside" in md
    assert decision_line(doc).startswith("decision: Distillation to a shared portable model (rule two-platforms)")
    assert "## Budgets" in render_decision(doc)
