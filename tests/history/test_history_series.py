"""History documents from a real store (both backends): points recomputed
from raw samples, change points at the run they start, environment cuts
marked, and the newest run's verdict."""

import numpy as np
import pytest

from harness.analysis.history import from_store
from harness.report import history_html, history_text
from harness.store.opening import open_store
from storekit import record

KEY = "phone/m/onnxruntime@1.20/nnapi"


def fill(url, levels, runtime_versions=None, fallbacks=None, fail_at=(), peaks=None):
    s = open_store(url)
    rng = np.random.default_rng(7)
    try:
        for i, level in enumerate(levels):
            rid = f"run-{i:02d}"
            s.create_run(rid, "lab", "v", {}, started=1_700_000_000.0 + 3600 * i)
            if i in fail_at:
                rec = record(KEY, profile="phone", target="onnxruntime@1.20/nnapi",
                             error={"stage": "run", "kind": "load", "message": "model failed to load"})
            else:
                # Each run: its own level wobble (between-run noise) and 300 samples around it.
                run_level = level * np.exp(rng.normal(0, 0.02))
                rec = record(KEY, profile="phone", target="onnxruntime@1.20/nnapi",
                             samples=(run_level * np.exp(rng.normal(0, 0.1, 300))).tolist())
                rec["memory"]["peak_bytes"] = int((peaks or {}).get(i, 100 * 2 ** 20))
                rec["placement"] = {"cpu_fallback_nodes": (fallbacks or {}).get(i, 2),
                                    "fallback_op_types": {"TopK": 2} if (fallbacks or {}).get(i, 2) <= 2
                                    else {"TopK": 2, "NonZero": 1}}
            rec["device"]["facts"] = {"model": "Pixel 7"}
            rec["runtime"]["version"] = (runtime_versions or {}).get(i, "1.20.0")
            s.put_result(rid, KEY, rec)
        return s
    except BaseException:
        s.close()
        raise


def test_a_slower_model_from_run_k_is_named_and_fails_the_check(store_url):
    s = fill(store_url, [10.0] * 8 + [13.0] * 4)
    try:
        doc = from_store(s, "m", profile="phone")
    finally:
        s.close()
    [series] = doc["series"]
    assert len(series["points"]) == 12
    [c] = [c for c in series["changes"] if c["kind"] == "latency"]
    assert (c["run_id"], c["direction"], c["regression"]) == ("run-08", "up", True)
    assert 1.2 < c["ratio"] < 1.4 and c["ratio_ci"][0] < c["ratio"] < c["ratio_ci"][1]
    assert series["latest"]["verdict"] == "regressed" and doc["regressions"]
    assert "since run run-08" in doc["regressions"][0]
    p = series["points"][3]
    assert p["n"] == 300 and p["p50_ci_ms"][0] < p["p50_ms"] < p["p50_ci_ms"][1] < p["p90_ms"]
    assert "run-08" in history_text.render(doc)


def test_noise_only_series_has_no_change_and_passes(store_url):
    s = fill(store_url, [10.0] * 14)
    try:
        doc = from_store(s, "m")
    finally:
        s.close()
    [series] = doc["series"]
    assert series["changes"] == [] and series["latest"]["verdict"] == "steady" and doc["regressions"] == []


def test_environment_changes_are_cut_and_marked_not_joined(store_url):
    # The runtime was upgraded at run 6 and is also slower there: that is
    # not a regression of the model, and no change point may span the cut.
    s = fill(store_url, [10.0] * 6 + [14.0] * 6, runtime_versions={i: "1.21.0" for i in range(6, 12)})
    try:
        doc = from_store(s, "m")
    finally:
        s.close()
    [series] = doc["series"]
    assert [e["runs"] for e in series["epochs"]] == [6, 6]
    marked = series["points"][6]["environment_change"]
    assert marked == [{"field": "runtime_version", "before": "1.20.0", "after": "1.21.0"}]
    assert [c for c in series["changes"] if c["kind"] == "latency"] == []
    assert series["latest"]["verdict"] == "steady" and doc["regressions"] == []
    page = history_html.page(doc)
    assert 'class="epoch"' in page and "runtime_version" in page


def test_fallback_growth_and_a_broken_newest_run_are_regressions(store_url):
    s = fill(store_url, [10.0] * 10, fallbacks={8: 3, 9: 3})
    try:
        doc = from_store(s, "m")
    finally:
        s.close()
    [c] = doc["series"][0]["changes"]
    assert (c["kind"], c["run_id"], c["before"], c["after"], c["new_op_types"]) == \
        ("fallback", "run-08", 2, 3, ["NonZero"])
    assert doc["series"][0]["latest"]["verdict"] == "regressed"

    s = open_store(store_url)
    s.create_run("run-99", "lab", "v", {}, started=1_800_000_000.0)
    s.put_result("run-99", KEY, record(KEY, profile="phone", target="onnxruntime@1.20/nnapi",
                                       error={"stage": "run", "kind": "load", "message": "bad op"}))
    try:
        doc = from_store(s, "m")
    finally:
        s.close()
    v = doc["series"][0]["latest"]
    assert v["verdict"] == "broken" and "bad op" in v["reasons"][0]


def test_last_n_limits_the_series(store_url):
    s = fill(store_url, [10.0] * 8 + [13.0] * 4)
    try:
        doc = from_store(s, "m", last=5)
    finally:
        s.close()
    pts = doc["series"][0]["points"]
    assert [p["run_id"] for p in pts] == [f"run-{i:02d}" for i in range(7, 12)]


def test_unknown_metric_is_refused():
    from harness.analysis.history import history

    with pytest.raises(ValueError, match="metric 'p75'"):
        history([], "m", metric="p75")
